//! Every `Error` variant, each way to trigger it, the exact fields it reports, its `Display`
//! text, and the promise that nothing is written to an output buffer when a call fails.

mod common;

use common::mat;
use longtail::softmax::{
    log_softmax, log_softmax_into, log_sum_exp, log_sum_exp_into, softmax, softmax_into,
};
use longtail::{Error, Float, Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array1, Array2};

const SENTINEL: f64 = 7.0;
const NEG_INF: f64 = f64::NEG_INFINITY;
const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

/// A vector of `F` from `f64`s.
fn vector<F: Float>(values: &[f64]) -> Array1<F> {
    values.iter().map(|&v| F::from_f64(v)).collect()
}

/// `x` rounded to `F` and widened back: the value an error reports for an input `x`.
fn as_f<F: Float>(x: f64) -> f64 {
    F::from_f64(x).as_f64()
}

fn ce<F: Float>() -> SoftmaxLoss<F> {
    SoftmaxLoss::cross_entropy()
}

/// Whether every element is bitwise the sentinel.
fn untouched<'a, F: Float>(values: impl IntoIterator<Item = &'a F>) -> bool {
    values.into_iter().all(|v| v.as_f64().to_bits() == SENTINEL.to_bits())
}

/// Runs every `SoftmaxLoss` call (both reductions) on one batch, asserts that each fails with the
/// same error and that no caller buffer (prefilled with a sentinel) was written, and returns it.
fn fail_everywhere<F: Float>(loss: &SoftmaxLoss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let sentinel = F::from_f64(SENTINEL);
    let mut grad = Array2::from_elem(logits.raw_dim(), sentinel);
    let mut losses = Array1::from_elem(logits.nrows(), sentinel);
    let sum = loss.clone().with_reduction(Reduction::Sum);
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        sum.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        sum.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets.clone()).unwrap_err(),
        loss.per_sample_loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.per_sample_into(logits, &targets, &mut losses, Some(&mut grad)).unwrap_err(),
    ];
    // Debug text compares NaN fields as equal, unlike `PartialEq`.
    let first = format!("{:?}", errors[0]);
    for (call, err) in errors.iter().enumerate() {
        assert_eq!(format!("{err:?}"), first, "call #{call} disagrees with call #0");
    }
    assert!(untouched(&grad), "grad_out was written on error {first}: {grad:?}");
    assert!(untouched(&losses), "losses_out was written on error {first}: {losses:?}");
    errors[0].clone()
}

/// Asserts every `SoftmaxLoss` call succeeds and returns the per-sample losses and gradient.
fn succeed_everywhere<F: Float>(
    loss: &SoftmaxLoss<F>,
    logits: &Array2<F>,
    targets: Targets<'_, F>,
) -> (F, Array1<F>, Array2<F>) {
    let value = loss.loss(logits, targets.clone()).expect("loss");
    let (value2, _) = loss.loss_and_grad(logits, targets.clone()).expect("loss_and_grad");
    assert_eq!(value.as_f64().to_bits(), value2.as_f64().to_bits());
    let (losses, grad) = loss.per_sample_loss_and_grad(logits, targets).expect("per_sample");
    (value, losses, grad)
}

// ---------------------------------------------------------------------------------------------
// EmptyBatch and NoClasses
// ---------------------------------------------------------------------------------------------

fn empty_batch_case<F: Float>() {
    let logits = Array2::<F>::zeros((0, 3));
    let empty: [usize; 0] = [];
    assert_eq!(fail_everywhere(&ce(), &logits, Targets::labels(&empty)), Error::EmptyBatch);
    let probs = Array2::<F>::zeros((0, 3));
    assert_eq!(fail_everywhere(&ce(), &logits, Targets::probs(&probs)), Error::EmptyBatch);
    let adjusted = SoftmaxLoss::logit_adjusted(vector::<F>(&[1.0, 2.0, 3.0])).unwrap();
    assert_eq!(fail_everywhere(&adjusted, &logits, Targets::labels(&empty)), Error::EmptyBatch);
}

#[test]
fn zero_rows_is_empty_batch_f64() {
    empty_batch_case::<f64>();
}

#[test]
fn zero_rows_is_empty_batch_f32() {
    empty_batch_case::<f32>();
}

#[test]
fn zero_rows_and_zero_classes_is_empty_batch_not_no_classes() {
    let logits = Array2::<f64>::zeros((0, 0));
    let empty: [usize; 0] = [];
    assert_eq!(fail_everywhere(&ce(), &logits, Targets::labels(&empty)), Error::EmptyBatch);
}

#[test]
fn empty_batch_is_reported_before_a_labels_length_mismatch() {
    let logits = Array2::<f64>::zeros((0, 2));
    assert_eq!(fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1])), Error::EmptyBatch);
}

fn no_classes_case<F: Float>() {
    let logits = Array2::<F>::zeros((2, 0));
    // Labels can't be valid class indices when K = 0; NoClasses is reported first.
    assert_eq!(fail_everywhere(&ce(), &logits, Targets::labels(&[0, 0])), Error::NoClasses);
    let probs = Array2::<F>::zeros((2, 0));
    assert_eq!(fail_everywhere(&ce(), &logits, Targets::probs(&probs)), Error::NoClasses);
}

#[test]
fn zero_classes_is_no_classes_f64() {
    no_classes_case::<f64>();
}

#[test]
fn zero_classes_is_no_classes_f32() {
    no_classes_case::<f32>();
}

// ---------------------------------------------------------------------------------------------
// ShapeMismatch
// ---------------------------------------------------------------------------------------------

fn shape(name: &'static str, expected: &[usize], found: &[usize]) -> Error {
    Error::ShapeMismatch { name, expected: expected.to_vec(), found: found.to_vec() }
}

#[test]
fn labels_shorter_or_longer_than_the_batch_are_a_shape_mismatch() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0]));
    assert_eq!(err, shape("labels", &[2], &[1]));
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1, 2]));
    assert_eq!(err, shape("labels", &[2], &[3]));
    assert_eq!(err.to_string(), "labels has shape [3], expected [2]");
}

#[test]
fn probability_targets_of_the_wrong_shape_are_a_shape_mismatch() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    let too_few_classes = mat::<f64>(&[&[0.5, 0.5], &[1.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&too_few_classes));
    assert_eq!(err, shape("targets", &[2, 3], &[2, 2]));
    let too_many_rows = mat::<f64>(&[&[1.0, 0.0, 0.0], &[1.0, 0.0, 0.0], &[1.0, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&too_many_rows));
    assert_eq!(err, shape("targets", &[2, 3], &[3, 3]));
    let transposed = mat::<f64>(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&transposed));
    assert_eq!(err, shape("targets", &[2, 3], &[3, 2]));
}

fn sample_weights_length_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    let weights = vector::<F>(&[1.0]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1]).with_sample_weights(&weights));
    assert_eq!(err, shape("sample_weights", &[2], &[1]));
    let weights = vector::<F>(&[1.0, 1.0, 1.0]);
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 0.0, 1.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs).with_sample_weights(&weights));
    assert_eq!(err, shape("sample_weights", &[2], &[3]));
}

#[test]
fn sample_weights_of_the_wrong_length_are_a_shape_mismatch_f64() {
    sample_weights_length_case::<f64>();
}

#[test]
fn sample_weights_of_the_wrong_length_are_a_shape_mismatch_f32() {
    sample_weights_length_case::<f32>();
}

fn grad_out_shape_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    let sentinel = F::from_f64(SENTINEL);
    for dims in [(3, 2), (2, 4), (1, 3), (0, 0)] {
        let mut grad = Array2::from_elem(dims, sentinel);
        let err = ce().loss_and_grad_into(&logits, &[0, 1], &mut grad).unwrap_err();
        assert_eq!(err, shape("grad_out", &[2, 3], &[dims.0, dims.1]));
        assert!(untouched(&grad));

        let mut losses = Array1::from_elem(2, sentinel);
        let err = ce().per_sample_loss_and_grad_into(&logits, &[0, 1], &mut losses, &mut grad).unwrap_err();
        assert_eq!(err, shape("grad_out", &[2, 3], &[dims.0, dims.1]));
        assert!(untouched(&grad) && untouched(&losses), "losses_out written before the grad_out check");
    }
}

#[test]
fn grad_out_of_the_wrong_shape_is_a_shape_mismatch_and_stays_untouched_f64() {
    grad_out_shape_case::<f64>();
}

#[test]
fn grad_out_of_the_wrong_shape_is_a_shape_mismatch_and_stays_untouched_f32() {
    grad_out_shape_case::<f32>();
}

#[test]
fn losses_out_of_the_wrong_length_is_a_shape_mismatch_and_nothing_is_written() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    for len in [0, 1, 3] {
        let mut losses = Array1::from_elem(len, SENTINEL);
        let mut grad = Array2::from_elem((2, 3), SENTINEL);
        let err = ce().per_sample_loss_and_grad_into(&logits, &[0, 1], &mut losses, &mut grad).unwrap_err();
        assert_eq!(err, shape("losses_out", &[2], &[len]));
        assert!(untouched(&grad) && untouched(&losses));
    }
}

#[test]
fn prior_of_the_wrong_length_is_a_shape_mismatch_at_call_time() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    // The builder can't know K: it accepts the prior, and each call checks it.
    let loss = SoftmaxLoss::logit_adjusted(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(fail_everywhere(&loss, &logits, Targets::labels(&[0, 1])), shape("prior", &[2], &[3]));
    let loss = ce::<f64>().with_logit_adjustment(&[1.0], -0.5).unwrap();
    assert_eq!(fail_everywhere(&loss, &logits, Targets::labels(&[0, 1])), shape("prior", &[2], &[1]));
}

#[test]
fn class_weights_of_the_wrong_length_are_a_shape_mismatch_at_call_time() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    let loss = SoftmaxLoss::class_weighted(&[1.0, 2.0, 3.0]).unwrap();
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[0, 1]));
    assert_eq!(err, shape("class_weights", &[2], &[3]));
    let probs = mat::<f64>(&[&[0.5, 0.5], &[1.0, 0.0]]);
    let loss = SoftmaxLoss::class_weighted(&[1.0]).unwrap();
    assert_eq!(fail_everywhere(&loss, &logits, Targets::probs(&probs)), shape("class_weights", &[2], &[1]));
}

#[test]
fn alpha_of_the_wrong_length_is_a_shape_mismatch_at_call_time() {
    let logits = mat::<f32>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    let loss = SoftmaxLoss::focal(2.0).unwrap().with_alpha(&[0.25_f32, 0.25, 0.5]).unwrap();
    assert_eq!(fail_everywhere(&loss, &logits, Targets::labels(&[0, 1])), shape("alpha", &[2], &[3]));
}

#[test]
fn per_class_parameter_lengths_are_checked_before_labels_and_data() {
    // A NaN logit, a bad label and a short labels slice: the prior length is still reported first.
    let logits = mat::<f64>(&[&[NAN, 1.0], &[1.0, 0.0]]);
    let loss = SoftmaxLoss::logit_adjusted(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(fail_everywhere(&loss, &logits, Targets::labels(&[7])), shape("prior", &[2], &[3]));
}

// ---------------------------------------------------------------------------------------------
// LabelOutOfRange
// ---------------------------------------------------------------------------------------------

fn label_out_of_range_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0], &[0.5, 0.5, 0.5]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 2, 3]));
    assert_eq!(err, Error::LabelOutOfRange { row: 2, label: 3, classes: 3 });
    assert_eq!(err.to_string(), "label 3 at row 2 is not a class index 0..3");
}

#[test]
fn label_equal_to_the_class_count_is_out_of_range_f64() {
    label_out_of_range_case::<f64>();
}

#[test]
fn label_equal_to_the_class_count_is_out_of_range_f32() {
    label_out_of_range_case::<f32>();
}

#[test]
fn the_first_out_of_range_label_in_row_order_is_reported() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0], &[0.5, 0.5]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[1, usize::MAX, 2]));
    assert_eq!(err, Error::LabelOutOfRange { row: 1, label: usize::MAX, classes: 2 });
}

#[test]
fn an_out_of_range_label_is_reported_even_in_a_row_of_zero_sample_weight() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    let targets = Targets::labels(&[0, 5]).with_sample_weights(&[1.0, 0.0]);
    assert_eq!(
        fail_everywhere(&ce(), &logits, targets),
        Error::LabelOutOfRange { row: 1, label: 5, classes: 2 }
    );
}

// ---------------------------------------------------------------------------------------------
// NonFiniteLogit
// ---------------------------------------------------------------------------------------------

fn nan_logit_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, NAN]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1]));
    assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 2, value } if value.is_nan()), "{err:?}");
    assert_eq!(
        err.to_string(),
        "logit at row 1, class 2 is NaN (NaN and +inf are not allowed; -inf masks a class)"
    );
}

#[test]
fn nan_logit_is_non_finite_logit_f64() {
    nan_logit_case::<f64>();
}

#[test]
fn nan_logit_is_non_finite_logit_f32() {
    nan_logit_case::<f32>();
}

fn pos_inf_logit_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, INF, 2.0], &[1.0, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[1, 1]));
    assert_eq!(err, Error::NonFiniteLogit { row: 0, class: 1, value: INF });
    assert_eq!(
        err.to_string(),
        "logit at row 0, class 1 is inf (NaN and +inf are not allowed; -inf masks a class)"
    );
}

#[test]
fn pos_inf_logit_is_non_finite_logit_f64() {
    pos_inf_logit_case::<f64>();
}

#[test]
fn pos_inf_logit_is_non_finite_logit_f32() {
    pos_inf_logit_case::<f32>();
}

#[test]
fn the_first_non_finite_logit_in_row_major_order_is_reported() {
    let logits = mat::<f64>(&[&[0.0, NEG_INF, 2.0], &[3.0, INF, NAN], &[NAN, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 0, 1]));
    assert_eq!(err, Error::NonFiniteLogit { row: 1, class: 1, value: INF });
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[3.0, 4.0, NAN], &[INF, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 0, 1]));
    assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 2, value } if value.is_nan()), "{err:?}");
}

#[test]
fn a_non_finite_logit_is_reported_even_in_a_row_of_zero_sample_weight() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[INF, 0.0]]);
    let targets = Targets::labels(&[0, 1]).with_sample_weights(&[1.0, 0.0]);
    assert_eq!(
        fail_everywhere(&ce(), &logits, targets),
        Error::NonFiniteLogit { row: 1, class: 0, value: INF }
    );
}

#[test]
fn finite_logit_overflowing_to_pos_inf_once_adjusted_is_an_overflow_f64() {
    // τ < 0 makes the adjustment τ·log(π/Σπ) = 1e300·ln 2 > 0, more than half an ulp of f64::MAX.
    let loss = ce::<f64>().with_logit_adjustment(&[1.0, 1.0], -1e300).unwrap();
    assert!(loss.logit_adjustment().unwrap().iter().all(|&a| a > 0.0 && a.is_finite()));
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, f64::MAX], &[f64::MAX, 0.0]]);
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[0, 1, 0]));
    assert_eq!(err, overflow(1, 1, f64::MAX));
}

#[test]
fn finite_logit_overflowing_to_pos_inf_once_adjusted_is_an_overflow_f32() {
    // Adjustment 1e32·ln 2 ≈ 6.9e31 exceeds half an ulp of f32::MAX (≈ 1.0e31).
    let loss = ce::<f32>().with_logit_adjustment(&[1.0, 1.0], -1e32).unwrap();
    let logits = mat::<f32>(&[&[0.0, 1.0], &[f64::from(f32::MAX), 0.0]]);
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[0, 1]));
    assert_eq!(err, overflow(1, 0, f64::from(f32::MAX)));
}

#[test]
fn the_largest_finite_logit_is_accepted_without_adjustment_or_with_a_non_positive_one() {
    let logits = mat::<f64>(&[&[f64::MAX, 0.0], &[0.0, f64::MAX]]);
    let (value, losses, grad) = succeed_everywhere(&ce(), &logits, Targets::labels(&[0, 0]));
    assert!(value.is_finite() && losses.iter().all(|l| l.is_finite()) && grad.iter().all(|g| g.is_finite()));
    // τ > 0: the adjustment is ≤ 0, so nothing overflows.
    let loss = ce::<f64>().with_logit_adjustment(&[1.0, 1e-300], 1e300).unwrap();
    let (value, _, grad) = succeed_everywhere(&loss, &logits, Targets::labels(&[0, 0]));
    assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()));
}

#[test]
fn neg_inf_logit_is_a_mask_not_a_non_finite_logit_even_when_adjusted() {
    let loss = ce::<f64>().with_logit_adjustment(&[1.0, 3.0], -2.0).unwrap();
    let logits = mat::<f64>(&[&[NEG_INF, 0.5], &[1.0, 0.0]]);
    let (value, _, grad) = succeed_everywhere(&loss, &logits, Targets::labels(&[1, 0]));
    assert!(value.is_finite());
    assert_eq!(grad[[0, 0]], 0.0);
}

/// A NaN (`NonFiniteLogit`) and a logit that overflows once adjusted (`Overflow`): the first one
/// in row-major order is reported, whichever kind it is.
#[test]
fn an_adjusted_overflow_before_a_nan_in_row_major_order_is_reported_first() {
    let loss = ce::<f64>().with_logit_adjustment(&[1.0, 1.0], -1e300).unwrap();
    let logits = mat::<f64>(&[&[f64::MAX, 0.0], &[NAN, 0.0]]);
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[0, 1]));
    assert_eq!(err, overflow(0, 0, f64::MAX));
}

/// The error of a finite logit that the logit adjustment pushes out of range.
fn overflow(row: usize, class: usize, value: f64) -> Error {
    Error::Overflow { what: "logit + adjustment", row: Some(row), class: Some(class), value: Some(value) }
}

#[test]
fn finite_logit_overflowing_to_neg_inf_once_adjusted_is_an_overflow_not_a_mask() {
    // τ > 0: the adjustment τ·log(π/Σπ) = −1e300·ln 2 pushes −MAX below the range.
    let loss = ce::<f64>().with_logit_adjustment(&[1.0, 1.0], 1e300).unwrap();
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, -f64::MAX]]);
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[0, 0]));
    assert_eq!(err, overflow(1, 1, -f64::MAX));
    assert_eq!(
        err.to_string(),
        "logit + adjustment overflows at row 1, class 1 (from -1.7976931348623157e308): the result is beyond the range of its type"
    );
}

// ---------------------------------------------------------------------------------------------
// MaskedTarget, and the masks that are not errors
// ---------------------------------------------------------------------------------------------

fn masked_label_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[NEG_INF, 0.0, NEG_INF], &[1.0, NEG_INF, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1, 1]));
    assert_eq!(err, Error::MaskedTarget { row: 2, class: 1 });
    assert_eq!(
        err.to_string(),
        "row 2 puts target mass on class 1, whose logit is -inf: the loss is infinite"
    );
    // Also with focal modulation, logit adjustment and class weights on top.
    let loss = SoftmaxLoss::logit_adjusted(vector::<F>(&[5.0, 3.0, 1.0]))
        .unwrap()
        .with_focal(F::from_f64(2.0))
        .unwrap()
        .with_class_weights(vector::<F>(&[1.0, 2.0, 0.5]))
        .unwrap();
    assert_eq!(
        fail_everywhere(&loss, &logits, Targets::labels(&[0, 1, 1])),
        Error::MaskedTarget { row: 2, class: 1 }
    );
}

#[test]
fn hard_label_whose_logit_is_neg_inf_is_masked_target_f64() {
    masked_label_case::<f64>();
}

#[test]
fn hard_label_whose_logit_is_neg_inf_is_masked_target_f32() {
    masked_label_case::<f32>();
}

#[test]
fn label_smoothing_with_any_neg_inf_logit_in_a_counted_row_is_masked_target() {
    let loss = ce::<f64>().with_label_smoothing(0.1).unwrap();
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[0.0, NEG_INF, 1.0], &[NEG_INF, NEG_INF, 0.0]]);
    // Row 1's masked class 1 is not its label, but smoothing gives it mass ε/K.
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[2, 0, 2]));
    assert_eq!(err, Error::MaskedTarget { row: 1, class: 1 });
    // The same with probability targets that put no mass on the masked class.
    let probs = mat::<f64>(&[&[1.0, 0.0, 0.0], &[0.5, 0.0, 0.5], &[0.0, 0.0, 1.0]]);
    assert_eq!(
        fail_everywhere(&loss, &logits, Targets::probs(&probs)),
        Error::MaskedTarget { row: 1, class: 1 }
    );
}

#[test]
fn the_first_masked_target_in_row_major_order_is_reported() {
    let loss = ce::<f64>().with_label_smoothing(0.3).unwrap();
    let logits =
        mat::<f64>(&[&[0.0, 1.0, 2.0, 3.0], &[0.0, 1.0, NEG_INF, NEG_INF], &[NEG_INF, 0.0, 0.0, 0.0]]);
    let err = fail_everywhere(&loss, &logits, Targets::labels(&[0, 0, 1]));
    assert_eq!(err, Error::MaskedTarget { row: 1, class: 2 });
}

#[test]
fn probability_target_with_mass_on_a_neg_inf_class_is_masked_target() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[0.0, NEG_INF, 1.0]]);
    let probs = mat::<f64>(&[&[0.2, 0.3, 0.5], &[0.5, 0.25, 0.25]]);
    assert_eq!(
        fail_everywhere(&ce(), &logits, Targets::probs(&probs)),
        Error::MaskedTarget { row: 1, class: 1 }
    );
    // A tiny mass counts too.
    let probs = mat::<f64>(&[&[0.2, 0.3, 0.5], &[0.5, 1e-300, 0.5]]);
    assert_eq!(
        fail_everywhere(&ce(), &logits, Targets::probs(&probs)),
        Error::MaskedTarget { row: 1, class: 1 }
    );
}

#[test]
fn probability_target_with_zero_mass_on_a_neg_inf_class_is_accepted() {
    let logits = mat::<f64>(&[&[0.0, NEG_INF, 2.0]]);
    let probs = mat::<f64>(&[&[0.25, 0.0, 0.75]]);
    let (value, _, grad) = succeed_everywhere(&ce(), &logits, Targets::probs(&probs));
    // Equals the loss with the masked column dropped.
    let dropped = ce::<f64>().loss(&mat::<f64>(&[&[0.0, 2.0]]), &mat::<f64>(&[&[0.25, 0.75]])).unwrap();
    assert!((value - dropped).abs() <= 1e-15 * dropped, "{value} vs {dropped}");
    assert_eq!(grad[[0, 1]], 0.0);
}

fn masked_non_target_case<F: Float>() {
    let logits = mat::<F>(&[&[0.5, NEG_INF, 2.0], &[NEG_INF, 1.0, NEG_INF]]);
    for loss in [
        ce::<F>(),
        SoftmaxLoss::focal(F::from_f64(2.0)).unwrap(),
        SoftmaxLoss::logit_adjusted(vector::<F>(&[10.0, 1.0, 3.0])).unwrap(),
    ] {
        let (value, losses, grad) = succeed_everywhere(&loss, &logits, Targets::labels(&[0, 1]));
        assert!(value.is_finite(), "{loss:?}: loss {value}");
        assert!(losses.iter().all(|l| l.is_finite()), "{loss:?}: losses {losses:?}");
        assert!(grad.iter().all(|g| g.is_finite()), "{loss:?}: gradient {grad:?}");
        for (i, j) in [(0, 1), (1, 0), (1, 2)] {
            assert_eq!(grad[[i, j]], F::zero(), "{loss:?}: gradient at masked ({i}, {j})");
        }
        // Row 1 has a single live class, its label: p = 1, loss 0, gradient 0.
        assert_eq!(losses[1], F::zero());
        assert!(grad.row(1).iter().all(|&g| g == F::zero()));
    }
    // The value equals cross-entropy with the masked column dropped.
    let (_, losses, _) = succeed_everywhere(&ce(), &logits, Targets::labels(&[0, 1]));
    let dropped = ce::<F>().per_sample_loss(&mat::<F>(&[&[0.5, 2.0]]), &[0]).unwrap();
    let tol = 4.0 * F::epsilon().as_f64();
    assert!((losses[0].as_f64() - dropped[0].as_f64()).abs() <= tol * dropped[0].as_f64());
}

#[test]
fn neg_inf_logit_on_a_non_target_class_gives_finite_loss_and_zero_gradient_there_f64() {
    masked_non_target_case::<f64>();
}

#[test]
fn neg_inf_logit_on_a_non_target_class_gives_finite_loss_and_zero_gradient_there_f32() {
    masked_non_target_case::<f32>();
}

#[test]
fn a_row_of_zero_sample_weight_may_have_its_target_masked() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[NEG_INF, 1.0], &[NEG_INF, NEG_INF]]);
    let weights = [2.0, 0.0, 0.0];
    let labels = [1, 0, 0];
    let mut grad = Array2::from_elem((3, 2), SENTINEL);
    ce::<f64>()
        .loss_and_grad_into(&logits, Targets::labels(&labels).with_sample_weights(&weights), &mut grad)
        .expect("a row that does not count may mask its target");
    assert!(grad.slice(ndarray::s![1.., ..]).iter().all(|&g| g == 0.0), "{grad:?}");
    // Smoothed hard labels and probability targets too.
    let smoothed = ce::<f64>().with_label_smoothing(0.1).unwrap();
    smoothed.loss_and_grad(&logits, Targets::labels(&labels).with_sample_weights(&weights)).unwrap();
    let probs = mat::<f64>(&[&[0.5, 0.5], &[1.0, 0.0], &[0.5, 0.5]]);
    let (value, grad) =
        ce::<f64>().loss_and_grad(&logits, Targets::probs(&probs).with_sample_weights(&weights)).unwrap();
    assert!(value.is_finite());
    assert!(grad.slice(ndarray::s![1.., ..]).iter().all(|&g| g == 0.0), "{grad:?}");
}

/// The row doesn't count, so the loss must be that of the rows that do (a naive kernel computes
/// `0·(-inf) = NaN` for it).
#[test]
fn a_row_of_zero_sample_weight_with_a_masked_target_adds_nothing_to_the_loss() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[NEG_INF, 1.0]]);
    let targets = Targets::labels(&[1, 0]).with_sample_weights(&[1.0, 0.0]);
    let (value, grad) = ce::<f64>().loss_and_grad(&logits, targets.clone()).unwrap();
    let expected = ce::<f64>().loss(&mat::<f64>(&[&[0.0, 1.0]]), &[1]).unwrap();
    assert_eq!(value, expected);
    assert!(grad.row(1).iter().all(|&g| g == 0.0));
    let losses = ce::<f64>().per_sample_loss(&logits, targets).unwrap();
    assert_eq!(losses[1], 0.0);
}

#[test]
fn a_class_of_zero_class_weight_may_be_masked_even_when_it_is_the_label() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[1.0, NEG_INF, 0.0]]);
    let loss = SoftmaxLoss::class_weighted(&[1.0, 0.0, 2.0]).unwrap();
    let mut grad = Array2::from_elem((2, 3), SENTINEL);
    loss.loss_and_grad_into(&logits, &[0, 1], &mut grad).expect("a label of weight 0 may be masked");
    assert!(grad.row(1).iter().all(|&g| g == 0.0), "{grad:?}");
    // The class factor is w·α: α = 0 on the masked label is fine as well.
    let loss = SoftmaxLoss::focal(2.0).unwrap().with_alpha(&[0.5, 0.0, 0.5]).unwrap();
    loss.loss_and_grad(&logits, &[0, 1]).expect("a label of alpha 0 may be masked");
    // With smoothing every class with a positive weight carries mass; weight 0 on the masked one.
    let loss = SoftmaxLoss::class_weighted(&[1.0, 0.0, 2.0]).unwrap().with_label_smoothing(0.2).unwrap();
    let (value, grad) = loss.loss_and_grad(&logits, &[0, 2]).expect("masked class of weight 0");
    assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()));
    assert_eq!(grad[[1, 1]], 0.0);
}

/// The weighted mean divides by `Σ w_{y_i}` = 1 here, so the loss must be row 0's alone: the
/// masked label of weight 0 must not contribute `0·(-inf) = NaN`.
#[test]
fn a_masked_label_of_zero_class_weight_adds_nothing_to_the_loss() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[1.0, NEG_INF, 0.0]]);
    let loss = SoftmaxLoss::class_weighted(&[1.0, 0.0, 2.0]).unwrap();
    let value = loss.loss(&logits, &[0, 1]).unwrap();
    let expected = ce::<f64>().loss(&mat::<f64>(&[&[0.0, 1.0, 2.0]]), &[0]).unwrap();
    assert_eq!(value, expected);
}

// ---------------------------------------------------------------------------------------------
// InvalidTarget and TargetSum
// ---------------------------------------------------------------------------------------------

fn invalid_target_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    let negative = mat::<F>(&[&[0.5, 0.5, 0.0], &[1.2, -0.2, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&negative));
    assert_eq!(err, Error::InvalidTarget { row: 1, class: 1, value: as_f::<F>(-0.2) });
    assert!(err.to_string().starts_with("probability target at row 1, class 1 is -0.2"), "{err}");

    let nan = mat::<F>(&[&[0.5, 0.5, 0.0], &[1.0, 0.0, NAN]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&nan));
    assert!(matches!(err, Error::InvalidTarget { row: 1, class: 2, value } if value.is_nan()), "{err:?}");

    let inf = mat::<F>(&[&[INF, 0.5, 0.0], &[1.0, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&inf));
    assert_eq!(err, Error::InvalidTarget { row: 0, class: 0, value: INF });
}

#[test]
fn negative_nan_or_infinite_probability_target_is_invalid_target_f64() {
    invalid_target_case::<f64>();
}

#[test]
fn negative_nan_or_infinite_probability_target_is_invalid_target_f32() {
    invalid_target_case::<f32>();
}

#[test]
fn invalid_target_is_reported_before_the_row_sum_and_in_row_major_order() {
    let logits = mat::<f64>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0], &[0.0, 0.0, 0.0]]);
    // Row 1 sums to 1 but holds a negative entry; row 2 holds a NaN after it.
    let probs = mat::<f64>(&[&[0.2, 0.3, 0.5], &[1.5, 0.0, -0.5], &[NAN, 0.0, 1.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert_eq!(err, Error::InvalidTarget { row: 1, class: 2, value: -0.5 });
    // A row that sums wrong comes before a later invalid entry: rows are checked in order.
    let probs = mat::<f64>(&[&[0.2, 0.3, 0.6], &[1.0, 0.0, -0.5], &[1.0, 0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert!(matches!(err, Error::TargetSum { row: 0, .. }), "{err:?}");
}

#[test]
fn invalid_target_is_reported_before_a_non_finite_logit_and_a_masked_target() {
    let logits = mat::<f64>(&[&[NAN, NEG_INF, 2.0]]);
    let probs = mat::<f64>(&[&[0.5, 0.6, -0.1]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert_eq!(err, Error::InvalidTarget { row: 0, class: 2, value: -0.1 });
}

#[test]
fn probability_row_summing_to_1_1_is_target_sum_with_sqrt_epsilon_tolerance() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    let probs = mat::<f64>(&[&[0.5, 0.5], &[0.6, 0.5]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    match err {
        Error::TargetSum { row: 1, sum, tolerance } => {
            assert!((sum - 1.1).abs() <= 2.0 * f64::EPSILON, "sum {sum}");
            assert_eq!(tolerance, f64::EPSILON.sqrt());
        }
        other => panic!("expected TargetSum at row 1, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("probability targets of row 1 sum to {}, not 1 (tolerance 1.4901161193847656e-8)", 0.6 + 0.5)
    );
    // Under-summing rows too.
    let probs = mat::<f64>(&[&[0.5, 0.4], &[0.5, 0.5]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert!(matches!(err, Error::TargetSum { row: 0, sum, .. } if (sum - 0.9).abs() < 1e-15), "{err:?}");
    // An all-zero row sums to 0.
    let probs = mat::<f64>(&[&[0.5, 0.5], &[0.0, 0.0]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert!(matches!(err, Error::TargetSum { row: 1, sum, .. } if sum == 0.0), "{err:?}");
}

#[test]
fn probability_row_summing_to_1_plus_1e_9_is_accepted_in_f64_but_1_plus_1e_7_is_not() {
    let logits = mat::<f64>(&[&[0.0, 1.0]]);
    let probs = mat::<f64>(&[&[0.5, 0.5 + 1e-9]]);
    succeed_everywhere(&ce(), &logits, Targets::probs(&probs));
    let probs = mat::<f64>(&[&[0.5, 0.5 - 1e-9]]);
    succeed_everywhere(&ce(), &logits, Targets::probs(&probs));
    let probs = mat::<f64>(&[&[0.5, 0.5 + 1e-7]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert!(
        matches!(err, Error::TargetSum { row: 0, sum, tolerance }
            if (sum - (1.0 + 1e-7)).abs() < 1e-15 && tolerance == f64::EPSILON.sqrt()),
        "{err:?}"
    );
}

#[test]
fn probability_row_summing_to_1_plus_1e_3_is_rejected_in_f32_but_1_plus_1e_4_is_accepted() {
    let logits = mat::<f32>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    let probs = mat::<f32>(&[&[0.5, 0.5], &[0.5, 0.501]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    let expected_sum = 0.5 + f64::from(0.501_f32);
    assert!(
        matches!(err, Error::TargetSum { row: 1, sum, tolerance }
            if sum == expected_sum && tolerance == f64::from(f32::EPSILON.sqrt())),
        "{err:?}"
    );
    assert!((f64::from(f32::EPSILON.sqrt()) - 3.4526698e-4).abs() < 1e-10);
    let probs = mat::<f32>(&[&[0.5, 0.5], &[0.5, 0.5001]]);
    succeed_everywhere(&ce(), &logits, Targets::probs(&probs));
}

/// The fast scan sums a row in f32 lanes and leaves rows near the tolerance to the exact f64 sum:
/// a long row just inside the tolerance passes, one just outside is rejected.
#[test]
fn long_f32_rows_near_the_tolerance_are_decided_by_the_exact_sum() {
    let classes = 2 * 4096 + 7;
    let tolerance = f64::from(f32::EPSILON.sqrt());
    let logits = ndarray::Array2::<f32>::zeros((1, classes));
    for (share, accepted) in [(0.98, true), (1.02, false)] {
        let probs =
            ndarray::Array2::from_elem((1, classes), ((1.0 + share * tolerance) / classes as f64) as f32);
        if accepted {
            succeed_everywhere(&ce(), &logits, Targets::probs(&probs));
        } else {
            let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
            assert!(matches!(err, Error::TargetSum { row: 0, .. }), "{err:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// InvalidSampleWeight
// ---------------------------------------------------------------------------------------------

fn invalid_sample_weight_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0], &[1.0, 0.0], &[2.0, 2.0]]);
    let weights = vector::<F>(&[1.0, -0.5, NAN]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1, 1]).with_sample_weights(&weights));
    assert_eq!(err, Error::InvalidSampleWeight { row: 1, value: -0.5 });
    assert_eq!(err.to_string(), "sample weight at row 1 is -0.5; it must be finite and >= 0");

    let weights = vector::<F>(&[1.0, 0.0, NAN]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1, 1]).with_sample_weights(&weights));
    assert!(matches!(err, Error::InvalidSampleWeight { row: 2, value } if value.is_nan()), "{err:?}");

    let weights = vector::<F>(&[INF, 1.0, 1.0]);
    let probs = mat::<F>(&[&[1.0, 0.0], &[0.0, 1.0], &[0.5, 0.5]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs).with_sample_weights(&weights));
    assert_eq!(err, Error::InvalidSampleWeight { row: 0, value: INF });
}

#[test]
fn negative_nan_or_infinite_sample_weight_is_invalid_sample_weight_f64() {
    invalid_sample_weight_case::<f64>();
}

#[test]
fn negative_nan_or_infinite_sample_weight_is_invalid_sample_weight_f32() {
    invalid_sample_weight_case::<f32>();
}

#[test]
fn invalid_sample_weight_is_reported_before_labels_and_logits() {
    let logits = mat::<f64>(&[&[NAN, 1.0], &[1.0, 0.0]]);
    let targets = Targets::labels(&[9, 1]).with_sample_weights(&[1.0, -1.0]);
    assert_eq!(fail_everywhere(&ce(), &logits, targets), Error::InvalidSampleWeight { row: 1, value: -1.0 });
}

// ---------------------------------------------------------------------------------------------
// InvalidParameter
// ---------------------------------------------------------------------------------------------

/// Asserts `result` is `InvalidParameter` with this name, index and value (NaN matches NaN).
fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, Error>,
    name: &str,
    index: Option<usize>,
    value: f64,
) -> Error {
    let err = result.unwrap_err();
    match &err {
        Error::InvalidParameter { name: n, index: i, value: v, expected } => {
            assert_eq!((*n, *i), (name, index), "{err:?}");
            assert!(v.to_bits() == value.to_bits() || (v.is_nan() && value.is_nan()), "{err:?}");
            assert!(!expected.is_empty());
        }
        other => panic!("expected InvalidParameter {name}, got {other:?}"),
    }
    err
}

fn invalid_gamma_case<F: Float>() {
    for gamma in [-1.0, -1e-30, NAN, INF, NEG_INF] {
        let g = F::from_f64(gamma);
        assert_invalid(SoftmaxLoss::<F>::focal(g), "gamma", None, as_f::<F>(gamma));
        assert_invalid(ce::<F>().with_focal(g), "gamma", None, as_f::<F>(gamma));
    }
    assert!(SoftmaxLoss::<F>::focal(F::zero()).is_ok());
}

#[test]
fn negative_nan_or_infinite_gamma_is_invalid_parameter_f64() {
    invalid_gamma_case::<f64>();
    let err = SoftmaxLoss::<f64>::focal(-1.0).unwrap_err();
    assert_eq!(
        err,
        Error::InvalidParameter {
            name: "gamma",
            index: None,
            value: -1.0,
            expected: "in [0, eps / MIN_POSITIVE] (1e31 in f32, 1e292 in f64)"
        }
    );
    assert_eq!(
        err.to_string(),
        "gamma is -1; expected in [0, eps / MIN_POSITIVE] (1e31 in f32, 1e292 in f64)"
    );
}

#[test]
fn negative_nan_or_infinite_gamma_is_invalid_parameter_f32() {
    invalid_gamma_case::<f32>();
}

fn invalid_smoothing_case<F: Float>() {
    for eps in [-0.1, 1.0, 1.5, NAN, INF] {
        assert_invalid(
            ce::<F>().with_label_smoothing(F::from_f64(eps)),
            "label_smoothing",
            None,
            as_f::<F>(eps),
        );
    }
    assert!(ce::<F>().with_label_smoothing(F::zero()).is_ok());
    assert!(ce::<F>().with_label_smoothing(F::from_f64(0.999)).is_ok());
}

#[test]
fn label_smoothing_outside_zero_to_one_is_invalid_parameter_f64() {
    invalid_smoothing_case::<f64>();
    assert_eq!(
        ce::<f64>().with_label_smoothing(1.0).unwrap_err(),
        Error::InvalidParameter { name: "label_smoothing", index: None, value: 1.0, expected: "in [0, 1)" }
    );
}

#[test]
fn label_smoothing_outside_zero_to_one_is_invalid_parameter_f32() {
    invalid_smoothing_case::<f32>();
}

#[test]
fn nan_or_infinite_tau_is_invalid_parameter() {
    for tau in [NAN, INF, NEG_INF] {
        assert_invalid(ce::<f64>().with_logit_adjustment(&[1.0, 2.0], tau), "tau", None, tau);
        // τ is checked before the prior.
        assert_invalid(ce::<f64>().with_logit_adjustment(&[-1.0, 2.0], tau), "tau", None, tau);
        assert_invalid(ce::<f32>().with_logit_adjustment(&[1.0, 2.0], tau as f32), "tau", None, tau);
    }
    assert_eq!(
        ce::<f64>().with_logit_adjustment(&[1.0, 2.0], INF).unwrap_err().to_string(),
        "tau is inf; expected a finite number"
    );
}

#[test]
fn negative_or_nan_prior_is_invalid_parameter_with_its_index() {
    assert_invalid(SoftmaxLoss::<f64>::logit_adjusted(&[1.0, -2.0, -3.0]), "prior", Some(1), -2.0);
    assert_invalid(SoftmaxLoss::<f64>::logit_adjusted(&[1.0, 2.0, NAN]), "prior", Some(2), NAN);
    assert_invalid(SoftmaxLoss::<f64>::logit_adjusted(&[INF, 2.0]), "prior", Some(0), INF);
    assert_invalid(SoftmaxLoss::<f32>::logit_adjusted(&[1.0, 2.0, f32::NAN]), "prior", Some(2), NAN);
    // With τ = 0 too: the prior must still be finite and non-negative.
    assert_invalid(ce::<f64>().with_logit_adjustment(&[1.0, -2.0], 0.0), "prior", Some(1), -2.0);
    assert_invalid(ce::<f64>().with_logit_adjustment(&[NAN, 2.0], 0.0), "prior", Some(0), NAN);
}

#[test]
fn zero_prior_is_invalid_parameter_when_tau_is_nonzero() {
    let err = assert_invalid(SoftmaxLoss::<f64>::logit_adjusted(&[3.0, 0.0, 1.0]), "prior", Some(1), 0.0);
    assert_eq!(
        err,
        Error::InvalidParameter {
            name: "prior",
            index: Some(1),
            value: 0.0,
            expected: "finite and > 0 when tau != 0 (smooth zero counts first)",
        }
    );
    assert_eq!(
        err.to_string(),
        "prior[1] is 0; expected finite and > 0 when tau != 0 (smooth zero counts first)"
    );
    assert_invalid(ce::<f64>().with_logit_adjustment(&[0.0, 1.0], -0.5), "prior", Some(0), 0.0);
    assert_invalid(ce::<f32>().with_logit_adjustment(&[1.0, 0.0], 2.0), "prior", Some(1), 0.0);
}

#[test]
fn zero_prior_is_accepted_when_tau_is_zero_and_means_no_adjustment() {
    let loss = ce::<f64>().with_logit_adjustment(&[3.0, 0.0, 1.0], 0.0).expect("τ = 0 accepts a zero prior");
    assert!(loss.logit_adjustment().is_none());
    let logits = mat::<f64>(&[&[0.5, -1.0, 2.0]]);
    assert_eq!(loss.loss(&logits, &[1]).unwrap(), ce::<f64>().loss(&logits, &[1]).unwrap());
}

#[test]
fn negative_or_infinite_class_weight_is_invalid_parameter_with_its_index() {
    assert_invalid(SoftmaxLoss::<f64>::class_weighted(&[1.0, 2.0, -0.5]), "class_weights", Some(2), -0.5);
    assert_invalid(ce::<f64>().with_class_weights(&[INF, 2.0]), "class_weights", Some(0), INF);
    assert_invalid(ce::<f64>().with_class_weights(&[1.0, NAN]), "class_weights", Some(1), NAN);
    assert_invalid(SoftmaxLoss::<f32>::class_weighted(&[1.0, f32::INFINITY]), "class_weights", Some(1), INF);
    assert!(SoftmaxLoss::<f64>::class_weighted(&[0.0, 0.0]).is_ok());
    let err = SoftmaxLoss::<f64>::class_weighted(&[1.0, 2.0, -0.5]).unwrap_err();
    assert_eq!(err.to_string(), "class_weights[2] is -0.5; expected finite and >= 0");
}

#[test]
fn negative_or_nan_alpha_is_invalid_parameter_with_its_index() {
    assert_invalid(ce::<f64>().with_alpha(&[0.25, -0.75]), "alpha", Some(1), -0.75);
    assert_invalid(ce::<f64>().with_alpha(&[NAN, 0.75]), "alpha", Some(0), NAN);
    assert_invalid(ce::<f64>().with_alpha(&[0.25, NEG_INF]), "alpha", Some(1), NEG_INF);
    assert_invalid(ce::<f32>().with_alpha(&[0.25, 0.5, -1.0]), "alpha", Some(2), -1.0);
    assert!(ce::<f64>().with_alpha(&[0.0, 1.0]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The softmax module
// ---------------------------------------------------------------------------------------------

fn softmax_out_shape_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, 0.0]]);
    let sentinel = F::from_f64(SENTINEL);
    for len in [0, 1, 3] {
        let mut out = Array1::from_elem(len, sentinel);
        assert_eq!(log_sum_exp_into(&logits, &mut out).unwrap_err(), shape("out", &[2], &[len]));
        assert!(untouched(&out));
    }
    for dims in [(3, 2), (2, 2), (2, 4), (0, 3)] {
        let mut out = Array2::from_elem(dims, sentinel);
        assert_eq!(softmax_into(&logits, &mut out).unwrap_err(), shape("out", &[2, 3], &[dims.0, dims.1]));
        assert_eq!(
            log_softmax_into(&logits, &mut out).unwrap_err(),
            shape("out", &[2, 3], &[dims.0, dims.1])
        );
        assert!(untouched(&out));
    }
}

#[test]
fn softmax_out_of_the_wrong_shape_is_shape_mismatch_out_f64() {
    softmax_out_shape_case::<f64>();
}

#[test]
fn softmax_out_of_the_wrong_shape_is_shape_mismatch_out_f32() {
    softmax_out_shape_case::<f32>();
}

/// Runs the six softmax functions on `logits`; returns their errors after checking that the
/// `_into` forms left their sentinel-filled outputs untouched.
fn softmax_errors<F: Float>(logits: &Array2<F>) -> [Result<(), Error>; 6] {
    let sentinel = F::from_f64(SENTINEL);
    let mut lse_out = Array1::from_elem(logits.nrows(), sentinel);
    let mut sm_out = Array2::from_elem(logits.raw_dim(), sentinel);
    let mut lsm_out = Array2::from_elem(logits.raw_dim(), sentinel);
    let results = [
        log_sum_exp(logits).map(drop),
        log_sum_exp_into(logits, &mut lse_out),
        softmax(logits).map(drop),
        softmax_into(logits, &mut sm_out),
        log_softmax(logits).map(drop),
        log_softmax_into(logits, &mut lsm_out),
    ];
    if results[1].is_err() {
        assert!(untouched(&lse_out), "log_sum_exp_into wrote on error: {lse_out:?}");
    }
    if results[3].is_err() {
        assert!(untouched(&sm_out), "softmax_into wrote on error: {sm_out:?}");
    }
    if results[5].is_err() {
        assert!(untouched(&lsm_out), "log_softmax_into wrote on error: {lsm_out:?}");
    }
    results
}

fn softmax_non_finite_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, NEG_INF, 2.0], &[1.0, 0.0, 0.0], &[3.0, NAN, INF]]);
    for (f, result) in softmax_errors(&logits).into_iter().enumerate() {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::NonFiniteLogit { row: 2, class: 1, value } if value.is_nan()),
            "#{f}: {err:?}"
        );
    }
    let logits = mat::<F>(&[&[0.0, NEG_INF, 2.0], &[1.0, INF, 0.0], &[3.0, NAN, INF]]);
    for (f, result) in softmax_errors(&logits).into_iter().enumerate() {
        assert_eq!(result.unwrap_err(), Error::NonFiniteLogit { row: 1, class: 1, value: INF }, "#{f}");
    }
}

#[test]
fn softmax_functions_report_the_first_nan_or_pos_inf_logit_f64() {
    softmax_non_finite_case::<f64>();
}

#[test]
fn softmax_functions_report_the_first_nan_or_pos_inf_logit_f32() {
    softmax_non_finite_case::<f32>();
}

fn fully_masked_case<F: Float>() {
    let logits = mat::<F>(&[&[0.0, NEG_INF, 2.0], &[NEG_INF, NEG_INF, NEG_INF], &[NEG_INF; 3]]);
    let results = softmax_errors(&logits);
    for f in [2, 3, 4, 5] {
        assert_eq!(results[f].clone().unwrap_err(), Error::FullyMasked { row: 1 }, "#{f}");
    }
    assert_eq!(
        Error::FullyMasked { row: 1 }.to_string(),
        "every logit of row 1 is -inf: its softmax is undefined"
    );
    // log-sum-exp of an all-masked row is the empty sum's log: -inf, not an error.
    let lse = log_sum_exp(&logits).expect("log_sum_exp accepts a fully masked row");
    assert_eq!(lse[1], F::neg_infinity());
    assert_eq!(lse[2], F::neg_infinity());
    let expected = (1.0 + (-2.0_f64).exp()).ln() + 2.0;
    assert!((lse[0].as_f64() - expected).abs() <= 2.0 * F::epsilon().as_f64() * expected);
    let mut out = Array1::from_elem(3, F::nan());
    log_sum_exp_into(&logits, &mut out).unwrap();
    assert_eq!(out, lse);
}

#[test]
fn fully_masked_row_is_an_error_for_softmax_but_neg_inf_for_log_sum_exp_f64() {
    fully_masked_case::<f64>();
}

#[test]
fn fully_masked_row_is_an_error_for_softmax_but_neg_inf_for_log_sum_exp_f32() {
    fully_masked_case::<f32>();
}

#[test]
fn a_single_class_fully_masked_row_is_fully_masked() {
    let logits = mat::<f64>(&[&[0.0], &[NEG_INF]]);
    assert_eq!(softmax(&logits).unwrap_err(), Error::FullyMasked { row: 1 });
    assert_eq!(log_softmax(&logits).unwrap_err(), Error::FullyMasked { row: 1 });
    assert_eq!(log_sum_exp(&logits).unwrap().to_vec(), vec![0.0, NEG_INF]);
}

// ---------------------------------------------------------------------------------------------
// Nothing is written on error: the offending entry is in the last row
// ---------------------------------------------------------------------------------------------

/// Three valid rows and a fourth that is wrong in some way: a loss that wrote row by row while
/// validating would have overwritten rows 0..3 of the sentinel buffers by the time it failed.
fn last_row_error_case<F: Float>() {
    let good: [&[f64]; 3] = [&[0.5, -1.0, 2.0], &[1.0, 0.0, 0.0], &[-0.3, 0.7, 0.1]];
    let with_last = |last: &'static [f64]| mat::<F>(&[good[0], good[1], good[2], last]);
    let labels = [0, 1, 2, 0];

    // NaN logit in the last row.
    let err = fail_everywhere(&ce(), &with_last(&[1.0, 2.0, NAN]), Targets::labels(&labels));
    assert!(matches!(err, Error::NonFiniteLogit { row: 3, class: 2, .. }), "{err:?}");
    // Masked target in the last row.
    let err = fail_everywhere(&ce(), &with_last(&[NEG_INF, 2.0, 1.0]), Targets::labels(&labels));
    assert_eq!(err, Error::MaskedTarget { row: 3, class: 0 });
    // Masked class under smoothing in the last row.
    let smoothed = ce::<F>().with_label_smoothing(F::from_f64(0.1)).unwrap();
    let err = fail_everywhere(&smoothed, &with_last(&[1.0, NEG_INF, 1.0]), Targets::labels(&labels));
    assert_eq!(err, Error::MaskedTarget { row: 3, class: 1 });
    // Adjusted overflow in the last row.
    let big = F::max_value().as_f64();
    let tau = -1e-7 * big; // 1e-7·MAX·ln 3 ≫ half an ulp of MAX
    let adjusted = ce::<F>().with_logit_adjustment(vector::<F>(&[1.0, 1.0, 1.0]), F::from_f64(tau)).unwrap();
    let logits = mat::<F>(&[good[0], good[1], good[2], &[0.0, big, 0.0]]);
    let err = fail_everywhere(&adjusted, &logits, Targets::labels(&labels));
    assert_eq!(err, overflow(3, 1, big));
    // Label out of range in the last row.
    let logits = with_last(&[1.0, 2.0, 3.0]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&[0, 1, 2, 3]));
    assert_eq!(err, Error::LabelOutOfRange { row: 3, label: 3, classes: 3 });
    // Invalid sample weight in the last row.
    let weights = vector::<F>(&[1.0, 1.0, 1.0, -1.0]);
    let err = fail_everywhere(&ce(), &logits, Targets::labels(&labels).with_sample_weights(&weights));
    assert_eq!(err, Error::InvalidSampleWeight { row: 3, value: -1.0 });
    // Target sum and invalid target in the last row.
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.25, 0.25, 0.5], &[0.5, 0.5, 0.5]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert!(matches!(err, Error::TargetSum { row: 3, .. }), "{err:?}");
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.25, 0.25, 0.5], &[0.5, 0.5, NAN]]);
    let err = fail_everywhere(&ce(), &logits, Targets::probs(&probs));
    assert!(matches!(err, Error::InvalidTarget { row: 3, class: 2, .. }), "{err:?}");
    // Probability mass on a masked class in the last row.
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.25, 0.25, 0.5], &[0.0, 0.5, 0.5]]);
    let err = fail_everywhere(&ce(), &with_last(&[1.0, 2.0, NEG_INF]), Targets::probs(&probs));
    assert_eq!(err, Error::MaskedTarget { row: 3, class: 2 });
}

#[test]
fn an_error_in_the_last_row_leaves_grad_out_and_losses_out_untouched_f64() {
    last_row_error_case::<f64>();
}

#[test]
fn an_error_in_the_last_row_leaves_grad_out_and_losses_out_untouched_f32() {
    last_row_error_case::<f32>();
}

#[test]
fn an_error_in_the_last_row_leaves_softmax_outputs_untouched() {
    let nan_last = mat::<f64>(&[&[0.0, 1.0], &[2.0, -1.0], &[0.5, NAN]]);
    for (f, result) in softmax_errors(&nan_last).into_iter().enumerate() {
        assert!(matches!(result, Err(Error::NonFiniteLogit { row: 2, class: 1, .. })), "#{f}: {result:?}");
    }
    let masked_last = mat::<f32>(&[&[0.0, 1.0], &[2.0, -1.0], &[NEG_INF, NEG_INF]]);
    let results = softmax_errors(&masked_last);
    assert!(results[0].is_ok() && results[1].is_ok());
    for (f, result) in results.iter().enumerate().skip(2) {
        assert_eq!(*result, Err(Error::FullyMasked { row: 2 }), "#{f}");
    }
}

#[test]
fn an_invalid_grad_out_with_valid_data_leaves_losses_out_untouched() {
    let logits = mat::<f64>(&[&[0.0, 1.0], &[2.0, -1.0]]);
    let mut losses = Array1::from_elem(2, SENTINEL);
    let mut grad = Array2::from_elem((2, 3), SENTINEL);
    let err = ce().per_sample_loss_and_grad_into(&logits, &[0, 1], &mut losses, &mut grad).unwrap_err();
    assert_eq!(err, shape("grad_out", &[2, 2], &[2, 3]));
    assert!(untouched(&losses) && untouched(&grad));
}

// ---------------------------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------------------------

#[test]
fn every_variants_display_is_nonempty_and_names_what_it_carries() {
    let cases: Vec<(Error, Vec<&str>)> = vec![
        (Error::EmptyBatch, vec!["empty", "zero rows"]),
        (Error::NoClasses, vec!["zero classes"]),
        (
            Error::ShapeMismatch { name: "sample_weights", expected: vec![4], found: vec![5] },
            vec!["sample_weights", "[5]", "[4]"],
        ),
        (
            Error::ShapeMismatch { name: "grad_out", expected: vec![2, 3], found: vec![3, 2] },
            vec!["grad_out", "[3, 2]", "[2, 3]"],
        ),
        (Error::LabelOutOfRange { row: 17, label: 42, classes: 9 }, vec!["row 17", "42", "0..9"]),
        (Error::NonFiniteLogit { row: 11, class: 23, value: NAN }, vec!["row 11", "class 23", "NaN"]),
        (Error::NonFiniteLogit { row: 12, class: 24, value: INF }, vec!["row 12", "class 24", "inf"]),
        (Error::MaskedTarget { row: 13, class: 25 }, vec!["row 13", "class 25", "-inf"]),
        (Error::FullyMasked { row: 14 }, vec!["row 14", "-inf"]),
        (Error::InvalidTarget { row: 15, class: 26, value: -0.25 }, vec!["row 15", "class 26", "-0.25"]),
        (Error::TargetSum { row: 16, sum: 1.5, tolerance: 1e-8 }, vec!["row 16", "1.5", "1e-8"]),
        (Error::InvalidSampleWeight { row: 18, value: -3.5 }, vec!["row 18", "-3.5"]),
        (
            Error::InvalidParameter { name: "gamma", index: None, value: -2.5, expected: "finite and >= 0" },
            vec!["gamma", "-2.5", "finite and >= 0"],
        ),
        (
            Error::InvalidParameter {
                name: "alpha",
                index: Some(7),
                value: NAN,
                expected: "finite and >= 0",
            },
            vec!["alpha[7]", "NaN", "finite and >= 0"],
        ),
        (
            Error::InvalidParameter { name: "prior", index: Some(0), value: 0.0, expected: "x" },
            vec!["prior[0]", "is 0"],
        ),
        (Error::PredictionOutOfRange { row: 19, prediction: 43, classes: 8 }, vec!["row 19", "43", "0..8"]),
        (Error::SingularMatrix { name: "confusion_matrix", column: 3 }, vec!["confusion_matrix", "column 3"]),
        (
            Error::TargetOutOfRange { row: 20, class: 27, value: 1.5, expected: "0 or 1" },
            vec!["row 20", "class 27", "1.5", "0 or 1"],
        ),
        (
            Error::UnsupportedTargets {
                loss: "LdamLoss",
                expected: "hard labels",
                found: "probability targets",
            },
            vec!["LdamLoss", "hard labels", "probability targets"],
        ),
    ];
    for (err, needles) in cases {
        let text = err.to_string();
        assert!(!text.is_empty(), "{err:?}");
        for needle in needles {
            assert!(text.contains(needle), "{err:?} displays as {text:?}, which lacks {needle:?}");
        }
        // The error type works as a boxed std error.
        let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
        assert_eq!(boxed.to_string(), text);
    }
}

#[test]
fn empty_batch_and_no_classes_display_their_exact_text() {
    assert_eq!(Error::EmptyBatch.to_string(), "the batch is empty (zero rows)");
    assert_eq!(Error::NoClasses.to_string(), "there are zero classes (zero columns, or K = 0)");
}

/// A finite τ can still make the adjustment `τ·log(π/Σπ)` overflow to `-inf` (here in the
/// f64 → f32 rounding of `1e37·ln(1e-30)`): the builder refuses it rather than let a call return
/// an infinite loss.
#[test]
fn a_finite_tau_whose_adjustment_overflows_is_refused_by_the_builder() {
    let err = ce::<f32>().with_logit_adjustment(&[1.0, 1e30], 1e37).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", index: None, .. }), "{err:?}");
}

/// The documented order: output shapes are checked with the other shapes, before any data.
#[test]
fn a_wrong_output_shape_is_reported_before_bad_data() {
    let logits = mat::<f64>(&[&[NAN, 0.0], &[1.0, 0.0]]);
    let mut grad = Array2::from_elem((3, 3), SENTINEL);
    let err = ce::<f64>().loss_and_grad_into(&logits, &[0, 1], &mut grad).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "grad_out", expected: vec![2, 2], found: vec![3, 3] });
    let mut losses = ndarray::Array1::from_elem(5, SENTINEL);
    let mut grad = Array2::from_elem((2, 2), SENTINEL);
    let err =
        ce::<f64>().per_sample_loss_and_grad_into(&logits, &[0, 1], &mut losses, &mut grad).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "losses_out", expected: vec![2], found: vec![5] });
    assert!(grad.iter().chain(&losses).all(|&v| v == SENTINEL));
}

/// Finiteness and masked targets are checked in one pass: whichever offending logit comes first
/// in row-major order is reported.
#[test]
fn the_first_offending_logit_in_row_major_order_is_reported_whatever_its_kind() {
    let masked_first = mat::<f64>(&[&[NEG_INF, 0.0], &[NAN, 0.0]]);
    let err = ce::<f64>().loss(&masked_first, &[0, 1]).unwrap_err();
    assert_eq!(err, Error::MaskedTarget { row: 0, class: 0 });
    let nan_first = mat::<f64>(&[&[0.0, NAN], &[NEG_INF, 0.0]]);
    let err = ce::<f64>().loss(&nan_first, &[0, 0]).unwrap_err();
    assert!(matches!(err, Error::NonFiniteLogit { row: 0, class: 1, value } if value.is_nan()));
}
