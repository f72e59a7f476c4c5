//! Rows with target mass on every class (probability targets, label smoothing) on rows wider than
//! one vector run of the kernel: focal factors, class factors, masks, and the row sums of the
//! targets that validation hands to the kernel.

mod common;

use common::{Options, Problem, Rng, numeric_grad, relative, relative_error};
use longtail::{Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array2, Axis};

/// Two full runs of 32 lanes and a tail.
const WIDE: usize = 70;

/// Every option combination with dense rows (probabilities or smoothing), on wide rows: f64
/// gradients match central differences to 1e-6 and the loss matches the plain formula to 1e-12.
#[test]
fn wide_dense_rows_match_finite_differences_and_the_reference_formula() {
    let mut rng = Rng::new(23);
    let dense = |o: &Options| (o.probs || o.smoothing > 0.0) && o.reduction == Reduction::Mean;
    for options in Options::all().into_iter().filter(dense) {
        let problem = Problem::random(options, 3, WIDE, &mut rng);
        problem.assert_matches_finite_differences_and_reference();
    }
}

/// Large margins make the argmax near-certain (`1 − p` far below `p`): the focal terms of the
/// argmax and of the label stay exact, for γ below, at and above 1, with smoothing and with
/// probability targets.
#[test]
fn wide_dense_focal_rows_stay_exact_near_certainty() {
    let mut rng = Rng::new(29);
    let logits = rng.logits(4, WIDE, 7.0);
    let labels = rng.labels(4, WIDE);
    let probs = rng.probs(4, WIDE);
    for gamma in [0.5, 1.0, 2.0, 3.0] {
        let focal = SoftmaxLoss::focal(gamma).unwrap();
        let smoothed = focal.clone().with_label_smoothing(0.2).unwrap();
        for (loss, targets) in [(&smoothed, Targets::labels(&labels)), (&focal, Targets::probs(&probs))] {
            let (_, grad) = loss.loss_and_grad(&logits, targets.clone()).unwrap();
            let numeric = numeric_grad(&logits, |z| loss.loss(z, targets.clone()).unwrap());
            let err = relative_error(&grad, &numeric);
            assert!(err <= 1e-6, "γ {gamma}: gradient relative error {err:e}");
        }
    }
}

/// A masked class without target mass drops out of a wide dense row: the loss and gradient are
/// those of the row without its column, and its gradient is 0.
#[test]
fn masked_classes_without_target_mass_drop_out_of_wide_dense_rows() {
    let mut rng = Rng::new(31);
    let masked = [3, 40, 69];
    let kept: Vec<usize> = (0..WIDE).filter(|c| !masked.contains(c)).collect();
    let mut logits = rng.logits(3, WIDE, 2.0);
    let mut probs = rng.probs(3, WIDE);
    for &c in &masked {
        logits.column_mut(c).fill(f64::NEG_INFINITY);
        probs.column_mut(c).fill(0.0);
    }
    for mut row in probs.rows_mut() {
        let sum = row.sum();
        row /= sum;
    }
    let weights: Vec<f64> = (0..WIDE).map(|c| 0.5 + (c % 4) as f64).collect();
    let kept_weights: Vec<f64> = kept.iter().map(|&c| weights[c]).collect();
    for gamma in [0.0, 0.5, 2.0] {
        let loss = SoftmaxLoss::focal(gamma).unwrap().with_class_weights(&weights).unwrap();
        let narrow = SoftmaxLoss::focal(gamma).unwrap().with_class_weights(&kept_weights).unwrap();
        let (value, grad) = loss.loss_and_grad(&logits, &probs).unwrap();
        let (expected, expected_grad) =
            narrow.loss_and_grad(&logits.select(Axis(1), &kept), &probs.select(Axis(1), &kept)).unwrap();
        assert!(relative(value, expected) <= 1e-13, "γ {gamma}: {value} vs {expected}");
        assert!(relative_error(&grad.select(Axis(1), &kept), &expected_grad) <= 1e-13, "γ {gamma}");
        assert!(masked.iter().all(|&c| grad.column(c).iter().all(|&g| g == 0.0)), "γ {gamma}");
    }
}

/// f32 probability rows may sum to 1 only within `√ε ≈ 3.5e-4`: the gradient is `(Σ_k t_k)·p − t`,
/// with the row's own sum (taking 1 instead would be off by ~1e-4), for rows that pass the fast
/// scan (0.5 of the tolerance off), rows left to the exact check (0.98 of it off), on short and
/// long rows, the long ones over more than one chunk of rows.
#[test]
fn f32_probability_rows_off_one_scale_the_softmax_by_their_own_sum() {
    let tolerance = f64::from(f32::EPSILON.sqrt());
    let mut rng = Rng::new(37);
    for classes in [WIDE, 2 * 4096 + 7] {
        let rows = 12;
        let logits = rng.logits(rows, classes, 2.0).mapv(|v| v as f32);
        let offsets = [0.5, -0.5, 0.98, -0.98, 0.0, 0.25];
        let probs = Array2::from_shape_fn((rows, classes), |(i, _)| {
            ((1.0 + offsets[i % offsets.len()] * tolerance) / classes as f64) as f32
        });
        let loss = SoftmaxLoss::cross_entropy().with_reduction(Reduction::Sum);
        let (_, grad) = loss.loss_and_grad(&logits, &probs).unwrap();
        for ((z, t), g) in logits.rows().into_iter().zip(probs.rows()).zip(grad.rows()) {
            let sum: f64 = t.iter().map(|&v| f64::from(v)).sum();
            let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let total: f64 = z.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            let expected = Array2::from_shape_fn((1, classes), |(_, k)| {
                sum * (f64::from(z[k]) - max).exp() / total - f64::from(t[k])
            });
            let g = g.mapv(f64::from).insert_axis(Axis(0));
            let err = relative_error(&g, &expected);
            assert!(err <= 1e-5, "{classes} classes, sum {sum}: relative error {err:e}");
        }
    }
}

/// Strided probability targets (a column-major array) give the results of contiguous ones.
#[test]
fn strided_probability_targets_give_the_results_of_contiguous_ones() {
    let mut rng = Rng::new(41);
    let logits = rng.logits(5, WIDE, 2.0);
    let probs = rng.probs(5, WIDE);
    let column_major = probs.t().as_standard_layout().into_owned();
    let strided = column_major.t();
    for loss in [
        SoftmaxLoss::cross_entropy().with_label_smoothing(0.1).unwrap(),
        SoftmaxLoss::focal(2.0).unwrap(),
        SoftmaxLoss::focal(0.5).unwrap().with_class_weights(&vec![2.0; WIDE]).unwrap(),
    ] {
        let (value, grad) = loss.loss_and_grad(&logits, &probs).unwrap();
        let (strided_value, strided_grad) = loss.loss_and_grad(&logits, strided).unwrap();
        assert!(relative(strided_value, value) <= 1e-15);
        assert!(relative_error(&strided_grad, &grad) <= 1e-15);
    }
}
