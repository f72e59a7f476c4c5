//! A long-tailed Gaussian mixture whose Bayes-optimal classifiers are known in closed form.
//!
//! Class `k` is `N(a·e_k, I)` in `K` dimensions: the class means lie on the coordinate axes at
//! distance `a` from the origin, so every pair of classes is equally hard. With scores
//! `s_k(x) = a·x_k + log π_k` (the posterior under prior `π`, up to a constant), a sample of class
//! `k` is `x = a·e_k + z` with `z ~ N(0, I)` and is classified correctly when
//! `z_j < z_k + a + log(π_k/π_j)/a` for every `j ≠ k`. Integrating over `z_k`,
//!
//! ```text
//! recall_k = ∫ φ(t) · Π_{j≠k} Φ(t + a + log(π_k/π_j)/a) dt
//! ```
//!
//! The balanced error is `1 − mean_k recall_k`, minimised by the uniform-prior rule (`argmax x_k`):
//! that is the Bayes-optimal balanced error. The training-prior rule is what a consistent
//! estimate of the training posterior (cross-entropy with enough data) converges to.

use ndarray::Array2;

use crate::rng::Rng;

pub const CLASSES: usize = 10;
/// Distance of each class mean from the origin: Bayes-optimal balanced error 9.75 %.
pub const SEPARATION: f64 = 3.0;

/// `per_class` samples of every class, in class order.
pub fn sample(per_class: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = Rng::stream(seed, 3);
    let y: Vec<usize> = (0..CLASSES).flat_map(|k| vec![k; per_class]).collect();
    let x = Array2::from_shape_fn((y.len(), CLASSES), |(i, d)| {
        let mean = if d == y[i] { SEPARATION } else { 0.0 };
        (mean + rng.normal()) as f32
    });
    (x, y)
}

/// Per-class recall of the Bayes rule for the prior `log_prior` (`log π_k`, any additive constant).
pub fn bayes_recalls(log_prior: &[f64]) -> Vec<f64> {
    let a = SEPARATION;
    (0..log_prior.len())
        .map(|k| {
            integrate(|t| {
                let others: f64 = (0..log_prior.len())
                    .filter(|&j| j != k)
                    .map(|j| normal_cdf(t + a + (log_prior[k] - log_prior[j]) / a))
                    .product();
                normal_pdf(t) * others
            })
        })
        .collect()
}

/// Composite Simpson's rule over `[-10, 10]`, where `φ` holds all but 10^-23 of its mass.
fn integrate(f: impl Fn(f64) -> f64) -> f64 {
    const STEPS: usize = 2000;
    let (lo, h) = (-10.0, 20.0 / STEPS as f64);
    let inner: f64 = (1..STEPS).map(|i| f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 }).sum();
    (f(lo) + inner + f(lo + STEPS as f64 * h)) * h / 3.0
}

fn normal_pdf(t: f64) -> f64 {
    (-0.5 * t * t).exp() / (std::f64::consts::TAU).sqrt()
}

/// `Φ(t) = erfc(−t/√2)/2`.
fn normal_cdf(t: f64) -> f64 {
    0.5 * erfc(-t / std::f64::consts::SQRT_2)
}

/// The complementary error function by the Chebyshev fit of Numerical Recipes (`erfcc`):
/// relative error below 1.2·10^-7 everywhere, plenty for error rates printed to 0.01 %.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against SciPy: `1 − quad(lambda t: norm.pdf(t)·norm.cdf(t + 3)**9, −12, 12)` = 0.0975115622.
    #[test]
    fn uniform_prior_bayes_error_matches_scipy() {
        let recalls = bayes_recalls(&[0.0; CLASSES]);
        assert!(recalls.iter().all(|r| (1.0 - r - 0.097_511_562_2).abs() < 1e-6), "{recalls:?}");
    }

    /// Two classes: the recall is `Φ(a/√2 + log(π_k/π_j)/(a√2))`, with the 1-D integral done by hand.
    #[test]
    fn two_class_recalls_have_the_closed_form() {
        let log_prior = [0.0, (0.1_f64).ln()];
        let recalls = bayes_recalls(&log_prior);
        let a = SEPARATION;
        for (k, j) in [(0, 1), (1, 0)] {
            let expected = normal_cdf((a + (log_prior[k] - log_prior[j]) / a) / std::f64::consts::SQRT_2);
            assert!((recalls[k] - expected).abs() < 1e-6, "{k}: {} vs {expected}", recalls[k]);
        }
    }

    /// The empirical recall of `argmax_k (a·x_k + log π_k)` on a large sample agrees with the integral.
    #[test]
    fn sampled_recalls_agree_with_the_integral() {
        let (x, y) = sample(4000, 7);
        let log_prior: Vec<f64> = (0..CLASSES).map(|k| -(k as f64) * 0.5).collect();
        let exact = bayes_recalls(&log_prior);
        for (k, &exact_k) in exact.iter().enumerate() {
            let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == k).collect();
            let hits = rows
                .iter()
                .filter(|&&i| {
                    let score = |j: usize| SEPARATION * f64::from(x[[i, j]]) + log_prior[j];
                    (0..CLASSES).all(|j| j == k || score(j) < score(k))
                })
                .count();
            let sampled = hits as f64 / rows.len() as f64;
            // Four standard errors of a binomial proportion from 4000 samples.
            assert!((sampled - exact_k).abs() < 4.0 * (exact_k * (1.0 - exact_k) / 4000.0).sqrt() + 1e-3);
        }
    }
}
