//! Post-hoc adjustment, prior shift, `τ` tuning and binary threshold moving: the formulas, the
//! argmax convention, `-inf` masks, agreement between the calls, and one test per error trigger
//! with the promise that nothing is written on error.

mod common;

use common::{Rng, mat};
use longtail::adjust::{
    TauCriterion, adjusted_logits, adjusted_logits_into, balanced_log_loss, binary_shift_threshold,
    binary_threshold, default_tau_grid, predict, predict_adjusted, predict_adjusted_into, predict_binary,
    predict_binary_into, predict_into, predict_prior_shifted, predict_prior_shifted_into,
    prior_shifted_logits, prior_shifted_logits_into, tune_tau, tune_tau_by, tune_tau_for,
};
use longtail::metrics::ConfusionMatrix;
use longtail::softmax::softmax;
use longtail::{Error, Float, Prior};
use ndarray::{Array1, Array2, s};

const NEG_INF: f64 = f64::NEG_INFINITY;

fn cast<F: Float>(values: &[f64]) -> Vec<F> {
    values.iter().map(|&v| F::from_f64(v)).collect()
}

/// Argmax with ties to the lowest index, written plainly.
fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best })
}

fn adjusted_case<F: Float>() {
    let mut rng = Rng::new(21);
    let prior = Prior::from_counts(&[500.0, 120.0, 40.0, 9.0, 3.0]).unwrap();
    let logits = rng.logits(12, 5, 2.0).mapv(F::from_f64);
    let tau = 1.3;
    let adjusted = adjusted_logits(&logits, &prior, F::from_f64(tau)).unwrap();
    let pi = prior.probabilities::<f64>();
    for ((i, k), v) in adjusted.indexed_iter() {
        let expected = logits[[i, k]].as_f64() - tau * pi[k].ln();
        assert!((v.as_f64() - expected).abs() <= 8.0 * F::epsilon().as_f64() * expected.abs().max(1.0));
    }
    // predict_adjusted is the argmax of the adjusted logits; τ = 0 is the plain argmax.
    let expected: Vec<usize> = adjusted
        .rows()
        .into_iter()
        .map(|r| argmax(&r.iter().map(|v| v.as_f64()).collect::<Vec<_>>()))
        .collect();
    assert_eq!(predict_adjusted(&logits, &prior, F::from_f64(tau)).unwrap(), expected);
    assert_eq!(predict_adjusted(&logits, &prior, F::zero()).unwrap(), predict(&logits).unwrap());
}

#[test]
fn adjusted_logits_are_z_minus_tau_log_pi_and_predictions_their_argmax_f64() {
    adjusted_case::<f64>();
}

#[test]
fn adjusted_logits_are_z_minus_tau_log_pi_and_predictions_their_argmax_f32() {
    adjusted_case::<f32>();
}

#[test]
fn argmax_ties_go_to_the_lowest_index_and_masks_never_win() {
    let logits = mat::<f64>(&[&[1.0, 1.0, 0.0], &[NEG_INF, 0.0, 0.0], &[NEG_INF, NEG_INF, -1e300]]);
    assert_eq!(predict(&logits).unwrap(), vec![0, 1, 2]);
    let uniform = Prior::from_counts(&[1.0, 1.0, 1.0]).unwrap();
    assert_eq!(predict_adjusted(&logits, &uniform, 1.0).unwrap(), vec![0, 1, 2]);
    let adjusted = adjusted_logits(&logits, &uniform, 1.0).unwrap();
    assert_eq!(adjusted[[1, 0]], NEG_INF);
}

#[test]
fn strided_views_give_the_same_results_as_contiguous_arrays() {
    let mut rng = Rng::new(4);
    let wide = rng.logits(6, 8, 1.5);
    let view = wide.slice(s![..;2, ..;2]);
    let owned = view.to_owned();
    let prior = Prior::from_counts(&[8.0, 4.0, 2.0, 1.0]).unwrap();
    assert_eq!(predict_adjusted(&view, &prior, 1.0).unwrap(), predict_adjusted(&owned, &prior, 1.0).unwrap());
    let mut out = Array2::zeros((6, 4));
    adjusted_logits_into(&view, &prior, 0.5, &mut out.slice_mut(s![..;2, ..])).unwrap();
    assert_eq!(out.slice(s![..;2, ..]), adjusted_logits(&owned, &prior, 0.5).unwrap());
}

fn prior_shift_case<F: Float>() {
    // Logits log p(x|k) + log π_train + c: the shifted softmax must be the Bayes posterior under π'.
    let mut rng = Rng::new(8);
    let log_likelihood = rng.logits(10, 4, 1.0);
    let (train, target): ([f64; 4], [f64; 4]) = ([0.7, 0.2, 0.07, 0.03], [0.1, 0.2, 0.3, 0.4]);
    let logits = Array2::from_shape_fn((10, 4), |(i, k)| log_likelihood[[i, k]] + train[k].ln() + 3.0);
    let (train_prior, target_prior) =
        (Prior::from_counts(&train).unwrap(), Prior::from_counts(&target).unwrap());
    let shifted = prior_shifted_logits(&logits.mapv(F::from_f64), &train_prior, &target_prior).unwrap();
    let posterior = softmax(&shifted).unwrap();
    for i in 0..10 {
        let joint: Vec<f64> = (0..4).map(|k| log_likelihood[[i, k]].exp() * target[k]).collect();
        let total: f64 = joint.iter().sum();
        for k in 0..4 {
            let expected = joint[k] / total;
            assert!((posterior[[i, k]].as_f64() - expected).abs() <= 16.0 * F::epsilon().as_f64(), "{i},{k}");
        }
    }
    let expected: Vec<usize> = (0..10)
        .map(|i| argmax(&(0..4).map(|k| log_likelihood[[i, k]] + target[k].ln()).collect::<Vec<_>>()))
        .collect();
    let predictions = predict_prior_shifted(&logits.mapv(F::from_f64), &train_prior, &target_prior).unwrap();
    // f32 may flip a near-tie; f64 must agree everywhere.
    let disagreements = predictions.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert!(disagreements == 0 || F::epsilon().as_f64() > 1e-10, "{predictions:?} vs {expected:?}");
}

#[test]
fn prior_shift_gives_the_bayes_posterior_under_the_target_prior_f64() {
    prior_shift_case::<f64>();
}

#[test]
fn prior_shift_gives_the_bayes_posterior_under_the_target_prior_f32() {
    prior_shift_case::<f32>();
}

#[test]
fn shifting_to_a_uniform_target_is_adjusting_with_tau_one() {
    let mut rng = Rng::new(13);
    let logits = rng.logits(30, 5, 2.0);
    let train = Prior::from_counts(&[500.0, 120.0, 40.0, 9.0, 3.0]).unwrap();
    let uniform = Prior::from_counts(&[1.0; 5]).unwrap();
    assert_eq!(
        predict_prior_shifted(&logits, &train, &uniform).unwrap(),
        predict_adjusted(&logits, &train, 1.0).unwrap()
    );
    assert_eq!(prior_shifted_logits(&logits, &train, &train).unwrap(), logits);
}

/// The τ search written plainly: every τ, balanced accuracy, ties to the τ closest to 1, then
/// the first.
fn plain_search(logits: &Array2<f64>, labels: &[usize], prior: &Prior, taus: &[f64]) -> (f64, f64) {
    let mut best = (f64::NAN, f64::NEG_INFINITY);
    for &tau in taus {
        let predictions = predict_adjusted(logits, prior, tau).unwrap();
        let score = ConfusionMatrix::new(labels, &predictions, logits.ncols()).unwrap().balanced_accuracy();
        if score > best.1 || (score == best.1 && (tau - 1.0).abs() < (best.0 - 1.0).abs()) {
            best = (tau, score);
        }
    }
    best
}

/// The balanced log-loss written plainly: the softmax of the adjusted row, each class's mean
/// negative log-probability of its rows, averaged over the classes that have rows.
fn plain_log_loss(logits: &Array2<f64>, labels: &[usize], prior: &Prior, tau: f64) -> f64 {
    let pi = prior.probabilities::<f64>();
    let classes = logits.ncols();
    let (mut sums, mut counts) = (vec![0.0; classes], vec![0usize; classes]);
    for (z, &y) in logits.rows().into_iter().zip(labels) {
        let adjusted: Vec<f64> = z.iter().zip(&pi).map(|(v, p)| v - tau * p.ln()).collect();
        let denominator: f64 = adjusted.iter().map(|a| a.exp()).sum();
        sums[y] -= (adjusted[y].exp() / denominator).ln();
        counts[y] += 1;
    }
    let present: Vec<usize> = (0..classes).filter(|&k| counts[k] > 0).collect();
    present.iter().map(|&k| sums[k] / counts[k] as f64).sum::<f64>() / present.len() as f64
}

/// Validation logits of a long-tailed problem: `z_ik = s·(log π_k + log N(x_i; μ_k, I))` for
/// 2-D Gaussian classes `μ_k` on a circle, with `n` samples of each class. At `s = 1` the softmax
/// is the exact posterior under the training prior `π`.
fn calibrated_problem(n: usize, scale: f64, seed: u64) -> (Array2<f64>, Vec<usize>, Prior) {
    let counts = [1000.0, 300.0, 90.0, 27.0, 8.0];
    let prior = Prior::from_counts(&counts).unwrap();
    let pi = prior.probabilities::<f64>();
    let centre = |k: usize| {
        let angle = 2.0 * std::f64::consts::PI * k as f64 / 5.0;
        (1.5 * angle.cos(), 1.5 * angle.sin())
    };
    let mut rng = Rng::new(seed);
    let labels: Vec<usize> = (0..5 * n).map(|i| i % 5).collect();
    let mut logits = Array2::zeros((5 * n, 5));
    for (i, &y) in labels.iter().enumerate() {
        let (cx, cy) = centre(y);
        let (x, yy) = (cx + rng.normal(), cy + rng.normal());
        for k in 0..5 {
            let (mx, my) = centre(k);
            logits[[i, k]] = scale * (pi[k].ln() - 0.5 * ((x - mx).powi(2) + (yy - my).powi(2)));
        }
    }
    (logits, labels, prior)
}

#[test]
fn the_default_grid_runs_from_zero_to_three_in_tenths() {
    let grid = default_tau_grid::<f64>();
    assert_eq!(grid.len(), 31);
    for (i, &tau) in grid.iter().enumerate() {
        assert!((tau - i as f64 / 10.0).abs() < 1e-15, "{i}: {tau}");
    }
    assert_eq!(grid[10], 1.0);
    assert_eq!(default_tau_grid::<f32>()[10], 1.0);
}

fn log_loss_case<F: Float>() {
    let mut rng = Rng::new(29);
    let prior = Prior::from_counts(&[400.0, 100.0, 25.0, 6.0]).unwrap();
    // An imbalanced validation set without class 3: the average is over classes 0..3 only.
    let labels: Vec<usize> = (0..40).map(|i| [0, 0, 0, 0, 0, 1, 1, 2][i % 8]).collect();
    let logits = rng.logits(40, 4, 2.0);
    let cast_logits = logits.mapv(F::from_f64);
    let tolerance = 64.0 * F::epsilon().as_f64();
    for tau in [0.0, 0.5, 1.0, 1.7, -0.3] {
        let expected = plain_log_loss(&logits.mapv(|v| F::from_f64(v).as_f64()), &labels, &prior, tau);
        let found = balanced_log_loss(&cast_logits, &labels, &prior, F::from_f64(tau)).unwrap();
        assert!((found - expected).abs() <= tolerance * expected, "τ = {tau}: {found} vs {expected}");
    }
    // The curve of the search is the loss at every τ of the grid, in the grid's order, and its
    // best point is the curve's minimum.
    let grid = default_tau_grid::<F>();
    let search = tune_tau(&cast_logits, &labels, &prior, &grid).unwrap();
    assert_eq!(search.curve.len(), grid.len());
    for (&(tau, value), &g) in search.curve.iter().zip(&grid) {
        assert_eq!(tau, g);
        assert_eq!(value, balanced_log_loss(&cast_logits, &labels, &prior, tau).unwrap());
    }
    let minimum = search.curve.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    assert_eq!(search.score, minimum);
    assert!(search.curve.iter().any(|&(tau, value)| tau == search.tau && value == minimum));
}

#[test]
fn balanced_log_loss_is_each_present_class_mean_nll_averaged_f64() {
    log_loss_case::<f64>();
}

#[test]
fn balanced_log_loss_is_each_present_class_mean_nll_averaged_f32() {
    log_loss_case::<f32>();
}

#[test]
fn balanced_log_loss_is_convex_in_tau() {
    let (logits, labels, prior) = calibrated_problem(30, 1.7, 8);
    let taus: Vec<f64> = (0..=60).map(|i| -1.0 + 0.075 * f64::from(i)).collect();
    let curve = tune_tau(&logits, &labels, &prior, &taus).unwrap().curve;
    for w in curve.windows(3) {
        let second = w[0].1 - 2.0 * w[1].1 + w[2].1;
        assert!(second >= -1e-12, "not convex at τ = {}: {second}", w[1].0);
    }
}

#[test]
fn a_calibrated_model_tunes_to_tau_one_and_an_overconfident_one_higher() {
    // The log-loss is a proper scoring rule: with the exact posterior under π, the balanced
    // posterior softmax(z − log π) minimises it on balanced data, so the search lands on τ ≈ 1.
    let taus: Vec<f64> = (0..=60).map(|i| 0.05 * f64::from(i)).collect();
    let (logits, labels, prior) = calibrated_problem(4000, 1.0, 3);
    let calibrated = tune_tau(&logits, &labels, &prior, &taus).unwrap();
    assert!((calibrated.tau - 1.0).abs() <= 0.1, "calibrated: τ = {}", calibrated.tau);
    // Logits twice too large carry the prior twice: the search corrects by more.
    let (logits, labels, prior) = calibrated_problem(4000, 2.0, 3);
    let overconfident = tune_tau(&logits, &labels, &prior, &taus).unwrap();
    assert!(overconfident.tau > 1.5, "overconfident: τ = {}", overconfident.tau);
    // Balanced accuracy on the same data also prefers τ near 1 for the calibrated model.
    let (logits, labels, prior) = calibrated_problem(4000, 1.0, 3);
    let by_accuracy = tune_tau_for(&logits, &labels, &prior, &taus, TauCriterion::BalancedAccuracy).unwrap();
    assert!((by_accuracy.tau - 1.0).abs() <= 0.3, "accuracy: τ = {}", by_accuracy.tau);
}

#[test]
fn tune_tau_for_balanced_accuracy_finds_the_best_point_of_the_grid() {
    let mut rng = Rng::new(17);
    let counts = [400.0, 100.0, 25.0, 6.0];
    let prior = Prior::from_counts(&counts).unwrap();
    let labels = rng.labels(200, 4);
    // Validation logits biased towards the frequent classes by log π, plus noise.
    let logits = Array2::from_shape_fn((200, 4), |(i, k)| {
        f64::from(u8::from(labels[i] == k)) + (counts[k] / 531.0_f64).ln() + rng.normal()
    });
    let taus: Vec<f64> = (0..=12).map(|i| -0.5 + 0.25 * f64::from(i)).collect();
    let best = tune_tau_for(&logits, &labels, &prior, &taus, TauCriterion::BalancedAccuracy).unwrap();
    let (tau, score) = plain_search(&logits, &labels, &prior, &taus);
    assert_eq!((best.tau, best.score), (tau, score));
    for &(tau, value) in &best.curve {
        let predictions = predict_adjusted(&logits, &prior, tau).unwrap();
        assert_eq!(value, ConfusionMatrix::new(&labels, &predictions, 4).unwrap().balanced_accuracy());
    }
    let plain = ConfusionMatrix::new(&labels, &predict(&logits).unwrap(), 4).unwrap().balanced_accuracy();
    assert!(best.score > plain, "adjustment should help: {} vs {plain}", best.score);
    // f32 logits search the same grid.
    let best32 = tune_tau_for(
        &logits.mapv(|v| v as f32),
        &labels,
        &prior,
        &cast::<f32>(&taus),
        TauCriterion::BalancedAccuracy,
    )
    .unwrap();
    assert!((best32.score - best.score).abs() < 0.02);
}

#[test]
fn tune_tau_ties_go_to_the_tau_closest_to_one_then_the_first() {
    let prior = Prior::from_counts(&[1.0, 1.0]).unwrap(); // every τ gives the same predictions and losses
    let logits = mat::<f64>(&[&[1.0, 0.0], &[0.0, 1.0]]);
    for criterion in [TauCriterion::BalancedLogLoss, TauCriterion::BalancedAccuracy] {
        let best = tune_tau_for(&logits, &[0, 1], &prior, &[2.0, -0.5, 1.0, 0.5], criterion).unwrap();
        assert_eq!(best.tau, 1.0, "{criterion:?}");
        let best = tune_tau_for(&logits, &[0, 1], &prior, &[0.0, 1.6, 0.5, 1.5], criterion).unwrap();
        assert_eq!(best.tau, 0.5, "{criterion:?}"); // 0.5 and 1.5 are as close to 1: the first wins
        assert_eq!(best.curve.len(), 4);
    }
    assert_eq!(tune_tau(&logits, &[0, 1], &prior, &[0.0, 0.4]).unwrap().tau, 0.4);
}

#[test]
fn tune_tau_by_maximises_the_callers_metric() {
    let prior = Prior::from_counts(&[90.0, 10.0]).unwrap();
    let logits = mat::<f64>(&[&[3.0, 0.0], &[2.0, 0.0], &[1.5, 0.0], &[0.5, 0.0]]);
    let labels = [0, 0, 1, 1];
    // The caller's metric: the recall of the rare class 1.
    let best = tune_tau_by(&logits, &labels, &prior, &[0.0, 3.0, 1.0], |cm: &ConfusionMatrix| {
        cm.recalls()[1].unwrap()
    })
    .unwrap();
    assert_eq!(best.tau, 1.0); // recall of class 1 is 1 at τ = 1 and 3; the one closer to 1 wins
    assert_eq!(best.score, 1.0);
    assert_eq!(best.curve, vec![(0.0, 0.0), (3.0, 1.0), (1.0, 1.0)]);
}

#[test]
fn binary_threshold_moving_is_two_class_logit_adjustment() {
    let mut rng = Rng::new(5);
    let scores: Array1<f64> = (0..50).map(|_| 3.0 * rng.normal()).collect();
    let (pi, tau) = (0.07, 0.8);
    let threshold = binary_threshold(pi, tau).unwrap();
    let binary = predict_binary(&scores, threshold).unwrap();
    // Two-class logits [0, s] with prior [1 − π, π]: class 1 wins iff s − τ·logit(π) > 0.
    let two_class = Array2::from_shape_fn((50, 2), |(i, k)| if k == 1 { scores[i] } else { 0.0 });
    let prior = Prior::from_counts(&[1.0 - pi, pi]).unwrap();
    let multi = predict_adjusted(&two_class, &prior, tau).unwrap();
    assert_eq!(binary, multi.iter().map(|&k| k == 1).collect::<Vec<_>>());
    // The Bayes shift from a balanced training prior to π is adjusting by τ = −1.
    let shift = binary_shift_threshold(0.5, pi).unwrap();
    assert!((shift - binary_threshold(pi, -1.0).unwrap()).abs() < 1e-15);
    assert_eq!(binary_threshold(0.3, 0.0).unwrap(), 0.0);
}

#[test]
fn binary_prior_logit_is_accurate_for_tiny_priors() {
    let pi = 1e-18;
    let t = binary_threshold(pi, 1.0).unwrap();
    assert!((t - (pi.ln() + pi)).abs() < 1e-15 * t.abs(), "{t}");
}

// ---------------------------------------------------------------------------------------------
// Errors: one test per trigger; nothing written on error
// ---------------------------------------------------------------------------------------------

const SENTINEL: f64 = 7.0;
const SENTINEL_CLASS: usize = 99;

/// Runs every multi-class call on `logits` and asserts that each fails with `expected` and leaves
/// its output buffer untouched.
fn fail_everywhere(logits: &Array2<f64>, train: &Prior, target: &Prior, tau: f64, expected: &Error) {
    let mut out = Array2::from_elem(logits.raw_dim(), SENTINEL);
    let mut classes = vec![SENTINEL_CLASS; logits.nrows()];
    let expected = format!("{expected:?}");
    let errors = [
        adjusted_logits(logits, train, tau).unwrap_err(),
        adjusted_logits_into(logits, train, tau, &mut out).unwrap_err(),
        predict_adjusted(logits, train, tau).unwrap_err(),
        predict_adjusted_into(logits, train, tau, &mut classes).unwrap_err(),
        prior_shifted_logits(logits, train, target).unwrap_err(),
        prior_shifted_logits_into(logits, train, target, &mut out).unwrap_err(),
        predict_prior_shifted(logits, train, target).unwrap_err(),
        predict_prior_shifted_into(logits, train, target, &mut classes).unwrap_err(),
    ];
    for (call, err) in errors.iter().enumerate() {
        assert_eq!(format!("{err:?}"), expected, "call #{call}");
    }
    assert!(out.iter().all(|&v| v == SENTINEL), "out was written");
    assert!(classes.iter().all(|&c| c == SENTINEL_CLASS), "predictions were written");
}

fn two() -> Prior {
    Prior::from_counts(&[3.0, 1.0]).unwrap()
}

#[test]
fn an_empty_batch_is_an_error() {
    let logits = Array2::<f64>::zeros((0, 2));
    fail_everywhere(&logits, &two(), &two(), 1.0, &Error::EmptyBatch);
    assert_eq!(predict(&logits), Err(Error::EmptyBatch));
    assert_eq!(tune_tau(&logits, &[], &two(), &[1.0]), Err(Error::EmptyBatch));
    assert_eq!(balanced_log_loss(&logits, &[], &two(), 1.0), Err(Error::EmptyBatch));
    assert_eq!(predict_binary(&Array1::<f64>::zeros(0), 0.0), Err(Error::EmptyBatch));
}

#[test]
fn zero_classes_is_an_error() {
    let logits = Array2::<f64>::zeros((2, 0));
    fail_everywhere(&logits, &two(), &two(), 1.0, &Error::NoClasses);
    assert_eq!(predict(&logits), Err(Error::NoClasses));
    assert_eq!(tune_tau(&logits, &[0, 0], &two(), &[1.0]), Err(Error::NoClasses));
}

#[test]
fn a_prior_of_the_wrong_length_is_an_error() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0]]);
    let err = |name| Error::ShapeMismatch { name, expected: vec![3], found: vec![2] };
    let three = Prior::from_counts(&[1.0, 1.0, 1.0]).unwrap();
    assert_eq!(adjusted_logits(&logits, &two(), 1.0), Err(err("prior")));
    assert_eq!(predict_prior_shifted(&logits, &two(), &three), Err(err("train_prior")));
    assert_eq!(predict_prior_shifted(&logits, &three, &two()), Err(err("target_prior")));
}

#[test]
fn an_output_of_the_wrong_shape_is_an_error() {
    let logits = mat::<f64>(&[&[0.0, 1.0]]);
    let mut out = Array2::from_elem((2, 2), SENTINEL);
    assert_eq!(
        adjusted_logits_into(&logits, &two(), 1.0, &mut out),
        Err(Error::ShapeMismatch { name: "out", expected: vec![1, 2], found: vec![2, 2] })
    );
    let mut classes = [SENTINEL_CLASS; 2];
    let expected = Error::ShapeMismatch { name: "out", expected: vec![1], found: vec![2] };
    assert_eq!(predict_into(&logits, &mut classes), Err(expected.clone()));
    assert_eq!(predict_prior_shifted_into(&logits, &two(), &two(), &mut classes), Err(expected.clone()));
    assert_eq!(predict_binary_into(&Array1::from(vec![0.0]), 0.0, &mut [false; 2]), Err(expected));
    assert!(out.iter().all(|&v| v == SENTINEL) && classes == [SENTINEL_CLASS; 2]);
}

#[test]
fn a_prior_with_a_zero_count_is_an_error_naming_the_class() {
    let logits = mat::<f64>(&[&[0.0, 1.0]]);
    let zero = Prior::from_counts(&[2.0, 0.0]).unwrap();
    let expected = |name| Error::InvalidParameter {
        name,
        index: Some(1),
        value: 0.0,
        expected: "> 0 (smooth zero counts first, e.g. with_smoothing(1.0))",
    };
    assert_eq!(predict_adjusted(&logits, &zero, 1.0), Err(expected("prior")));
    assert_eq!(predict_prior_shifted(&logits, &zero, &two()), Err(expected("train_prior")));
    assert_eq!(predict_prior_shifted(&logits, &two(), &zero), Err(expected("target_prior")));
    assert_eq!(tune_tau(&logits, &[1], &zero, &[0.0, 1.0]), Err(expected("prior")));
    assert_eq!(balanced_log_loss(&logits, &[1], &zero, 1.0), Err(expected("prior")));
    // τ = 0 alone needs no positive prior.
    assert!(tune_tau(&logits, &[1], &zero, &[0.0]).is_ok());
    // τ = 0 needs no positive prior.
    assert_eq!(predict_adjusted(&logits, &zero, 0.0).unwrap(), vec![1]);
}

#[test]
fn a_nan_or_infinite_logit_is_an_error() {
    for bad in [f64::NAN, f64::INFINITY] {
        let logits = mat::<f64>(&[&[0.0, 1.0], &[2.0, bad]]);
        let expected = Error::NonFiniteLogit { row: 1, class: 1, value: bad };
        fail_everywhere(&logits, &two(), &two(), 1.0, &expected);
        assert_eq!(format!("{:?}", predict(&logits).unwrap_err()), format!("{expected:?}"));
    }
}

#[test]
fn a_logit_that_overflows_once_adjusted_is_an_error() {
    let tiny = Prior::from_counts(&[1.0, 1e-300]).unwrap();
    // −τ·log π_1 ≈ 6.9e37 is finite in f32, but not once added to 3e38.
    let logits = mat::<f32>(&[&[0.0, 3e38]]);
    assert_eq!(
        predict_adjusted(&logits, &tiny, 1e35),
        Err(Error::Overflow {
            what: "logit + adjustment",
            row: Some(0),
            class: Some(1),
            value: Some(3e38_f32 as f64)
        })
    );
}

#[test]
fn a_fully_masked_row_has_no_prediction() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[NEG_INF, NEG_INF]]);
    let mut classes = vec![SENTINEL_CLASS; 2];
    assert_eq!(predict_into(&logits, &mut classes), Err(Error::FullyMasked { row: 1 }));
    assert_eq!(predict_adjusted(&logits, &two(), 1.0), Err(Error::FullyMasked { row: 1 }));
    assert_eq!(predict_prior_shifted(&logits, &two(), &two()), Err(Error::FullyMasked { row: 1 }));
    assert_eq!(classes, vec![SENTINEL_CLASS; 2]);
    // The adjusted logits themselves are defined: the row stays masked.
    assert!(adjusted_logits(&logits, &two(), 1.0).is_ok());
}

#[test]
fn a_bad_tau_is_an_error() {
    let logits = mat::<f64>(&[&[0.0, 1.0]]);
    let err = predict_adjusted(&logits, &two(), f64::NAN).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", .. }), "{err:?}");
    let overflow =
        adjusted_logits(&mat::<f32>(&[&[0.0, 1.0]]), &Prior::from_counts(&[1.0, 1e-30]).unwrap(), 1e37);
    assert!(matches!(overflow, Err(Error::InvalidParameter { name: "tau", .. })), "{overflow:?}");
    assert!(matches!(binary_threshold(0.5, f64::INFINITY), Err(Error::InvalidParameter { name: "tau", .. })));
}

#[test]
fn a_bad_tau_grid_is_an_error() {
    let logits = mat::<f64>(&[&[0.0, 1.0]]);
    assert_eq!(
        tune_tau(&logits, &[1], &two(), &[]),
        Err(Error::InvalidParameter { name: "taus", index: None, value: 0.0, expected: "a non-empty grid" })
    );
    assert_eq!(
        tune_tau(&logits, &[1], &two(), &[0.0, f64::INFINITY]),
        Err(Error::InvalidParameter {
            name: "taus",
            index: Some(1),
            value: f64::INFINITY,
            expected: "finite"
        })
    );
}

#[test]
fn tune_tau_rejects_bad_labels_and_a_nan_score() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    assert_eq!(
        tune_tau(&logits, &[1], &two(), &[1.0]),
        Err(Error::ShapeMismatch { name: "labels", expected: vec![2], found: vec![1] })
    );
    assert_eq!(
        tune_tau(&logits, &[1, 2], &two(), &[1.0]),
        Err(Error::LabelOutOfRange { row: 1, label: 2, classes: 2 })
    );
    let err = tune_tau_by(&logits, &[1, 0], &two(), &[0.0, 1.0], |_| f64::NAN).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "score", index: Some(0), .. }), "{err:?}");
    assert_eq!(
        balanced_log_loss(&logits, &[1, 0, 1], &two(), 1.0),
        Err(Error::ShapeMismatch { name: "labels", expected: vec![2], found: vec![3] })
    );
    assert_eq!(
        balanced_log_loss(&logits, &[0, 5], &two(), 1.0),
        Err(Error::LabelOutOfRange { row: 1, label: 5, classes: 2 })
    );
}

#[test]
fn the_log_loss_of_a_masked_label_is_an_error() {
    // Class 1 is masked in row 1 and is that row's label: its loss would be infinite.
    let logits = mat::<f64>(&[&[0.0, 1.0], &[2.0, NEG_INF]]);
    assert_eq!(
        balanced_log_loss(&logits, &[1, 1], &two(), 1.0),
        Err(Error::MaskedTarget { row: 1, class: 1 })
    );
    assert_eq!(
        tune_tau(&logits, &[0, 1], &two(), &[0.0, 1.0]),
        Err(Error::MaskedTarget { row: 1, class: 1 })
    );
    // A mask elsewhere is legal, and balanced accuracy never needs the label's probability.
    assert!(balanced_log_loss(&logits, &[1, 0], &two(), 1.0).unwrap().is_finite());
    assert!(tune_tau_for(&logits, &[0, 1], &two(), &[0.0, 1.0], TauCriterion::BalancedAccuracy).is_ok());
}

#[test]
fn tune_tau_rejects_fully_masked_rows_bad_logits_and_an_overflowing_tau() {
    let masked = mat::<f64>(&[&[0.0, 1.0], &[NEG_INF, NEG_INF]]);
    for criterion in [TauCriterion::BalancedLogLoss, TauCriterion::BalancedAccuracy] {
        assert_eq!(
            tune_tau_for(&masked, &[0, 1], &two(), &[1.0], criterion),
            Err(Error::FullyMasked { row: 1 })
        );
        let nan = mat::<f64>(&[&[0.0, f64::NAN]]);
        assert!(matches!(
            tune_tau_for(&nan, &[0], &two(), &[1.0], criterion),
            Err(Error::NonFiniteLogit { row: 0, class: 1, .. })
        ));
        // τ·log π overflows f32 for the second τ of the grid.
        let tiny = Prior::from_counts(&[1.0, 1e-30]).unwrap();
        let err =
            tune_tau_for(&mat::<f32>(&[&[0.0, 1.0]]), &[0], &tiny, &[1.0, 1e37], criterion).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "tau", .. }), "{err:?}");
        // A finite logit that overflows once adjusted.
        let tinier = Prior::from_counts(&[1.0, 1e-300]).unwrap();
        let err =
            tune_tau_for(&mat::<f32>(&[&[0.0, 3e38]]), &[0], &tinier, &[0.0, 1e35], criterion).unwrap_err();
        let value = Some(3e38_f32 as f64);
        assert_eq!(err, Error::Overflow { what: "logit + adjustment", row: Some(0), class: Some(1), value });
    }
    assert_eq!(balanced_log_loss(&masked, &[0, 1], &two(), 1.0), Err(Error::FullyMasked { row: 1 }));
    assert!(matches!(
        balanced_log_loss(&mat::<f64>(&[&[0.0, 1.0]]), &[0], &two(), f64::NAN),
        Err(Error::InvalidParameter { name: "taus", index: Some(0), .. })
    ));
}

#[test]
fn a_binary_prior_outside_the_open_unit_interval_is_an_error() {
    for p in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(matches!(
            binary_threshold(p, 1.0),
            Err(Error::InvalidParameter { name: "positive_prior", .. })
        ));
        assert!(matches!(
            binary_shift_threshold(p, 0.5),
            Err(Error::InvalidParameter { name: "train_positive", .. })
        ));
        assert!(matches!(
            binary_shift_threshold(0.5, p),
            Err(Error::InvalidParameter { name: "target_positive", .. })
        ));
    }
}

#[test]
fn a_nan_or_infinite_binary_score_or_a_nan_threshold_is_an_error() {
    let mut out = [true; 3];
    for bad in [f64::NAN, f64::INFINITY] {
        let scores = Array1::from(vec![0.0, bad, 1.0]);
        let err = predict_binary_into(&scores, 0.0, &mut out).unwrap_err();
        assert_eq!(
            format!("{err:?}"),
            format!("{:?}", Error::NonFiniteLogit { row: 1, class: 0, value: bad })
        );
    }
    let err = predict_binary_into(&Array1::from(vec![0.0_f32; 3]), f64::NAN, &mut out).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "threshold", .. }));
    assert_eq!(out, [true; 3]);
}
