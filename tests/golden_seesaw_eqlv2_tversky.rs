//! Golden values from the references, float64 on CPU: ports of mmdet's `SeesawLoss` (without the
//! objectness branch), the authors' `EQLv2` (without the background column) and
//! segmentation_models_pytorch's `TverskyLoss` (multiclass and multilabel), the stateful ones as
//! sequences of steps on one running state.
//!
//! Produced by `tests/golden/generate_seesaw_eqlv2_tversky.py` (its docstring has the command,
//! versions and conventions); the output `tests/golden/seesaw_eqlv2_tversky_values.rs` is
//! committed, so these tests need no Python.

#[rustfmt::skip] // generated: kept byte-identical to the script's output
#[path = "golden/seesaw_eqlv2_tversky_values.rs"]
mod seesaw_eqlv2_tversky_values;

use longtail::loss::{EqlV2State, SeesawState};
use longtail::{EqlV2Loss, Float, Loss, Reduction, SeesawLoss, Targets, TverskyLoss};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use seesaw_eqlv2_tversky_values::{CASES, Case, Step};

/// The loss and gradient of one step through the trait: one value (mean, sum) or B values
/// ("none", whose gradient is the Sum reduction's).
fn through_trait<F: Float>(loss: &dyn Loss<F>, case: &Case, step: &Step) -> (Vec<f64>, Vec<f64>) {
    let batch = step.logits.len() / case.classes;
    let logits = ArrayView2::from_shape((batch, case.classes), step.logits).unwrap().mapv(F::from_f64);
    let multi_hot =
        ArrayView2::from_shape((batch, case.classes), step.targets).ok().map(|t| t.mapv(F::from_f64));
    let weights = step.sample_weights.map(|w| ArrayView1::from(w).mapv(F::from_f64));
    let mut targets = match &multi_hot {
        Some(t) if step.labels.is_empty() => Targets::multi_hot(t),
        _ => Targets::labels(step.labels),
    };
    if let Some(w) = &weights {
        targets = targets.with_sample_weights(w);
    }
    let (values, grad): (Array1<F>, Array2<F>) = if case.reduction == "none" {
        let (mut losses, mut grad) = (Array1::zeros(batch), Array2::zeros(logits.raw_dim()));
        loss.per_sample_into(&logits, &targets, &mut losses, Some(&mut grad)).unwrap();
        (losses, grad)
    } else {
        let mut grad = Array2::zeros(logits.raw_dim());
        let value = loss.loss_into(&logits, &targets, Some(&mut grad)).unwrap();
        (Array1::from_elem(1, value), grad)
    };
    (values.iter().map(|v| v.as_f64()).collect(), grad.iter().map(|g| g.as_f64()).collect())
}

fn reduction(case: &Case) -> Reduction {
    if case.reduction == "mean" { Reduction::Mean } else { Reduction::Sum }
}

/// Runs every step of a case through the crate in float type `F`, widened to f64: per step the
/// loss, the gradient and the state after the step.
fn run<F: Float>(case: &Case) -> Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let p = |i: usize| F::from_f64(case.params[i]);
    match case.kind {
        "seesaw" => {
            let mut state = SeesawState::new(case.classes).unwrap();
            case.steps
                .iter()
                .map(|step| {
                    state.update(step.labels).unwrap(); // before the loss, as mmdet
                    let loss = SeesawLoss::new(&state)
                        .with_p(p(0))
                        .unwrap()
                        .with_q(p(1))
                        .unwrap()
                        .with_eps(p(2))
                        .unwrap()
                        .with_reduction(reduction(case));
                    let (values, grad) = through_trait(&loss, case, step);
                    (values, grad, state.counts().iter().map(|&n| n as f64).collect())
                })
                .collect()
        }
        "eqlv2" => {
            let mut state = EqlV2State::new(case.classes).unwrap();
            case.steps
                .iter()
                .map(|step| {
                    let loss = EqlV2Loss::new(&state)
                        .with_mapping(p(0), p(1))
                        .unwrap()
                        .with_alpha(p(2))
                        .unwrap()
                        .with_reduction(reduction(case));
                    let (values, grad) = through_trait(&loss, case, step);
                    let batch = step.logits.len() / case.classes;
                    let logits =
                        ArrayView2::from_shape((batch, case.classes), step.logits).unwrap().mapv(F::from_f64);
                    let multi_hot = ArrayView2::from_shape((batch, case.classes), step.targets)
                        .ok()
                        .map(|t| t.mapv(F::from_f64));
                    match &multi_hot {
                        Some(t) => state.update(&loss, &logits, Targets::multi_hot(t)).unwrap(),
                        None => state.update(&loss, &logits, step.labels).unwrap(), // after the loss, as the authors
                    }
                    (values, grad, state.positive().iter().chain(state.negative()).copied().collect())
                })
                .collect()
        }
        "tversky_multiclass" | "tversky_multilabel" => {
            let loss = if case.kind == "tversky_multiclass" {
                TverskyLoss::<F>::multiclass()
            } else {
                TverskyLoss::multilabel()
            };
            let loss = loss
                .with_weights(case.params[0], case.params[1])
                .unwrap()
                .with_smooth(case.params[2])
                .unwrap()
                .with_eps(case.params[3])
                .unwrap()
                .with_gamma(case.params[4])
                .unwrap();
            case.steps
                .iter()
                .map(|step| {
                    let (values, grad) = through_trait(&loss, case, step);
                    (values, grad, Vec::new())
                })
                .collect()
        }
        other => panic!("unknown kind {other}"),
    }
}

/// Compares the crate with every step of every case of `kind`, within `tol` relative to each
/// quantity's largest magnitude.
fn check<F: Float>(kind: &str, tol: f64) {
    let cases: Vec<&Case> = CASES.iter().filter(|c| c.kind.starts_with(kind)).collect();
    assert!(!cases.is_empty());
    for case in cases {
        for (t, (step, (loss, grad, state))) in case.steps.iter().zip(run::<F>(case)).enumerate() {
            for (what, got, want) in
                [("loss", &loss, step.loss), ("grad", &grad, step.grad), ("state", &state, step.state)]
            {
                assert_eq!(got.len(), want.len(), "{} step {t} {what} length", case.name);
                let scale = want.iter().fold(1e-300_f64, |m, v| m.max(v.abs()));
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol * scale,
                        "{} step {t} {what}[{i}]: {g} vs reference {w}",
                        case.name
                    );
                }
            }
        }
    }
}

#[test]
fn seesaw_matches_mmdet_step_by_step_f64() {
    check::<f64>("seesaw", 1e-12);
}

#[test]
fn seesaw_matches_mmdet_step_by_step_f32() {
    check::<f32>("seesaw", 2e-5);
}

#[test]
fn eqlv2_matches_the_authors_step_by_step_f64() {
    check::<f64>("eqlv2", 1e-12);
}

#[test]
fn eqlv2_matches_the_authors_step_by_step_f32() {
    check::<f32>("eqlv2", 2e-5);
}

#[test]
fn tversky_matches_smp_f64() {
    check::<f64>("tversky", 1e-12);
}

#[test]
fn tversky_matches_smp_f32() {
    check::<f32>("tversky", 2e-5);
}
