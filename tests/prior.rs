//! `Prior`, the streaming `PriorEstimator` and class weights: values, conventions, the exact
//! merge, and one test per error trigger.

mod common;

use common::{Rng, mat};
use longtail::prior::{ClassWeights, DeferredReweighting, Prior, PriorEstimator};
use longtail::{Error, Float, Loss, SoftmaxLoss};
use ndarray::{Array1, Array2, s};
use proptest::prelude::*;

fn invalid(name: &'static str, index: Option<usize>, value: f64, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index, value, expected }
}

// ---------------------------------------------------------------------------------------------
// Prior
// ---------------------------------------------------------------------------------------------

#[test]
fn labels_counts_and_probability_targets_give_the_same_prior() {
    let from_labels = Prior::from_labels(&[0, 2, 2, 1, 2, 0], 4).unwrap();
    let from_counts = Prior::from_counts(&[2.0, 1.0, 3.0, 0.0]).unwrap();
    let one_hot = Array2::from_shape_fn((6, 4), |(i, k)| f64::from(u8::from([0, 2, 2, 1, 2, 0][i] == k)));
    let from_probs = Prior::from_probs(&one_hot).unwrap();
    assert_eq!(from_labels, from_counts);
    assert_eq!(from_probs, from_counts);
    assert_eq!(from_counts.total(), 6.0);
    assert_eq!(from_counts.classes(), 4);
}

#[test]
fn labels_may_be_a_strided_view() {
    let labels = Array1::from(vec![1_usize, 9, 1, 9, 0, 9]);
    let prior = Prior::from_labels(labels.slice(s![..;2]), 2).unwrap();
    assert_eq!(prior.counts(), &[1.0, 2.0]);
}

#[test]
fn unnormalised_counts_give_the_same_probabilities_as_normalised_ones() {
    let counts = Prior::from_counts(&[600.0, 300.0, 100.0]).unwrap();
    let probs = Prior::from_counts(&[0.6, 0.3, 0.1]).unwrap();
    for (a, b) in counts.probabilities::<f64>().iter().zip(probs.probabilities::<f64>().iter()) {
        assert!((a - b).abs() <= 2.0 * f64::EPSILON * b, "{a} vs {b}");
    }
}

#[test]
fn laplace_smoothing_adds_alpha_to_every_count() {
    let prior = Prior::from_labels(&[1, 1, 1], 3).unwrap().with_smoothing(1.0).unwrap();
    assert_eq!(prior.counts(), &[1.0, 4.0, 1.0]);
    assert_eq!(prior.probabilities::<f64>().to_vec(), vec![1.0 / 6.0, 4.0 / 6.0, 1.0 / 6.0]);
    assert_eq!(prior.clone().with_smoothing(0.0).unwrap(), prior);
}

fn log_prior_case<F: Float>() {
    let prior = Prior::from_counts(&[700.0, 200.0, 100.0]).unwrap();
    let tau = 1.5;
    let offset = prior.log_prior::<F>(F::from_f64(tau)).unwrap();
    let pi = [0.7_f64, 0.2, 0.1];
    for (k, v) in offset.iter().enumerate() {
        let expected = tau * pi[k].ln();
        assert!((v.as_f64() - expected).abs() <= 4.0 * F::epsilon().as_f64() * expected.abs(), "{k}");
    }
    assert_eq!(prior.log_prior::<F>(F::zero()).unwrap().to_vec(), vec![F::zero(); 3]);
    // τ = 0 is legal for a prior with an absent class; its offset is 0.
    let absent = Prior::from_counts(&[1.0, 0.0]).unwrap();
    assert_eq!(absent.log_prior::<F>(F::zero()).unwrap().to_vec(), vec![F::zero(); 2]);
}

#[test]
fn log_prior_is_tau_times_log_pi_f64() {
    log_prior_case::<f64>();
}

#[test]
fn log_prior_is_tau_times_log_pi_f32() {
    log_prior_case::<f32>();
}

fn plugs_into_the_loss_case<F: Float>() {
    let prior = Prior::from_labels(&[0, 0, 0, 1, 2, 0, 1], 3).unwrap();
    let logits = mat::<F>(&[&[1.0, 0.5, -0.5], &[0.2, 0.1, 0.0]]);
    let counts: Vec<F> = prior.counts().iter().map(|&n| F::from_f64(n)).collect();
    let by_counts = SoftmaxLoss::logit_adjusted(&counts).unwrap().loss(&logits, &[2, 1]).unwrap();
    let by_probs =
        SoftmaxLoss::logit_adjusted(prior.probabilities::<F>()).unwrap().loss(&logits, &[2, 1]).unwrap();
    assert!((by_counts - by_probs).abs().as_f64() <= 8.0 * F::epsilon().as_f64() * by_counts.as_f64());
    let weights = ClassWeights::inverse_frequency().weights::<F>(&prior).unwrap();
    assert!(SoftmaxLoss::class_weighted(&weights).unwrap().loss(&logits, &[2, 1]).is_ok());
}

#[test]
fn outputs_plug_into_the_loss_f64() {
    plugs_into_the_loss_case::<f64>();
}

#[test]
fn outputs_plug_into_the_loss_f32() {
    plugs_into_the_loss_case::<f32>();
}

// ---------------------------------------------------------------------------------------------
// PriorEstimator
// ---------------------------------------------------------------------------------------------

#[test]
fn streaming_counts_equal_the_counts_of_all_labels() {
    let mut rng = Rng::new(3);
    let labels = rng.labels(500, 7);
    let mut estimator = PriorEstimator::new(7).unwrap();
    for batch in labels.chunks(64) {
        estimator.update(batch).unwrap();
    }
    assert_eq!(estimator.steps(), 8);
    assert_eq!(estimator.prior().unwrap(), Prior::from_labels(&labels, 7).unwrap());
}

#[test]
fn probability_updates_sum_the_targets() {
    let mut rng = Rng::new(5);
    let probs = rng.probs(40, 3);
    let mut estimator = PriorEstimator::new(3).unwrap();
    estimator.update_probs(&probs.slice(s![..25, ..])).unwrap();
    estimator.update_probs(&probs.slice(s![25.., ..]).mapv(|v| v as f32)).unwrap();
    let expected = Prior::from_probs(&probs).unwrap();
    for (a, b) in estimator.counts().iter().zip(expected.counts()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn an_empty_batch_is_a_step_that_only_decays() {
    let mut estimator = PriorEstimator::new(2).unwrap().with_decay(0.5).unwrap();
    estimator.update(&[0, 1, 1]).unwrap();
    estimator.update(&[]).unwrap();
    estimator.update_probs(&Array2::<f32>::zeros((0, 2))).unwrap();
    assert_eq!(estimator.counts(), &[0.25, 0.5]);
    assert_eq!(estimator.steps(), 3);
}

#[test]
fn decayed_counts_are_the_bias_corrected_moving_average_for_equal_batches() {
    let mut rng = Rng::new(9);
    let m = 0.9;
    let mut estimator = PriorEstimator::new(4).unwrap().with_decay(m).unwrap();
    let (mut ema, mut steps) = (vec![0.0; 4], 0);
    for _ in 0..30 {
        let batch = rng.labels(16, 4);
        estimator.update(&batch).unwrap();
        for (k, e) in ema.iter_mut().enumerate() {
            let frequency = batch.iter().filter(|&&y| y == k).count() as f64 / 16.0;
            *e = m * *e + (1.0 - m) * frequency;
        }
        steps += 1;
    }
    let correction = 1.0 - m.powi(steps);
    let prior = estimator.prior().unwrap().probabilities::<f64>();
    for (p, e) in prior.iter().zip(&ema) {
        assert!((p - e / correction).abs() < 1e-12, "{p} vs {}", e / correction);
    }
}

#[test]
fn decayed_estimators_merge_step_by_step_into_the_estimator_of_the_union() {
    let mut rng = Rng::new(11);
    let mut a = PriorEstimator::new(3).unwrap().with_decay(0.8).unwrap();
    let mut b = a.clone();
    let mut union = a.clone();
    for _ in 0..10 {
        let (batch_a, batch_b) = (rng.labels(5, 3), rng.labels(9, 3));
        a.update(&batch_a).unwrap();
        b.update(&batch_b).unwrap();
        union.update(&[batch_a, batch_b].concat()).unwrap();
    }
    a.merge(&b).unwrap();
    for (x, y) in a.counts().iter().zip(union.counts()) {
        assert!((x - y).abs() <= 1e-14 * y.max(1.0), "{x} vs {y}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn merging_two_estimators_equals_one_over_the_concatenation(
        classes in 1usize..8,
        first in proptest::collection::vec(proptest::collection::vec(0usize..64, 0..20), 0..6),
        second in proptest::collection::vec(proptest::collection::vec(0usize..64, 0..20), 0..6),
    ) {
        let fit = |batches: &[Vec<usize>]| {
            let mut estimator = PriorEstimator::new(classes).unwrap();
            for batch in batches {
                let batch: Vec<usize> = batch.iter().map(|y| y % classes).collect();
                estimator.update(&batch).unwrap();
            }
            estimator
        };
        let mut merged = fit(&first);
        merged.merge(&fit(&second)).unwrap();
        let whole = fit(&[first.concat(), second.concat()]);
        prop_assert_eq!(merged.counts(), whole.counts());
    }
}

// ---------------------------------------------------------------------------------------------
// Class weights
// ---------------------------------------------------------------------------------------------

#[test]
fn power_one_rescaled_equals_inverse_frequency_rescaled() {
    let prior = Prior::from_counts(&[500.0, 120.0, 40.0, 9.0, 3.0]).unwrap();
    let power = ClassWeights::power(1.0).unwrap().rescaled().weights::<f64>(&prior).unwrap();
    let inverse = ClassWeights::inverse_frequency().rescaled().weights::<f64>(&prior).unwrap();
    for (a, b) in power.iter().zip(&inverse) {
        assert!((a - b).abs() < 1e-14 * b, "{a} vs {b}");
    }
    assert!((power.sum() - 5.0).abs() < 1e-13);
}

#[test]
fn effective_number_matches_the_formula_and_its_limits() {
    let prior = Prior::from_counts(&[5000.0, 300.0, 7.0, 1.0]).unwrap();
    let beta: f64 = 0.9999;
    let w = ClassWeights::effective_number(beta).unwrap().weights::<f64>(&prior).unwrap();
    for (k, &n) in prior.counts().iter().enumerate() {
        let direct = (1.0 - beta) / (1.0 - beta.powf(n));
        assert!((w[k] - direct).abs() < 1e-9 * direct, "{k}: {} vs {direct}", w[k]);
    }
    // One sample has effective number 1, so weight 1; β = 0 is uniform.
    assert!((w[3] - 1.0).abs() < 1e-12);
    let uniform = ClassWeights::effective_number(0.0).unwrap().weights::<f32>(&prior).unwrap();
    assert_eq!(uniform.to_vec(), vec![1.0; 4]);
    // β → 1 approaches inverse frequency (up to scale): weight ratios approach count ratios.
    let near_one = ClassWeights::effective_number(1.0 - 1e-12).unwrap().weights::<f64>(&prior).unwrap();
    assert!((near_one[2] / near_one[0] - 5000.0 / 7.0).abs() < 1e-3 * 5000.0 / 7.0);
}

#[test]
fn deferred_reweighting_switches_at_the_start_epoch() {
    let prior = Prior::from_counts(&[100.0, 10.0]).unwrap();
    let scheme = ClassWeights::effective_number(0.999).unwrap().rescaled();
    let drw = DeferredReweighting::new(3, scheme, &prior).unwrap();
    let balanced = scheme.weights::<f64>(&prior).unwrap();
    assert_eq!(drw.weights_at::<f64>(2).to_vec(), vec![1.0, 1.0]);
    assert_eq!(drw.weights_at::<f64>(3), balanced);
    assert_eq!(drw.weights_at::<f64>(1000), balanced);
    assert_eq!(drw.start_epoch(), 3);
}

// ---------------------------------------------------------------------------------------------
// Errors: one test per trigger
// ---------------------------------------------------------------------------------------------

#[test]
fn a_label_out_of_range_is_an_error_and_leaves_the_estimator_unchanged() {
    assert_eq!(
        Prior::from_labels(&[0, 3, 1], 3),
        Err(Error::LabelOutOfRange { row: 1, label: 3, classes: 3 })
    );
    let mut estimator = PriorEstimator::new(3).unwrap();
    estimator.update(&[0, 1]).unwrap();
    let before = estimator.clone();
    assert_eq!(estimator.update(&[2, 5]), Err(Error::LabelOutOfRange { row: 1, label: 5, classes: 3 }));
    assert_eq!(estimator, before);
}

#[test]
fn empty_labels_and_zero_classes_are_errors() {
    assert_eq!(Prior::from_labels(&[], 3), Err(Error::EmptyBatch));
    assert_eq!(Prior::from_labels(&[0], 0), Err(Error::NoClasses));
    assert_eq!(Prior::from_counts(&[]), Err(Error::NoClasses));
    assert_eq!(Prior::from_probs(&Array2::<f64>::zeros((0, 3))), Err(Error::EmptyBatch));
    assert_eq!(Prior::from_probs(&Array2::<f64>::zeros((2, 0))), Err(Error::NoClasses));
    assert_eq!(PriorEstimator::new(0), Err(Error::NoClasses));
}

#[test]
fn nan_negative_or_infinite_counts_are_errors() {
    for (counts, k, v) in [
        (vec![1.0, f64::NAN], 1, f64::NAN),
        (vec![-1.0, 2.0], 0, -1.0),
        (vec![1.0, f64::INFINITY], 1, f64::INFINITY),
    ] {
        let err = Prior::from_counts(&counts).unwrap_err();
        assert_eq!(format!("{err:?}"), format!("{:?}", invalid("counts", Some(k), v, "finite and >= 0")));
    }
}

#[test]
fn all_zero_or_overflowing_counts_are_errors() {
    assert_eq!(Prior::from_counts(&[0.0, 0.0]), Err(invalid("counts", None, 0.0, "a positive total")));
    assert_eq!(
        Prior::from_counts(&[f64::MAX, f64::MAX]),
        Err(Error::Overflow { what: "counts total", row: None, class: None, value: None })
    );
    assert!(PriorEstimator::new(2).unwrap().prior().is_err());
}

#[test]
fn invalid_probability_targets_are_errors() {
    let negative = mat::<f64>(&[&[0.5, 0.5], &[-0.1, 1.1]]);
    assert_eq!(Prior::from_probs(&negative), Err(Error::InvalidTarget { row: 1, class: 0, value: -0.1 }));
    let nan = mat::<f32>(&[&[f64::NAN, 1.0]]);
    assert!(matches!(Prior::from_probs(&nan), Err(Error::InvalidTarget { row: 0, class: 0, .. })));
    let unnormalised = mat::<f64>(&[&[0.5, 0.6]]);
    assert!(matches!(Prior::from_probs(&unnormalised), Err(Error::TargetSum { row: 0, .. })));
    let mut estimator = PriorEstimator::new(3).unwrap();
    assert_eq!(
        estimator.update_probs(&mat::<f64>(&[&[0.5, 0.5]])),
        Err(Error::ShapeMismatch { name: "targets", expected: vec![1, 3], found: vec![1, 2] })
    );
    assert_eq!(estimator.steps(), 0);
}

#[test]
fn a_zero_count_with_nonzero_tau_is_an_error_naming_the_class() {
    let prior = Prior::from_counts(&[4.0, 0.0, 1.0]).unwrap();
    let expected = invalid("prior", Some(1), 0.0, "> 0 (smooth zero counts first, e.g. with_smoothing(1.0))");
    assert_eq!(prior.log_prior::<f64>(1.0), Err(expected.clone()));
    assert_eq!(prior.log_prior::<f32>(-0.5), Err(expected));
    assert!(prior.with_smoothing(1.0).unwrap().log_prior::<f64>(1.0).is_ok());
}

#[test]
fn a_non_finite_or_overflowing_tau_is_an_error() {
    let prior = Prior::from_counts(&[1.0, 1e-300]).unwrap();
    let expected = "finite, and small enough that tau * log(prior) is finite";
    assert_eq!(prior.log_prior::<f64>(f64::INFINITY), Err(invalid("tau", None, f64::INFINITY, expected)));
    assert!(matches!(prior.log_prior::<f64>(f64::NAN), Err(Error::InvalidParameter { name: "tau", .. })));
    assert_eq!(prior.log_prior::<f64>(1e307), Err(invalid("tau", None, 1e307, expected)));
    // Finite in f64 but not in f32.
    assert!(prior.log_prior::<f64>(1e37).is_ok());
    assert_eq!(prior.log_prior::<f32>(1e37), Err(invalid("tau", None, f64::from(1e37_f32), expected)));
}

#[test]
fn a_bad_smoothing_alpha_is_an_error() {
    let prior = Prior::from_counts(&[1.0]).unwrap();
    for alpha in [-1.0, f64::NAN, f64::INFINITY] {
        let err = prior.clone().with_smoothing(alpha).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "smoothing", index: None, .. }), "{err:?}");
    }
}

#[test]
fn a_bad_decay_is_an_error() {
    for decay in [0.0, -0.5, 1.5, f64::NAN] {
        let err = PriorEstimator::new(2).unwrap().with_decay(decay).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "decay", expected: "in (0, 1]", .. }),
            "{err:?}"
        );
    }
}

#[test]
fn merging_incompatible_estimators_is_an_error_and_changes_nothing() {
    let mut a = PriorEstimator::new(2).unwrap().with_decay(0.5).unwrap();
    a.update(&[0]).unwrap();
    let before = a.clone();
    assert_eq!(
        a.merge(&PriorEstimator::new(3).unwrap().with_decay(0.5).unwrap()),
        Err(Error::ShapeMismatch { name: "estimator", expected: vec![2], found: vec![3] })
    );
    assert!(matches!(
        a.merge(&PriorEstimator::new(2).unwrap()),
        Err(Error::InvalidParameter { name: "decay", value: 1.0, .. })
    ));
    assert!(matches!(
        a.merge(&PriorEstimator::new(2).unwrap().with_decay(0.5).unwrap()),
        Err(Error::InvalidParameter { name: "steps", value: 0.0, .. })
    ));
    assert_eq!(a, before);
    // Plain counting merges any step counts.
    let mut plain = PriorEstimator::new(2).unwrap();
    plain.update(&[1]).unwrap();
    assert!(plain.merge(&PriorEstimator::new(2).unwrap()).is_ok());
}

#[test]
fn a_bad_power_or_beta_is_an_error() {
    for p in [-0.5, f64::NAN, f64::INFINITY] {
        let err = ClassWeights::power(p).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "p", expected: "finite and >= 0", .. }),
            "{err:?}"
        );
    }
    for beta in [-0.1, 1.0, 1.5, f64::NAN] {
        let err = ClassWeights::effective_number(beta).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "beta", expected: "in [0, 1)", .. }),
            "{err:?}"
        );
    }
}

#[test]
fn a_zero_count_has_no_class_weight() {
    let prior = Prior::from_counts(&[3.0, 0.0]).unwrap();
    let expected = invalid(
        "counts",
        Some(1),
        0.0,
        "large enough for a finite class weight (> 0; smooth zero counts first)",
    );
    for scheme in [
        ClassWeights::inverse_frequency(),
        ClassWeights::power(0.5).unwrap(),
        ClassWeights::effective_number(0.9).unwrap().rescaled(),
    ] {
        assert_eq!(scheme.weights::<f64>(&prior), Err(expected.clone()));
        assert_eq!(DeferredReweighting::new(0, scheme, &prior), Err(expected.clone()));
    }
    // Uniform schemes need no positive count.
    assert_eq!(ClassWeights::power(0.0).unwrap().weights::<f64>(&prior).unwrap().to_vec(), vec![1.0, 1.0]);
}

#[test]
fn a_weight_that_overflows_f32_is_an_error_in_f32_only() {
    let prior = Prior::from_counts(&[1.0, 1e-300]).unwrap();
    let power = ClassWeights::power(0.5).unwrap();
    assert!(power.weights::<f64>(&prior).is_ok());
    assert!(matches!(
        power.weights::<f32>(&prior),
        Err(Error::Overflow { what: "class weight", class: Some(1), value: Some(1e-300), .. })
    ));
    assert!(DeferredReweighting::new(0, power, &prior).is_err());
}
