//! Label-shift estimation: the class prior of an unlabeled target set, from a classifier's outputs
//! on it, by EM (Saerens et al. 2002) or by black-box shift estimation (Lipton et al. 2018).

use ndarray::ArrayRef2;

use super::{Prior, check_distributions, lu};
use crate::Labels;
use crate::metrics::{ConfusionMatrix, check_predictions};
use crate::{Error, Float, Result};

/// The EM estimator of a target prior from posteriors (Saerens, Latinne & Decaestecker 2002).
///
/// Given posteriors `p_ik = P_train(k | x_i)` of a model calibrated under the training prior `π`,
/// on unlabeled target samples, it iterates from `q⁰ = π`:
///
/// ```text
/// a_ik  = p_ik · q_k / π_k / Σ_j p_ij · q_j / π_j     (E-step: posteriors under q)
/// q_k   ← (1/B) Σ_i a_ik                              (M-step: their mean)
/// ```
///
/// until `Σ_k |q_new − q| ≤ tolerance` or `max_iterations` steps. Each step does not decrease the
/// likelihood of the target data. Defaults: tolerance `1e-8`, at most 1000 iterations.
///
/// # Numerics
///
/// In `f64`, the ratio `q/π` from logarithms (`log π` from the counts, so a training prior below
/// `f64`'s range still counts) scaled by its largest; a row whose products `p_ik·q_k/π_k` fall
/// below the normal range is recomputed from logarithms, scaled by its own largest term.
///
/// # Example
///
/// ```
/// use longtail::prior::{LabelShiftEm, Prior};
/// use ndarray::array;
///
/// let train = Prior::from_counts(&[0.5, 0.5])?;
/// let posteriors = array![[0.9_f64, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]];
/// let estimate = LabelShiftEm::new().estimate(&posteriors, &train)?;
/// assert!(estimate.converged);
/// assert!(estimate.prior.probabilities::<f64>()[0] > 0.65); // the target leans to class 0
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// M. Saerens, P. Latinne, C. Decaestecker, "Adjusting the Outputs of a Classifier to New a Priori
/// Probabilities: A Simple Procedure", Neural Computation 14(1), 21–41, 2002.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelShiftEm {
    tolerance: f64,
    max_iterations: usize,
}

/// The result of [`LabelShiftEm::estimate`].
///
/// # Example
///
/// ```
/// use longtail::prior::{LabelShiftEm, Prior};
/// use ndarray::array;
///
/// let train = Prior::from_counts(&[1.0, 1.0])?;
/// let estimate = LabelShiftEm::new().with_max_iterations(1)?.estimate(&array![[0.9_f64, 0.1]], &train)?;
/// assert_eq!((estimate.iterations, estimate.converged), (1, false));
/// assert!((estimate.prior.probabilities::<f64>()[0] - 0.9).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Saerens et al. 2002.
#[derive(Debug, Clone, PartialEq)]
pub struct EmEstimate {
    /// The estimated target prior `q` (as probabilities).
    pub prior: Prior,
    /// The number of EM steps taken.
    pub iterations: usize,
    /// Whether the last step changed `q` by at most the tolerance (L1); `false` if the iteration
    /// limit stopped it first.
    pub converged: bool,
}

impl Default for LabelShiftEm {
    fn default() -> Self {
        Self::new()
    }
}

impl LabelShiftEm {
    /// EM with tolerance `1e-8` (L1 change of `q`) and at most 1000 iterations.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::LabelShiftEm;
    /// assert_eq!(LabelShiftEm::new().max_iterations(), 1000);
    /// ```
    ///
    /// # References
    ///
    /// Saerens et al. 2002.
    pub fn new() -> Self {
        Self { tolerance: 1e-8, max_iterations: 1000 }
    }

    /// Sets the stopping tolerance on `Σ_k |q_new − q|`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"tolerance"`) unless it is finite and `> 0`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::LabelShiftEm;
    /// assert_eq!(LabelShiftEm::new().with_tolerance(1e-6)?.tolerance(), 1e-6);
    /// assert!(LabelShiftEm::new().with_tolerance(0.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_tolerance(mut self, tolerance: f64) -> Result<Self> {
        if !(tolerance.is_finite() && tolerance > 0.0) {
            return Err(Error::InvalidParameter {
                name: "tolerance",
                index: None,
                value: tolerance,
                expected: "finite and > 0",
            });
        }
        self.tolerance = tolerance;
        Ok(self)
    }

    /// Sets the largest number of EM steps.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"max_iterations"`) for 0.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::LabelShiftEm;
    /// assert_eq!(LabelShiftEm::new().with_max_iterations(50)?.max_iterations(), 50);
    /// assert!(LabelShiftEm::new().with_max_iterations(0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_max_iterations(mut self, max_iterations: usize) -> Result<Self> {
        if max_iterations == 0 {
            return Err(Error::InvalidParameter {
                name: "max_iterations",
                index: None,
                value: 0.0,
                expected: ">= 1",
            });
        }
        self.max_iterations = max_iterations;
        Ok(self)
    }

    /// The stopping tolerance.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::prior::LabelShiftEm::new().tolerance(), 1e-8);
    /// ```
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The largest number of EM steps.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::prior::LabelShiftEm::new().max_iterations(), 1000);
    /// ```
    pub fn max_iterations(&self) -> usize {
        self.max_iterations
    }

    /// Estimates the target prior from posteriors `[B, K]` on the target samples (each row a
    /// distribution, e.g. the softmax of the logits) of a model trained under `train_prior`.
    ///
    /// Not converging within the iteration limit is not an error: the estimate says so.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyBatch`], [`Error::NoClasses`]; [`Error::ShapeMismatch`]
    /// (`"train_prior"`) for a prior of another length; [`Error::InvalidParameter`]
    /// (`"train_prior"`, with the class) for a zero training count; [`Error::InvalidTarget`]
    /// for a posterior that is negative, NaN or infinite, [`Error::TargetSum`] for a row that
    /// does not sum to 1 within `√ε` (posteriors are checked as probability targets are);
    /// [`Error::InvalidParameter`] (`"counts"`) if the iteration produced an invalid prior.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{LabelShiftEm, Prior};
    /// use ndarray::array;
    ///
    /// // Posteriors that equal the training prior carry no evidence of a shift.
    /// let train = Prior::from_counts(&[3.0, 1.0])?;
    /// let posteriors = array![[0.75_f32, 0.25], [0.75, 0.25]];
    /// let estimate = LabelShiftEm::new().estimate(&posteriors, &train)?;
    /// assert_eq!(estimate.iterations, 1);
    /// assert!((estimate.prior.probabilities::<f64>()[0] - 0.75).abs() < 1e-7);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Saerens et al. 2002.
    pub fn estimate<F: Float>(&self, posteriors: &ArrayRef2<F>, train_prior: &Prior) -> Result<EmEstimate> {
        let (batch, classes) = posteriors.dim();
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        if classes == 0 {
            return Err(Error::NoClasses);
        }
        crate::error::check_shape("train_prior", &[classes], &[train_prior.classes()])?;
        train_prior.require_positive("train_prior")?;
        check_distributions(posteriors)?;
        // log π from the counts: a probability below f64's range still has its logarithm.
        let log_train = train_prior.log_probabilities();
        let mut q = train_prior.probabilities::<f64>().to_vec();
        // log q of the current iterate (the first step's ratio q/π is 1 exactly).
        let mut log_q = log_train.clone();
        let mut log_ratio = vec![0.0; classes];
        let mut ratio = vec![0.0; classes];
        let mut row_buf = vec![0.0; classes];
        let mut next = vec![0.0; classes];
        for iteration in 1..=self.max_iterations {
            // q/π up to a common factor (each row's update divides it out), from logarithms and
            // scaled by the largest: a subnormal train prior does not overflow the ratio.
            log_ratio.iter_mut().zip(log_q.iter().zip(&log_train)).for_each(|(r, (q, p))| *r = q - p);
            let top = log_ratio.iter().fold(f64::NEG_INFINITY, |m, &r| m.max(r));
            log_ratio.iter_mut().for_each(|r| *r -= top);
            ratio.iter_mut().zip(&log_ratio).for_each(|(r, &l)| *r = l.exp());
            next.fill(0.0);
            for row in posteriors.rows() {
                row_buf.iter_mut().zip(row.iter().zip(&ratio)).for_each(|(a, (&p, r))| *a = p.as_f64() * r);
                // A product below the normal range has lost digits (or all of them, and with them
                // the row's total): the row again from logarithms, scaled by its own largest term.
                let lost = row.iter().zip(&row_buf).any(|(&p, &a)| p > F::zero() && a < f64::MIN_POSITIVE);
                if lost {
                    row_buf.iter_mut().zip(row.iter().zip(&log_ratio)).for_each(|(a, (&p, &l))| {
                        *a = if p > F::zero() { p.as_f64().ln() + l } else { f64::NEG_INFINITY }
                    });
                    let row_top = row_buf.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a));
                    row_buf.iter_mut().for_each(|a| *a = (*a - row_top).exp());
                }
                let total: f64 = row_buf.iter().sum();
                next.iter_mut().zip(&row_buf).for_each(|(n, a)| *n += a / total);
            }
            next.iter_mut().for_each(|n| *n /= batch as f64);
            let change: f64 = next.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum();
            std::mem::swap(&mut q, &mut next);
            log_q.iter_mut().zip(&q).for_each(|(l, &v)| *l = v.ln());
            if change <= self.tolerance {
                return Ok(EmEstimate {
                    prior: Prior::from_counts(&q)?,
                    iterations: iteration,
                    converged: true,
                });
            }
        }
        Ok(EmEstimate { prior: Prior::from_counts(&q)?, iterations: self.max_iterations, converged: false })
    }
}

/// Black-box shift estimation (BBSE, Lipton et al. 2018) of a target prior from hard predictions.
///
/// From a labeled validation set (labels `y`, the model's predictions `ŷ`) it builds the joint
/// confusion matrix `Ĉ_ij = P̂(ŷ = i, y = j)` (rows **predicted**, columns true: the transpose of
/// [`ConfusionMatrix`]'s orientation) and from the target predictions the predicted-class
/// frequencies `μ̂_i = P̂_target(ŷ = i)`. Under label shift `μ = C·w` with `w_j = q_j / p_j`, so it
/// solves `Ĉ w = μ̂` (LU with partial pivoting), clips negative weights to 0 and returns the
/// target prior `q_j ∝ w_j · p̂_j` (`p̂` the validation label frequencies).
///
/// BBSE needs only hard predictions and no calibration, but its error shrinks with the validation
/// and target sizes as `O(1/√n)` scaled by `1/σ_min(Ĉ)`: expect a looser estimate than EM with
/// calibrated posteriors.
///
/// # Errors
///
/// [`Error::NoClasses`]; [`Error::EmptyBatch`] for empty validation or target
/// predictions; the errors of [`ConfusionMatrix::new`] for the validation pair;
/// [`Error::PredictionOutOfRange`] for a target prediction `≥ K`;
/// [`Error::SingularMatrix`] (`"confusion_matrix"`) when `Ĉ` is (numerically) singular, e.g. a
/// class never predicted or never present in the validation set, or so ill-conditioned that the
/// solve's error bound `K·κ∞(Ĉ)·ε` exceeds `10⁻⁶` (the estimate would keep fewer than six
/// digits); [`Error::InvalidParameter`]
/// (`"counts"`) if the clipped weights leave no mass.
///
/// # Example
///
/// ```
/// use longtail::prior::bbse_target_prior;
///
/// // A perfect classifier: the target prior is the target's predicted-class frequencies.
/// let prior = bbse_target_prior(&[0, 1, 1, 0], &[0, 1, 1, 0], &[1, 1, 1, 0], 2)?;
/// assert_eq!(prior.probabilities::<f64>().to_vec(), vec![0.25, 0.75]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Z. C. Lipton, Y.-X. Wang, A. J. Smola, "Detecting and Correcting for Label Shift with Black Box
/// Predictors", ICML 2018, arXiv:1802.03916.
pub fn bbse_target_prior<'a>(
    validation_labels: impl Into<Labels<'a>>,
    validation_predictions: impl Into<Labels<'a>>,
    target_predictions: impl Into<Labels<'a>>,
    classes: usize,
) -> Result<Prior> {
    let target_predictions = target_predictions.into();
    let confusion = ConfusionMatrix::new(validation_labels, validation_predictions, classes)?;
    if target_predictions.is_empty() {
        return Err(Error::EmptyBatch);
    }
    check_predictions(target_predictions.view(), classes)?;
    let n = confusion.total() as f64;
    let counts = confusion.counts();
    // Ĉ[i][j] = P(ŷ = i, y = j): the transpose of the (true, predicted) counts.
    let joint: Vec<f64> =
        (0..classes * classes).map(|ij| counts[[ij % classes, ij / classes]] as f64 / n).collect();
    let mut mu = vec![0.0; classes];
    target_predictions.iter().for_each(|&p| mu[p] += 1.0);
    mu.iter_mut().for_each(|m| *m /= target_predictions.len() as f64);
    let weights = lu::solve("confusion_matrix", joint, mu)?;
    let target: Vec<f64> =
        weights.iter().enumerate().map(|(j, w)| w.max(0.0) * confusion.support(j) as f64 / n).collect();
    Prior::from_counts(&target)
}
