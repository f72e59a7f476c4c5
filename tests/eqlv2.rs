//! `EqlV2Loss` and `EqlV2State`: the formula written out, the gradient against finite differences
//! for f64 and f32, its special case (weighted BCE before any statistics), the collected
//! statistics, merging, per-sample losses, and every error.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::loss::EqlV2State;
use longtail::{EqlV2Loss, Error, Float, Loss, Reduction, SigmoidLoss, Targets};
use ndarray::{Array2, array};

const BATCH: usize = 7;
const CLASSES: usize = 4;

/// A state after a few steps of a long-tailed stream, so the weights differ between classes.
fn trained_state(rng: &mut Rng) -> EqlV2State {
    let mut state = EqlV2State::new(CLASSES).unwrap();
    for _ in 0..4 {
        let logits = rng.logits(BATCH, CLASSES, 2.0);
        let labels: Vec<usize> =
            (0..BATCH).map(|i| if i < 5 { 0 } else { 1 + rng.below(CLASSES - 1) }).collect();
        let loss = EqlV2Loss::new(&state);
        state.update(&loss, &logits, &labels).unwrap();
    }
    state
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The loss written out plainly: `Σ s_i w_ik BCE / Σ s_i` (or the sum).
fn reference(
    z: &Array2<f64>,
    y: &Array2<f64>,
    s: &[f64],
    loss: &EqlV2Loss<f64>,
    reduction: Reduction,
) -> f64 {
    let (r, q) = (loss.positive_weights(), loss.negative_weights());
    let mut sum = 0.0;
    for ((i, k), &zik) in z.indexed_iter() {
        let t = y[[i, k]];
        let bce = -(t * sigmoid(zik).ln() + (1.0 - t) * (1.0 - sigmoid(zik)).ln());
        sum += s[i] * (t * r[k] + (1.0 - t) * q[k]) * bce;
    }
    if reduction == Reduction::Mean { sum / s.iter().sum::<f64>() } else { sum }
}

fn one_hot(labels: &[usize]) -> Array2<f64> {
    Array2::from_shape_fn((labels.len(), CLASSES), |(i, k)| if labels[i] == k { 1.0 } else { 0.0 })
}

#[test]
fn matches_the_formula_and_finite_differences_for_labels_and_multi_hot_rows() {
    let mut rng = Rng::new(2201);
    for case in 0..4 {
        let state = trained_state(&mut rng);
        let reduction = if case % 2 == 0 { Reduction::Mean } else { Reduction::Sum };
        let loss = EqlV2Loss::new(&state)
            .with_mapping(8.0, 0.6)
            .unwrap()
            .with_alpha(3.0)
            .unwrap()
            .with_reduction(reduction);
        let logits = rng.logits(BATCH, CLASSES, 2.0);
        let labels = rng.labels(BATCH, CLASSES);
        let multi_hot =
            Array2::from_shape_fn((BATCH, CLASSES), |_| if rng.uniform() < 0.4 { 1.0 } else { 0.0 });
        let mut weights = rng.positive(BATCH, 0.2, 2.0);
        weights[2] = 0.0;
        let y = if case < 2 { one_hot(&labels) } else { multi_hot.clone() };
        let targets = if case < 2 { Targets::labels(&labels) } else { Targets::multi_hot(&multi_hot) };
        let targets = targets.with_sample_weights(&weights);
        let (value, grad) = loss.loss_and_grad(&logits, targets).unwrap();
        let f = |z: &Array2<f64>| reference(z, &y, &weights, &loss, reduction);
        assert!(relative(value, f(&logits)) <= 1e-12, "case {case}");
        let numeric = numeric_grad(&logits, f);
        assert!(
            relative_error(&grad, &numeric) <= 1e-6,
            "case {case}: {:e}",
            relative_error(&grad, &numeric)
        );
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(2203);
    let state = trained_state(&mut rng);
    let logits = rng.logits(BATCH, CLASSES, 2.0).mapv(|v| f64::from(v as f32));
    let labels = rng.labels(BATCH, CLASSES);
    let (l64, g64) = EqlV2Loss::new(&state).loss_and_grad(&logits, &labels).unwrap();
    let (l32, g32) =
        EqlV2Loss::<f32>::new(&state).loss_and_grad(&logits.mapv(|v| v as f32), &labels).unwrap();
    assert!(relative(f64::from(l32), l64) <= 1e-5);
    assert!(relative_error(&g32.mapv(f64::from), &g64) <= 1e-5);
    let s64 = EqlV2Loss::new(&state).gradient_stats(&logits, &labels).unwrap();
    let s32 = EqlV2Loss::<f32>::new(&state).gradient_stats(&logits.mapv(|v| v as f32), &labels).unwrap();
    for (a, b) in s32.positive().iter().chain(s32.negative()).zip(s64.positive().iter().chain(s64.negative()))
    {
        assert!(relative(*a, *b) <= 1e-5);
    }
}

#[test]
fn before_any_statistics_it_is_bce_summed_over_classes_and_averaged_over_rows() {
    let mut rng = Rng::new(2205);
    let (logits, labels) = (rng.logits(BATCH, CLASSES, 2.0), rng.labels(BATCH, CLASSES));
    let fresh = EqlV2Loss::new(&EqlV2State::new(CLASSES).unwrap());
    assert!(fresh.positive_weights().iter().chain(fresh.negative_weights()).all(|&w| w == 1.0));
    let (value, grad) = fresh.loss_and_grad(&logits, &labels).unwrap();
    let (bce, bce_grad) =
        SigmoidLoss::bce().with_reduction(Reduction::Sum).loss_and_grad(&logits, &labels).unwrap();
    assert!(relative(value, bce / BATCH as f64) <= 1e-14);
    assert!(relative_error(&grad, &(bce_grad / BATCH as f64)) <= 1e-14);
}

#[test]
fn the_statistics_are_the_weighted_gradient_magnitudes_and_drive_the_weights() {
    let state = EqlV2State::from_parts(vec![0.5, 2.0], vec![4.0, 2.0], 1).unwrap();
    let loss = EqlV2Loss::<f64>::new(&state);
    let f = |g: f64| 1.0 / (1.0 + (-12.0 * (g - 0.8)).exp());
    for (k, g) in [0.5 / (4.0 + 1e-10), 2.0 / (2.0 + 1e-10)].into_iter().enumerate() {
        assert_eq!(state.ratio()[k], g);
        assert!(relative(loss.negative_weights()[k], f(g)) <= 1e-14);
        assert!(relative(loss.positive_weights()[k], 1.0 + 4.0 * (1.0 - f(g))) <= 1e-12);
    }
    let logits = array![[0.3_f64, -1.2], [2.0, 0.4]];
    let weights = [1.5, 0.5];
    let targets = Targets::labels(&[0, 1]).with_sample_weights(&weights[..]);
    let batch = loss.gradient_stats(&logits, targets.clone()).unwrap();
    let (r, q) = (loss.positive_weights(), loss.negative_weights());
    // Class 0: a positive in row 0, a negative in row 1; class 1 the other way round.
    let expected_positive = [1.5 * r[0] * (1.0 - sigmoid(0.3)), 0.5 * r[1] * (1.0 - sigmoid(0.4))];
    let expected_negative = [0.5 * q[0] * sigmoid(2.0), 1.5 * q[1] * sigmoid(-1.2)];
    for k in 0..2 {
        assert!(relative(batch.positive()[k], expected_positive[k]) <= 1e-14);
        assert!(relative(batch.negative()[k], expected_negative[k]) <= 1e-14);
    }
    let mut running = state.clone();
    running.update(&loss, &logits, targets).unwrap();
    assert_eq!(running.batches(), 2);
    assert!(relative(running.positive()[1], 2.0 + expected_positive[1]) <= 1e-15);
    // Workers' batch statistics merge into the global batch's.
    let mut merged = loss.gradient_stats(&logits.slice(ndarray::s![..1, ..]), &[0]).unwrap();
    merged.merge(&loss.gradient_stats(&logits.slice(ndarray::s![1.., ..]), &[1]).unwrap()).unwrap();
    let whole = loss.gradient_stats(&logits, &[0, 1]).unwrap();
    assert!(merged.positive().iter().zip(whole.positive()).all(|(a, b)| relative(*a, *b) <= 1e-15));
    assert_eq!(merged.batches(), 2);
}

#[test]
fn per_sample_losses_sum_to_the_sum_reduction_and_zero_weights_give_zero() {
    let mut rng = Rng::new(2207);
    let state = trained_state(&mut rng);
    let (logits, labels) = (rng.logits(BATCH, CLASSES, 2.0), rng.labels(BATCH, CLASSES));
    let mut weights = rng.positive(BATCH, 0.5, 2.0);
    weights[4] = 0.0;
    let targets = Targets::labels(&labels).with_sample_weights(&weights);
    let loss = EqlV2Loss::new(&state).with_reduction(Reduction::Sum);
    let (sum, sum_grad) = loss.loss_and_grad(&logits, targets.clone()).unwrap();
    let (per, per_grad) = loss.per_sample_loss_and_grad(&logits, targets).unwrap();
    assert!(relative(per.sum(), sum) <= 1e-14 && per[4] == 0.0);
    assert_eq!(per_grad, sum_grad);
    let zero = Targets::labels(&labels).with_sample_weights(&[0.0; BATCH][..]);
    assert_eq!(
        EqlV2Loss::new(&state).loss_and_grad(&logits, zero).unwrap(),
        (0.0, Array2::zeros((BATCH, CLASSES)))
    );
}

#[test]
fn the_state_validates_and_refuses_overflow_unchanged() {
    assert_eq!(EqlV2State::new(0).unwrap_err(), Error::NoClasses);
    assert_eq!(EqlV2State::from_parts(vec![], vec![], 0).unwrap_err(), Error::NoClasses);
    let err = EqlV2State::from_parts(vec![1.0], vec![1.0, 2.0], 1).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "negative", .. }));
    let err = EqlV2State::from_parts(vec![1.0, f64::NAN], vec![1.0, 2.0], 1).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "positive", index: Some(1), .. }));
    let err = EqlV2State::from_parts(vec![1.0], vec![-2.0], 1).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "negative", index: Some(0), .. }));
    let mut a = EqlV2State::from_parts(vec![1.0], vec![f64::MAX], 1).unwrap();
    let before = a.clone();
    let err = a.merge(&EqlV2State::from_parts(vec![0.0], vec![f64::MAX], 1).unwrap()).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "negative", index: Some(0), .. }));
    let err = a.merge(&EqlV2State::from_parts(vec![0.0], vec![0.0], u64::MAX).unwrap()).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "batches", .. }));
    let err = a.merge(&EqlV2State::new(2).unwrap()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "state", .. }));
    assert_eq!(a, before);
    // An update with a bad batch leaves the state as it was.
    let loss = EqlV2Loss::new(&a);
    assert!(a.update(&loss, &array![[0.0_f64]], &[1]).is_err());
    assert_eq!(a, before);
}

const SENTINEL: f64 = 7.0;

/// Every call fails alike on one batch without writing the gradient; returns the error.
fn fail<F: Float>(loss: &EqlV2Loss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets.clone()).unwrap_err(),
        loss.gradient_stats(logits, targets).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| e.to_string() == errors[0].to_string()), "{errors:?}");
    assert!(grad.iter().all(|&g| g == F::from_f64(SENTINEL)));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let loss = EqlV2Loss::<F>::new(&EqlV2State::new(3).unwrap());
    let ok = Array2::from_elem((2, 3), F::zero());
    assert_eq!(fail(&loss, &Array2::zeros((0, 3)), Targets::labels(&[0_usize; 0][..])), Error::EmptyBatch);
    assert_eq!(fail(&loss, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
    let four = Array2::from_elem((2, 4), F::zero());
    assert!(matches!(
        fail(&loss, &four, Targets::labels(&[0, 0])),
        Error::ShapeMismatch { name: "state", .. }
    ));
    assert!(matches!(fail(&loss, &ok, Targets::labels(&[0])), Error::ShapeMismatch { name: "labels", .. }));
    let narrow = Array2::from_elem((2, 2), F::zero());
    assert!(matches!(
        fail(&loss, &ok, Targets::multi_hot(&narrow)),
        Error::ShapeMismatch { name: "targets", .. }
    ));
    let short = [F::one()];
    let weighted = Targets::labels(&[0, 1]).with_sample_weights(&short[..]);
    assert!(matches!(fail(&loss, &ok, weighted), Error::ShapeMismatch { name: "sample_weights", .. }));
    let negative = [F::one(), F::nan()];
    let weighted = Targets::labels(&[0, 1]).with_sample_weights(&negative[..]);
    assert!(matches!(fail(&loss, &ok, weighted), Error::InvalidSampleWeight { row: 1, .. }));
    assert_eq!(
        fail(&loss, &ok, Targets::labels(&[3, 0])),
        Error::LabelOutOfRange { row: 0, label: 3, classes: 3 }
    );
    let mut bad = Array2::from_elem((2, 3), F::zero());
    bad[[1, 0]] = F::from_f64(0.5);
    assert!(matches!(
        fail(&loss, &ok, Targets::multi_hot(&bad)),
        Error::TargetOutOfRange { row: 1, class: 0, .. }
    ));
    let mut over = Array2::from_elem((2, 3), F::from_f64(0.25));
    over[[0, 2]] = F::from_f64(1.5);
    assert!(matches!(
        fail(&loss, &ok, Targets::probs(&over)),
        Error::TargetOutOfRange { row: 0, class: 2, .. }
    ));
    let mut nan = ok.clone();
    nan[[0, 2]] = F::infinity();
    assert!(matches!(
        fail(&loss, &nan, Targets::labels(&[0, 1])),
        Error::NonFiniteLogit { row: 0, class: 2, .. }
    ));
    let mut masked = ok.clone();
    masked[[1, 1]] = F::neg_infinity();
    assert_eq!(fail(&loss, &masked, Targets::labels(&[0, 1])), Error::MaskedTarget { row: 1, class: 1 });
    let mut grad = Array2::zeros((3, 3));
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
    let base = EqlV2Loss::<f64>::new(&EqlV2State::new(2).unwrap());
    let name = |e: Error| match e {
        Error::InvalidParameter { name, .. } => name,
        other => panic!("{other}"),
    };
    assert_eq!(name(base.clone().with_mapping(0.0, 0.8).unwrap_err()), "gamma");
    assert_eq!(name(base.clone().with_mapping(f64::NAN, 0.8).unwrap_err()), "gamma");
    assert_eq!(name(base.clone().with_mapping(12.0, f64::INFINITY).unwrap_err()), "mu");
    assert_eq!(name(base.clone().with_alpha(-1.0).unwrap_err()), "alpha");
}
