//! `AsymmetricLoss`: gradients against finite differences for every option combination (γ+, γ−,
//! clip, label and multi-hot targets, sample weights, reductions), f32 against f64, the formula
//! written out, BCE as its special case, easy negatives dropped, and every error.

mod common;

use common::{Rng, mat, numeric_grad, relative, relative_error};
use longtail::{AsymmetricLoss, Error, Float, Loss, Reduction, SigmoidLoss, Targets};
use ndarray::{Array2, array};

const BATCH: usize = 6;
const CLASSES: usize = 5;
/// `(γ+, γ−, m)`: the paper's, the class's defaults, no clip, fractional exponents, BCE.
const SETTINGS: [(f64, f64, f64); 5] =
    [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (2.0, 3.0, 0.0), (0.5, 0.5, 0.2), (0.0, 0.0, 0.0)];

struct Problem {
    logits: Array2<f64>,
    labels: Vec<usize>,
    multi_hot: Array2<f64>,
    sample_weights: Vec<f64>,
}

impl Problem {
    fn random(rng: &mut Rng) -> Self {
        let mut sample_weights = rng.positive(BATCH, 0.2, 2.0);
        sample_weights[0] = 0.0;
        Self {
            logits: rng.logits(BATCH, CLASSES, 3.0),
            labels: rng.labels(BATCH, CLASSES),
            multi_hot: Array2::from_shape_simple_fn((BATCH, CLASSES), || rng.below(2) as f64),
            sample_weights,
        }
    }

    /// The targets as 0/1 rows.
    fn rows(&self, multi_hot: bool) -> Array2<f64> {
        if multi_hot {
            return self.multi_hot.clone();
        }
        Array2::from_shape_fn((BATCH, CLASSES), |(i, k)| f64::from(u8::from(self.labels[i] == k)))
    }

    fn run<F: Float>(&self, o: Options, z: &Array2<f64>) -> (f64, Array2<f64>) {
        let z = z.mapv(F::from_f64);
        let rows = self.multi_hot.mapv(F::from_f64);
        let weights = cast::<F>(&self.sample_weights);
        let targets = if o.multi_hot { Targets::multi_hot(&rows) } else { Targets::labels(&self.labels) };
        let targets = if o.weighted { targets.with_sample_weights(&weights) } else { targets };
        let (l, g) = loss::<F>(o).loss_and_grad(&z, targets).unwrap();
        (l.as_f64(), g.mapv(F::as_f64))
    }

    /// `−y (1 − p)^{γ+} log p − (1 − y) p_m^{γ−} log(1 − p_m)`, plainly; mean over `K·Σ s_i`.
    fn reference(&self, o: Options, z: &Array2<f64>) -> f64 {
        let (gamma_pos, gamma_neg, clip) = o.setting;
        let rows = self.rows(o.multi_hot);
        let (mut sum, mut count) = (0.0, 0.0);
        for ((i, k), &s) in z.indexed_iter() {
            let p = 1.0 / (1.0 + (-s).exp());
            let p_m = (p - clip).max(0.0);
            let y = rows[[i, k]];
            let w = if o.weighted { self.sample_weights[i] } else { 1.0 };
            let value = if y == 1.0 {
                -(1.0 - p).powf(gamma_pos) * p.ln()
            } else if p_m > 0.0 {
                -p_m.powf(gamma_neg) * (1.0 - p_m).ln()
            } else {
                0.0
            };
            sum += w * value;
            count += w;
        }
        if o.reduction == Reduction::Mean { sum / count } else { sum }
    }
}

#[derive(Debug, Clone, Copy)]
struct Options {
    setting: (f64, f64, f64),
    multi_hot: bool,
    weighted: bool,
    reduction: Reduction,
}

fn combinations() -> Vec<Options> {
    let mut all = Vec::new();
    for setting in SETTINGS {
        for bits in 0..8 {
            let reduction = if bits & 4 == 0 { Reduction::Mean } else { Reduction::Sum };
            all.push(Options { setting, multi_hot: bits & 1 != 0, weighted: bits & 2 != 0, reduction });
        }
    }
    all
}

fn loss<F: Float>(o: Options) -> AsymmetricLoss<F> {
    let (gamma_pos, gamma_neg, clip) = o.setting;
    AsymmetricLoss::new()
        .with_gammas(F::from_f64(gamma_pos), F::from_f64(gamma_neg))
        .unwrap()
        .with_clip(F::from_f64(clip))
        .unwrap()
        .with_reduction(o.reduction)
}

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

#[test]
fn matches_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(1481);
    for o in combinations() {
        let p = Problem::random(&mut rng);
        let (loss, grad) = p.run::<f64>(o, &p.logits);
        let numeric = numeric_grad(&p.logits, |z| p.run::<f64>(o, z).0);
        let err = relative_error(&grad, &numeric);
        assert!(err <= 1e-6, "{o:?}: gradient relative error {err:e}");
        let reference = p.reference(o, &p.logits);
        assert!(relative(loss, reference) <= 1e-12, "{o:?}: {loss} vs {reference}");
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(1483);
    for o in combinations() {
        let p = Problem::random(&mut rng);
        let logits = p.logits.mapv(|v| f64::from(v as f32));
        let (l64, g64) = p.run::<f64>(o, &logits);
        let (l32, g32) = p.run::<f32>(o, &logits);
        assert!(relative(l32, l64) <= 1e-5, "{o:?}: {l32} vs {l64}");
        assert!(relative_error(&g32, &g64) <= 1e-5, "{o:?}: {:e}", relative_error(&g32, &g64));
    }
}

#[test]
fn no_focusing_and_no_clip_is_bce() {
    let mut rng = Rng::new(1485);
    let p = Problem::random(&mut rng);
    let asl = AsymmetricLoss::new().with_gammas(0.0, 0.0).unwrap().with_clip(0.0).unwrap();
    let targets = || Targets::multi_hot(&p.multi_hot);
    let (a, b) = (
        asl.loss_and_grad(&p.logits, targets()).unwrap(),
        SigmoidLoss::bce().loss_and_grad(&p.logits, targets()).unwrap(),
    );
    assert!(relative(a.0, b.0) <= 1e-14 && relative_error(&a.1, &b.1) <= 1e-14);
}

#[test]
fn easy_negatives_are_dropped_and_saturated_logits_stay_exact() {
    let asl = AsymmetricLoss::new(); // m = 0.05: σ(s) ≤ 0.05 below s ≈ −2.944
    let logits = array![[-3.0_f64, -2.9, 1e4, -1e4, f64::NEG_INFINITY]];
    let targets = array![[0.0, 0.0, 1.0, 0.0, 0.0]];
    let (per, grad) = asl.per_sample_loss_and_grad(&logits, Targets::multi_hot(&targets)).unwrap();
    assert_eq!(grad[[0, 0]], 0.0);
    assert!(grad[[0, 1]] > 0.0);
    assert_eq!((grad[[0, 2]], grad[[0, 3]], grad[[0, 4]]), (0.0, 0.0, 0.0));
    let p_m = 1.0 / (1.0 + 2.9_f64.exp()) - 0.05;
    assert!(relative(per[0], -p_m.powi(4) * (1.0 - p_m).ln()) <= 1e-12);
    // A positive at −1e4 costs 1e4 exactly (−log σ(s)), not the reference's clamped 18.4.
    let asl32 = AsymmetricLoss::<f32>::new();
    let (value, grad) =
        asl32.loss_and_grad(&array![[-1e4_f32]], Targets::multi_hot(&array![[1.0_f32]])).unwrap();
    assert_eq!((value, grad[[0, 0]]), (1e4, -1.0));
}

/// A subnormal margin `m` (or a subnormal `p_m`) takes the rows whose `σ(−s) + m` or `p_m` is
/// subnormal in f32 through f64: every row's loss and gradient within 1e-6 of the f64 loss on the
/// same inputs, on negatives from `s = 1` to beyond where `σ(−s)` flushes to 0 in f32, beside
/// positives and margin-dropped negatives; and the f32 gradient of a margin of 0.05 within 1e-6
/// of the f64 one over the same range, for a batch long enough to run in vector blocks.
#[test]
fn subnormal_margins_and_far_negatives_match_f64() {
    let row = [1.0, 20.0, 80.0, 86.0, 88.0, 89.0, 95.0, 103.0, -3.0, -120.0, 0.0, 5.0];
    let logits32 = Array2::from_shape_fn((30, row.len()), |(i, k)| row[k] as f32 + (i as f32) * 0.01);
    let logits64 = logits32.mapv(f64::from);
    let targets = Array2::from_shape_fn((30, row.len()), |(_, k)| if k >= 10 { 1.0 } else { 0.0 });
    let targets32 = targets.mapv(|v| v as f32);
    for clip in [1e-40_f32, f32::MIN_POSITIVE, 0.05, 0.0] {
        let m = f64::from(clip);
        let asl32 = AsymmetricLoss::<f32>::new().with_clip(clip).unwrap().with_reduction(Reduction::Sum);
        let asl64 = AsymmetricLoss::<f64>::new().with_clip(m).unwrap().with_reduction(Reduction::Sum);
        let (per32, g32) = asl32.per_sample_loss_and_grad(&logits32, Targets::multi_hot(&targets32)).unwrap();
        let (per64, g64) = asl64.per_sample_loss_and_grad(&logits64, Targets::multi_hot(&targets)).unwrap();
        for (a, b) in per32.iter().zip(&per64) {
            assert!(relative(f64::from(*a), *b) <= 1e-6, "m = {clip:e}: {a} vs {b}");
        }
        for (a, b) in g32.iter().zip(&g64) {
            let (a, b) = (f64::from(*a), *b);
            assert!((a - b).abs() <= 1e-6 * b.abs() + 1e-37, "m = {clip:e}: gradient {a:e} vs {b:e}");
        }
    }
}

#[test]
fn per_sample_losses_sum_to_the_sum_reduction_and_into_overwrites() {
    let mut rng = Rng::new(1487);
    let p = Problem::random(&mut rng);
    let asl = AsymmetricLoss::new().with_gammas(1.0, 4.0).unwrap().with_reduction(Reduction::Sum);
    let targets = Targets::multi_hot(&p.multi_hot).with_sample_weights(&p.sample_weights);
    let (sum, sum_grad) = asl.loss_and_grad(&p.logits, &targets).unwrap();
    let (per, per_grad) = asl.per_sample_loss_and_grad(&p.logits, &targets).unwrap();
    assert!(relative(per.sum(), sum) <= 1e-14 && per[0] == 0.0);
    assert_eq!(per_grad, sum_grad);
    let mut grad = Array2::from_elem(p.logits.raw_dim(), f64::NAN);
    assert_eq!(asl.loss_and_grad_into(&p.logits, &targets, &mut grad).unwrap(), sum);
    assert_eq!(grad, sum_grad);
    let zero = Targets::multi_hot(&p.multi_hot).with_sample_weights(&[0.0; BATCH]);
    assert_eq!(
        asl.with_reduction(Reduction::Mean).loss_and_grad(&p.logits, zero).unwrap(),
        (0.0, Array2::zeros((BATCH, CLASSES)))
    );
}

const SENTINEL: f64 = 7.0;

fn fail<F: Float>(loss: &AsymmetricLoss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| format!("{e:?}") == format!("{:?}", errors[0])), "{errors:?}");
    assert!(grad.iter().all(|g| g.as_f64() == SENTINEL));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let asl = AsymmetricLoss::<F>::new();
    let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, -1.0]]);
    let rows = mat::<F>(&[&[1.0, 0.0, 1.0], &[0.0, 1.0, 0.0]]);
    assert_eq!(fail(&asl, &Array2::zeros((0, 3)), Targets::labels(&[])), Error::EmptyBatch);
    assert_eq!(fail(&asl, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
    let err = fail(&asl, &z, Targets::probs(&rows));
    assert_eq!(
        err.to_string(),
        "AsymmetricLoss takes hard labels or multi-hot targets, not probability targets"
    );
    let err = fail(&asl, &z, Targets::labels(&[0]));
    assert_eq!(err, Error::ShapeMismatch { name: "labels", expected: vec![2], found: vec![1] });
    let err = fail(&asl, &z, Targets::multi_hot(&mat::<F>(&[&[1.0, 0.0, 1.0]])));
    assert_eq!(err, Error::ShapeMismatch { name: "targets", expected: vec![2, 3], found: vec![1, 3] });
    let short = cast::<F>(&[1.0]);
    let err = fail(&asl, &z, Targets::multi_hot(&rows).with_sample_weights(&short));
    assert_eq!(err, Error::ShapeMismatch { name: "sample_weights", expected: vec![2], found: vec![1] });
    let negative = cast::<F>(&[1.0, -1.0]);
    let err = fail(&asl, &z, Targets::multi_hot(&rows).with_sample_weights(&negative));
    assert_eq!(err, Error::InvalidSampleWeight { row: 1, value: -1.0 });
    assert_eq!(
        fail(&asl, &z, Targets::labels(&[0, 3])),
        Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }
    );
    let soft = mat::<F>(&[&[1.0, 0.0, 1.0], &[0.0, 0.5, 0.0]]);
    let err = fail(&asl, &z, Targets::multi_hot(&soft));
    assert!(matches!(err, Error::TargetOutOfRange { row: 1, class: 1, .. }), "{err:?}");
    for bad in [f64::NAN, f64::INFINITY] {
        let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, bad, -1.0]]);
        let err = fail(&asl, &z, Targets::multi_hot(&rows));
        assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 1, .. }), "{err:?}");
    }
    let z = mat::<F>(&[&[0.0, 1.0, f64::NEG_INFINITY], &[1.0, 0.0, -1.0]]);
    assert_eq!(fail(&asl, &z, Targets::multi_hot(&rows)), Error::MaskedTarget { row: 0, class: 2 });
}

#[test]
fn every_error_variant_names_its_culprit_and_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    for bad in [-0.5, f64::NAN, f64::INFINITY] {
        let err = AsymmetricLoss::new().with_gammas(bad, 1.0).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "gamma_pos", .. }), "{err:?}");
        let err = AsymmetricLoss::new().with_gammas(1.0, bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "gamma_neg", .. }), "{err:?}");
    }
    for bad in [-0.1, 1.0, f64::NAN] {
        let err = AsymmetricLoss::new().with_clip(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "clip", index: None, .. }), "{err:?}");
    }
}
