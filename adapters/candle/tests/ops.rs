//! The losses as candle ops against the core: the loss out of `forward` and the gradient out of
//! candle's `backward()` equal the core's (f64 within 1e-12 relative, f32 within 1e-6), for
//! every loss and its main options, both float types, every target kind; errors are the core's.

use candle_core::{DType, Device, Tensor, Var};
use longtail::ndarray::{Array1, Array2, Axis};
use longtail::{
    BinarySmoothF1Loss, LdamLoss, Loss, PairwiseMarginLoss, Reduction, SigmoidLoss, SmoothF1Loss,
    SoftmaxLoss, Targets, ZlprLoss,
};
use longtail_candle::{CandleFloat, CandleLoss, TensorTargets};

const B: usize = 7;

fn f<F: CandleFloat>(x: f64) -> F {
    <F as candle_core::WithDType>::from_f64(x)
}

fn d<F: CandleFloat>(x: F) -> f64 {
    <F as candle_core::WithDType>::to_f64(x)
}
const K: usize = 5;

/// SplitMix64, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn logits<F: CandleFloat>(&mut self) -> Array2<F> {
        Array2::from_shape_simple_fn((B, K), || f::<F>(6.0 * self.next() - 3.0))
    }
    fn labels(&mut self) -> Vec<usize> {
        (0..B).map(|_| (self.next() * K as f64) as usize).collect()
    }
    fn probs<F: CandleFloat>(&mut self) -> Array2<F> {
        let raw = Array2::from_shape_simple_fn((B, K), || self.next() + 0.05);
        let sums = raw.sum_axis(Axis(1));
        Array2::from_shape_fn((B, K), |(i, k)| f::<F>(raw[[i, k]] / sums[i]))
    }
    /// Positive weights, one of them 0 (an ignored row).
    /// Rows of 0/1 with one to three positives.
    fn multi_hot<F: CandleFloat>(&mut self) -> Array2<F> {
        let mut rows = Array2::from_elem((B, K), f::<F>(0.0));
        for i in 0..B {
            for _ in 0..1 + (self.next() * 3.0) as usize {
                rows[[i, (self.next() * K as f64) as usize]] = f(1.0);
            }
        }
        rows
    }
    fn weights<F: CandleFloat>(&mut self) -> Vec<F> {
        (0..B).map(|i| f::<F>(if i == 2 { 0.0 } else { 0.25 + 2.0 * self.next() })).collect()
    }
}

/// One batch's targets, as the core takes them and as candle tensors.
#[derive(Clone)]
enum Kind<F> {
    /// Labels as a `u32` tensor.
    Labels(Vec<usize>),
    /// Labels as an `i64` tensor.
    LabelsI64(Vec<usize>),
    Probs(Array2<F>),
    MultiHot(Array2<F>),
}

#[derive(Clone)]
struct Case<F> {
    kind: Kind<F>,
    weights: Option<Vec<F>>,
}

impl<F: CandleFloat> Case<F> {
    fn core(&self) -> Targets<'_, F> {
        let targets = match &self.kind {
            Kind::Labels(labels) | Kind::LabelsI64(labels) => Targets::labels(labels.as_slice()),
            Kind::Probs(probs) => Targets::probs(probs),
            Kind::MultiHot(rows) => Targets::multi_hot(rows),
        };
        match &self.weights {
            Some(w) => targets.with_sample_weights(w.as_slice()),
            None => targets,
        }
    }

    fn tensors(&self) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let dev = Device::Cpu;
        let targets = match &self.kind {
            Kind::Labels(labels) => Tensor::new(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), &dev)?,
            Kind::LabelsI64(labels) => {
                Tensor::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), &dev)?
            }
            Kind::Probs(rows) | Kind::MultiHot(rows) => tensor(rows)?,
        };
        let weights = self.weights.as_ref().map(|w| Tensor::new(w.as_slice(), &dev)).transpose()?;
        Ok((targets, weights))
    }

    fn name(&self) -> String {
        let kind = match self.kind {
            Kind::Labels(_) => "u32 labels",
            Kind::LabelsI64(_) => "i64 labels",
            Kind::Probs(_) => "probs",
            Kind::MultiHot(_) => "multi-hot",
        };
        format!("{kind}{}", if self.weights.is_some() { " + sample weights" } else { "" })
    }
}

fn tensor<F: CandleFloat>(a: &Array2<F>) -> candle_core::Result<Tensor> {
    Tensor::from_slice(a.as_standard_layout().as_slice().unwrap(), a.dim(), &Device::Cpu)
}

fn array<F: CandleFloat>(t: &Tensor) -> candle_core::Result<Array2<F>> {
    let (rows, cols) = t.dims2()?;
    Ok(Array2::from_shape_vec((rows, cols), t.flatten_all()?.to_vec1::<F>()?).unwrap())
}

fn tolerance<F: CandleFloat>() -> f64 {
    if F::DTYPE == DType::F64 { 1e-12 } else { 1e-6 }
}

/// The value and the logits' gradient through candle: `forward`, then `backward()`.
fn through_candle<F: CandleFloat>(
    loss: &impl CandleLoss<F>,
    logits: &Array2<F>,
    case: &Case<F>,
) -> candle_core::Result<(F, Array2<F>)> {
    let z = Var::from_tensor(&tensor(logits)?)?;
    let (targets, weights) = case.tensors()?;
    let targets = match case.kind {
        Kind::Probs(_) => TensorTargets::probs(&targets),
        Kind::MultiHot(_) => TensorTargets::multi_hot(&targets),
        _ => TensorTargets::labels(&targets),
    };
    let targets = match &weights {
        Some(w) => targets.with_sample_weights(w),
        None => targets,
    };
    let value = loss.forward(z.as_tensor(), targets)?;
    assert_eq!(value.dims(), &[] as &[usize], "a scalar loss");
    let grads = value.backward()?;
    let grad = grads.get(z.as_tensor()).expect("the logits have a gradient");
    Ok((value.to_scalar::<F>()?, array(grad)?))
}

fn assert_close<F: CandleFloat>(
    what: &str,
    (value, grad): (F, Array2<F>),
    (want, want_grad): (F, Array2<F>),
) {
    let tol = tolerance::<F>();
    let (value, want) = (d(value), d(want));
    assert!((value - want).abs() <= tol * want.abs().max(1.0), "{what}: loss {value} vs the core's {want}");
    let scale = want_grad.iter().fold(0.0_f64, |m, g| m.max(d(*g).abs())).max(f64::MIN_POSITIVE);
    let gap = grad.iter().zip(&want_grad).fold(0.0_f64, |m, (a, b)| m.max((d(*a) - d(*b)).abs()));
    assert!(gap <= tol * scale, "{what}: gradient off by {gap} (relative {}) from the core's", gap / scale);
    assert!(want_grad.iter().any(|g| d(*g) != 0.0), "{what}: a non-trivial gradient");
}

/// Every target kind the softmax family takes, with and without sample weights.
fn cases<F: CandleFloat>(rng: &mut Rng, probs: bool) -> Vec<Case<F>> {
    let labels = rng.labels();
    let mut kinds = vec![Kind::Labels(labels.clone()), Kind::LabelsI64(labels)];
    if probs {
        kinds.push(Kind::Probs(rng.probs()));
    }
    let weights = rng.weights();
    kinds
        .into_iter()
        .flat_map(|kind| {
            [Case { kind: kind.clone(), weights: None }, Case { kind, weights: Some(weights.clone()) }]
        })
        .collect()
}

fn softmax_losses<F: CandleFloat>() -> Vec<(&'static str, SoftmaxLoss<F>, bool)> {
    let counts: Vec<F> = [500.0, 120.0, 40.0, 9.0, 2.0].map(f::<F>).to_vec();
    let weights: Vec<F> = [0.2, 0.5, 1.0, 2.0, 4.0].map(f::<F>).to_vec();
    let alpha: Vec<F> = [0.1, 0.2, 0.3, 0.2, 0.2].map(f::<F>).to_vec();
    let f = f::<F>;
    vec![
        ("cross-entropy", SoftmaxLoss::cross_entropy(), true),
        ("cross-entropy, sum", SoftmaxLoss::cross_entropy().with_reduction(Reduction::Sum), true),
        ("logit-adjusted", SoftmaxLoss::logit_adjusted(&counts[..]).unwrap(), true),
        (
            "logit-adjusted τ = 0.5",
            SoftmaxLoss::cross_entropy().with_logit_adjustment(&counts[..], f(0.5)).unwrap(),
            true,
        ),
        ("class-weighted", SoftmaxLoss::class_weighted(&weights[..]).unwrap(), false),
        ("focal γ = 2", SoftmaxLoss::focal(f(2.0)).unwrap(), true),
        ("focal γ = 2 with α", SoftmaxLoss::focal(f(2.0)).unwrap().with_alpha(&alpha[..]).unwrap(), false),
        ("label smoothing 0.1", SoftmaxLoss::cross_entropy().with_label_smoothing(f(0.1)).unwrap(), false),
        (
            "logit-adjusted, class-weighted, smoothed",
            SoftmaxLoss::logit_adjusted(&counts[..])
                .unwrap()
                .with_class_weights(&weights[..])
                .unwrap()
                .with_label_smoothing(f(0.05))
                .unwrap(),
            false,
        ),
    ]
}

fn softmax_family<F: CandleFloat>(seed: u64) {
    let mut rng = Rng(seed);
    for (name, loss, probs) in softmax_losses::<F>() {
        for case in cases::<F>(&mut rng, probs) {
            let logits = rng.logits::<F>();
            let what = format!("{name}, {}", case.name());
            let want = loss.loss_and_grad(&logits, case.core()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_close(&what, through_candle(&loss, &logits, &case).unwrap(), want);
        }
    }
}

#[test]
fn softmax_family_gradient_is_the_cores_f64() {
    softmax_family::<f64>(1);
}

#[test]
fn softmax_family_gradient_is_the_cores_f32() {
    softmax_family::<f32>(2);
}

fn margin_and_f1_losses<F: CandleFloat>(seed: u64) {
    let mut rng = Rng(seed);
    let counts: Vec<F> = [500.0, 120.0, 40.0, 9.0, 2.0].map(f::<F>).to_vec();
    let ldam = LdamLoss::new(&counts[..]).unwrap();
    let pairwise = PairwiseMarginLoss::from_prior(&counts[..], f::<F>(1.0)).unwrap();
    for case in cases::<F>(&mut rng, false) {
        let logits = rng.logits::<F>().mapv(|z| z / f::<F>(3.0)); // cosine logits in [-1, 1]
        let what = format!("LDAM, {}", case.name());
        assert_close(
            &what,
            through_candle(&ldam, &logits, &case).unwrap(),
            ldam.loss_and_grad(&logits, case.core()).unwrap(),
        );
        let logits = rng.logits::<F>();
        let what = format!("pairwise margins, {}", case.name());
        let want = pairwise.loss_and_grad(&logits, case.core()).unwrap();
        assert_close(&what, through_candle(&pairwise, &logits, &case).unwrap(), want);
    }
    for (name, loss) in
        [("smooth macro F1", SmoothF1Loss::macro_f1()), ("smooth micro F1", SmoothF1Loss::micro_f1())]
    {
        for case in cases::<F>(&mut rng, true) {
            let logits = rng.logits::<F>();
            let what = format!("{name}, {}", case.name());
            let want = loss.loss_and_grad(&logits, case.core()).unwrap();
            assert_close(&what, through_candle(&loss, &logits, &case).unwrap(), want);
        }
    }
}

#[test]
fn margin_and_f1_losses_gradient_is_the_cores_f64() {
    margin_and_f1_losses::<f64>(3);
}

#[test]
fn margin_and_f1_losses_gradient_is_the_cores_f32() {
    margin_and_f1_losses::<f32>(4);
}

/// The one-vs-rest and multi-label losses, on labels, multi-hot rows and probability rows.
fn one_vs_rest_losses<F: CandleFloat>(seed: u64) {
    let mut rng = Rng(seed);
    let prior: Vec<F> = [0.5, 0.3, 0.1, 0.05, 0.05].map(f::<F>).to_vec();
    let losses: Vec<(&str, Box<dyn Loss<F>>)> = vec![
        ("sigmoid BCE", Box::new(SigmoidLoss::bce())),
        (
            "sigmoid focal γ = 2, α = 0.25",
            Box::new(SigmoidLoss::focal(f(2.0)).unwrap().with_alpha(f(0.25)).unwrap()),
        ),
        ("sigmoid BCE, sum", Box::new(SigmoidLoss::bce().with_reduction(Reduction::Sum))),
        ("ZLPR", Box::new(ZlprLoss::new())),
        ("ZLPR with a label prior", Box::new(ZlprLoss::new().with_label_prior(&prior[..], f(1.0)).unwrap())),
        ("binary smooth F1", Box::new(BinarySmoothF1Loss::new())),
    ];
    let mut compared = 0;
    for (name, loss) in &losses {
        let labels = rng.labels();
        let weights = rng.weights::<F>();
        for kind in [Kind::Labels(labels), Kind::MultiHot(rng.multi_hot()), Kind::Probs(rng.probs())] {
            for weights in [None, Some(weights.clone())] {
                let case = Case { kind: kind.clone(), weights };
                let logits = rng.logits::<F>();
                let what = format!("{name}, {}", case.name());
                match loss.loss_and_grad(&logits, case.core()) {
                    Ok(want) => {
                        assert_close(&what, through_candle(loss, &logits, &case).unwrap(), want);
                        compared += 1;
                    }
                    // A target kind the loss does not take: the same error through candle.
                    Err(err) => {
                        let got = through_candle(loss, &logits, &case).unwrap_err();
                        assert_eq!(core_message(&got), err.to_string(), "{what}");
                    }
                }
            }
        }
    }
    assert!(compared >= 2 * losses.len(), "most combinations compute a loss ({compared})");
}

#[test]
fn one_vs_rest_and_multi_label_losses_gradient_is_the_cores_f64() {
    one_vs_rest_losses::<f64>(10);
}

#[test]
fn one_vs_rest_and_multi_label_losses_gradient_is_the_cores_f32() {
    one_vs_rest_losses::<f32>(11);
}

/// A loss that records where the core's view of the logits points, around the crate's loss.
#[derive(Debug)]
struct Recording<L> {
    inner: L,
    seen: std::sync::Mutex<Vec<usize>>,
}

impl<F: CandleFloat, L: Loss<F>> Loss<F> for Recording<L> {
    fn loss_into(
        &self,
        logits: &longtail::ndarray::ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut longtail::ndarray::ArrayRef2<F>>,
    ) -> longtail::Result<F> {
        self.seen.lock().unwrap().push(logits.as_ptr() as usize);
        self.inner.loss_into(logits, targets, grad_out)
    }
    fn per_sample_into(
        &self,
        logits: &longtail::ndarray::ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut longtail::ndarray::ArrayRef1<F>,
        grad_out: Option<&mut longtail::ndarray::ArrayRef2<F>>,
    ) -> longtail::Result<()> {
        self.seen.lock().unwrap().push(logits.as_ptr() as usize);
        self.inner.per_sample_into(logits, targets, losses_out, grad_out)
    }
    fn reduction(&self) -> Reduction {
        self.inner.reduction()
    }
}

/// Where a CPU tensor's storage starts (at its layout's offset).
fn storage_address(t: &Tensor) -> usize {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) => {
            data[layout.start_offset()..].as_ptr() as usize
        }
        _ => panic!("f32 CPU storage"),
    }
}

#[test]
fn the_kernel_reads_candles_storage_in_place() {
    let mut rng = Rng(12);
    let loss = Recording { inner: SoftmaxLoss::<f32>::cross_entropy(), seen: Default::default() };
    let labels =
        Tensor::new(rng.labels().iter().map(|&l| l as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let z = Var::from_tensor(&tensor(&rng.logits::<f32>()).unwrap()).unwrap();
    loss.forward(z.as_tensor(), &labels).unwrap().backward().unwrap();
    loss.forward_per_sample(z.as_tensor(), &labels).unwrap();
    // A row slice of a larger batch is contiguous too: read in place at its offset.
    let rows = z.as_tensor().narrow(0, 2, 3).unwrap();
    loss.forward(&rows, &labels.narrow(0, 2, 3).unwrap()).unwrap();
    // A transposed view is not: the kernel sees candle's contiguous copy, elsewhere.
    let square = Var::from_tensor(&Tensor::zeros((K, K), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let transposed = square.as_tensor().t().unwrap();
    loss.forward(&transposed, &labels.narrow(0, 0, K).unwrap()).unwrap();
    let seen = loss.seen.lock().unwrap().clone();
    let here = storage_address(z.as_tensor());
    assert_eq!(seen[..3], [here, here, here + 2 * K * 4]);
    assert!(rows.is_contiguous());
    assert_ne!(seen[3], storage_address(square.as_tensor()));
}

#[test]
fn boxed_losses_run_as_candle_ops() {
    let mut rng = Rng(13);
    let losses: Vec<Box<dyn Loss<f64>>> = vec![
        Box::new(SoftmaxLoss::cross_entropy()),
        Box::new(SoftmaxLoss::focal(2.0).unwrap()),
        Box::new(LdamLoss::new(&[9.0, 5.0, 3.0, 2.0, 1.0][..]).unwrap()),
    ];
    let case = Case { kind: Kind::Labels(rng.labels()), weights: None };
    for loss in &losses {
        let logits = rng.logits::<f64>().mapv(|z| z / 3.0);
        let want = loss.loss_and_grad(&logits, case.core()).unwrap();
        assert_close(&format!("{loss:?}"), through_candle(loss, &logits, &case).unwrap(), want);
    }
}

fn per_sample<F: CandleFloat>(seed: u64) {
    let mut rng = Rng(seed);
    let loss = SoftmaxLoss::<F>::focal(f::<F>(1.5)).unwrap();
    let (logits, labels) = (rng.logits::<F>(), rng.labels());
    let (want_losses, want_grad) = loss.per_sample_loss_and_grad(&logits, &labels).unwrap();
    let z = Var::from_tensor(&tensor(&logits).unwrap()).unwrap();
    let label_tensor =
        Tensor::new(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let losses = loss.forward_per_sample(z.as_tensor(), &label_tensor).unwrap();
    assert_eq!(losses.dims(), &[B]);
    // d/dz of Σ_i c_i ℓ_i is row i of the per-sample gradient scaled by c_i.
    let c: Vec<F> = (0..B).map(|i| f::<F>(0.5 + i as f64)).collect();
    let objective = (&losses * Tensor::new(c.as_slice(), &Device::Cpu).unwrap()).unwrap().sum_all().unwrap();
    let grad = array::<F>(objective.backward().unwrap().get(z.as_tensor()).unwrap()).unwrap();
    let scaled = Array2::from_shape_fn((B, K), |(i, k)| want_grad[[i, k]] * c[i]);
    let got_losses = Array1::from(losses.to_vec1::<F>().unwrap());
    let tol = tolerance::<F>();
    for i in 0..B {
        let (a, b) = (d(got_losses[i]), d(want_losses[i]));
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "row {i}: {a} vs {b}");
    }
    let value = objective.to_scalar::<F>().unwrap();
    let want_value = (0..B).fold(F::zero(), |s, i| s + c[i] * want_losses[i]);
    assert_close("per-sample focal, weighted sum", (value, grad), (want_value, scaled));
}

#[test]
fn per_sample_losses_backpropagate_row_by_row() {
    per_sample::<f64>(5);
    per_sample::<f32>(6);
}

#[test]
fn the_incoming_gradient_scales_the_kept_gradient() {
    let mut rng = Rng(7);
    let loss = SoftmaxLoss::<f64>::cross_entropy();
    let (logits, labels) = (rng.logits::<f64>(), rng.labels());
    let (value, grad) = loss.loss_and_grad(&logits, &labels).unwrap();
    let z = Var::from_tensor(&tensor(&logits).unwrap()).unwrap();
    let y = Tensor::new(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    // 3·L + L²: dL_total/dz = (3 + 2L)·dL/dz; and the op used twice adds up.
    let first = loss.forward(z.as_tensor(), &y).unwrap();
    let second = loss.forward(z.as_tensor(), &y).unwrap();
    let total = ((first * 3.0).unwrap() + second.sqr().unwrap()).unwrap();
    let got = array::<f64>(total.backward().unwrap().get(z.as_tensor()).unwrap()).unwrap();
    let want = grad.mapv(|g| (3.0 + 2.0 * value) * g);
    assert_close("3·L + L²", (total.to_scalar::<f64>().unwrap(), got), (3.0 * value + value * value, want));
}

#[test]
fn non_contiguous_logits_are_made_contiguous_and_the_gradient_flows_back() {
    let mut rng = Rng(8);
    let loss = SoftmaxLoss::<f64>::logit_adjusted(&[5.0, 4.0, 3.0, 2.0, 1.0][..]).unwrap();
    let (logits, labels) = (rng.logits::<f64>(), rng.labels());
    let (value, grad) = loss.loss_and_grad(&logits, &labels).unwrap();
    // The variable holds the transpose; the loss sees `zᵀ`, a strided view.
    let zt = Var::from_tensor(&tensor(&logits.t().to_owned()).unwrap()).unwrap();
    let z = zt.as_tensor().t().unwrap();
    assert!(!z.is_contiguous());
    let y = Tensor::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let out = loss.forward(&z, &y).unwrap();
    let got = array::<f64>(out.backward().unwrap().get(zt.as_tensor()).unwrap()).unwrap();
    assert_close("transposed logits", (out.to_scalar::<f64>().unwrap(), got.t().to_owned()), (value, grad));
}

#[test]
fn logits_without_a_gradient_give_a_plain_value() {
    let mut rng = Rng(9);
    let loss = SoftmaxLoss::<f32>::cross_entropy();
    let (logits, labels) = (rng.logits::<f32>(), rng.labels());
    let y = Tensor::new(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap();
    let value = loss.forward(&tensor(&logits).unwrap(), &y).unwrap();
    assert!(!value.track_op());
    let want = loss.loss(&logits, &labels).unwrap();
    assert_eq!(value.to_scalar::<f32>().unwrap(), want);
}

/// An error's message without the backtrace candle adds when `RUST_BACKTRACE` is set.
fn plain_message(err: &candle_core::Error) -> String {
    match err {
        candle_core::Error::WithBacktrace { inner, .. } => plain_message(inner),
        other => other.to_string(),
    }
}

/// The error's message, through candle's backtrace wrapper if `RUST_BACKTRACE` is set.
fn core_message(err: &candle_core::Error) -> String {
    match err {
        candle_core::Error::Wrapped(inner) => inner.to_string(),
        candle_core::Error::WithBacktrace { inner, .. } => core_message(inner),
        other => panic!("expected the core's error wrapped, got {other:?}"),
    }
}

#[test]
fn core_errors_surface_as_candle_errors_with_the_core_message() {
    let dev = Device::Cpu;
    let loss = SoftmaxLoss::<f32>::cross_entropy();
    let logits = Tensor::new(&[[0.0_f32, 1.0, 2.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let core_logits = array::<f32>(&logits).unwrap();

    let bad_label = Tensor::new(&[0_u32, 3], &dev).unwrap();
    let err = loss.forward(&logits, &bad_label).unwrap_err();
    assert_eq!(core_message(&err), loss.loss(&core_logits, &[0, 3]).unwrap_err().to_string());

    let short = Tensor::new(&[0_u32], &dev).unwrap();
    let err = loss.forward(&logits, &short).unwrap_err();
    assert_eq!(core_message(&err), loss.loss(&core_logits, &[0]).unwrap_err().to_string());

    let nan = Tensor::new(&[[0.0_f32, f32::NAN, 2.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let err = loss.forward(&nan, &Tensor::new(&[0_u32, 1], &dev).unwrap()).unwrap_err();
    let core_nan = array::<f32>(&nan).unwrap();
    assert_eq!(core_message(&err), loss.loss(&core_nan, &[0, 1]).unwrap_err().to_string());

    let bad_probs = Tensor::new(&[[0.5_f32, 0.6, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let err = loss.forward(&logits, TensorTargets::probs(&bad_probs)).unwrap_err();
    let core_probs = array::<f32>(&bad_probs).unwrap();
    assert_eq!(core_message(&err), loss.loss(&core_logits, &core_probs).unwrap_err().to_string());

    let negative = Tensor::new(&[-1.0_f32, 1.0], &dev).unwrap();
    let err = loss
        .forward(
            &logits,
            TensorTargets::labels(&Tensor::new(&[0_u32, 1], &dev).unwrap()).with_sample_weights(&negative),
        )
        .unwrap_err();
    let core_err =
        loss.loss(&core_logits, Targets::labels(&[0, 1]).with_sample_weights(&[-1.0, 1.0])).unwrap_err();
    assert_eq!(core_message(&err), core_err.to_string());
}

#[test]
fn tensors_the_adapter_cannot_read_are_candle_errors_naming_them() {
    let dev = Device::Cpu;
    let loss = SoftmaxLoss::<f32>::cross_entropy();
    let logits = Tensor::new(&[[0.0_f32, 1.0], [1.0, 0.0]], &dev).unwrap();
    let labels = Tensor::new(&[0_u32, 1], &dev).unwrap();
    let message = |r: candle_core::Result<Tensor>| plain_message(&r.unwrap_err());

    assert_eq!(
        message(loss.forward(&logits.to_dtype(DType::F64).unwrap(), &labels)),
        "the loss runs in F32, the logits are F64"
    );
    assert_eq!(
        message(loss.forward(&logits.reshape((1, 2, 2)).unwrap(), &labels)),
        "longtail-loss: the logits must be a [B, K] tensor, got shape [1, 2, 2]"
    );
    assert_eq!(
        message(loss.forward(&logits, TensorTargets::labels(&logits))),
        "the labels must be u32 or i64, got F32"
    );
    assert_eq!(
        message(loss.forward(&logits, TensorTargets::labels(&labels.reshape((2, 1)).unwrap()))),
        "the labels must be a [B] tensor, got shape [2, 1]"
    );
    assert_eq!(
        message(loss.forward(&logits, &Tensor::new(&[0_i64, -1], &dev).unwrap())),
        "label -1 at row 1 is not a class index"
    );
    assert_eq!(
        message(loss.forward(&logits, TensorTargets::probs(&logits.to_dtype(DType::F64).unwrap()))),
        "the loss runs in F32, the probability targets are F64"
    );
    assert_eq!(
        message(loss.forward(&logits, TensorTargets::probs(&labels))),
        "the loss runs in F32, the probability targets are U32"
    );
    let weights = Tensor::new(&[[1.0_f32, 1.0]], &dev).unwrap();
    assert_eq!(
        message(loss.forward(&logits, TensorTargets::labels(&labels).with_sample_weights(&weights))),
        "the sample weights must be a [B] tensor, got shape [1, 2]"
    );
}

#[test]
fn a_binary_model_is_one_column_of_sigmoid_decisions() {
    let mut rng = Rng(14);
    let loss = SigmoidLoss::<f64>::focal(2.0).unwrap();
    let z: Vec<f64> = (0..B).map(|_| 4.0 * rng.next() - 2.0).collect();
    let y: Vec<f64> = (0..B).map(|i| (i % 3 == 0) as u8 as f64).collect();
    let (want, want_grad) = loss.binary_loss_and_grad(&Array1::from(z.clone()), &y[..]).unwrap();
    let var = Var::from_tensor(&Tensor::from_slice(&z, (B, 1), &Device::Cpu).unwrap()).unwrap();
    let targets = Tensor::from_slice(&y, (B, 1), &Device::Cpu).unwrap();
    let value = loss.forward(var.as_tensor(), TensorTargets::multi_hot(&targets)).unwrap();
    let grad = array::<f64>(value.backward().unwrap().get(var.as_tensor()).unwrap()).unwrap();
    let want_grad = want_grad.insert_axis(Axis(1));
    assert_close("binary focal as [B, 1]", (value.to_scalar::<f64>().unwrap(), grad), (want, want_grad));
}
