//! Properties of the softmax loss family on random batches (proptest).

mod common;

use common::{Options, Problem, Rng, relative, relative_error};
use longtail::{Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;

/// A random problem: shape, option combination, data seed and logit scale.
fn problem() -> impl Strategy<Value = Problem> {
    let combos = Options::all();
    (1..7usize, 1..9usize, 0..combos.len(), any::<u64>(), 0.1..8.0f64).prop_map(
        move |(batch, classes, combo, seed, scale)| {
            let mut rng = Rng::new(seed);
            let mut problem = Problem::random(combos[combo], batch, classes, &mut rng);
            problem.logits *= scale;
            problem
        },
    )
}

/// Hard labels, no options: the plain cross-entropy setting.
fn labelled_batch() -> impl Strategy<Value = (Array2<f64>, Vec<usize>)> {
    (1..7usize, 1..9usize, any::<u64>()).prop_map(|(batch, classes, seed)| {
        let mut rng = Rng::new(seed);
        (rng.logits(batch, classes, 3.0), rng.labels(batch, classes))
    })
}

fn ce(logits: &Array2<f64>, labels: &[usize]) -> (f64, Array2<f64>) {
    SoftmaxLoss::cross_entropy().loss_and_grad(logits, labels).unwrap()
}

/// Losses within `tol` relative; gradients within `tol` of their own size or of 1, the size of the
/// terms `H·p_k` and `h_k` whose difference they are (their rounding is relative to those).
fn close(a: (f64, Array2<f64>), b: (f64, Array2<f64>), tol: f64) -> bool {
    let scale = b.1.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
    relative(a.0, b.0) <= tol && (&a.1 - &b.1).iter().all(|d| d.abs() <= tol * scale)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loss_and_every_per_sample_loss_are_non_negative(p in problem()) {
        let (loss, _) = p.loss_and_grad::<f64>(&p.logits);
        prop_assert!(loss >= 0.0);
        let losses = p.with_targets(|t| p.loss::<f64>().per_sample_loss(&p.logits, t)).unwrap();
        prop_assert!(losses.iter().all(|&l| l >= 0.0), "{losses}");
    }

    #[test]
    fn adding_a_constant_to_a_row_changes_nothing(p in problem(), row in 0..6usize, shift in -50.0..50.0f64) {
        let row = row % p.logits.nrows();
        let mut shifted = p.logits.clone();
        shifted.row_mut(row).mapv_inplace(|v| v + shift);
        prop_assert!(close(p.loss_and_grad::<f64>(&p.logits), p.loss_and_grad::<f64>(&shifted), 1e-11));
    }

    #[test]
    fn every_gradient_row_sums_to_zero(p in problem()) {
        let (_, grad) = p.loss_and_grad::<f64>(&p.logits);
        // Entries are differences `H·p_k − h_k` of O(1) terms: rounding is relative to those.
        for row in grad.rows() {
            let scale = row.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
            prop_assert!(row.sum().abs() <= 1e-13 * scale * row.len() as f64, "{row}");
        }
    }

    #[test]
    fn into_overwrites_and_equals_the_allocating_call(p in problem()) {
        let (loss, grad) = p.loss_and_grad::<f64>(&p.logits);
        let mut buffer = Array2::from_elem(p.logits.raw_dim(), f64::NAN);
        let into = p.with_targets(|t| p.loss::<f64>().loss_and_grad_into(&p.logits, t, &mut buffer)).unwrap();
        prop_assert_eq!(into, loss);
        prop_assert_eq!(&buffer, &grad);

        let (mut losses, mut grads) = (Array1::from_elem(p.logits.nrows(), f64::NAN), buffer.mapv(|_| f64::NAN));
        p.with_targets(|t| p.loss::<f64>().per_sample_loss_and_grad_into(&p.logits, t, &mut losses, &mut grads)).unwrap();
        let (alloc_losses, alloc_grads) = p.with_targets(|t| p.loss::<f64>().per_sample_loss_and_grad(&p.logits, t)).unwrap();
        prop_assert_eq!(losses, alloc_losses);
        prop_assert_eq!(grads, alloc_grads);
    }

    #[test]
    fn loss_alone_equals_the_loss_of_loss_and_grad(p in problem()) {
        let alone = p.with_targets(|t| p.loss::<f64>().loss(&p.logits, t)).unwrap();
        prop_assert_eq!(alone, p.loss_and_grad::<f64>(&p.logits).0);
    }

    #[test]
    fn f32_agrees_with_f64(p in problem()) {
        let logits = p.logits.mapv(|v| f64::from(v as f32));
        let (l64, g64) = p.loss_and_grad::<f64>(&logits);
        let (l32, g32) = p.loss_and_grad::<f32>(&logits);
        prop_assert!(relative(l32, l64) <= 1e-4 || (l32 - l64).abs() <= 1e-6, "{} vs {}", l32, l64);
        // An entry is a difference `H·p_k − h_k` of terms of order 1 (weights ≤ 3): near a
        // stationary point it is far smaller than the terms, and f32 keeps only their ε·size.
        let cancellation = (&g32 - &g64).iter().all(|d| d.abs() <= 2e-6);
        prop_assert!(relative_error(&g32, &g64) <= 1e-4 || cancellation);
    }

    #[test]
    fn tau_zero_or_a_uniform_prior_is_cross_entropy((logits, labels) in labelled_batch(), tau in -3.0..3.0f64, count in 0.5..1e4f64) {
        let k = logits.ncols();
        let plain = ce(&logits, &labels);
        let zero_tau = SoftmaxLoss::cross_entropy().with_logit_adjustment(&vec![count; k], 0.0).unwrap();
        prop_assert_eq!(zero_tau.loss_and_grad(&logits, &labels).unwrap(), plain.clone());
        let uniform = SoftmaxLoss::cross_entropy().with_logit_adjustment(&vec![count; k], tau).unwrap();
        prop_assert!(close(uniform.loss_and_grad(&logits, &labels).unwrap(), plain, 1e-13));
    }

    #[test]
    fn logit_adjustment_is_cross_entropy_on_shifted_logits((logits, labels) in labelled_batch(), tau in -3.0..3.0f64, seed: u64) {
        let prior = Rng::new(seed).positive(logits.ncols(), 1.0, 500.0);
        let total: f64 = prior.iter().sum();
        let shift = Array1::from_iter(prior.iter().map(|p| tau * (p / total).ln()));
        let adjusted = SoftmaxLoss::cross_entropy().with_logit_adjustment(&prior, tau).unwrap();
        prop_assert!(close(adjusted.loss_and_grad(&logits, &labels).unwrap(), ce(&(&logits + &shift), &labels), 1e-12));
    }

    #[test]
    fn uniform_class_weights_are_cross_entropy((logits, labels) in labelled_batch(), weight in 0.01..100.0f64) {
        let weighted = SoftmaxLoss::class_weighted(&vec![weight; logits.ncols()]).unwrap();
        prop_assert!(close(weighted.loss_and_grad(&logits, &labels).unwrap(), ce(&logits, &labels), 1e-14));
    }

    #[test]
    fn focal_with_gamma_zero_is_cross_entropy_and_continuous_in_gamma((logits, labels) in labelled_batch()) {
        let plain = ce(&logits, &labels);
        prop_assert_eq!(SoftmaxLoss::focal(0.0).unwrap().loss_and_grad(&logits, &labels).unwrap(), plain.clone());
        let near = SoftmaxLoss::focal(1e-9).unwrap().loss_and_grad(&logits, &labels).unwrap();
        prop_assert!(relative(near.0, plain.0) <= 1e-7 && (&near.1 - &plain.1).iter().all(|d| d.abs() <= 1e-7));
    }

    #[test]
    fn label_smoothing_equals_the_smoothed_probability_targets((logits, labels) in labelled_batch(), eps in 0.0..0.99f64) {
        let k = logits.ncols();
        let mut smoothed = Array2::from_elem(logits.raw_dim(), eps / k as f64);
        for (mut row, &y) in smoothed.axis_iter_mut(Axis(0)).zip(&labels) {
            row[y] += 1.0 - eps;
        }
        let by_label = SoftmaxLoss::cross_entropy().with_label_smoothing(eps).unwrap().loss_and_grad(&logits, &labels).unwrap();
        let by_probs = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, Targets::probs(&smoothed)).unwrap();
        prop_assert!(close(by_label, by_probs, 1e-12));
    }

    #[test]
    fn per_sample_losses_sum_to_the_sum_reduction(p in problem()) {
        let sum_loss = p.loss::<f64>().with_reduction(Reduction::Sum);
        let losses = p.with_targets(|t| p.loss::<f64>().per_sample_loss(&p.logits, t)).unwrap();
        let sum = p.with_targets(|t| sum_loss.loss(&p.logits, t)).unwrap();
        prop_assert!(relative(losses.sum(), sum) <= 1e-13);
    }
}
