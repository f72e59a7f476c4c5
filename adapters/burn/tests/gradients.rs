//! The gradient out of burn's `backward()` equals the core's gradient, and the loss the core's
//! loss, for every loss and the main options, in f32 and f64, on both CPU backends and on the
//! tensor-op path; bad input is an error, never a panic; the CPU path reads the logits in place.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use longtail::ndarray::{Array1, Array2};
use longtail::{
    BinarySmoothF1Loss, LdamLoss, PairwiseMarginLoss, Reduction, SigmoidLoss, SmoothF1Loss, SoftmaxLoss,
    ZlprLoss,
};
use longtail_burn::{ComputePath, Element, LongtailLoss, Loss, SoftmaxLossConfig, Targets};

/// A deterministic batch: logits spread over a few units, labels covering every class.
struct Batch<F> {
    logits: Array2<F>,
    labels: Vec<usize>,
    probs: Array2<F>,
    multi_hot: Array2<F>,
    weights: Array1<F>,
}

fn batch<F: Element>(rows: usize, classes: usize) -> Batch<F> {
    let f = |v: f64| F::from(v).unwrap();
    let logits =
        Array2::from_shape_fn((rows, classes), |(i, k)| f(((i * 7 + k * 3) % 11) as f64 * 0.37 - 1.9));
    let labels = (0..rows).map(|i| (i * 5 + 1) % classes).collect();
    let raw = Array2::from_shape_fn((rows, classes), |(i, k)| ((i + 2 * k) % 5) as f64 + 0.5);
    let probs = Array2::from_shape_fn((rows, classes), |(i, k)| f(raw[(i, k)] / raw.row(i).sum()));
    let weights = Array1::from_shape_fn(rows, |i| f([1.0, 0.5, 2.0, 0.0][i % 4]));
    let multi_hot =
        Array2::from_shape_fn((rows, classes), |(i, k)| f(f64::from(u8::from((i + 2 * k) % 3 == 0))));
    Batch { logits, labels, probs, multi_hot, weights }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Labels,
    Probs,
    MultiHot,
    WeightedLabels,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Flex,
    NdArray,
}

fn device(backend: Backend) -> Device {
    match backend {
        Backend::Flex => Device::flex(),
        #[allow(deprecated)]
        Backend::NdArray => Device::ndarray(),
    }
}

fn tensor2<F: Element>(a: &Array2<F>, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(a.iter().copied().collect::<Vec<F>>(), [a.nrows(), a.ncols()]),
        (device, F::DTYPE),
    )
}

fn tensor1<F: Element>(a: &Array1<F>, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(a.to_vec(), [a.len()]), (device, F::DTYPE))
}

fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [labels.len()]),
        device,
    )
}

fn targets<F: Element>(b: &Batch<F>, kind: Kind, device: &Device) -> Targets {
    match kind {
        Kind::Labels => Targets::labels(labels_tensor(&b.labels, device)),
        Kind::Probs => Targets::probs(tensor2(&b.probs, device)),
        Kind::MultiHot => Targets::multi_hot(tensor2(&b.multi_hot, device)),
        Kind::WeightedLabels => {
            Targets::labels(labels_tensor(&b.labels, device)).with_sample_weights(tensor1(&b.weights, device))
        }
    }
}

fn core_targets<F: Element>(b: &Batch<F>, kind: Kind) -> longtail::Targets<'_, F> {
    match kind {
        Kind::Labels => longtail::Targets::labels(&b.labels[..]),
        Kind::Probs => longtail::Targets::probs(&b.probs),
        Kind::MultiHot => longtail::Targets::multi_hot(&b.multi_hot),
        Kind::WeightedLabels => longtail::Targets::labels(&b.labels[..]).with_sample_weights(&b.weights),
    }
}

/// Max relative difference, relative to the largest magnitude of the reference.
fn rel_diff<F: Element>(ours: &[F], core: &[F]) -> f64 {
    assert_eq!(ours.len(), core.len());
    let f = |v: &F| burn::tensor::ElementConversion::elem::<f64>(*v);
    let scale = core.iter().map(|v| f(v).abs()).fold(f64::MIN_POSITIVE, f64::max);
    ours.iter().zip(core).map(|(a, b)| (f(a) - f(b)).abs() / scale).fold(0.0, f64::max)
}

fn tolerance<F: Element>() -> f64 {
    if F::DTYPE == DType::F64 { 1e-12 } else { 1e-6 }
}

/// Runs `loss` through the adapter with autodiff and checks loss and gradient against the core.
fn check<F: Element, L: Loss<F> + Clone + 'static>(
    name: &str,
    loss: L,
    kind: Kind,
    backend: Backend,
    path: ComputePath,
) {
    let b = batch::<F>(13, 7);
    let mut core_grad = Array2::zeros(b.logits.raw_dim());
    let core_value = loss.loss_into(&b.logits, &core_targets(&b, kind), Some(&mut core_grad)).unwrap();

    let device = device(backend).autodiff();
    let logits = tensor2(&b.logits, &device).require_grad();
    let adapter = LongtailLoss::new(loss.clone()).with_path(path);
    let value = adapter.try_forward(logits.clone(), &targets(&b, kind, &device)).unwrap();
    assert_eq!(value.dims(), [1]);
    let grads = value.backward();
    let grad = logits.grad(&grads).expect("the logits are tracked");
    let ours_value = value.into_scalar::<F>();
    let ours_grad = grad.to_data().try_to_vec::<F>().unwrap();
    let core_grad: Vec<F> = core_grad.iter().copied().collect();
    let what = format!("{name} {kind:?} {backend:?} {path:?} {:?}", F::DTYPE);
    let dv = rel_diff(&[ours_value], &[core_value]);
    let dg = rel_diff(&ours_grad, &core_grad);
    assert!(dv <= tolerance::<F>(), "{what}: loss {ours_value:?} vs core {core_value:?}");
    assert!(dg <= tolerance::<F>(), "{what}: gradient differs by {dg:e} (relative)");
    if path == ComputePath::Auto {
        // The CPU path is the core kernel itself: bit for bit.
        assert_eq!(ours_value, core_value, "{what}");
        assert_eq!(ours_grad, core_grad, "{what}");
    }

    // Without autodiff: the same loss value, nothing to differentiate.
    let plain = device.clone().without_autodiff();
    let value = adapter.try_forward(tensor2(&b.logits, &plain), &targets(&b, kind, &plain)).unwrap();
    assert!(
        rel_diff(&[value.into_scalar::<F>()], &[core_value]) <= tolerance::<F>(),
        "{what} without autodiff"
    );
}

fn softmax_losses<F: Element>() -> Vec<(&'static str, SoftmaxLoss<F>)> {
    let f = |v: f64| F::from(v).unwrap();
    let counts: Vec<F> = [500.0, 200.0, 90.0, 40.0, 15.0, 5.0, 2.0].iter().map(|&c| f(c)).collect();
    let weights: Vec<F> = (0..7).map(|k| f(0.5 + 0.25 * k as f64)).collect();
    let alpha: Vec<F> = (0..7).map(|k| f(0.9 - 0.1 * k as f64)).collect();
    vec![
        ("cross-entropy", SoftmaxLoss::cross_entropy()),
        ("logit-adjusted", SoftmaxLoss::logit_adjusted(&counts).unwrap()),
        (
            "logit-adjusted tau 0.5",
            SoftmaxLoss::cross_entropy().with_logit_adjustment(&counts, f(0.5)).unwrap(),
        ),
        ("class-weighted", SoftmaxLoss::class_weighted(&weights).unwrap()),
        ("focal 2", SoftmaxLoss::focal(f(2.0)).unwrap()),
        ("focal 0.5 alpha", SoftmaxLoss::focal(f(0.5)).unwrap().with_alpha(&alpha).unwrap()),
        ("label smoothing", SoftmaxLoss::cross_entropy().with_label_smoothing(f(0.1)).unwrap()),
        ("sum", SoftmaxLoss::cross_entropy().with_reduction(Reduction::Sum)),
        (
            "everything",
            SoftmaxLoss::logit_adjusted(&counts)
                .unwrap()
                .with_class_weights(&weights)
                .unwrap()
                .with_focal(f(2.0))
                .unwrap()
                .with_alpha(&alpha)
                .unwrap()
                .with_label_smoothing(f(0.05))
                .unwrap(),
        ),
    ]
}

fn softmax_family<F: Element>() {
    for (name, loss) in softmax_losses::<F>() {
        for kind in [Kind::Labels, Kind::Probs, Kind::WeightedLabels] {
            for backend in [Backend::Flex, Backend::NdArray] {
                check(name, loss.clone(), kind, backend, ComputePath::Auto);
            }
            check(name, loss.clone(), kind, Backend::Flex, ComputePath::TensorOps);
            check(name, loss.clone(), kind, Backend::Flex, ComputePath::Host);
        }
    }
}

#[test]
fn softmax_family_gradient_equals_the_core_f64() {
    softmax_family::<f64>();
}

#[test]
fn softmax_family_gradient_equals_the_core_f32() {
    softmax_family::<f32>();
}

fn margin_losses<F: Element>() {
    let counts: Vec<F> =
        [500.0, 200.0, 90.0, 40.0, 15.0, 5.0, 2.0].iter().map(|&c| F::from(c).unwrap()).collect();
    let ldam = LdamLoss::<F>::new(&counts).unwrap();
    let pairwise = PairwiseMarginLoss::<F>::from_prior(&counts, F::one()).unwrap();
    for kind in [Kind::Labels, Kind::WeightedLabels] {
        for backend in [Backend::Flex, Backend::NdArray] {
            check("LDAM", ldam.clone(), kind, backend, ComputePath::Auto);
            check("pairwise", pairwise.clone(), kind, backend, ComputePath::Auto);
        }
        // Not of the softmax family: the tensor-op path takes the host round trip.
        check("LDAM", ldam.clone(), kind, Backend::Flex, ComputePath::TensorOps);
        check("pairwise", pairwise.clone(), kind, Backend::Flex, ComputePath::Host);
    }
}

#[test]
fn margin_losses_gradient_equals_the_core_f64() {
    margin_losses::<f64>();
}

#[test]
fn margin_losses_gradient_equals_the_core_f32() {
    margin_losses::<f32>();
}

/// Builds a fresh boxed loss.
type Maker<F> = Box<dyn Fn() -> Box<dyn Loss<F>>>;

/// The losses outside the softmax family, each with the target kinds it takes, through the
/// generic adapter (the CPU path in place, the host round trip forced).
fn other_losses<F: Element>() {
    let f = |v: f64| F::from(v).unwrap();
    let cases: Vec<(&str, Maker<F>, Vec<Kind>)> = vec![
        ("sigmoid BCE", Box::new(|| Box::new(SigmoidLoss::<F>::bce())), vec![Kind::MultiHot, Kind::Labels]),
        (
            "sigmoid focal",
            Box::new(move || Box::new(SigmoidLoss::<F>::focal(f(2.0)).unwrap())),
            vec![Kind::MultiHot],
        ),
        ("ZLPR", Box::new(|| Box::new(ZlprLoss::<F>::new())), vec![Kind::MultiHot]),
        (
            "smooth F1 macro",
            Box::new(|| Box::new(SmoothF1Loss::<F>::macro_f1())),
            vec![Kind::Labels, Kind::Probs],
        ),
        ("smooth F1 micro", Box::new(|| Box::new(SmoothF1Loss::<F>::micro_f1())), vec![Kind::WeightedLabels]),
        ("binary smooth F1", Box::new(|| Box::new(BinarySmoothF1Loss::<F>::new())), vec![Kind::MultiHot]),
    ];
    for (name, make, kinds) in cases {
        for kind in kinds {
            for backend in [Backend::Flex, Backend::NdArray] {
                check_boxed(name, make(), kind, backend, ComputePath::Auto);
            }
            check_boxed(name, make(), kind, Backend::Flex, ComputePath::Host);
        }
    }
}

/// [`check`] for a boxed loss (`Box<dyn Loss<F>>` is a core loss too).
fn check_boxed<F: Element>(
    name: &str,
    loss: Box<dyn Loss<F>>,
    kind: Kind,
    backend: Backend,
    path: ComputePath,
) {
    check(name, std::sync::Arc::new(loss), kind, backend, path);
}

#[test]
fn other_losses_gradient_equals_the_core_f64() {
    other_losses::<f64>();
}

#[test]
fn other_losses_gradient_equals_the_core_f32() {
    other_losses::<f32>();
}

#[test]
fn incoming_gradient_scales_the_analytic_gradient() {
    let b = batch::<f64>(5, 4);
    let loss = SoftmaxLoss::<f64>::focal(2.0).unwrap();
    let (_, core_grad) = loss.loss_and_grad(&b.logits, &b.labels).unwrap();
    for path in [ComputePath::Auto, ComputePath::TensorOps, ComputePath::Host] {
        for backend in [Backend::Flex, Backend::NdArray] {
            let device = device(backend).autodiff();
            let logits = tensor2(&b.logits, &device).require_grad();
            let value = LongtailLoss::new(loss.clone())
                .with_path(path)
                .try_forward(logits.clone(), &Targets::labels(labels_tensor(&b.labels, &device)))
                .unwrap();
            let grads = (value.mul_scalar(3.0) + 1.0).backward();
            let grad = logits.grad(&grads).unwrap().to_data().try_to_vec::<f64>().unwrap();
            let expected: Vec<f64> = core_grad.iter().map(|g| 3.0 * g).collect();
            assert!(rel_diff(&grad, &expected) <= 1e-12, "{path:?} {backend:?}");
        }
    }
}

#[test]
fn config_builds_the_core_loss() {
    let config = SoftmaxLossConfig::new()
        .with_prior(vec![4.0, 2.0, 1.0])
        .with_tau(0.5)
        .with_class_weights(vec![1.0, 2.0, 3.0])
        .with_gamma(2.0)
        .with_alpha(vec![0.5, 0.3, 0.2])
        .with_label_smoothing(0.1)
        .with_reduction(Reduction::Sum);
    let core = SoftmaxLoss::<f64>::cross_entropy()
        .with_reduction(Reduction::Sum)
        .with_logit_adjustment(&[4.0, 2.0, 1.0], 0.5)
        .unwrap()
        .with_class_weights(&[1.0, 2.0, 3.0])
        .unwrap()
        .with_focal(2.0)
        .unwrap()
        .with_alpha(&[0.5, 0.3, 0.2])
        .unwrap()
        .with_label_smoothing(0.1)
        .unwrap();
    assert_eq!(config.init::<f64>().unwrap().inner(), &core);
}
