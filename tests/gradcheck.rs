//! The analytic gradients against central finite differences, for every option combination.

mod common;

use common::{Options, Problem, Rng, numeric_grad, relative, relative_error};
use longtail::{Loss, Reduction, SoftmaxLoss};
use ndarray::Array2;

const BATCH: usize = 5;
const CLASSES: usize = 6;

/// f64 gradients match central differences (step ε^(1/3)) to 1e-6 relative, and the loss value
/// matches the formula written out plainly, for all 384 combinations of the options.
#[test]
fn every_option_combination_matches_finite_differences_and_the_reference_formula() {
    let mut rng = Rng::new(7);
    for options in Options::all() {
        let problem = Problem::random(options, BATCH, CLASSES, &mut rng);
        problem.assert_matches_finite_differences_and_reference();
    }
}

/// The same inputs in f32 agree with f64 within 1e-4 relative, loss and gradient.
#[test]
fn every_option_combination_agrees_between_f32_and_f64() {
    let mut rng = Rng::new(11);
    for options in Options::all() {
        let problem = Problem::random(options, BATCH, CLASSES, &mut rng);
        // Inputs rounded to f32 first, so both types see the same numbers.
        let logits = problem.logits.mapv(|v| f64::from(v as f32));
        let (l64, g64) = problem.loss_and_grad::<f64>(&logits);
        let (l32, g32) = problem.loss_and_grad::<f32>(&logits);
        assert!(relative(l32, l64) <= 1e-4, "{options:?}: loss f32 {l32} vs f64 {l64}");
        let err = relative_error(&g32, &g64);
        assert!(err <= 1e-4, "{options:?}: gradient f32 vs f64 relative error {err:e}");
    }
}

/// Per-sample gradients: row i of the gradient is ∂ℓ_i/∂z_i, so it matches the finite differences
/// of Σ_i ℓ_i (each ℓ_i depends on its own row only).
#[test]
fn per_sample_gradients_match_finite_differences() {
    let mut rng = Rng::new(13);
    for options in Options::all().into_iter().filter(|o| o.reduction == Reduction::Sum) {
        let problem = Problem::random(options, BATCH, CLASSES, &mut rng);
        let per_sample = |z: &Array2<f64>| {
            problem.with_targets(|t| problem.loss::<f64>().per_sample_loss_and_grad(z, t)).unwrap()
        };
        let (losses, grad) = per_sample(&problem.logits);
        let numeric = numeric_grad(&problem.logits, |z| per_sample(z).0.sum());
        let err = relative_error(&grad, &numeric);
        assert!(err <= 1e-6, "{options:?}: per-sample gradient relative error {err:e}");
        let (sum, _) = problem.loss_and_grad::<f64>(&problem.logits);
        assert!(
            relative(losses.sum(), sum) <= 1e-13,
            "{options:?}: per-sample losses do not sum to the Sum reduction"
        );
    }
}

/// Gradients stay exact where the loss is steep or flat: large margins, f64.
#[test]
fn gradients_match_finite_differences_for_wide_logits() {
    let mut rng = Rng::new(17);
    for gamma in [0.0, 0.5, 1.0, 3.0] {
        let logits = rng.logits(8, 4, 6.0);
        let labels = rng.labels(8, 4);
        let loss = SoftmaxLoss::focal(gamma).unwrap();
        let (_, grad) = loss.loss_and_grad(&logits, &labels).unwrap();
        let numeric = numeric_grad(&logits, |z| loss.loss(z, &labels).unwrap());
        let err = relative_error(&grad, &numeric);
        assert!(err <= 1e-6, "gamma {gamma}: gradient relative error {err:e}");
    }
}
