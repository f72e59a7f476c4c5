//! Balanced Softmax (Ren et al. 2020) is logit adjustment with τ = 1: `SoftmaxLoss::logit_adjusted`
//! against the Balanced Softmax formula written out, loss and gradient, f32 and f64.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::{Float, Loss, Prior, SoftmaxLoss};
use ndarray::Array2;

/// `−(1/B) Σ_i log(n_y e^{z_y} / Σ_k n_k e^{z_k})`, Ren et al. Eq. 4, as written (per-row max
/// shift only, so the exponentials stay finite).
fn balanced_softmax(logits: &Array2<f64>, labels: &[usize], counts: &[f64]) -> f64 {
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let z = logits.row(i);
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let denominator: f64 = (0..z.len()).map(|k| counts[k] * (z[k] - max).exp()).sum();
        total -= (counts[y] * (z[y] - max).exp() / denominator).ln();
    }
    total / labels.len() as f64
}

fn run<F: Float>(logits: &Array2<f64>, labels: &[usize], prior: &Prior) -> (f64, Array2<f64>) {
    let z = logits.mapv(F::from_f64);
    let (l, g) = SoftmaxLoss::logit_adjusted(prior).unwrap().loss_and_grad(&z, labels).unwrap();
    (l.as_f64(), g.mapv(F::as_f64))
}

#[test]
fn logit_adjustment_with_tau_one_is_balanced_softmax() {
    let mut rng = Rng::new(1461);
    for (batch, classes) in [(1, 2), (8, 5), (16, 40)] {
        let logits = rng.logits(batch, classes, 2.0);
        let labels = rng.labels(batch, classes);
        let counts: Vec<f64> = rng.positive(classes, 1.0, 5000.0).iter().map(|n| n.round()).collect();
        let prior = Prior::from_counts(&counts).unwrap();
        let reference = balanced_softmax(&logits, &labels, &counts);
        let numeric = numeric_grad(&logits, |z| balanced_softmax(z, &labels, &counts));
        let (l64, g64) = run::<f64>(&logits, &labels, &prior);
        assert!(relative(l64, reference) <= 1e-12, "{batch}x{classes}: {l64} vs {reference}");
        assert!(
            relative_error(&g64, &numeric) <= 1e-6,
            "{batch}x{classes}: {:e}",
            relative_error(&g64, &numeric)
        );
        let (l32, g32) = run::<f32>(&logits.mapv(|v| f64::from(v as f32)), &labels, &prior);
        assert!(relative(l32, reference) <= 1e-5 && relative_error(&g32, &g64) <= 1e-5, "{batch}x{classes}");
    }
}
