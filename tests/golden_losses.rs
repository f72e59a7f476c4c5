//! Golden values from peers, float64 on CPU: PyTorch's `binary_cross_entropy_with_logits`,
//! torchvision's `sigmoid_focal_loss`, and ports of the authors' ZLPR
//! (`multilabel_categorical_crossentropy`) and LDAM (LDAM-DRW's `LDAMLoss`).
//!
//! Produced by `tests/golden/generate_losses.py` (its docstring has the command, versions and
//! conventions); the output `tests/golden/losses_values.rs` is committed, so these tests need no
//! Python.

#[rustfmt::skip] // generated: kept byte-identical to the script's output
#[path = "golden/losses_values.rs"]
mod losses_values;

use longtail::{BinaryTargets, Float, LdamLoss, Loss, Reduction, SigmoidLoss, Targets, ZlprLoss};
use losses_values::{CASES, Case};
use ndarray::{Array1, ArrayView1, ArrayView2};

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

fn reduction(case: &Case) -> Reduction {
    if case.reduction == "sum" { Reduction::Sum } else { Reduction::Mean }
}

/// Runs a case through the crate in float type `F`: the loss (one value, or B for "none") and the
/// gradient, widened to f64.
fn run<F: Float>(case: &Case) -> (Vec<f64>, Vec<f64>) {
    let none = case.reduction == "none";
    // "none": per-sample losses; the gradient of their sum is the Sum reduction's.
    let widen = |loss: F, per: Option<Array1<F>>, grad: Vec<F>| {
        let loss = per.map_or(vec![loss.as_f64()], |p| p.iter().map(|v| v.as_f64()).collect());
        (loss, grad.iter().map(|g| g.as_f64()).collect())
    };
    let reduction = if none { Reduction::Sum } else { reduction(case) };
    match case.kind {
        "bce" | "focal" => {
            let logits = ArrayView1::from(case.logits).mapv(F::from_f64);
            let y = cast::<F>(case.targets);
            let weights = case.sample_weights.map(cast::<F>);
            let targets = || match &weights {
                Some(w) => BinaryTargets::new(&y).with_sample_weights(w),
                None => BinaryTargets::new(&y),
            };
            let mut loss = SigmoidLoss::bce();
            if let Some((alpha, gamma)) = case.alpha_gamma {
                loss = loss.with_focal(F::from_f64(gamma)).unwrap();
                if alpha >= 0.0 {
                    loss = loss.with_alpha(F::from_f64(alpha)).unwrap();
                }
            }
            let loss = loss.with_reduction(reduction);
            let (value, grad) = loss.binary_loss_and_grad(&logits, targets()).unwrap();
            let per = none.then(|| loss.binary_per_sample_loss(&logits, targets()).unwrap());
            widen(value, per, grad.to_vec())
        }
        "zlpr" => {
            let shape = (case.batch, case.classes);
            let logits = ArrayView2::from_shape(shape, case.logits).unwrap().mapv(F::from_f64);
            let targets = ArrayView2::from_shape(shape, case.targets).unwrap().mapv(F::from_f64);
            let mut loss = ZlprLoss::new().with_reduction(reduction);
            if let Some((prior, tau)) = case.prior_tau {
                loss = loss.with_label_prior(&cast::<F>(prior), F::from_f64(tau)).unwrap();
            }
            let (value, grad) = loss.loss_and_grad(&logits, &targets).unwrap();
            let per = none.then(|| loss.per_sample_loss(&logits, &targets).unwrap());
            widen(value, per, grad.iter().copied().collect())
        }
        "ldam" => {
            let p = case.ldam.as_ref().unwrap();
            let logits =
                ArrayView2::from_shape((case.batch, case.classes), case.logits).unwrap().mapv(F::from_f64);
            let mut loss = LdamLoss::new(&cast::<F>(p.counts))
                .unwrap()
                .with_max_margin(F::from_f64(p.max_margin))
                .unwrap()
                .with_scale(F::from_f64(p.scale))
                .unwrap()
                .with_reduction(reduction);
            if let Some(w) = p.class_weights {
                loss = loss.with_class_weights(&cast::<F>(w)).unwrap();
            }
            let (value, grad) = loss.loss_and_grad(&logits, Targets::labels(p.labels)).unwrap();
            let per = none.then(|| loss.per_sample_loss(&logits, Targets::labels(p.labels)).unwrap());
            widen(value, per, grad.iter().copied().collect())
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

fn matches_peers<F: Float>(tolerance: f64, floor: f64) {
    for case in CASES {
        let (loss, grad) = run::<F>(case);
        let loss_err = relative_error(&loss, case.loss, floor);
        let grad_err = relative_error(&grad, case.grad, floor);
        assert!(loss_err <= tolerance, "{}: loss relative error {loss_err:e}", case.name);
        assert!(grad_err <= tolerance, "{}: gradient relative error {grad_err:e}", case.name);
    }
}

#[test]
fn f64_matches_the_peers_to_1e_12() {
    matches_peers::<f64>(1e-12, 1e-300);
}

#[test]
fn f32_matches_the_peers_to_1e_5() {
    matches_peers::<f32>(1e-5, 1e-6);
}

#[test]
fn golden_table_covers_every_loss_and_reduction() {
    let has = |f: fn(&Case) -> bool| CASES.iter().any(f);
    for kind in ["bce", "focal", "zlpr", "ldam"] {
        assert!(CASES.iter().filter(|c| c.kind == kind).any(|c| c.reduction == "mean"), "{kind}");
    }
    assert!(has(|c| c.kind == "bce" && c.sample_weights.is_some()));
    assert!(has(|c| c.alpha_gamma.is_some_and(|(a, g)| a < 0.0 && g > 0.0 && g < 1.0)));
    assert!(has(|c| c.kind == "zlpr" && c.prior_tau.is_some()));
    assert!(has(|c| c.ldam.as_ref().is_some_and(|l| l.class_weights.is_some())));
    assert!(has(|c| c.reduction == "none") && has(|c| c.reduction == "sum"));
}
