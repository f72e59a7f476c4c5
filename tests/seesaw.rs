//! `SeesawLoss` and `SeesawState`: the formula written out, the gradient against finite
//! differences with the compensation frozen (as the reference detaches it) for f64 and f32, its
//! special cases (cross-entropy with both factors off), per-sample losses, the state's counting and
//! merging, and every error.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::loss::SeesawState;
use longtail::{Error, Float, Loss, Reduction, SeesawLoss, SoftmaxLoss, Targets};
use ndarray::{Array2, array};

const BATCH: usize = 8;
const CLASSES: usize = 5;
/// `(p, q, ε)`: the defaults, each factor alone, a small floor.
const SETTINGS: [(f64, f64, f64); 4] =
    [(0.8, 2.0, 1e-2), (1.5, 0.0, 1e-2), (0.0, 1.0, 1e-2), (0.8, 2.0, 1e-4)];

fn state(rng: &mut Rng) -> SeesawState {
    // Long-tailed counts with one class never seen (clamped at 1).
    let mut counts: Vec<u64> =
        (0..CLASSES).map(|k| (1000.0 * 0.2_f64.powi(k as i32) * (0.5 + rng.uniform())) as u64).collect();
    counts[CLASSES - 1] = 0;
    SeesawState::from_counts(counts).unwrap()
}

fn loss<F: Float>(state: &SeesawState, (p, q, eps): (f64, f64, f64), reduction: Reduction) -> SeesawLoss<F> {
    SeesawLoss::new(state)
        .with_p(F::from_f64(p))
        .unwrap()
        .with_q(F::from_f64(q))
        .unwrap()
        .with_eps(F::from_f64(eps))
        .unwrap()
        .with_reduction(reduction)
}

/// The loss written out plainly, with the compensation computed from `frozen` (the detached
/// logits); weighted mean or sum.
fn reference(
    z: &Array2<f64>,
    frozen: &Array2<f64>,
    labels: &[usize],
    weights: &[f64],
    counts: &[u64],
    (p, q, eps): (f64, f64, f64),
    reduction: Reduction,
) -> f64 {
    let (mut sum, mut total) = (0.0, 0.0);
    for (i, &y) in labels.iter().enumerate() {
        let norm: f64 = frozen.row(i).iter().map(|v| v.exp()).sum();
        let sigma = |k: usize| frozen[[i, k]].exp() / norm;
        let n = |k: usize| counts[k].max(1) as f64;
        let t: Vec<f64> = (0..CLASSES)
            .map(|j| {
                if j == y {
                    return z[[i, j]];
                }
                let m = if n(j) < n(y) { (n(j) / n(y)).powf(p) } else { 1.0 };
                let ratio = sigma(j) / sigma(y).max(eps);
                let c = if ratio > 1.0 { ratio.powf(q) } else { 1.0 };
                z[[i, j]] + (m * c).ln()
            })
            .collect();
        sum += weights[i] * (t.iter().map(|v| v.exp()).sum::<f64>().ln() - t[y]);
        total += weights[i];
    }
    if reduction == Reduction::Mean { sum / total } else { sum }
}

#[test]
fn matches_the_formula_and_finite_differences_with_the_compensation_frozen() {
    let mut rng = Rng::new(2101);
    for (case, setting) in SETTINGS.iter().enumerate() {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let state = state(&mut rng);
            let logits = rng.logits(BATCH, CLASSES, 2.5);
            let labels = rng.labels(BATCH, CLASSES);
            let mut weights = rng.positive(BATCH, 0.2, 2.0);
            weights[1] = 0.0;
            let targets = Targets::labels(&labels).with_sample_weights(&weights);
            let (value, grad) =
                loss::<f64>(&state, *setting, reduction).loss_and_grad(&logits, targets).unwrap();
            let f = |z: &Array2<f64>| {
                reference(z, &logits, &labels, &weights, state.counts(), *setting, reduction)
            };
            assert!(relative(value, f(&logits)) <= 1e-12, "case {case}: {value} vs {}", f(&logits));
            let numeric = numeric_grad(&logits, f);
            assert!(
                relative_error(&grad, &numeric) <= 1e-6,
                "case {case}: {:e}",
                relative_error(&grad, &numeric)
            );
        }
    }
}

#[test]
fn without_compensation_the_gradient_is_the_losss_own() {
    let mut rng = Rng::new(2103);
    let (state, logits, labels) =
        (state(&mut rng), rng.logits(BATCH, CLASSES, 2.0), rng.labels(BATCH, CLASSES));
    let seesaw = loss::<f64>(&state, (0.8, 0.0, 1e-2), Reduction::Mean);
    let (_, grad) = seesaw.loss_and_grad(&logits, &labels).unwrap();
    let numeric = numeric_grad(&logits, |z| seesaw.loss(z, &labels).unwrap());
    assert!(relative_error(&grad, &numeric) <= 1e-6);
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(2105);
    for setting in SETTINGS {
        let state = state(&mut rng);
        let logits = rng.logits(BATCH, CLASSES, 2.5).mapv(|v| f64::from(v as f32));
        let labels = rng.labels(BATCH, CLASSES);
        let (l64, g64) =
            loss::<f64>(&state, setting, Reduction::Mean).loss_and_grad(&logits, &labels).unwrap();
        let (l32, g32) = loss::<f32>(&state, setting, Reduction::Mean)
            .loss_and_grad(&logits.mapv(|v| v as f32), &labels)
            .unwrap();
        assert!(relative(f64::from(l32), l64) <= 1e-5, "{setting:?}");
        assert!(relative_error(&g32.mapv(f64::from), &g64) <= 1e-5, "{setting:?}");
    }
}

#[test]
fn with_both_factors_off_or_balanced_counts_and_no_compensation_it_is_cross_entropy() {
    let mut rng = Rng::new(2107);
    let (state, logits, labels) =
        (state(&mut rng), rng.logits(BATCH, CLASSES, 3.0), rng.labels(BATCH, CLASSES));
    let ce = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, &labels).unwrap();
    let off = loss::<f64>(&state, (0.0, 0.0, 1e-2), Reduction::Mean).loss_and_grad(&logits, &labels).unwrap();
    assert!(relative(off.0, ce.0) <= 1e-14 && relative_error(&off.1, &ce.1) <= 1e-14);
    let balanced = SeesawState::from_counts(vec![7; CLASSES]).unwrap();
    let flat =
        loss::<f64>(&balanced, (0.8, 0.0, 1e-2), Reduction::Mean).loss_and_grad(&logits, &labels).unwrap();
    assert!(relative(flat.0, ce.0) <= 1e-14 && relative_error(&flat.1, &ce.1) <= 1e-14);
}

#[test]
fn mitigation_lowers_the_penalty_on_rarer_classes_and_compensation_raises_it_on_confusions() {
    let state = SeesawState::from_counts(vec![1000, 10]).unwrap();
    // A head-class sample: the tail logit is discounted by (10/1000)^0.8, so the loss drops.
    let logits = array![[0.0_f64, 0.0]];
    let ce = SoftmaxLoss::cross_entropy().loss(&logits, &[0]).unwrap();
    let mitigated = loss::<f64>(&state, (0.8, 0.0, 1e-2), Reduction::Mean).loss(&logits, &[0]).unwrap();
    let expected = (1.0 + 0.01_f64.powf(0.8)).ln();
    assert!(mitigated < ce && relative(mitigated, expected) <= 1e-14);
    // A tail-class sample misclassified as the head: the head logit is raised by q·(z_0 − z_1).
    let confused = array![[2.0_f64, 0.0]];
    let ce = SoftmaxLoss::cross_entropy().loss(&confused, &[1]).unwrap();
    let compensated = loss::<f64>(&state, (0.8, 2.0, 1e-2), Reduction::Mean).loss(&confused, &[1]).unwrap();
    assert!(compensated > ce && relative(compensated, (1.0 + (6.0_f64).exp()).ln()) <= 1e-14);
}

#[test]
fn per_sample_losses_sum_to_the_sum_reduction_and_zero_weights_give_zero() {
    let mut rng = Rng::new(2109);
    let (state, logits, labels) =
        (state(&mut rng), rng.logits(BATCH, CLASSES, 2.0), rng.labels(BATCH, CLASSES));
    let mut weights = rng.positive(BATCH, 0.5, 2.0);
    weights[3] = 0.0;
    let targets = Targets::labels(&labels).with_sample_weights(&weights);
    let seesaw = loss::<f64>(&state, SETTINGS[0], Reduction::Sum);
    let (sum, sum_grad) = seesaw.loss_and_grad(&logits, targets.clone()).unwrap();
    let (per, per_grad) = seesaw.per_sample_loss_and_grad(&logits, targets).unwrap();
    assert!(relative(per.sum(), sum) <= 1e-14 && per[3] == 0.0);
    assert_eq!(per_grad, sum_grad);
    let zero = Targets::labels(&labels).with_sample_weights(&[0.0; BATCH][..]);
    assert_eq!(seesaw.loss_and_grad(&logits, zero).unwrap(), (0.0, Array2::zeros((BATCH, CLASSES))));
    // A masked class gets no gradient.
    let masked = array![[1.0_f64, f64::NEG_INFINITY, 0.5, 0.0, 0.0]];
    let (value, grad) = seesaw.loss_and_grad(&masked, &[0]).unwrap();
    assert!(value.is_finite() && grad[[0, 1]] == 0.0);
}

#[test]
fn the_state_counts_merges_and_refuses_overflow_unchanged() {
    let mut a = SeesawState::new(3).unwrap();
    a.update(&[0_u32, 2, 2][..]).unwrap();
    let mut b = SeesawState::new(3).unwrap();
    b.update(&[1, 1]).unwrap();
    a.merge(&b).unwrap();
    assert_eq!(a.counts(), &[1, 2, 2]);
    // The loss reads the counts it was built from.
    let mut seesaw = SeesawLoss::<f64>::new(&a).with_p(1.0).unwrap();
    assert_eq!(seesaw.mitigation(1, 0), Some(0.5));
    a.update(&[0, 0, 0]).unwrap();
    seesaw.set_state(&a);
    assert_eq!(seesaw.mitigation(0, 1), Some(0.5));
    let mut full = SeesawState::from_counts(vec![u64::MAX - 1, 0]).unwrap();
    let err = full.update(&[0, 0]).unwrap_err();
    assert_eq!(
        err,
        Error::Overflow {
            what: "seesaw counts",
            row: None,
            class: Some(0),
            value: Some((u64::MAX - 1) as f64)
        }
    );
    assert_eq!(full.counts(), &[u64::MAX - 1, 0]);
    let err = full.merge(&SeesawState::new(3).unwrap()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "state", .. }), "{err}");
    let err = full.update(&[1, 2]).unwrap_err();
    assert_eq!(err, Error::LabelOutOfRange { row: 1, label: 2, classes: 2 });
    assert_eq!(full.counts(), &[u64::MAX - 1, 0]);
    assert_eq!(SeesawState::new(0).unwrap_err(), Error::NoClasses);
    assert_eq!(SeesawState::from_counts(vec![]).unwrap_err(), Error::NoClasses);
}

const SENTINEL: f64 = 7.0;

/// Every call fails alike on one batch without writing the gradient; returns the error.
fn fail<F: Float>(loss: &SeesawLoss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| e.to_string() == errors[0].to_string()), "{errors:?}");
    assert!(grad.iter().all(|&g| g == F::from_f64(SENTINEL)));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let state = SeesawState::from_counts(vec![10, 5, 1]).unwrap();
    let loss = SeesawLoss::<F>::new(&state);
    let ok = Array2::from_elem((2, 3), F::zero());
    assert_eq!(fail(&loss, &Array2::zeros((0, 3)), Targets::labels(&[0_usize; 0][..])), Error::EmptyBatch);
    assert_eq!(fail(&loss, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
    let four = Array2::from_elem((2, 4), F::zero());
    assert!(matches!(
        fail(&loss, &four, Targets::labels(&[0, 0])),
        Error::ShapeMismatch { name: "counts", .. }
    ));
    let probs = Array2::from_elem((2, 3), F::from_f64(1.0 / 3.0));
    assert!(matches!(
        fail(&loss, &ok, Targets::probs(&probs)),
        Error::UnsupportedTargets { loss: "SeesawLoss", .. }
    ));
    assert!(matches!(fail(&loss, &ok, Targets::labels(&[0])), Error::ShapeMismatch { name: "labels", .. }));
    let short = [F::one()];
    let weighted = Targets::labels(&[0, 1]).with_sample_weights(&short[..]);
    assert!(matches!(fail(&loss, &ok, weighted), Error::ShapeMismatch { name: "sample_weights", .. }));
    let negative = [F::one(), -F::one()];
    let weighted = Targets::labels(&[0, 1]).with_sample_weights(&negative[..]);
    assert!(matches!(fail(&loss, &ok, weighted), Error::InvalidSampleWeight { row: 1, .. }));
    assert_eq!(
        fail(&loss, &ok, Targets::labels(&[0, 3])),
        Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }
    );
    let mut nan = ok.clone();
    nan[[1, 2]] = F::nan();
    assert!(matches!(
        fail(&loss, &nan, Targets::labels(&[0, 1])),
        Error::NonFiniteLogit { row: 1, class: 2, .. }
    ));
    // With q·log(1/ε) ≈ 0.23·MAX, a logit of 0.9·MAX may overflow once compensated.
    let strong = SeesawLoss::<F>::new(&state).with_q(F::max_value() * F::from_f64(0.05)).unwrap();
    let mut huge = ok.clone();
    huge[[0, 1]] = F::max_value() * F::from_f64(0.9);
    assert!(matches!(
        fail(&strong, &huge, Targets::labels(&[0, 1])),
        Error::Overflow { what: "logit + compensation", row: Some(0), class: Some(1), .. }
    ));
    let mut masked = ok.clone();
    masked[[1, 1]] = F::neg_infinity();
    assert_eq!(fail(&loss, &masked, Targets::labels(&[0, 1])), Error::MaskedTarget { row: 1, class: 1 });
    let mut grad = Array2::zeros((2, 2));
    let err = loss.loss_and_grad_into(&ok, &[0, 1], &mut grad).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "grad_out", .. }));
}

#[test]
fn every_error_variant_names_its_culprit_and_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    let state = SeesawState::new(2).unwrap();
    let base = SeesawLoss::<f64>::new(&state);
    let name = |e: Error| match e {
        Error::InvalidParameter { name, .. } => name,
        other => panic!("{other}"),
    };
    assert_eq!(name(base.clone().with_p(-0.1).unwrap_err()), "p");
    assert_eq!(name(base.clone().with_p(f64::INFINITY).unwrap_err()), "p");
    assert_eq!(name(base.clone().with_q(f64::NAN).unwrap_err()), "q");
    assert_eq!(name(base.clone().with_q(f64::MAX).unwrap_err()), "q");
    assert_eq!(name(base.clone().with_eps(0.0).unwrap_err()), "eps");
    assert_eq!(name(base.clone().with_eps(1.5).unwrap_err()), "eps");
    assert_eq!(
        name(SeesawLoss::<f32>::new(&state).with_q(1e37).unwrap().with_eps(1e-30).unwrap_err()),
        "eps"
    );
}
