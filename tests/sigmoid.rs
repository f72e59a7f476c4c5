//! The sigmoid losses (BCE with logits, sigmoid focal): gradients against finite differences for
//! every option combination, f32/f64 agreement, stability at |s| = 1e4, properties and errors.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::{BinaryTargets, Error, Float, Reduction, SigmoidLoss};
use ndarray::{Array1, Array2, Axis, array};
use proptest::prelude::*;

/// Every option combination: γ ∈ {0, 0.5, 2}, α ∈ {none, 0.25}, hard or soft targets, sample
/// weights or not, mean or sum.
fn combinations() -> Vec<(f64, Option<f64>, bool, bool, Reduction)> {
    let mut all = Vec::new();
    for gamma in [0.0, 0.5, 2.0] {
        for alpha in [None, Some(0.25)] {
            for soft in [false, true] {
                for weighted in [false, true] {
                    for reduction in [Reduction::Mean, Reduction::Sum] {
                        all.push((gamma, alpha, soft, weighted, reduction));
                    }
                }
            }
        }
    }
    all
}

struct Batch {
    logits: Array1<f64>,
    targets: Array1<f64>,
    weights: Array1<f64>,
}

fn batch(rng: &mut Rng, size: usize, soft: bool) -> Batch {
    let logits = Array1::from_shape_simple_fn(size, || 3.0 * rng.normal());
    let targets =
        Array1::from_shape_simple_fn(size, || if soft { rng.uniform() } else { rng.below(2) as f64 });
    let mut weights = Array1::from(rng.positive(size, 0.2, 2.0));
    weights[0] = 0.0;
    Batch { logits, targets, weights }
}

fn build<F: Float>(gamma: f64, alpha: Option<f64>, reduction: Reduction) -> SigmoidLoss<F> {
    let loss = SigmoidLoss::focal(F::from_f64(gamma)).unwrap().with_reduction(reduction);
    match alpha {
        Some(alpha) => loss.with_alpha(F::from_f64(alpha)).unwrap(),
        None => loss,
    }
}

/// The loss and gradient in float type `F`, widened to f64.
fn run<F: Float>(
    loss: &SigmoidLoss<F>,
    logits: &Array1<f64>,
    b: &Batch,
    weighted: bool,
) -> (f64, Array1<f64>) {
    let z = logits.mapv(F::from_f64);
    let y = b.targets.mapv(F::from_f64);
    let w = b.weights.mapv(F::from_f64);
    let mut targets = BinaryTargets::new(&y);
    if weighted {
        targets = targets.with_sample_weights(&w);
    }
    let (l, g) = loss.binary_loss_and_grad(&z, targets).unwrap();
    (l.as_f64(), g.mapv(F::as_f64))
}

/// The formula written out plainly in f64 (torchvision's code path: p, ce, p_t, α_t).
fn reference(
    gamma: f64,
    alpha: Option<f64>,
    reduction: Reduction,
    b: &Batch,
    logits: &Array1<f64>,
    weighted: bool,
) -> f64 {
    let mut total = 0.0;
    let mut denominator = 0.0;
    for i in 0..logits.len() {
        let (s, y) = (logits[i], b.targets[i]);
        let p = 1.0 / (1.0 + (-s).exp());
        let ce = s.max(0.0) - s * y + (-s.abs()).exp().ln_1p();
        let p_t = p * y + (1.0 - p) * (1.0 - y);
        let a = alpha.map_or(1.0, |a| a * y + (1.0 - a) * (1.0 - y));
        let w = if weighted { b.weights[i] } else { 1.0 };
        total += w * a * ce * (1.0 - p_t).powf(gamma);
        denominator += w;
    }
    if reduction == Reduction::Mean { total / denominator } else { total }
}

fn column(v: &Array1<f64>) -> Array2<f64> {
    v.clone().insert_axis(Axis(1))
}

#[test]
fn every_option_combination_matches_finite_differences_and_the_reference_formula() {
    let mut rng = Rng::new(41);
    for (gamma, alpha, soft, weighted, reduction) in combinations() {
        let b = batch(&mut rng, 9, soft);
        let loss = build::<f64>(gamma, alpha, reduction);
        let (value, grad) = run(&loss, &b.logits, &b, weighted);
        let numeric =
            numeric_grad(&column(&b.logits), |z| run(&loss, &z.column(0).to_owned(), &b, weighted).0);
        let err = relative_error(&column(&grad), &numeric);
        let case = format!("gamma {gamma}, alpha {alpha:?}, soft {soft}, weighted {weighted}, {reduction:?}");
        assert!(err <= 1e-6, "{case}: gradient relative error {err:e}");
        let expected = reference(gamma, alpha, reduction, &b, &b.logits, weighted);
        assert!(relative(value, expected) <= 1e-12, "{case}: loss {value} vs reference {expected}");
    }
}

#[test]
fn every_option_combination_agrees_between_f32_and_f64() {
    let mut rng = Rng::new(43);
    for (gamma, alpha, soft, weighted, reduction) in combinations() {
        let b = batch(&mut rng, 9, soft);
        let b = Batch { logits: b.logits.mapv(|v| f64::from(v as f32)), ..b };
        let (l64, g64) = run(&build::<f64>(gamma, alpha, reduction), &b.logits, &b, weighted);
        let (l32, g32) = run(&build::<f32>(gamma, alpha, reduction), &b.logits, &b, weighted);
        assert!(relative(l32, l64) <= 1e-5, "loss f32 {l32} vs f64 {l64}");
        let err = relative_error(&column(&g32), &column(&g64));
        assert!(err <= 1e-5, "gradient f32 vs f64 relative error {err:e}");
    }
}

/// |s| = 1e4 in f32: BCE is exactly 0 or |s|, its gradient exactly 0 or ±1; focal is finite.
#[test]
fn f32_logits_of_magnitude_1e4_give_exact_finite_values() {
    let logits = array![1e4_f32, -1e4, 1e4, -1e4];
    let targets = [1.0, 0.0, 0.0, 1.0];
    let sum = SigmoidLoss::bce().with_reduction(Reduction::Sum);
    let losses = sum.binary_per_sample_loss(&logits, &targets).unwrap();
    assert_eq!(losses.to_vec(), vec![0.0, 0.0, 1e4, 1e4]);
    let (_, grad) = sum.binary_loss_and_grad(&logits, &targets).unwrap();
    assert_eq!(grad.to_vec(), vec![0.0, 0.0, 1.0, -1.0]);
    for gamma in [0.25, 0.5, 2.0] {
        let focal = SigmoidLoss::focal(2.0)
            .unwrap()
            .with_alpha(0.25)
            .unwrap()
            .with_focal(gamma)
            .unwrap()
            .with_reduction(Reduction::Sum);
        let (_, grad) = focal.binary_loss_and_grad(&logits, &targets).unwrap();
        let losses = focal.binary_per_sample_loss(&logits, &targets).unwrap();
        // The wrong rows have p_t = 0: modulation 1, so ℓ = α_t·1e4 and ∂ℓ/∂s = α_t·(±1).
        assert_eq!(losses.to_vec(), vec![0.0, 0.0, 0.75e4, 0.25e4]);
        assert_eq!(grad.to_vec(), vec![0.0, 0.0, 0.75, -0.25]);
    }
}

/// For 0 < γ < 1 the gradient at p_t → 1 is finite and tends to 0 (no (1 − p_t)^(γ−1) blow-up).
#[test]
fn focal_gradient_with_gamma_below_one_is_finite_as_p_t_tends_to_one() {
    let loss = SigmoidLoss::<f64>::focal(0.5).unwrap();
    let mut previous = f64::INFINITY;
    for s in [5.0, 10.0, 20.0, 40.0, 80.0, 700.0] {
        let (_, grad) = loss.binary_loss_and_grad(&array![s, -s], &[1.0, 0.0]).unwrap();
        assert!(grad.iter().all(|g| g.is_finite()), "s = {s}: {grad}");
        assert!(-grad[0] < previous && grad[0] <= 0.0 && grad[1] == -grad[0], "s = {s}: {grad}");
        previous = -grad[0];
    }
    assert_eq!(previous, 0.0);
}

#[test]
fn minus_infinity_is_a_certain_negative_with_zero_loss_and_gradient() {
    let logits = array![f64::NEG_INFINITY, 1.0];
    let targets = BinaryTargets::new(&[0.0, 1.0]);
    for loss in [SigmoidLoss::bce(), SigmoidLoss::focal(2.0).unwrap().with_alpha(0.25).unwrap()] {
        let (_, grad) = loss.binary_loss_and_grad(&logits, targets.clone()).unwrap();
        assert_eq!(grad[0], 0.0);
        assert_eq!(loss.binary_per_sample_loss(&logits, targets.clone()).unwrap()[0], 0.0);
    }
    // Ignored rows may carry -inf on a positive target.
    let ignored = BinaryTargets::new(&[1.0, 1.0]).with_sample_weights(&[0.0, 1.0]);
    assert!(SigmoidLoss::bce().binary_loss(&logits, ignored).is_ok());
}

#[test]
fn a_batch_whose_weights_are_all_zero_has_loss_and_gradient_zero() {
    let targets = BinaryTargets::new(&[1.0, 0.0]).with_sample_weights(&[0.0, 0.0]);
    let (loss, grad) = SigmoidLoss::focal(2.0)
        .unwrap()
        .with_alpha(0.25)
        .unwrap()
        .binary_loss_and_grad(&array![1.0_f32, 2.0], targets)
        .unwrap();
    assert_eq!((loss, grad.to_vec()), (0.0, vec![0.0, 0.0]));
}

#[test]
fn focal_with_gamma_zero_and_no_alpha_is_bce() {
    let mut rng = Rng::new(5);
    let b = batch(&mut rng, 12, true);
    let focal = SigmoidLoss::focal(0.0).unwrap();
    assert_eq!(
        focal.binary_loss_and_grad(&b.logits, &b.targets).unwrap(),
        SigmoidLoss::bce().binary_loss_and_grad(&b.logits, &b.targets).unwrap()
    );
}

#[test]
fn strided_views_give_the_same_result_as_contiguous_arrays() {
    let mut rng = Rng::new(9);
    let b = batch(&mut rng, 12, false);
    let wide = ndarray::stack![Axis(1), b.logits, b.logits];
    let strided = wide.column(0);
    let mut grad_wide = Array2::from_elem((12, 2), f64::NAN);
    let mut grad_strided = grad_wide.column_mut(1);
    let loss = SigmoidLoss::focal(2.0).unwrap().with_alpha(0.25).unwrap();
    let value = loss.binary_loss_and_grad_into(&strided, b.targets.view(), &mut grad_strided).unwrap();
    assert_eq!(
        (value, grad_wide.column(1).to_owned()),
        loss.binary_loss_and_grad(&b.logits, &b.targets).unwrap()
    );
}

const SENTINEL: f64 = 7.0;

/// Runs every call on one batch, asserts they all fail alike without writing, and returns the error.
fn fail<F: Float>(loss: SigmoidLoss<F>, logits: &[f64], targets: BinaryTargets<'_, F>) -> Error {
    let z: Array1<F> = logits.iter().map(|&v| F::from_f64(v)).collect();
    let mut grad = Array1::from_elem(z.len(), F::from_f64(SENTINEL));
    let errors = [
        loss.binary_loss(&z, targets.clone()).unwrap_err(),
        loss.binary_loss_and_grad(&z, targets.clone()).unwrap_err(),
        loss.clone()
            .with_reduction(Reduction::Sum)
            .binary_loss_and_grad_into(&z, targets.clone(), &mut grad)
            .unwrap_err(),
        loss.binary_per_sample_loss(&z, targets).unwrap_err(),
    ];
    for err in &errors {
        assert_eq!(format!("{err:?}"), format!("{:?}", errors[0]));
    }
    assert!(grad.iter().all(|g| g.as_f64() == SENTINEL));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let v = |x: &[f64]| x.iter().map(|&v| F::from_f64(v)).collect::<Vec<F>>();
    let (y, w) = (v(&[1.0, 0.0]), v(&[1.0, 1.0]));
    let bce = SigmoidLoss::<F>::bce;
    assert_eq!(fail(bce(), &[], BinaryTargets::new(&[])), Error::EmptyBatch);
    let err = fail(bce(), &[0.0, 1.0, 2.0], BinaryTargets::new(&y));
    assert_eq!(err, Error::ShapeMismatch { name: "targets", expected: vec![3], found: vec![2] });
    assert_eq!(err.to_string(), "targets has shape [2], expected [3]");
    let short = v(&[1.0]);
    let err = fail(bce(), &[0.0, 1.0], BinaryTargets::new(&y).with_sample_weights(&short));
    assert_eq!(err, Error::ShapeMismatch { name: "sample_weights", expected: vec![2], found: vec![1] });
    let negative = v(&[1.0, -0.5]);
    let err = fail(bce(), &[0.0, 1.0], BinaryTargets::new(&y).with_sample_weights(&negative));
    assert_eq!(err, Error::InvalidSampleWeight { row: 1, value: -0.5 });
    for bad in [1.5, -0.25, f64::NAN] {
        let targets = v(&[0.0, bad]);
        let err = fail(
            SigmoidLoss::focal(F::from_f64(2.0)).unwrap().with_alpha(F::from_f64(0.25)).unwrap(),
            &[0.0, 1.0],
            BinaryTargets::new(&targets),
        );
        assert!(
            matches!(err, Error::TargetOutOfRange { row: 1, class: 0, expected: "in [0, 1]", .. }),
            "{err:?}"
        );
    }
    let targets = v(&[0.0, 1.5]);
    assert_eq!(
        fail(bce(), &[0.0, 1.0], BinaryTargets::new(&targets)).to_string(),
        "target at row 1, class 0 is 1.5; expected in [0, 1]"
    );
    for bad in [f64::NAN, f64::INFINITY] {
        let err = fail(bce(), &[0.0, bad], BinaryTargets::new(&y).with_sample_weights(&w));
        assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 0, .. }), "{err:?}");
    }
    let err = fail(
        SigmoidLoss::focal(F::from_f64(2.0)).unwrap().with_alpha(F::from_f64(0.25)).unwrap(),
        &[f64::NEG_INFINITY, 0.0],
        BinaryTargets::new(&y),
    );
    assert_eq!(err, Error::MaskedTarget { row: 0, class: 0 });
}

#[test]
fn every_error_variant_and_trigger_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    for gamma in [-1.0, f64::NAN, f64::INFINITY] {
        let err = SigmoidLoss::<f64>::bce().with_focal(gamma).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "gamma", index: None, .. }), "{err:?}");
    }
    for alpha in [-0.1, 1.1, f64::NAN] {
        let err = SigmoidLoss::<f64>::bce().with_alpha(alpha).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "alpha", index: None, .. }), "{err:?}");
    }
    let err = SigmoidLoss::<f32>::bce().with_alpha(2.0).unwrap_err();
    assert_eq!(err.to_string(), "alpha is 2; expected in [0, 1]");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn loss_and_every_per_sample_loss_are_non_negative(seed: u64, combo in 0..48usize, scale in 0.1..50.0f64) {
        let (gamma, alpha, soft, weighted, reduction) = combinations()[combo];
        let mut rng = Rng::new(seed);
        let size = 1 + rng.below(8);
        let mut b = batch(&mut rng, size, soft);
        b.logits *= scale;
        let loss = build::<f64>(gamma, alpha, reduction);
        prop_assert!(run(&loss, &b.logits, &b, weighted).0 >= 0.0);
        let losses = loss.binary_per_sample_loss(&b.logits, &b.targets).unwrap();
        prop_assert!(losses.iter().all(|&l| l >= 0.0), "{}", losses);
    }
}
