//! Named regressions: the cases of the issue, each with its exact value.

use super::*;

pub(crate) fn assert_close(got: f64, want: f64, rtol: f64, what: &str) {
    assert!(got.is_finite() && (got - want).abs() <= rtol * want.abs(), "{what}: {got:e}, expected {want:e}");
}

#[test]
fn huge_sample_weights_do_not_overflow_the_weighted_mean() {
    let logits = array![[1e10, -1e10, 0.], [0., 1., 2.]];
    let t = Targets::labels(&[1, 0]).with_sample_weights(&[1e300, 1e300]);
    let loss = SoftmaxLoss::cross_entropy().loss(&logits, t).unwrap();
    // (2e10 + lse(0, 1, 2)) / 2.
    let lse = 2.0 + ((-2f64).exp() + (-1f64).exp()).ln_1p();
    assert_close(loss, (2e10 + lse) / 2.0, 1e-14, "CE with weights 1e300");
    let logits = array![[1e10f32, -1e10, 0.], [0., 1., 2.]];
    let t = Targets::labels(&[1, 0]).with_sample_weights(&[3e38f32, 3e38]);
    let loss = SoftmaxLoss::cross_entropy().loss(&logits, t).unwrap();
    assert_close(loss as f64, (2e10 + lse) / 2.0, 1e-6, "CE f32 with weights 3e38");
}

#[test]
fn huge_sample_weights_times_class_weights_do_not_give_nan() {
    let logits = array![[0.0f32, 1.0, 2.0], [2.0, 1.0, 0.0]];
    let t = Targets::labels(&[2, 0]).with_sample_weights(&[3e38f32, 1.0]);
    let loss = SoftmaxLoss::class_weighted(&[10.0f32; 3]).unwrap().loss(&logits, t).unwrap();
    let ce = ((-2f64).exp() + (-1f64).exp()).ln_1p();
    assert_close(loss as f64, ce, 1e-6, "class-weighted f32");
}

#[test]
fn subnormal_sample_weights_give_the_unweighted_mean() {
    let logits = array![[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]];
    let t = Targets::labels(&[2, 1]).with_sample_weights(&[5e-324, 5e-324]);
    let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, t).unwrap();
    let (want, want_grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, &[2, 1]).unwrap();
    assert_close(loss, want, 1e-14, "loss");
    assert_close(loss, 0.5 * (0.4076059644443804 + 2.40760596444438), 1e-14, "loss value");
    for (g, w) in grad.iter().zip(&want_grad) {
        assert_close(*g, *w, 1e-14, "grad");
    }
    let t = Targets::labels(&[2, 1]);
    let sub = SoftmaxLoss::class_weighted(&[5e-324; 3]).unwrap().loss(&logits, t).unwrap();
    assert_close(sub, want, 1e-14, "subnormal class weights");
    let ldam = LdamLoss::new(&[10.0, 5.0, 1.0]).unwrap();
    let plain = ldam.loss(&logits, &[2, 1]).unwrap();
    let sub = ldam.clone().with_class_weights(&[5e-324; 3]).unwrap().loss(&logits, &[2, 1]).unwrap();
    assert_close(sub, plain, 1e-14, "LDAM with subnormal class weights");
}

#[test]
fn label_smoothing_at_the_f32_extremes_is_finite() {
    let logits = array![[3e38f32, -3e38, 0.]];
    let loss = SoftmaxLoss::cross_entropy().with_label_smoothing(0.1).unwrap().loss(&logits, &[0]).unwrap();
    // (0.1/3)·(6e38 + 3e38) = 3e37.
    assert_close(loss as f64, 0.1 / 3.0 * 9e38, 1e-6, "smoothed CE");
}

#[test]
fn bce_at_the_f32_extremes_is_finite() {
    let logits = array![3e38f32, -3e38];
    let loss = SigmoidLoss::bce().binary_loss(&logits, &[0.0f32, 0.0][..]).unwrap();
    assert_close(loss as f64, 1.5e38, 1e-6, "BCE");
    let focal = SigmoidLoss::<f32>::focal(2.0).unwrap().with_alpha(0.25).unwrap();
    let (_, grad) = focal.binary_loss_and_grad(&logits, &[0.0f32, 1.0][..]).unwrap();
    // y = 0 at +3e38: α_t = 0.75, q = 1, d = 1, extra = γ·ce·σ(−s) = 0 → 0.75/2;
    // y = 1 at −3e38: α_t = 0.25, d = −1 → −0.25/2.
    assert_close(grad[0] as f64, 0.375, 1e-6, "focal grad +");
    assert_close(grad[1] as f64, -0.125, 1e-6, "focal grad -");
}

#[test]
fn a_huge_gamma_gives_finite_gradients() {
    let logits = array![[0.0f32, 1.0, -1.0]];
    let loss = SoftmaxLoss::focal(5e19f32).unwrap();
    let (value, grad) = loss.loss_and_grad(&logits, &[1]).unwrap();
    assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()), "{value} {grad:?}");
    let (_, grad) = SigmoidLoss::bce()
        .with_focal(5e19f32)
        .unwrap()
        .binary_loss_and_grad(&array![0.5f32, -0.5], &[1.0f32, 0.0][..])
        .unwrap();
    assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
}

#[test]
fn focal_with_a_large_gamma_is_exact() {
    // ℓ = (1 − p)^γ·(−log p), with 1 − p = σ(17) exactly: log(1 − p) = −ln(1 + e^{−17}).
    let losses = SoftmaxLoss::focal(1e6f32).unwrap().per_sample_loss(&array![[0.0f32, 17.0]], &[0]).unwrap();
    let log_q = -(-17f64).exp().ln_1p();
    let want = (1e6 * log_q).exp() * (17.0 + (-17f64).exp().ln_1p());
    assert_close(losses[0] as f64, want, 1e-4, "focal 1e6");
}

#[test]
fn focal_with_soft_targets_does_not_cancel_the_argmax_term() {
    let logits = array![[40.0, 0.0]];
    let probs = array![[1.0, 1e-20]];
    let (_, grad) = SoftmaxLoss::focal(2.0).unwrap().loss_and_grad(&logits, Targets::probs(&probs)).unwrap();
    // Reference from the formula.
    let (_, want, _) = softmax_row(&[40.0, 0.0], &[X::new(1.0), X::new(1e-20)], 2.0).unwrap();
    assert_close(grad[[0, 0]], want[0].f64(), 1e-10, "grad[0]");
    assert_close(grad[[0, 1]], want[1].f64(), 1e-10, "grad[1]");
    assert!(want[0].f64() > 0.9e-20 && want[0].f64() < 1.1e-20);
}

#[test]
fn a_transform_that_overflows_a_finite_logit_is_an_overflow_error() {
    let logits = array![[0.0, -f64::MAX, 1.0]];
    let loss = SoftmaxLoss::cross_entropy().with_logit_adjustment(&[1.0, 1.0, 8.0], 1e306).unwrap();
    let err = loss.loss(&logits, &[1]).unwrap_err();
    assert!(matches!(err, Error::Overflow { row: Some(0), class: Some(1), .. }), "{err:?}");
    let zlpr = ZlprLoss::new().with_label_prior(&[0.5, 0.1, 0.9], 1e306).unwrap();
    let err = zlpr.loss(&logits, Targets::multi_hot(&array![[0.0, 1.0, 0.0]])).unwrap_err();
    assert!(matches!(err, Error::Overflow { row: Some(0), class: Some(1), .. }), "{err:?}");
    let err = log_softmax(&array![[3e38f32, -3e38, 0.]]).unwrap_err();
    assert!(matches!(err, Error::Overflow { row: Some(0), class: Some(1), .. }), "{err:?}");
}

#[test]
fn confusion_matrix_merge_never_wraps() {
    let mut m = ConfusionMatrix::new(&[0usize, 1], &[0usize, 1], 2).unwrap();
    let mut result = Ok(());
    for _ in 0..70 {
        let copy = m.clone();
        result = m.merge(&copy);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(Error::Overflow { .. })), "{result:?}");
    assert!(m.accuracy().is_finite() && m.accuracy() == 1.0);
}

#[test]
fn f1_stats_merge_never_overflows() {
    let mut a = F1Stats::from_parts(vec![f64::MAX / 2.0], vec![f64::MAX], f64::MAX).unwrap();
    let b = a.clone();
    assert!(matches!(a.merge(&b), Err(Error::Overflow { what: "F1 statistics", .. })));
    assert_eq!(a, b, "unchanged on error");
}

#[test]
fn class_weights_of_tiny_counts_are_accepted() {
    let prior = Prior::from_counts(&[1e-308; 3]).unwrap();
    let w = ClassWeights::power(1.0).unwrap().rescaled().weights::<f64>(&prior).unwrap();
    assert_eq!(w.to_vec(), vec![1.0, 1.0, 1.0]);
}

#[test]
fn label_shift_em_on_subnormal_counts_names_them_or_works() {
    let prior = Prior::from_counts(&[5e-324, 1.0]).unwrap();
    let posteriors = array![[0.5, 0.5], [0.1, 0.9]];
    match LabelShiftEm::new().estimate(&posteriors, &prior) {
        Ok(est) => assert!(est.prior.probabilities::<f64>().iter().all(|v| v.is_finite())),
        Err(e) => assert!(!e.to_string().contains("NaN"), "{e}"),
    }
}

#[test]
fn prior_smoothing_by_a_huge_alpha_names_the_smoothing() {
    // Counts 1e308 + 1 and 1e308 + 2: a total beyond f64, which `total()` cannot return.
    let err = Prior::from_counts(&[1.0, 2.0]).unwrap().with_smoothing(1e308).unwrap_err();
    assert_eq!(
        err,
        Error::Overflow { what: "smoothed counts total", row: None, class: None, value: Some(1e308) }
    );
    let prior = Prior::from_counts(&[1.0, 2.0]).unwrap().with_smoothing(1e307).unwrap();
    assert_eq!(prior.probabilities::<f64>().to_vec(), vec![0.5, 0.5]);
    let err = Prior::from_counts(&[f64::MAX, f64::MAX]).unwrap_err();
    assert!(matches!(err, Error::Overflow { what: "counts total", .. }), "{err:?}");
}

#[test]
fn shot_of_nan_is_not_medium() {
    let split = ShotSplit::new(100.0, 20.0).unwrap();
    assert!(matches!(split.shot(f64::NAN), Err(Error::InvalidParameter { name: "count", .. })));
    assert_eq!(split.shot(f64::INFINITY).unwrap(), Shot::Many);
}

#[test]
fn a_positive_weight_times_a_large_logit_keeps_a_representable_mean() {
    // Row 0 costs 1e30·1e10 = 1e40 (beyond f32), row 1 ln 2; weights 1 and 1e7: the mean
    // (1e40 + 1e7·ln 2)/(1e7 + 1) ≈ 1e33 fits.
    let loss = SigmoidLoss::bce().with_pos_weight(&[1e30_f32]).unwrap();
    let targets = BinaryTargets::new(&[1.0, 0.0][..]).with_sample_weights(&[1.0, 1e7][..]);
    let (value, grad) = loss.binary_loss_and_grad(&array![-1e10_f32, 0.0], targets).unwrap();
    let want = (1e40 + 1e7 * 2f64.ln()) / (1e7 + 1.0);
    assert_close(value as f64, want, 1e-6, "loss");
    assert_close(grad[0] as f64, -1e30 / (1e7 + 1.0), 1e-6, "grad[0]");
    // Alone, the row is beyond the range: an overflow, naming the row for the per-sample call.
    let err = loss.binary_per_sample_loss(&array![-1e10_f32, 0.0], &[1.0, 0.0]).unwrap_err();
    assert_eq!(err, Error::Overflow { what: "loss", row: Some(0), class: None, value: None });
}

#[test]
fn asymmetric_loss_with_a_tiny_clip_does_not_round_one_minus_p() {
    // A negative at s = 30 with m = 1e-30: −log(σ(−30) + m) ≈ 30, where 1 − p_m rounds to 0.
    let asl = AsymmetricLoss::new().with_gammas(0.0, 0.0).unwrap().with_clip(1e-30_f32).unwrap();
    let per_sample =
        asl.per_sample_loss(&array![[30.0_f32]], Targets::multi_hot(&array![[0.0_f32]])).unwrap();
    let want = -((-30f64).exp() / (1.0 + (-30f64).exp()) + 1e-30_f32 as f64).ln();
    assert_close(per_sample[0] as f64, want, 1e-6, "loss");
    // A γ above ε/MIN_POSITIVE is refused.
    assert!(matches!(
        AsymmetricLoss::<f32>::new().with_gammas(0.0, 3e38),
        Err(Error::InvalidParameter { name: "gamma_neg", .. })
    ));
}

#[test]
fn poly1_epsilon_is_bounded_by_one_over_eps() {
    assert!(Poly1Loss::<f32>::new(8e6).is_ok());
    assert!(matches!(Poly1Loss::<f32>::new(1e7), Err(Error::InvalidParameter { name: "epsilon", .. })));
    assert!(matches!(Poly1Loss::<f64>::new(1e16), Err(Error::InvalidParameter { name: "epsilon", .. })));
}

#[test]
fn huge_sample_weights_do_not_overflow_the_smooth_f1_losses() {
    let logits = array![[1.0_f32, -1.0, 0.5], [0.0, 1.0, 2.0]];
    let w = [3e38_f32, 3e38];
    for loss in [SmoothF1Loss::<f32>::macro_f1(), SmoothF1Loss::micro_f1()] {
        let weighted = loss.loss(&logits, Targets::labels(&[1, 0]).with_sample_weights(&w[..])).unwrap();
        let plain = loss.loss(&logits, Targets::labels(&[1, 0])).unwrap();
        assert_close(weighted as f64, plain as f64, 1e-6, "weighted mean");
        // The sum is beyond f32: an overflow, not inf.
        let sum = loss.with_reduction(Reduction::Sum);
        let err = sum.loss(&logits, Targets::labels(&[1, 0]).with_sample_weights(&w[..])).unwrap_err();
        assert_eq!(err, Error::Overflow { what: "loss", row: None, class: None, value: None });
    }
    let multi_hot = array![[0.0_f32, 1.0, 0.0], [1.0, 0.0, 0.0]];
    let t = || Targets::multi_hot(&multi_hot).with_sample_weights(&w[..]);
    let binary = BinarySmoothF1Loss::<f32>::new();
    let weighted = binary.loss(&logits, t()).unwrap();
    assert_close(
        weighted as f64,
        binary.loss(&logits, Targets::multi_hot(&multi_hot)).unwrap() as f64,
        1e-6,
        "mean",
    );
    let sum = binary.with_reduction(Reduction::Sum);
    assert_eq!(
        sum.loss(&logits, t()).unwrap_err(),
        Error::Overflow { what: "loss", row: None, class: None, value: None }
    );
    let err = sum.per_sample_loss(&logits, t()).unwrap_err();
    assert_eq!(err, Error::Overflow { what: "loss", row: Some(0), class: None, value: None });
}

#[test]
fn huge_sample_weights_do_not_overflow_the_new_losses() {
    let logits = array![[1e10_f64, -1e10, 0.0], [0.0, 1.0, 2.0]];
    let w = [1e300, 1e300];
    let mean_of = |l: &dyn Fn(Targets<'_, f64>) -> f64| {
        let weighted = l(Targets::labels(&[1, 0]).with_sample_weights(&w[..]));
        assert_close(weighted, l(Targets::labels(&[1, 0])), 1e-12, "weighted mean");
    };
    let vs = VsLoss::new(&[4.0, 2.0, 1.0]).unwrap();
    mean_of(&|t| vs.loss(&logits, t).unwrap());
    let poly = Poly1Loss::new(1.0).unwrap();
    mean_of(&|t| poly.loss(&logits, t).unwrap());
    let asl = AsymmetricLoss::new();
    mean_of(&|t| asl.loss(&logits, t).unwrap());
    let bce = SigmoidLoss::bce().with_pos_weight(&[2.0, 3.0, 4.0]).unwrap();
    mean_of(&|t| bce.loss(&logits, t).unwrap());
}

#[test]
fn logits_far_apart_keep_a_representable_margin_loss() {
    // Row 0's loss is 6e38 (beyond f32), row 1's about 1.4; weights 1 and 1e3: the mean fits.
    let logits = array![[3e38_f32, -3e38], [0.0, 1.0]];
    let t = || Targets::labels(&[1, 1]).with_sample_weights(&[1.0, 1e3][..]);
    let want = (6e38 + 1e3 * (1.0 + (-1f64).exp()).ln()) / 1001.0;
    let poly = Poly1Loss::new(0.0_f32).unwrap();
    assert_close(poly.loss(&logits, t()).unwrap() as f64, want, 1e-6, "Poly-1");
    let vs = VsLoss::new(&[1.0_f32, 1.0]).unwrap();
    assert_close(vs.loss(&logits, t()).unwrap() as f64, want, 1e-6, "VS");
    // Per sample, row 0 is beyond the range.
    let err = poly.per_sample_loss(&logits, t()).unwrap_err();
    assert_eq!(err, Error::Overflow { what: "loss", row: Some(0), class: None, value: None });
}

#[test]
fn a_transform_of_the_new_losses_that_overflows_a_finite_logit_is_an_overflow_error() {
    let logits = array![[0.0, -f64::MAX, 1.0]];
    let poly = Poly1Loss::new(1.0).unwrap().with_logit_adjustment(&[0.1, 0.1, 0.8], 1e306).unwrap();
    let err = poly.loss(&logits, &[0]).unwrap_err();
    assert!(
        matches!(err, Error::Overflow { what: "logit + adjustment", row: Some(0), class: Some(1), .. }),
        "{err}"
    );
    let vs = VsLoss::new(&[1.0, 1e-300, 1.0]).unwrap().with_gamma(0.0).unwrap().with_tau(1e305).unwrap();
    let err = vs.loss(&array![[0.0, -f64::MAX, 1.0]], &[0]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Overflow { what: "scale * logit + adjustment", row: Some(0), class: Some(1), .. }
        ),
        "{err}"
    );
}

#[test]
fn error_messages_print_values_short() {
    let logits = array![[3.4e38f32, f32::NAN]];
    let err = SoftmaxLoss::cross_entropy().loss(&logits, &[0]).unwrap_err();
    assert!(!err.to_string().contains("000000"), "{err}");
    let err = SoftmaxLoss::<f64>::focal(-1.7976931348623157e308).unwrap_err();
    assert!(err.to_string().contains("-1.7976931348623157e308"), "{err}");
}

/// Runs a generator's check on one case and asserts that every call matched its reference.
pub(crate) fn assert_reference(check: impl FnOnce() -> std::result::Result<(), TestCaseError>) {
    RUN_FAILURES.with(|f| f.borrow_mut().clear());
    check().unwrap();
    let failures = RUN_FAILURES.with(|f| f.take());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Checks every `(micro, sum)` variant of the smooth-F1 loss on one batch against its reference.
fn smooth_f1_matches_reference<F: Hostile>(
    logits: &Array2<F>,
    labels: &[usize],
    probs: Option<&Array2<F>>,
    weights: Option<&[F]>,
    variants: &[(bool, bool)],
) {
    for &(micro, sum) in variants {
        let case = SmoothF1Case {
            logits: logits.clone(),
            labels: labels.to_vec(),
            probs: probs.cloned(),
            weights: weights.map(<[F]>::to_vec),
            micro,
            sum,
        };
        assert_reference(|| run_smooth_f1::<F>(case));
    }
}

#[test]
fn smooth_f1_statistics_of_huge_or_subnormal_weights_keep_their_ratios() {
    // Σ s (y + p) of weights near f64's maximum overflows, and weights of a few subnormal ulps
    // lose the digits of p: F1 and c_k come from the weights scaled by a power of two.
    let logits = array![[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]];
    for weights in [vec![1.7e308, 1.0e308], vec![1.5e-323, 1e-323]] {
        let all = [(false, false), (true, false), (false, true), (true, true)];
        smooth_f1_matches_reference(&logits, &[1, 0], None, Some(&weights), &all);
    }
    // The public statistics are the sums themselves: beyond f64, an overflow.
    let t = Targets::labels(&[1, 0]).with_sample_weights(&[1.7e308, 1.0e308][..]);
    let err = SmoothF1Loss::<f64>::macro_f1().stats(&logits, t).unwrap_err();
    assert_eq!(err, Error::Overflow { what: "F1 statistics", row: None, class: None, value: None });
}

#[test]
fn smooth_f1_rows_near_the_float_maximum_keep_a_representable_loss() {
    // z − max = −3.4e38 − 9.3e33 overflows f32 (and −MAX − 1.6e308 f64) where the weighted row
    // loss does not.
    let probs = array![[0.5_f32, 0.25, 0.25], [0.2, 0.3, 0.5]];
    let logits = array![[3.4028235e38_f32, -9.3493286e33, 1.0], [0.0, 1.0, 2.0]];
    let means = [(false, false), (true, false)];
    smooth_f1_matches_reference(&logits, &[0, 0], Some(&probs), Some(&[0.5, 2.0]), &means);
    let logits = array![[1.5819699586788378e308, -f64::MAX, 17.9], [0.6, -19.5, 0.0]];
    smooth_f1_matches_reference(&logits, &[0, 2], Some(&probs.mapv(f64::from)), None, &[(true, false)]);
}

#[test]
fn smooth_f1_gradient_of_huge_weights_does_not_overflow_the_argmax_complement() {
    // The argmax's negative term steps by b·scale·e_j/r: 1/r up to 1/ε times the scale 2^127 of
    // weights near 1e37 overflowed f32.
    let logits = array![
        [-1.2617338e-8_f32, -5.4461, -12.018461],
        [7.8011446, -14.93077, -6.4562965e-27],
        [-11.855038, 1.4584373e-14, 9.658837]
    ];
    let probs = array![
        [0.23251127_f32, 0.2663931, 0.50109565],
        [0.3347381, 0.4472474, 0.2180145],
        [0.13740653, 0.4720986, 0.39049488]
    ];
    let weights = [8.788918e35, 1.3959401e37, 9.80322e33];
    smooth_f1_matches_reference(&logits, &[1, 2, 1], Some(&probs), Some(&weights), &[(true, false)]);
}

#[test]
fn binary_smooth_f1_statistics_of_huge_or_subnormal_weights_keep_their_ratio() {
    // Σ s (y + σ) of weights near f64's maximum overflows, and weights of one subnormal ulp lose
    // σ's digits: F1 comes from the weights scaled by a power of two.
    let logits = array![[6.5e-36, 0.0, 8.988465674311579e307], [4.5, -1.0, 88.0]];
    let targets = array![[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]];
    for weights in [vec![1.7976931348623157e308, 484967.4], vec![5e-324, 1e-323]] {
        for sum in [false, true] {
            let case = BinaryF1Case {
                logits: logits.clone(),
                targets: targets.clone(),
                weights: Some(weights.clone()),
                sum,
            };
            assert_reference(|| run_binary_f1::<f64>(case));
        }
    }
    let t = BinaryTargets::new(&[1.0, 0.0][..]).with_sample_weights(&[1.7e308, 1.7e308][..]);
    let err = BinarySmoothF1Loss::<f64>::new().binary_stats(&array![1.0, 2.0], t).unwrap_err();
    assert_eq!(err, Error::Overflow { what: "F1 statistics", row: None, class: None, value: None });
}

#[test]
fn logit_adjustment_of_a_dominant_class_keeps_its_digits() {
    // π_1 = 1 − 1e-37: log π_1 = −1e-37, which log n_1 − log n rounds to 0; τ = 1e240 scales it
    // to −1e203.
    let prior = Prior::from_counts(&[1.0, 1e37]).unwrap();
    let tau = 1e240;
    let offset = prior.log_prior::<f64>(tau).unwrap();
    let log_p1 = (-1.0 / (1e37 + 1.0_f64)).ln_1p();
    assert_close(offset[1], tau * log_p1, 1e-14, "τ·log π_1");
    let adjusted = longtail::adjust::adjusted_logits(&array![[0.0, 0.0]], &prior, tau).unwrap();
    assert_close(adjusted[[0, 1]], -tau * log_p1, 1e-14, "adjusted logit");
    let shifted = longtail::adjust::prior_shifted_logits(
        &array![[0.0, 0.0]],
        &prior,
        &Prior::from_counts(&[1.0, 1.0]).unwrap(),
    )
    .unwrap();
    assert_close(shifted[[0, 1]], 0.5f64.ln() - log_p1, 1e-14, "prior shift");
}

#[test]
fn a_binary_threshold_beyond_f64_is_an_overflow() {
    let err = longtail::adjust::binary_threshold(0.9, 1e308).unwrap_err();
    assert_eq!(
        err,
        Error::Overflow { what: "tau * logit(positive_prior)", row: None, class: None, value: Some(1e308) }
    );
    assert_eq!(
        err.to_string(),
        "tau * logit(positive_prior) overflows (from 1e308): the result is beyond the range of its type"
    );
    assert_close(
        longtail::adjust::binary_threshold(0.9, 1e307).unwrap(),
        1e307 * 9f64.ln(),
        1e-14,
        "threshold",
    );
}

#[test]
fn f1_scores_of_counts_above_half_of_u64_do_not_wrap() {
    // 63 doublings: tp = 2^63 of class 0, so 2·tp = support + predicted = 2^64 exceeds u64.
    let mut m = ConfusionMatrix::new(&[0usize], &[0usize], 2).unwrap();
    for _ in 0..63 {
        let copy = m.clone();
        m.merge(&copy).unwrap();
    }
    assert_eq!(m.f1_scores(), vec![Some(1.0), None]);
    assert_eq!(m.macro_f1(), 1.0);
    let copy = m.clone();
    assert!(matches!(m.merge(&copy), Err(Error::Overflow { what: "confusion matrix counts", .. })));
    assert_eq!(m, copy, "unchanged on error");
}

#[test]
fn prior_estimator_merge_beyond_f64_is_an_overflow() {
    use longtail::prior::PriorEstimator;
    let mut est = PriorEstimator::new(2).unwrap();
    est.update(&[0usize, 0, 1][..]).unwrap();
    let mut result = Ok(());
    for _ in 0..1100 {
        let copy = est.clone();
        result = est.merge(&copy);
        if result.is_err() {
            assert_eq!(est, copy, "unchanged on error");
            break;
        }
    }
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Overflow { what: "estimator counts", class: Some(0), .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("estimator counts overflows at class 0 (from 8.98846567431158e307)"),
        "{err}"
    );
    let p = est.prior().unwrap().probabilities::<f64>();
    assert_close(p[0], 2.0 / 3.0, 1e-15, "prior");
}

#[test]
fn a_nan_logit_in_a_batch_of_zero_weights_is_an_error() {
    let logits = array![[0.5_f32, f32::NAN]];
    let targets = array![[1.0_f32, 0.0]];
    let t = || Targets::multi_hot(&targets).with_sample_weights(&[0.0_f32][..]);
    let want = Error::NonFiniteLogit { row: 0, class: 1, value: f64::NAN };
    let same = |err: Error| format!("{err:?}") == format!("{want:?}");
    assert!(same(SigmoidLoss::bce().loss_and_grad(&logits, t()).unwrap_err()));
    assert!(same(AsymmetricLoss::new().loss_and_grad(&logits, t()).unwrap_err()));
    assert!(same(BinarySmoothF1Loss::new().loss_and_grad(&logits, t()).unwrap_err()));
}

#[test]
fn a_huge_weight_times_an_exact_zero_gradient_is_zero() {
    // One class: p = 1, loss and gradient exactly 0, whatever the weight times `1 + ε·p`.
    let loss = Poly1Loss::new(10.0_f64).unwrap().with_class_weights(&[3e307][..]).unwrap();
    let (losses, grad) = loss.per_sample_loss_and_grad(&array![[-16.0], [5.0]], &[0, 0]).unwrap();
    assert!(losses.iter().chain(&grad).all(|&v| v == 0.0), "{losses} {grad}");
}

#[test]
fn a_weighted_mean_whose_scaled_quotient_exceeds_f64_is_representable() {
    // Row loss w·α·ℓ with ℓ ≈ 1.58e308; the mean divides by w: α·ℓ ≈ 6.3e305.
    let (w, alpha) =
        ([4.6363467691340166, 0.0, 0.14541755172104376, 9.80678334398719], [0.004, 0.0, 0.0044, 0.0024]);
    let loss =
        SoftmaxLoss::cross_entropy().with_class_weights(&w[..]).unwrap().with_alpha(&alpha[..]).unwrap();
    let logits = array![[19.0, 1.5819699586788378e308, 8.988465674311579e307, -2.0]];
    let value = loss.loss(&logits, &[0]).unwrap();
    assert_close(value, 0.004 * (1.5819699586788378e308 - 19.0), 1e-14, "mean");
}

#[test]
fn small_f32_weights_times_small_losses_do_not_underflow() {
    // ℓ = ln(1 + e^{−84.5}) ≈ 2e-37, a normal f32: the weighted mean of one row is ℓ, whatever w.
    let logits = array![[0.0_f32, -84.5]];
    let want = (-84.5_f64).exp().ln_1p();
    for w in [1e-10_f32, 3.6e-23, 1e-40] {
        let weights = [w];
        let t = Targets::labels(&[0]).with_sample_weights(&weights[..]);
        let value = SoftmaxLoss::cross_entropy().loss(&logits, t).unwrap();
        assert_close(value as f64, want, 1e-5, &format!("CE, weight {w:e}"));
    }
    // VS on a row whose loss is ≈ 2e-37 once its logits are scaled and shifted.
    let vs = VsLoss::<f32>::new(&[0.37240738_f32, 0.99722457, 18.973417, 1.0438325e-15][..])
        .and_then(|l| l.with_gamma(0.3))
        .and_then(|l| l.with_tau(18.009108))
        .unwrap();
    let logits = array![[-8.356255_f32, -397514.06, 11.15245, -17.396748]];
    let unweighted = vs.loss(&logits, &[2]).unwrap();
    assert!(unweighted > 1e-37, "{unweighted:e}");
    let t = Targets::labels(&[2]).with_sample_weights(&[3.600868e-23_f32][..]);
    assert_close(vs.loss(&logits, t).unwrap() as f64, unweighted as f64, 1e-5, "VS, weight 3.6e-23");
}

#[test]
fn an_f32_sample_weight_times_a_class_weight_far_below_the_largest_keeps_its_digits() {
    // Class weights 1.7e38 and 0.0057: the row's coefficient 3.27·0.0057 would be subnormal once
    // scaled by the largest class weight, unless the product is taken in f64.
    let w = [1.7014117e38_f32, 0.005721681, 1.1605414];
    let vs = VsLoss::<f32>::new(&[1.0_f32; 3][..]).unwrap().with_class_weights(&w[..]).unwrap();
    let logits = array![[-12.462783_f32, -14.610585, 1e14]];
    let t = Targets::labels(&[1]).with_sample_weights(&[3.2663217_f32][..]);
    let (losses, _) = vs.per_sample_loss_and_grad(&logits, t).unwrap();
    let want = 3.2663217_f64 * 0.005721681_f32 as f64 * (1e14 + 14.610585);
    assert_close(losses[0] as f64, want, 1e-6, "VS row with a small class weight");
}

#[test]
fn balanced_log_loss_keeps_what_a_huge_common_logit_would_round_away() {
    use longtail::adjust::balanced_log_loss;
    let prior = Prior::from_counts(&[1.0, 1.0]).unwrap();
    // lse(1e20, 1e20) − 1e20 = ln 2, not 0.
    let loss = balanced_log_loss(&array![[1e20_f64, 1e20]], &[0], &prior, 1.0).unwrap();
    assert_close(loss, 2f64.ln(), 1e-15, "ln 2 beside 1e20");
    // A loss of 9e-7 beside the row's maximum: ln(1 + e^{−13.9…}), not ln of a sum near 1.
    let loss = balanced_log_loss(&array![[-13.935522769892385_f64, -5e-324]], &[1], &prior, 0.0).unwrap();
    assert_close(loss, (-13.935522769892385f64).exp().ln_1p(), 1e-14, "a small loss");
}

#[test]
fn balanced_log_loss_beyond_f64_is_an_overflow() {
    use longtail::adjust::{TauCriterion, balanced_log_loss, tune_tau_for};
    let prior = Prior::from_counts(&[1.0, 1.0]).unwrap();
    let logits = array![[1.5e308_f64, -1.5e308], [0.0, 0.0]];
    let got = balanced_log_loss(&logits, &[1, 0], &prior, 1.0);
    assert!(matches!(got, Err(Error::Overflow { what: "balanced log-loss", .. })), "{got:?}");
    let got = tune_tau_for(&logits, &[1, 0], &prior, &[0.0, 1.0], TauCriterion::BalancedLogLoss);
    assert!(matches!(got, Err(Error::Overflow { what: "balanced log-loss", .. })), "{got:?}");
}

#[test]
fn label_shift_em_takes_a_train_prior_below_f64_from_its_logarithm() {
    // π_1 = 1e-26 / 1e300 is below f64's range: its probability is 0, its logarithm is not.
    let train = Prior::from_counts(&[1e300, 1e-26]).unwrap();
    let estimate = LabelShiftEm::new().estimate(&array![[0.5_f64, 0.5]], &train).unwrap();
    assert!(estimate.converged);
    assert_eq!(estimate.prior.probabilities::<f64>().to_vec(), vec![0.0, 1.0]);
}

#[test]
fn label_shift_em_keeps_a_posterior_share_whose_ratio_underflows() {
    // Step 3: q_0/π_0 is 5e-401 of q_1/π_1, yet row 0 gives class 0 the share
    // 5e-401 / (5e-401 + 1e-200) = 5e-201, and q_0 = 2.5e-201.
    let train = Prior::from_counts(&[1.0, 1e-300]).unwrap();
    let posteriors = array![[1.0_f64, 1e-200], [0.0, 1.0]];
    let estimate = LabelShiftEm::new().estimate(&posteriors, &train).unwrap();
    assert_eq!((estimate.iterations, estimate.converged), (3, true));
    let q = estimate.prior.probabilities::<f64>();
    assert_close(q[0], 2.5e-201, 1e-12, "q_0");
    assert_close(q[1], 1.0, 1e-15, "q_1");
}

/// Labels and predictions whose confusion counts are `m[true][predicted]`.
fn confusion_pairs(m: &[&[usize]]) -> (Vec<usize>, Vec<usize>) {
    let (mut labels, mut predictions) = (Vec::new(), Vec::new());
    for (y, row) in m.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            labels.extend(std::iter::repeat_n(y, c));
            predictions.extend(std::iter::repeat_n(p, c));
        }
    }
    (labels, predictions)
}

#[test]
fn bbse_refuses_a_singular_confusion_matrix_that_elimination_leaves_a_residue_in() {
    use longtail::prior::bbse_target_prior;
    // Rows 0 + 3 = rows 1 + 2 exactly (det 0); the last pivot is a rounding residue above
    // K·ε·max|Ĉ|, and the solve gave a finite prior from it.
    let m: [&[usize]; 4] = [
        &[8218, 8220, 8221, 8222],
        &[8219, 8221, 8222, 8223],
        &[8221, 8222, 8222, 8223],
        &[8221, 8223, 8223, 8225],
    ];
    let (labels, predictions) = confusion_pairs(&m);
    let target: Vec<usize> = [0; 16].into_iter().chain([1; 23]).collect();
    let got = bbse_target_prior(&labels[..], &predictions[..], &target[..], 4);
    assert!(matches!(got, Err(Error::SingularMatrix { name: "confusion_matrix", .. })), "{got:?}");
}

#[test]
fn bbse_refuses_a_confusion_matrix_too_ill_conditioned_for_six_digits() {
    use longtail::prior::bbse_target_prior;
    // det = −1 with counts near 18,745: κ∞ ≈ 4.2e9, an error bound 3·κ∞·ε ≈ 3e-6.
    let m: [&[usize]; 3] = [&[18743, 18745, 18746], &[18744, 18745, 18746], &[18746, 18746, 18747]];
    let (labels, predictions) = confusion_pairs(&m);
    let target: Vec<usize> = [0; 7].into_iter().chain([1; 6]).collect();
    let got = bbse_target_prior(&labels[..], &predictions[..], &target[..], 3);
    assert!(matches!(got, Err(Error::SingularMatrix { name: "confusion_matrix", .. })), "{got:?}");
    // A well-conditioned one gives the exact solution: Mᵀ v = t, q ∝ max(v, 0)·support.
    let m: [&[usize]; 2] = [&[3, 1], &[1, 2]];
    let (labels, predictions) = confusion_pairs(&m);
    let target = [0usize, 0, 0, 1, 1];
    // Mᵀ = [[3, 1], [1, 2]], t = [3, 2]: v = [0.8, 0.6]; support [4, 3]: q ∝ [3.2, 1.8].
    let q = bbse_target_prior(&labels[..], &predictions[..], &target[..], 2).unwrap().probabilities::<f64>();
    assert_close(q[0], 0.64, 1e-15, "q_0");
    assert_close(q[1], 0.36, 1e-15, "q_1");
}

#[test]
fn eqlv2_gradient_of_a_confident_positive_is_its_sigmoid() {
    use longtail::EqlV2Loss;
    use longtail::loss::EqlV2State;
    let sigma_neg = |s: f64| 1.0 / (1.0 + s.exp());
    // f64, s = 40: σ(40) rounds to 1, σ(40) − 1 to 0; the slope is −σ(−40) = −4.2e-18.
    let state = EqlV2State::new(1).unwrap();
    let loss = EqlV2Loss::<f64>::new(&state);
    let (logits, targets) = (array![[40.0_f64]], array![[1.0_f64]]);
    let (_, grad) = loss.loss_and_grad(&logits, Targets::multi_hot(&targets)).unwrap();
    assert_close(grad[[0, 0]], -sigma_neg(40.0), 1e-14, "f64 slope");
    let stats = loss.gradient_stats(&logits, Targets::multi_hot(&targets)).unwrap();
    assert_close(stats.positive()[0], sigma_neg(40.0), 1e-14, "gradient statistic");
    // f32 with a collected state (r = 3.65…), s = 16.37: σ(s) − 1 rounded to f32's ε.
    let state = EqlV2State::from_parts(vec![0.6469596650124295], vec![5.316941252836889], 32).unwrap();
    let loss = EqlV2Loss::<f32>::new(&state).with_mapping(1.0, 0.8).unwrap().with_reduction(Reduction::Sum);
    let r = loss.positive_weights()[0] as f64;
    let (_, grad) =
        loss.loss_and_grad(&array![[16.372744_f32]], Targets::multi_hot(&array![[1.0_f32]])).unwrap();
    assert_close(grad[[0, 0]] as f64, -r * sigma_neg(16.372744_f32 as f64), 1e-5, "f32 slope");
}

#[test]
fn tversky_statistics_beyond_1e154_keep_their_coefficients() {
    // `(TP + smooth)/D²` once underflowed with D ≈ 4e213, and dropped the `∂TI/∂P` term: the
    // gradient was 600 times too small. Reference: PyTorch autograd in f64 on the same formula.
    let z = array![
        [-19.88708525869589, -1.2526123169270734e-23],
        [15.72632265283011, 6.592024291189967],
        [1.3172502946914676e178, 4.368539494920024]
    ];
    let y = array![
        [0.49611055771898094, 0.5038894422810191],
        [0.5842516600816768, 0.41574833991832316],
        [0.5203692977194065, 0.47963070228059346]
    ];
    let s = [8.836492246493249e208, 7.694796854722453e210, 4.334148628996655e211];
    let loss = TverskyLoss::<f64>::multiclass()
        .with_weights(1.0, 89693.53332718427)
        .and_then(|l| l.with_smooth(1.176063902417843))
        .and_then(|l| l.with_eps(1e-7))
        .and_then(|l| l.with_gamma(8.151551752141948))
        .unwrap();
    let (value, grad) = loss.loss_and_grad(&z, Targets::probs(&y).with_sample_weights(&s[..])).unwrap();
    assert_close(value, 0.9729473214468725, 1e-12, "loss");
    assert_close(grad[[0, 0]], -6.032676977927662e-11, 1e-9, "grad[0, 0]");
    assert_close(grad[[1, 0]], -0.00028922311260306925, 1e-9, "grad[1, 0]");
}

#[test]
fn tversky_one_minus_ti_near_one_keeps_its_digits() {
    // A near-perfect batch: 1 − TI ≈ 1e-15 was taken as `1 − TI` in f64 (4 % off), and the
    // focusing factor `γ·L^{γ−1}` with it. The exact value is `(α·FP + β·FN)/D`.
    let z = array![
        [5.5021157_f32, -9.058964, -2019677.5, f32::NEG_INFINITY],
        [-6.0643525, -2.9944846e38, -17.777412, 19.09897],
        [5.004367, 1e-45, -9.480995, 4.599924]
    ];
    let s = [4.3372547e-16_f32, 1.7186739e-18, 9.8832905e-15];
    let loss = TverskyLoss::<f32>::multiclass()
        .with_smooth(1.0)
        .and_then(|l| l.with_eps(3.550174479563654e-11))
        .and_then(|l| l.with_gamma(4.0 / 3.0))
        .unwrap();
    let (_, grad) = loss.loss_and_grad(&z, Targets::labels(&[1, 1, 3]).with_sample_weights(&s[..])).unwrap();
    // The extended-range reference of the hostile suite.
    assert_close(grad[[0, 0]] as f64, 3.1872710232338842e-28, 1e-4, "grad[0, 0]");
}

#[test]
fn a_subnormal_sample_weight_multiplies_the_binary_decisions_last() {
    // `w·(1 − F1/2)` and `w·q` underflowed before the softplus multiplied: the row's loss
    // 2^-149 × ~6e23 (a normal f32) came out 0 or a few subnormal steps.
    let logits = array![[13.66829_f32, 2.2692238e24, -12.050999]];
    let targets = array![[1.0_f32, 0.0, 1.0]];
    let (one, tiny) = ([1.0_f32], [f32::from_bits(1)]);
    let with = |w| Targets::multi_hot(&targets).with_sample_weights(w);
    let f1 = BinarySmoothF1Loss::<f32>::new();
    let unit = f1.per_sample_loss(&logits, with(&one[..])).unwrap()[0] as f64;
    let got = f1.per_sample_loss(&logits, with(&tiny[..])).unwrap()[0] as f64;
    assert_close(got, unit * 2f64.powi(-149), 1e-6, "binary smooth-F1");
    // Statistics whose ratio makes every class's weights differ from 1.
    let state = longtail::loss::EqlV2State::from_parts(vec![1.0; 3], vec![4.0; 3], 10).unwrap();
    let eql = longtail::EqlV2Loss::<f32>::new(&state).with_reduction(Reduction::Sum);
    let unit = eql.loss(&logits, with(&one[..])).unwrap() as f64;
    let got = eql.loss(&logits, with(&tiny[..])).unwrap() as f64;
    assert_close(got, unit * 2f64.powi(-149), 1e-6, "EQL v2");
}

#[test]
fn cosine_head_keeps_the_direction_of_a_huge_vector() {
    use longtail::CosineHead;
    // |v|² overflows f32 (1e40): the cosine is still ±1.
    let head =
        CosineHead::forward(&array![[1e20_f32, 0.0], [-3e19, 0.0]], &array![[1.0_f32], [0.0]]).unwrap();
    assert_eq!(head.logits().to_owned(), array![[1.0_f32], [-1.0]]);
    let head = CosineHead::forward(&array![[1.0_f32, 0.0]], &array![[3e38_f32], [3e38]]).unwrap();
    assert_close(head.logits()[[0, 0]] as f64, 0.5f64.sqrt(), 1e-6, "cosine of a column of 3e38");
    // ∂z/∂h for h = (1e20, 0), w = (0, 1): (ŵ − ĥ(ĥ·ŵ))/|h| = (0, 1e-20).
    let head = CosineHead::forward(&array![[1e20_f32, 0.0]], &array![[0.0_f32], [1.0]]).unwrap();
    let (grad_features, _) = head.backward(&array![[1.0_f32]]).unwrap();
    assert_close(grad_features[[0, 1]] as f64, 1e-20, 1e-6, "feature gradient through a norm of 1e20");
}

#[test]
fn cosine_backward_refuses_a_non_finite_or_overflowing_gradient() {
    use longtail::CosineHead;
    let head = CosineHead::forward(&array![[1.0_f64, 0.0]], &array![[0.0_f64], [1.0]]).unwrap();
    assert!(matches!(
        head.backward(&array![[f64::NAN]]),
        Err(Error::InvalidParameter { name: "grad_logits", index: Some(0), .. })
    ));
    // A feature of norm 1e-300 and a logit gradient of 1e300: (0, 1e300)/1e-300 is beyond f64.
    let head = CosineHead::forward(&array![[1e-300_f64, 0.0]], &array![[0.0_f64], [1.0]]).unwrap();
    assert!(matches!(
        head.backward(&array![[1e300]]),
        Err(Error::Overflow { what: "cosine feature gradient", row: Some(0), class: Some(1), .. })
    ));
    // A huge gradient through a unit norm: exact.
    let head = CosineHead::forward(&array![[1.0_f64, 0.0]], &array![[0.0_f64], [1.0]]).unwrap();
    let (grad_features, grad_weights) = head.backward(&array![[1e308]]).unwrap();
    assert_eq!((grad_features[[0, 1]], grad_weights[[0, 0]]), (1e308, 1e308));
}

#[test]
fn inverse_frequency_of_a_count_near_f64_max_is_not_zero() {
    // K·n_k = 3.2e308 overflowed: the weight n/(K·n_k) was 0, not 1/2.
    let prior = Prior::from_counts(&[3.0, 1.6e308]).unwrap();
    let w = ClassWeights::inverse_frequency().weights::<f64>(&prior).unwrap();
    assert_close(w[1], 0.5 * (1.6e308 + 3.0) / 1.6e308, 1e-15, "inverse frequency of 1.6e308");
    assert_close(w[0], 1.6e308 / 6.0, 1e-15, "inverse frequency of 3");
}

#[test]
fn rescaled_weights_below_the_normal_range_or_of_a_subnormal_count_are_exact() {
    // n^{−p} = 0 for every class: the rescale divided 0 by 0.
    let prior = Prior::from_counts(&[2.8e149]).unwrap();
    let w = ClassWeights::power(5e209).unwrap().rescaled().weights::<f64>(&prior).unwrap();
    assert_eq!(w.to_vec(), vec![1.0]);
    let prior = Prior::from_counts(&[1e200, 2e200]).unwrap();
    let w = ClassWeights::power(2.0).unwrap().rescaled().weights::<f32>(&prior).unwrap();
    assert_close(w[0] as f64, 1.6, 1e-6, "rescaled 1e200^-2");
    // n·ln β underflowed to 0 for a subnormal count: ln of 0 gave NaN, reported as an overflow.
    let prior = Prior::from_counts(&[5e-324, 1e-323]).unwrap();
    let w = ClassWeights::effective_number(0.75).unwrap().rescaled().weights::<f64>(&prior).unwrap();
    assert_close(w[0], 4.0 / 3.0, 1e-12, "rescaled effective number of 5e-324");
}

#[test]
fn balanced_log_loss_whose_class_means_sum_beyond_f64_is_their_mean() {
    use longtail::adjust::balanced_log_loss;
    // Class means 1.58e308 and 0.79e308: their sum overflowed before the division by 2.
    let logits = array![[-3.5_f64, 1.58e308], [18.9, -1.58e308], [-0.85, 0.0]];
    let prior = Prior::from_counts(&[88.0, 92.0]).unwrap();
    let loss = balanced_log_loss(&logits, &[0, 1, 1], &prior, 0.0).unwrap();
    assert_close(loss, (1.58e308 + 1.58e308 / 2.0) / 2.0, 1e-12, "balanced log-loss near f64::MAX");
}

#[test]
fn smooth_f1_scales_of_merged_statistics_beyond_the_float_keep_the_loss() {
    // c_0 = 2W/(K·S_0) = 2·3.4/(2·5e-324) lies beyond f64; its terms are 0 (one class: −log p = 0
    // … here K = 2 with p_0 = 1 − e^{−40}): the loss is the finite product, not an overflow.
    let stats = F1Stats::from_parts(vec![0.0, 1.0], vec![5e-324, 4.0], 3.4).unwrap();
    let logits = array![[40.0_f64, 0.0]];
    let mut grad = Array2::zeros((1, 2));
    let loss = SmoothF1Loss::macro_f1().loss_and_grad_with_stats_into(&logits, &[0], &stats, &mut grad);
    // c_0·(1 − 0)·softplus(−40) + c_1·(F1_1/2)·softplus(−40)·0: ≈ 6.8e323·4.25e-18 = 2.9e306.
    let c0 = X::new(3.4).div(X::new(5e-324));
    let want = c0.mul(X::new((-40f64).exp().ln_1p())).f64();
    assert_close(loss.unwrap(), want, 1e-12, "smooth-F1 loss with a scale beyond f64");
    // f32: a scale of 1e40 beyond f32 times a tiny cross-entropy.
    let stats = F1Stats::from_parts(vec![0.0, 1.0], vec![1e-40, 4.0], 1.0).unwrap();
    let mut grad = Array2::zeros((1, 2));
    let loss = SmoothF1Loss::macro_f1()
        .loss_and_grad_with_stats_into(&array![[40.0_f32, 0.0]], &[0], &stats, &mut grad)
        .unwrap();
    assert_close(loss as f64, 1e40 * (-40f64).exp().ln_1p(), 1e-5, "f32 smooth-F1 loss with a scale of 1e40");
}
