//! Label-shift estimation: EM against a plainly written EM, EM and BBSE recovering a known target
//! prior from a Gaussian mixture sampled under label shift, and one test per error trigger.

mod common;

use common::{Rng, mat};
use longtail::adjust::predict;
use longtail::prior::{LabelShiftEm, Prior, bbse_target_prior};
use longtail::{Error, Float};
use ndarray::Array2;

/// EM of Saerens et al. 2002 written plainly: reweight each row by q/π, renormalise, average,
/// stop when the L1 change is at most `tolerance`. Returns the prior and the iterations.
fn plain_em(
    posteriors: &Array2<f64>,
    train: &[f64],
    tolerance: f64,
    max_iterations: usize,
) -> (Vec<f64>, usize) {
    let (b, k) = posteriors.dim();
    let mut q = train.to_vec();
    for iteration in 1..=max_iterations {
        let mut next = vec![0.0; k];
        for i in 0..b {
            let weighted: Vec<f64> = (0..k).map(|c| posteriors[[i, c]] * q[c] / train[c]).collect();
            let total: f64 = weighted.iter().sum();
            for c in 0..k {
                next[c] += weighted[c] / total / b as f64;
            }
        }
        let change: f64 = (0..k).map(|c| (next[c] - q[c]).abs()).sum();
        q = next;
        if change <= tolerance {
            return (q, iteration);
        }
    }
    (q, max_iterations)
}

fn matches_plain_em_case<F: Float>(tolerance: f64) {
    let mut rng = Rng::new(31);
    let posteriors = rng.probs(300, 5).mapv(|v| F::from_f64(v).as_f64());
    let train_counts = [400.0, 250.0, 200.0, 100.0, 50.0];
    let train = Prior::from_counts(&train_counts).unwrap();
    let (expected, iterations) = plain_em(&posteriors, &train.probabilities::<f64>().to_vec(), 1e-10, 500);
    let estimate = LabelShiftEm::new()
        .with_tolerance(1e-10)
        .unwrap()
        .with_max_iterations(500)
        .unwrap()
        .estimate(&posteriors.mapv(F::from_f64), &train)
        .unwrap();
    assert!(estimate.converged);
    assert_eq!(estimate.iterations, iterations);
    for (a, b) in estimate.prior.probabilities::<f64>().iter().zip(&expected) {
        assert!((a - b).abs() <= tolerance, "{a} vs {b}");
    }
}

#[test]
fn em_matches_a_plain_em_on_posteriors_f64() {
    matches_plain_em_case::<f64>(1e-13);
}

#[test]
fn em_matches_a_plain_em_on_posteriors_f32() {
    // The same f32-rounded posteriors on both sides; only the summation order differs.
    matches_plain_em_case::<f32>(1e-13);
}

/// A 2-D Gaussian mixture with unit covariance: class `k` centred at `CENTRES[k]`.
const CENTRES: [[f64; 2]; 3] = [[0.0, 0.0], [2.5, 0.0], [0.0, 2.5]];
const TRAIN: [f64; 3] = [0.6, 0.3, 0.1];
const TARGET: [f64; 3] = [0.2, 0.3, 0.5];

/// Draws `n` labels from `prior` and points from their Gaussians.
fn sample(n: usize, prior: &[f64], rng: &mut Rng) -> (Array2<f64>, Vec<usize>) {
    let labels: Vec<usize> = (0..n)
        .map(|_| {
            let u = rng.uniform();
            let mut acc = 0.0;
            prior
                .iter()
                .position(|&p| {
                    acc += p;
                    u < acc
                })
                .unwrap_or(prior.len() - 1)
        })
        .collect();
    let x = Array2::from_shape_fn((n, 2), |(i, d)| CENTRES[labels[i]][d] + rng.normal());
    (x, labels)
}

/// The exact Bayes posteriors under `prior` (log-likelihoods up to a shared constant, then softmax).
fn bayes_logits(x: &Array2<f64>, prior: &[f64]) -> Array2<f64> {
    Array2::from_shape_fn((x.nrows(), 3), |(i, k)| {
        let d2 = (x[[i, 0]] - CENTRES[k][0]).powi(2) + (x[[i, 1]] - CENTRES[k][1]).powi(2);
        -0.5 * d2 + prior[k].ln()
    })
}

fn l1(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

fn em_recovers_case<F: Float>() {
    let mut rng = Rng::new(2002);
    let (x, _) = sample(20_000, &TARGET, &mut rng);
    let posteriors = longtail::softmax::softmax(&bayes_logits(&x, &TRAIN).mapv(F::from_f64)).unwrap();
    let train = Prior::from_counts(&TRAIN).unwrap();
    let estimate = LabelShiftEm::new().with_tolerance(1e-6).unwrap().estimate(&posteriors, &train).unwrap();
    assert!(estimate.converged, "{estimate:?}");
    let q = estimate.prior.probabilities::<f64>().to_vec();
    let error = l1(&q, &TARGET);
    assert!(error < 0.02, "EM estimate {q:?}, L1 error {error}");
    // The training prior itself is far off: the test would catch an estimator that did nothing.
    assert!(l1(&TRAIN, &TARGET) > 0.5);
}

#[test]
fn em_recovers_a_known_target_prior_within_0_02_l1_f64() {
    em_recovers_case::<f64>();
}

#[test]
fn em_recovers_a_known_target_prior_within_0_02_l1_f32() {
    em_recovers_case::<f32>();
}

#[test]
fn bbse_recovers_a_known_target_prior_within_0_05_l1() {
    // BBSE uses hard predictions only (no calibration), so its error is larger than EM's: it
    // scales with 1/σ_min of the confusion matrix and 1/√n of both sets. 0.05 L1 at n = 20000.
    let mut rng = Rng::new(2018);
    let (x_val, y_val) = sample(20_000, &TRAIN, &mut rng);
    let (x_target, _) = sample(20_000, &TARGET, &mut rng);
    let val_predictions = predict(&bayes_logits(&x_val, &TRAIN)).unwrap();
    let target_predictions = predict(&bayes_logits(&x_target, &TRAIN)).unwrap();
    let prior = bbse_target_prior(&y_val, &val_predictions, &target_predictions, 3).unwrap();
    let q = prior.probabilities::<f64>().to_vec();
    let error = l1(&q, &TARGET);
    assert!(error < 0.05, "BBSE estimate {q:?}, L1 error {error}");
}

#[test]
fn em_reports_when_the_iteration_limit_stops_it() {
    let mut rng = Rng::new(7);
    let (x, _) = sample(2_000, &TARGET, &mut rng);
    let posteriors = longtail::softmax::softmax(&bayes_logits(&x, &TRAIN)).unwrap();
    let train = Prior::from_counts(&TRAIN).unwrap();
    let estimate = LabelShiftEm::new().with_max_iterations(2).unwrap().estimate(&posteriors, &train).unwrap();
    assert_eq!((estimate.iterations, estimate.converged), (2, false));
    let (plain, _) = plain_em(&posteriors, &TRAIN, 0.0, 2);
    assert!(l1(&estimate.prior.probabilities::<f64>().to_vec(), &plain) < 1e-14);
}

// ---------------------------------------------------------------------------------------------
// Errors: one test per trigger
// ---------------------------------------------------------------------------------------------

fn two() -> Prior {
    Prior::from_counts(&[1.0, 1.0]).unwrap()
}

#[test]
fn empty_posteriors_or_predictions_are_an_error() {
    assert_eq!(LabelShiftEm::new().estimate(&Array2::<f64>::zeros((0, 2)), &two()), Err(Error::EmptyBatch));
    assert_eq!(LabelShiftEm::new().estimate(&Array2::<f64>::zeros((2, 0)), &two()), Err(Error::NoClasses));
    assert_eq!(bbse_target_prior(&[], &[], &[0], 2), Err(Error::EmptyBatch));
    assert_eq!(bbse_target_prior(&[0, 1], &[0, 1], &[], 2), Err(Error::EmptyBatch));
}

#[test]
fn non_finite_or_negative_posteriors_are_an_error() {
    for bad in [f64::NAN, f64::INFINITY, -0.5] {
        let posteriors = mat::<f64>(&[&[0.5, 0.5], &[bad, 1.0]]);
        let err = LabelShiftEm::new().estimate(&posteriors, &two()).unwrap_err();
        let expected = Error::InvalidTarget { row: 1, class: 0, value: bad };
        assert_eq!(format!("{err:?}"), format!("{expected:?}"));
    }
    let unnormalised = mat::<f32>(&[&[0.5, 0.6]]);
    assert!(matches!(
        LabelShiftEm::new().estimate(&unnormalised, &two()),
        Err(Error::TargetSum { row: 0, .. })
    ));
}

#[test]
fn a_training_prior_with_a_zero_or_the_wrong_length_is_an_error() {
    let posteriors = mat::<f64>(&[&[0.5, 0.5]]);
    let zero = Prior::from_counts(&[1.0, 0.0]).unwrap();
    assert_eq!(
        LabelShiftEm::new().estimate(&posteriors, &zero),
        Err(Error::InvalidParameter {
            name: "train_prior",
            index: Some(1),
            value: 0.0,
            expected: "> 0 (smooth zero counts first, e.g. with_smoothing(1.0))",
        })
    );
    let three = Prior::from_counts(&[1.0, 1.0, 1.0]).unwrap();
    assert_eq!(
        LabelShiftEm::new().estimate(&posteriors, &three),
        Err(Error::ShapeMismatch { name: "train_prior", expected: vec![2], found: vec![3] })
    );
}

#[test]
fn a_bad_tolerance_or_iteration_limit_is_an_error() {
    for tolerance in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = LabelShiftEm::new().with_tolerance(tolerance).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "tolerance", .. }), "{err:?}");
    }
    assert!(matches!(
        LabelShiftEm::new().with_max_iterations(0),
        Err(Error::InvalidParameter { name: "max_iterations", .. })
    ));
}

#[test]
fn a_singular_confusion_matrix_is_an_error_not_a_nan() {
    // Class 2 is never predicted on the validation set: row 2 of Ĉ is zero.
    let err = bbse_target_prior(&[0, 1, 2, 2], &[0, 1, 1, 0], &[0, 1, 2], 3).unwrap_err();
    assert_eq!(err, Error::SingularMatrix { name: "confusion_matrix", column: 2 });
    assert_eq!(
        err.to_string(),
        "confusion_matrix is singular: no usable pivot in column 2 (a class never predicted or never seen?)"
    );
    // A classifier that always predicts one class carries no information.
    assert!(matches!(bbse_target_prior(&[0, 1], &[0, 0], &[0], 2), Err(Error::SingularMatrix { .. })));
}

#[test]
fn bad_bbse_labels_or_predictions_are_an_error() {
    assert_eq!(
        bbse_target_prior(&[0, 2], &[0, 1], &[0], 2),
        Err(Error::LabelOutOfRange { row: 1, label: 2, classes: 2 })
    );
    assert_eq!(
        bbse_target_prior(&[0, 1], &[0, 3], &[0], 2),
        Err(Error::PredictionOutOfRange { row: 1, prediction: 3, classes: 2 })
    );
    assert_eq!(
        bbse_target_prior(&[0, 1], &[0, 1], &[1, 0, 5], 2),
        Err(Error::PredictionOutOfRange { row: 2, prediction: 5, classes: 2 })
    );
    assert_eq!(
        bbse_target_prior(&[0, 1], &[0], &[0], 2),
        Err(Error::ShapeMismatch { name: "predictions", expected: vec![2], found: vec![1] })
    );
}
