//! Numerics users will hit: huge logits, masks, certainty, a single class, all-zero weights.

mod common;

use common::{Rng, relative};
use longtail::{Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array2, array, s};

/// A loss with every option on that keeps the hard-label kernel (no smoothing).
fn everything<F: longtail::Float>(k: usize) -> SoftmaxLoss<F> {
    let ones = vec![F::one(); k];
    let half: Vec<F> = (0..k).map(|i| F::from_f64(0.5 + i as f64)).collect();
    SoftmaxLoss::logit_adjusted(&half)
        .unwrap()
        .with_class_weights(&half)
        .unwrap()
        .with_alpha(&ones)
        .unwrap()
        .with_focal(F::from_f64(0.5))
        .unwrap()
}

#[test]
fn logits_near_1e30_in_f64_give_exact_finite_results() {
    let logits = array![[1e30, 0.0], [1e30, 1e30], [-1e30, 1e30]];
    let (losses, grad) = SoftmaxLoss::cross_entropy().per_sample_loss_and_grad(&logits, &[0, 1, 0]).unwrap();
    assert_eq!(losses.to_vec(), vec![0.0, std::f64::consts::LN_2, 2e30]);
    assert_eq!(grad, array![[0.0, 0.0], [0.5, -0.5], [-1.0, 1.0]]);
}

#[test]
fn logits_near_1e4_in_f32_give_exact_finite_results() {
    let logits = array![[1e4_f32, 0.0], [1e4, 1e4], [-1e4, 1e4]];
    let (losses, grad) = SoftmaxLoss::cross_entropy().per_sample_loss_and_grad(&logits, &[0, 1, 0]).unwrap();
    assert_eq!(losses.to_vec(), vec![0.0, std::f32::consts::LN_2, 2e4]);
    assert_eq!(grad, array![[0.0, 0.0], [0.5, -0.5], [-1.0, 1.0]]);
    for loss in [everything::<f32>(2), SoftmaxLoss::focal(2.0).unwrap().with_label_smoothing(0.1).unwrap()] {
        let (value, grad) = loss.loss_and_grad(&logits, &[0, 1, 0]).unwrap();
        assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()), "{loss:?}");
    }
}

#[test]
fn a_confident_correct_prediction_keeps_its_tiny_loss_and_gradient() {
    // p_y = 1/(1 + e^-40): CE = ln(1 + e^-40) ≈ e^-40, not 0; ∂/∂z_y = −(1 − p_y) ≈ −e^-40.
    let tiny = (-40f64).exp();
    let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&array![[40.0, 0.0]], &[0]).unwrap();
    assert!(relative(loss, tiny) < 1e-15);
    assert!(relative(grad[[0, 0]], -tiny) < 1e-15 && relative(grad[[0, 1]], tiny) < 1e-15);
    let tiny32 = (-20f32).exp();
    let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&array![[20.0_f32, 0.0]], &[0]).unwrap();
    assert!(((loss - tiny32) / tiny32).abs() < 1e-6 && ((grad[[0, 0]] + tiny32) / tiny32).abs() < 1e-6);
}

/// Two classes, label 0, margin d, so 1 − p = σ(−d) =: q. For γ ∈ (0, 1) the gradient holds the
/// factor `(1 − p)^(γ−1)·log p`, which has a finite limit; the asymptotics below are independent of
/// the kernel's formulas.
#[test]
fn focal_with_gamma_below_one_has_a_finite_exact_gradient_as_p_tends_to_one() {
    for gamma in [0.1, 0.5, 0.9] {
        for margin in [20.0, 40.0, 600.0] {
            let q = 1.0 / (1.0 + f64::exp(margin)); // 1 − p, exact to rounding
            let (loss, grad) =
                SoftmaxLoss::focal(gamma).unwrap().loss_and_grad(&array![[margin, 0.0]], &[0]).unwrap();
            // ℓ = q^γ·ln(1 + e^-d) = q^(1+γ)·(1 + O(q)); ∂ℓ/∂z_0 = −(1 + γ)·q^(1+γ)·(1 + O(q)).
            let expected = q.powf(1.0 + gamma);
            assert!(relative(loss, expected) < 1e-8, "γ {gamma}, d {margin}: loss {loss:e} vs {expected:e}");
            assert!(
                relative(grad[[0, 0]], -(1.0 + gamma) * expected) < 1e-8,
                "γ {gamma}, d {margin}: {grad}"
            );
            assert!(relative(grad[[0, 0]], -grad[[0, 1]]) < 1e-14);
        }
    }
    // Certain to the last bit (1 − p underflows): the limit, 0, not NaN.
    let (loss, grad) = SoftmaxLoss::focal(0.5).unwrap().loss_and_grad(&array![[800.0, 0.0]], &[0]).unwrap();
    assert_eq!((loss, grad), (0.0, array![[0.0, 0.0]]));
}

#[test]
fn focal_with_gamma_below_one_is_finite_in_f32_near_certainty() {
    for margin in [15.0_f32, 30.0, 90.0, 200.0] {
        let logits = array![[margin, 0.0, -1.0]];
        let (loss, grad) = SoftmaxLoss::focal(0.25_f32).unwrap().loss_and_grad(&logits, &[0]).unwrap();
        assert!(
            loss.is_finite() && loss >= 0.0 && grad.iter().all(|g| g.is_finite()),
            "{margin}: {loss} {grad}"
        );
    }
}

#[test]
fn focal_uses_the_model_probability_not_exp_of_minus_the_weighted_loss() {
    // Class weight 3 and logit adjustment: the focal factor must be (1 − p_y)^γ with p_y the
    // adjusted softmax, so the loss is exactly w·(1 − p_y)^γ·CE_adjusted.
    let logits = array![[1.0_f64, 0.2, -0.3]];
    let prior = [5.0, 3.0, 2.0];
    let la = SoftmaxLoss::logit_adjusted(&prior).unwrap();
    let ce = la.loss(&logits, &[1]).unwrap();
    let p = (-ce).exp();
    let focal = la.clone().with_focal(2.0).unwrap().with_class_weights(&[1.0, 3.0, 1.0]).unwrap();
    let sum = focal.with_reduction(Reduction::Sum).loss(&logits, &[1]).unwrap();
    assert!(relative(sum, 3.0 * (1.0 - p).powi(2) * ce) < 1e-14);
}

#[test]
fn masked_classes_behave_as_if_the_column_were_absent() {
    let mut rng = Rng::new(3);
    let logits = rng.logits(4, 5, 2.0);
    let labels = [0, 3, 2, 3];
    let mut masked = logits.clone();
    masked.column_mut(1).fill(f64::NEG_INFINITY);
    masked.column_mut(4).fill(f64::NEG_INFINITY);
    let kept =
        ndarray::concatenate![ndarray::Axis(1), logits.slice(s![.., 0..1]), logits.slice(s![.., 2..4])];
    let kept_labels = [0, 2, 1, 2];
    for loss in [SoftmaxLoss::cross_entropy(), SoftmaxLoss::focal(1.5).unwrap()] {
        let (l_masked, g_masked) = loss.loss_and_grad(&masked, &labels).unwrap();
        let (l_kept, g_kept) = loss.loss_and_grad(&kept, &kept_labels).unwrap();
        assert!(relative(l_masked, l_kept) < 1e-14);
        assert!(g_masked.column(1).iter().chain(g_masked.column(4)).all(|&g| g == 0.0));
        let g_masked_kept = ndarray::concatenate![
            ndarray::Axis(1),
            g_masked.slice(s![.., 0..1]),
            g_masked.slice(s![.., 2..4])
        ];
        assert!((&g_masked_kept - &g_kept).iter().all(|d| d.abs() < 1e-15));
    }
}

#[test]
fn a_single_class_gives_zero_loss_and_zero_gradient_with_every_option() {
    let logits = array![[3.0], [-7.0], [f64::MIN_POSITIVE]];
    let probs = Array2::ones((3, 1));
    let losses = [
        SoftmaxLoss::cross_entropy(),
        everything::<f64>(1),
        SoftmaxLoss::focal(0.5).unwrap().with_label_smoothing(0.3).unwrap(),
        SoftmaxLoss::focal(0.0).unwrap().with_reduction(Reduction::Sum),
    ];
    for loss in &losses {
        for targets in [Targets::labels(&[0, 0, 0]), Targets::probs(&probs)] {
            let (value, grad) = loss.loss_and_grad(&logits, targets).unwrap();
            assert_eq!(value, 0.0, "{loss:?}");
            assert!(grad.iter().all(|&g| g == 0.0), "{loss:?}: {grad}");
        }
    }
}

#[test]
fn a_batch_whose_weights_are_all_zero_has_zero_loss_and_zero_gradient() {
    let logits = array![[1.0_f32, 2.0], [3.0, -1.0]];
    let ignored = Targets::labels(&[0, 1]).with_sample_weights(&[0.0, 0.0]);
    let mut grad = Array2::from_elem((2, 2), f32::NAN);
    let smoothed = SoftmaxLoss::cross_entropy().with_label_smoothing(0.1).unwrap();
    for loss in [SoftmaxLoss::cross_entropy(), smoothed.clone()] {
        assert_eq!(loss.loss_and_grad_into(&logits, ignored.clone(), &mut grad).unwrap(), 0.0);
        assert!(grad.iter().all(|&g| g == 0.0));
    }
    // Class weights that zero every present label: the mean's denominator is 0.
    let zero_labels = SoftmaxLoss::class_weighted(&[0.0, 0.0]).unwrap();
    grad.fill(f32::NAN);
    assert_eq!(zero_labels.loss_and_grad_into(&logits, &[0, 1], &mut grad).unwrap(), 0.0);
    assert!(grad.iter().all(|&g| g == 0.0));
    // Probability targets with all-zero sample weights.
    let probs = array![[0.5_f32, 0.5], [1.0, 0.0]];
    let (value, grad) =
        smoothed.loss_and_grad(&logits, Targets::probs(&probs).with_sample_weights(&[0.0, 0.0])).unwrap();
    assert_eq!(value, 0.0);
    assert!(grad.iter().all(|&g| g == 0.0));
}

#[test]
fn strided_logits_and_gradient_buffers_give_the_same_results() {
    let mut rng = Rng::new(5);
    let wide = rng.logits(6, 8, 2.0);
    let logits = wide.slice(s![.., ..;2]); // rows with stride 2
    let labels = [0, 1, 2, 3, 0, 1];
    let loss = everything::<f64>(4).with_label_smoothing(0.05).unwrap();
    let (expected_loss, expected_grad) = loss.loss_and_grad(&logits.to_owned(), &labels).unwrap();
    let mut transposed = Array2::zeros((4, 6));
    let value =
        loss.loss_and_grad_into(&logits, &labels, &mut transposed.view_mut().reversed_axes()).unwrap();
    assert_eq!(value, expected_loss);
    assert_eq!(transposed.t(), expected_grad);
    let column_major = logits.t().as_standard_layout().into_owned(); // logits.t().t() is a column-major view
    assert_eq!(loss.loss_and_grad(&column_major.t(), &labels).unwrap(), (expected_loss, expected_grad));
}

#[test]
fn f32_batch_loss_is_summed_accurately_over_many_rows() {
    // 200 000 rows of the same loss: a naive f32 running sum would drift by ~1e-3 relative.
    let row = array![[0.3_f32, -1.2, 2.0, 0.1]];
    let logits = row.broadcast((200_000, 4)).unwrap().to_owned();
    let labels = vec![1_usize; 200_000];
    let one = SoftmaxLoss::cross_entropy().loss(&row, &[1]).unwrap();
    let mean = SoftmaxLoss::cross_entropy().loss(&logits, &labels).unwrap();
    assert_eq!(mean, one);
}
