//! Golden values from the references, float64 on CPU: a port of the authors' `VSLoss`, the Poly-1
//! paper's `poly1_cross_entropy` ported to torch, PyTorch's
//! `binary_cross_entropy_with_logits(pos_weight=)` over `[B, K]` and `[B]` logits, and a port of
//! the authors' `AsymmetricLoss` (its exact gradient).
//!
//! Produced by `tests/golden/generate_longtail.py` (its docstring has the command, versions and
//! conventions); the output `tests/golden/longtail_values.rs` is committed, so these tests need no
//! Python.

#[rustfmt::skip] // generated: kept byte-identical to the script's output
#[path = "golden/longtail_values.rs"]
mod longtail_values;

use longtail::{
    AsymmetricLoss, BinaryTargets, Float, Loss, Poly1Loss, Reduction, SigmoidLoss, Targets, VsLoss,
};
use longtail_values::{CASES, Case};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

/// The loss and gradient of a `[B, K]` case through the trait: one value (mean, sum) or B values
/// ("none", whose gradient is the Sum reduction's).
fn through_trait<F: Float>(loss: &dyn Loss<F>, case: &Case, targets: Targets<'_, F>) -> (Vec<f64>, Vec<f64>) {
    let logits = ArrayView2::from_shape((case.batch, case.classes), case.logits).unwrap().mapv(F::from_f64);
    let (values, grad): (Array1<F>, Array2<F>) = if case.reduction == "none" {
        let (mut losses, mut grad) = (Array1::zeros(case.batch), Array2::zeros(logits.raw_dim()));
        loss.per_sample_into(&logits, &targets, &mut losses, Some(&mut grad)).unwrap();
        (losses, grad)
    } else {
        let mut grad = Array2::zeros(logits.raw_dim());
        let value = loss.loss_into(&logits, &targets, Some(&mut grad)).unwrap();
        (Array1::from_elem(1, value), grad)
    };
    (values.iter().map(|v| v.as_f64()).collect(), grad.iter().map(|g| g.as_f64()).collect())
}

/// Runs a case through the crate in float type `F`, widened to f64.
fn run<F: Float>(case: &Case) -> (Vec<f64>, Vec<f64>) {
    let reduction = if case.reduction == "mean" { Reduction::Mean } else { Reduction::Sum };
    let class_weights = case.class_weights.map(cast::<F>);
    match case.kind {
        "vs" => {
            let (counts, gamma, tau) = case.vs.unwrap();
            let mut loss = VsLoss::new(&cast::<F>(counts))
                .unwrap()
                .with_gamma(F::from_f64(gamma))
                .unwrap()
                .with_tau(F::from_f64(tau))
                .unwrap()
                .with_reduction(reduction);
            if let Some(w) = &class_weights {
                loss = loss.with_class_weights(w).unwrap();
            }
            through_trait(&loss, case, Targets::labels(case.labels))
        }
        "poly1" => {
            let mut loss = Poly1Loss::new(F::from_f64(case.epsilon)).unwrap().with_reduction(reduction);
            if let Some((prior, tau)) = case.prior_tau {
                loss = loss.with_logit_adjustment(&cast::<F>(prior), F::from_f64(tau)).unwrap();
            }
            if let Some(w) = &class_weights {
                loss = loss.with_class_weights(w).unwrap();
            }
            through_trait(&loss, case, Targets::labels(case.labels))
        }
        "bce_pos_weight" => {
            let loss = SigmoidLoss::bce()
                .with_pos_weight(&cast::<F>(case.pos_weight.unwrap()))
                .unwrap()
                .with_reduction(reduction);
            let y = cast::<F>(case.targets);
            let weights = case.sample_weights.map(cast::<F>);
            if case.pos_weight.unwrap().len() == 1 && case.classes == 1 {
                let logits = ArrayView1::from(case.logits).mapv(F::from_f64);
                let targets = || match &weights {
                    Some(w) => BinaryTargets::new(&y).with_sample_weights(w),
                    None => BinaryTargets::new(&y),
                };
                let (value, grad) = loss.binary_loss_and_grad(&logits, targets()).unwrap();
                let values = if case.reduction == "none" {
                    loss.binary_per_sample_loss(&logits, targets()).unwrap().to_vec()
                } else {
                    vec![value]
                };
                return (
                    values.iter().map(|v| v.as_f64()).collect(),
                    grad.iter().map(|g| g.as_f64()).collect(),
                );
            }
            let rows = ArrayView2::from_shape((case.batch, case.classes), &y[..]).unwrap();
            let hard = y.iter().all(|&v| v == F::zero() || v == F::one());
            let targets = if hard { Targets::multi_hot(rows) } else { Targets::probs(rows) };
            let targets = match &weights {
                Some(w) => targets.with_sample_weights(w),
                None => targets,
            };
            through_trait(&loss, case, targets)
        }
        "asl" => {
            let (gamma_pos, gamma_neg, clip) = case.asl.unwrap();
            let loss = AsymmetricLoss::new()
                .with_gammas(F::from_f64(gamma_pos), F::from_f64(gamma_neg))
                .unwrap()
                .with_clip(F::from_f64(clip))
                .unwrap()
                .with_reduction(reduction);
            let y = cast::<F>(case.targets);
            let rows = ArrayView2::from_shape((case.batch, case.classes), &y[..]).unwrap();
            through_trait(&loss, case, Targets::multi_hot(rows))
        }
        other => unreachable!("unknown kind {other}"),
    }
}

/// `max |a − b| / max(max |b|, floor)`.
fn relative_error(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0_f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn matches_references<F: Float>(tolerance: f64, floor: f64) {
    for case in CASES {
        let (loss, grad) = run::<F>(case);
        let loss_err = relative_error(&loss, case.loss, floor);
        let grad_err = relative_error(&grad, case.grad, floor);
        assert!(loss_err <= tolerance, "{}: loss relative error {loss_err:e}", case.name);
        assert!(grad_err <= tolerance, "{}: gradient relative error {grad_err:e}", case.name);
    }
}

#[test]
fn f64_matches_the_references_to_1e_12() {
    matches_references::<f64>(1e-12, 1e-300);
}

#[test]
fn f32_matches_the_references_to_1e_5() {
    matches_references::<f32>(1e-5, 1e-6);
}

#[test]
fn golden_table_covers_every_loss_option_and_reduction() {
    let has = |f: fn(&Case) -> bool| CASES.iter().any(f);
    for kind in ["vs", "poly1", "bce_pos_weight", "asl"] {
        for reduction in ["mean", "sum", "none"] {
            assert!(CASES.iter().any(|c| c.kind == kind && c.reduction == reduction), "{kind} {reduction}");
        }
    }
    assert!(has(|c| c.kind == "vs" && c.class_weights.is_some()));
    assert!(has(|c| c.vs.is_some_and(|(_, gamma, _)| gamma == 0.0)));
    assert!(has(|c| c.vs.is_some_and(|(_, _, tau)| tau == 0.0)));
    assert!(has(|c| c.kind == "poly1" && c.prior_tau.is_some() && c.class_weights.is_some()));
    assert!(has(|c| c.kind == "poly1" && c.epsilon == -1.0));
    assert!(has(|c| c.kind == "bce_pos_weight" && c.classes == 1));
    assert!(has(|c| c.kind == "bce_pos_weight" && c.classes > 1 && c.sample_weights.is_some()));
    assert!(has(|c| c.asl.is_some_and(|(gp, gn, clip)| (gp, gn, clip) == (0.0, 4.0, 0.05))));
    assert!(has(|c| c.asl.is_some_and(|(_, _, clip)| clip == 0.0)));
}
