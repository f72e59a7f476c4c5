//! Golden values from PyTorch's `cross_entropy` (CPU, float64): class weights, label smoothing,
//! probability targets, ignored rows and logit adjustment.
//!
//! Produced by `tests/golden/generate_torch.py` (its docstring has the command and versions); the
//! output `tests/golden/torch_values.rs` is committed, so these tests need no Python.

#[rustfmt::skip] // generated: kept byte-identical to the script's output
#[path = "golden/torch_values.rs"]
mod torch_values;

use longtail::{Float, Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use torch_values::{CASES, Case};

fn loss_for<F: Float>(case: &Case) -> SoftmaxLoss<F> {
    let cast = |v: &[f64]| v.iter().map(|&x| F::from_f64(x)).collect::<Vec<F>>();
    let mut loss = SoftmaxLoss::<F>::cross_entropy()
        .with_label_smoothing(F::from_f64(case.label_smoothing))
        .unwrap()
        .with_reduction(if case.reduction == "sum" { Reduction::Sum } else { Reduction::Mean });
    if let Some(weights) = case.class_weights {
        loss = loss.with_class_weights(&cast(weights)).unwrap();
    }
    if let Some((prior, tau)) = case.prior_tau {
        loss = loss.with_logit_adjustment(&cast(prior), F::from_f64(tau)).unwrap();
    }
    loss
}

/// Runs a case through the crate in float type `F`: the loss (one value, or B for "none") and the
/// gradient, widened to f64.
fn run<F: Float>(case: &Case) -> (Vec<f64>, Array2<f64>) {
    let shape = (case.batch, case.classes);
    let logits = ArrayView2::from_shape(shape, case.logits).unwrap().mapv(F::from_f64);
    let probs = case.probs.map(|p| ArrayView2::from_shape(shape, p).unwrap().mapv(F::from_f64));
    let weights = case.sample_weights.map(|w| ArrayView1::from(w).mapv(F::from_f64));
    let mut targets = match (&probs, case.labels) {
        (Some(probs), _) => Targets::probs(probs),
        (None, Some(labels)) => Targets::labels(labels),
        (None, None) => unreachable!("a case has labels or probabilities"),
    };
    if let Some(weights) = &weights {
        targets = targets.with_sample_weights(weights);
    }
    let loss = loss_for::<F>(case);
    let (values, grad): (Array1<F>, Array2<F>) = if case.reduction == "none" {
        loss.per_sample_loss_and_grad(&logits, targets).unwrap()
    } else {
        let (value, grad) = loss.loss_and_grad(&logits, targets).unwrap();
        (Array1::from_elem(1, value), grad)
    };
    (values.iter().map(|v| v.as_f64()).collect(), grad.mapv(F::as_f64))
}

/// `max |a − b| / max(max |b|, floor)`.
fn relative_error(a: impl IntoIterator<Item = f64>, b: &[f64], floor: f64) -> f64 {
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
    a.into_iter().zip(b).fold(0.0_f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Every case in float type `F` against PyTorch, relative to the largest reference value (or
/// `floor`, for f32's absolute rounding of values near 0).
fn matches_pytorch<F: Float>(tolerance: f64, floor: f64) {
    for case in CASES {
        let (loss, grad) = run::<F>(case);
        let loss_err = relative_error(loss, case.loss, floor);
        let grad_err = relative_error(grad.iter().copied(), case.grad, floor);
        assert!(loss_err <= tolerance, "{}: loss relative error {loss_err:e}", case.name);
        assert!(grad_err <= tolerance, "{}: gradient relative error {grad_err:e}", case.name);
    }
}

#[test]
fn f64_matches_pytorch_to_1e_12() {
    matches_pytorch::<f64>(1e-12, 1e-300);
}

#[test]
fn f32_matches_pytorch_to_1e_5() {
    matches_pytorch::<f32>(1e-5, 1e-6);
}

#[test]
fn golden_table_covers_every_documented_convention() {
    let has = |f: fn(&Case) -> bool| CASES.iter().any(f);
    assert!(has(|c| c.class_weights.is_some() && c.label_smoothing > 0.0 && c.reduction == "mean"));
    assert!(has(|c| c.probs.is_some() && c.class_weights.is_some()));
    assert!(has(|c| c.sample_weights.is_some() && c.label_smoothing > 0.0));
    assert!(has(|c| c.prior_tau.is_some()));
    assert!(has(|c| c.reduction == "none") && has(|c| c.reduction == "sum"));
}
