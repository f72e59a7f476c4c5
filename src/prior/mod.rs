//! Class priors: estimation from labels, counts or probability targets (also streaming and
//! mergeable), class weights derived from them, and label-shift estimation of a target prior.
//!
//! A [`Prior`] holds non-negative class counts. Its outputs (`π`, `τ·log π`, class weights) are
//! arrays of any [`Float`], so they plug straight into
//! [`SoftmaxLoss::with_logit_adjustment`](crate::SoftmaxLoss::with_logit_adjustment) and
//! [`SoftmaxLoss::with_class_weights`](crate::SoftmaxLoss::with_class_weights).

mod estimator;
mod label_shift;
mod lu;
mod weights;

pub use estimator::PriorEstimator;
pub use label_shift::{EmEstimate, LabelShiftEm, bbse_target_prior};
pub use weights::{ClassWeights, DeferredReweighting};

use ndarray::{Array1, ArrayRef2, ArrayView1};

use crate::Labels;
use crate::{Error, Float, Result};

/// A class prior `π`, kept as non-negative class counts `n_k` (`π_k = n_k / Σ_j n_j`).
///
/// Counts may be fractional (after smoothing, an exponential moving average or probability
/// targets) and unnormalised: probabilities are legal counts too. A class may have count 0 (it
/// was absent from the data); whatever needs `log π_k` or `1/π_k` then refuses it with an error
/// that names the class, so smooth first ([`with_smoothing`](Self::with_smoothing)).
///
/// The counts are `f64` whatever float type the model computes in: a count of samples must stay
/// exact past `2^24` (one epoch of a large data set, where `f32` stops counting by ones) for
/// streaming estimators to merge exactly. The outputs are converted to the caller's [`Float`].
///
/// # Example
///
/// ```
/// use longtail::SoftmaxLoss;
/// use longtail::prior::Prior;
///
/// let prior = Prior::from_labels(&[0, 0, 0, 1, 0, 2, 0, 1], 4)?.with_smoothing(1.0)?;
/// assert_eq!(prior.counts(), &[6.0, 3.0, 2.0, 1.0]);
/// let loss = SoftmaxLoss::<f32>::cross_entropy()
///     .with_logit_adjustment(&prior.probabilities::<f32>(), 1.0)?;
/// assert_eq!(loss.logit_adjustment().unwrap().len(), 4);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    counts: Vec<f64>,
    total: f64,
}

impl Prior {
    /// A prior from class counts (or any non-negative, unnormalised class masses).
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] for an empty slice; [`Error::InvalidParameter`] (`"counts"`)
    /// for a negative or non-finite count, or (without index) when every count is 0;
    /// [`Error::Overflow`] (`"counts total"`) when the counts sum beyond `f64` (scale them down:
    /// only their ratios matter).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    ///
    /// let prior = Prior::from_counts(&[30.0, 10.0])?;
    /// assert_eq!(prior.probabilities::<f64>().to_vec(), vec![0.75, 0.25]);
    /// assert!(Prior::from_counts(&[1.0, f64::NAN]).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Menon et al. 2020, arXiv:2007.07314 (the prior of logit adjustment).
    pub fn from_counts(counts: &[f64]) -> Result<Self> {
        if counts.is_empty() {
            return Err(Error::NoClasses);
        }
        if let Some(k) = counts.iter().position(|&n| !(n.is_finite() && n >= 0.0)) {
            return Err(invalid_count(Some(k), counts[k], "finite and >= 0"));
        }
        let total: f64 = counts.iter().sum();
        if total.is_infinite() {
            return Err(Error::Overflow { what: "counts total", row: None, class: None, value: None });
        }
        if total <= 0.0 {
            return Err(invalid_count(None, total, "a positive total"));
        }
        Ok(Self { counts: counts.to_vec(), total })
    }

    /// Counts the hard labels `y_i ∈ 0..K`: `n_k = #{i : y_i = k}`.
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] if `classes` is 0; [`Error::EmptyBatch`] for no labels;
    /// [`Error::LabelOutOfRange`] for a label `≥ K`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    ///
    /// let prior = Prior::from_labels(&[2, 0, 2], 3)?;
    /// assert_eq!(prior.counts(), &[1.0, 0.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Menon et al. 2020, arXiv:2007.07314.
    pub fn from_labels<'a>(labels: impl Into<Labels<'a>>, classes: usize) -> Result<Self> {
        let labels = labels.into();
        if classes == 0 {
            return Err(Error::NoClasses);
        }
        if labels.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let mut counts = vec![0.0; classes];
        add_labels(&mut counts, labels.view())?;
        Self::from_counts(&counts)
    }

    /// Sums probability targets over the batch: `n_k = Σ_i t_ik` for a `[B, K]` array whose rows
    /// are distributions (non-negative, summing to 1 within `√ε` of the float type).
    ///
    /// # Errors
    ///
    /// [`Error::EmptyBatch`] for zero rows; [`Error::NoClasses`] for zero columns;
    /// [`Error::InvalidTarget`] for a negative or non-finite entry; [`Error::TargetSum`]
    /// for a row that does not sum to 1.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    /// use ndarray::array;
    ///
    /// let prior = Prior::from_probs(&array![[0.5_f32, 0.5], [0.0, 1.0]])?;
    /// assert_eq!(prior.counts(), &[0.5, 1.5]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Menon et al. 2020, arXiv:2007.07314.
    pub fn from_probs<F: Float>(probs: &ArrayRef2<F>) -> Result<Self> {
        let mut counts = vec![0.0; check_distributions(probs)?];
        add_probs(&mut counts, probs);
        Self::from_counts(&counts)
    }

    /// Additive (Laplace) smoothing: `n_k + α` for every class. `α = 1` is Laplace's rule.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"smoothing"`) if `α` is negative or not finite;
    /// [`Error::Overflow`] (`"smoothed counts total"`) if the smoothed counts sum beyond `f64`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    ///
    /// let prior = Prior::from_counts(&[3.0, 0.0])?.with_smoothing(0.5)?;
    /// assert_eq!(prior.counts(), &[3.5, 0.5]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// C. D. Manning, P. Raghavan, H. Schütze, "Introduction to Information Retrieval", 2008,
    /// §13.2 (add-one smoothing).
    pub fn with_smoothing(self, alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::InvalidParameter {
                name: "smoothing",
                index: None,
                value: alpha,
                expected: "finite and >= 0",
            });
        }
        let counts: Vec<f64> = self.counts.iter().map(|n| n + alpha).collect();
        if counts.iter().any(|n| n.is_infinite()) || counts.iter().sum::<f64>().is_infinite() {
            return Err(Error::Overflow {
                what: "smoothed counts total",
                row: None,
                class: None,
                value: Some(alpha),
            });
        }
        Self::from_counts(&counts)
    }

    /// The number of classes `K`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    /// assert_eq!(Prior::from_counts(&[1.0, 2.0, 3.0])?.classes(), 3);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// The class counts `n_k` (length `K`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    /// assert_eq!(Prior::from_counts(&[1.0, 2.0])?.counts(), &[1.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn counts(&self) -> &[f64] {
        &self.counts
    }

    /// The total count `n = Σ_k n_k` (positive).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    /// assert_eq!(Prior::from_counts(&[1.0, 2.0])?.total(), 3.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The probabilities `π_k = n_k / n`, rounded to `F`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    /// let pi = Prior::from_counts(&[1.0, 3.0])?.probabilities::<f32>();
    /// assert_eq!(pi.to_vec(), vec![0.25_f32, 0.75]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Menon et al. 2020, arXiv:2007.07314.
    pub fn probabilities<F: Float>(&self) -> Array1<F> {
        self.counts.iter().map(|&n| F::from_f64(n / self.total)).collect()
    }

    /// `τ·log π_k` for every class, the offset of logit adjustment (Menon et al. 2020): the loss
    /// trains on `z + τ·log π`, post-hoc adjustment predicts `argmax z − τ·log π`. `τ = 0` gives
    /// zeros (also for classes of count 0).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`]: `"tau"` if `τ` is not finite or `τ·log π_k` overflows
    /// `F`; `"prior"` (with the class) if `τ ≠ 0` and a count is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::Prior;
    ///
    /// let offset = Prior::from_counts(&[1.0, 3.0])?.log_prior::<f64>(2.0)?;
    /// assert!((offset[0] - 2.0 * 0.25f64.ln()).abs() < 1e-15);
    /// assert!(Prior::from_counts(&[1.0, 0.0])?.log_prior::<f64>(1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    pub fn log_prior<F: Float>(&self, tau: F) -> Result<Array1<F>> {
        let offset: Array1<F> = self.log_prior_f64(tau.as_f64())?.iter().map(|&v| F::from_f64(v)).collect();
        match offset.iter().all(|v| v.is_finite()) {
            true => Ok(offset),
            false => Err(invalid_tau(tau.as_f64())),
        }
    }

    /// `τ·log π_k` in `f64`, checked as documented on [`log_prior`](Self::log_prior) (overflow of
    /// `F` is the caller's check).
    pub(crate) fn log_prior_f64(&self, tau: f64) -> Result<Vec<f64>> {
        if !tau.is_finite() {
            return Err(invalid_tau(tau));
        }
        if tau == 0.0 {
            return Ok(vec![0.0; self.classes()]);
        }
        self.require_positive("prior")?;
        let offset: Vec<f64> = self.log_probabilities().iter().map(|&l| tau * l).collect();
        if offset.iter().any(|v| !v.is_finite()) {
            return Err(invalid_tau(tau));
        }
        Ok(offset)
    }

    /// `log π_k` of positive counts, to the rounding of `f64`: `log(n_k / n)`, or `log n_k − log n`
    /// where the ratio is below the smallest normal number, and `ln_1p(−(n − n_k) / n)` with
    /// `n − n_k` summed from the other counts for a class that holds most of the mass (where
    /// `log n_k − log n` would cancel to 0 and a huge `τ` would scale the lost digits).
    pub(crate) fn log_probabilities(&self) -> Vec<f64> {
        let total = self.total;
        self.counts
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                if n > total / 2.0 {
                    let rest: f64 =
                        self.counts.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, &m)| m).sum();
                    (-(rest / total)).ln_1p()
                } else if n / total >= f64::MIN_POSITIVE {
                    (n / total).ln()
                } else {
                    n.ln() - total.ln()
                }
            })
            .collect()
    }

    /// Fails with [`Error::InvalidParameter`] (`name`, the class) for a count of 0.
    pub(crate) fn require_positive(&self, name: &'static str) -> Result<()> {
        match self.counts.iter().position(|&n| n == 0.0) {
            Some(k) => Err(Error::InvalidParameter {
                name,
                index: Some(k),
                value: 0.0,
                expected: "> 0 (smooth zero counts first, e.g. with_smoothing(1.0))",
            }),
            None => Ok(()),
        }
    }
}

fn invalid_count(index: Option<usize>, value: f64, expected: &'static str) -> Error {
    Error::InvalidParameter { name: "counts", index, value, expected }
}

fn invalid_tau(tau: f64) -> Error {
    Error::InvalidParameter {
        name: "tau",
        index: None,
        value: tau,
        expected: "finite, and small enough that tau * log(prior) is finite",
    }
}

/// Adds one to `counts[y]` for every label, after checking them all (`counts` untouched on error).
fn add_labels(counts: &mut [f64], labels: ArrayView1<'_, usize>) -> Result<()> {
    let classes = counts.len();
    if let Some(row) = labels.iter().position(|&y| y >= classes) {
        return Err(Error::LabelOutOfRange { row, label: labels[row], classes });
    }
    labels.iter().for_each(|&y| counts[y] += 1.0);
    Ok(())
}

/// Adds the column sums of `probs` (already checked) to `counts`.
fn add_probs<F: Float>(counts: &mut [f64], probs: &ArrayRef2<F>) {
    for row in probs.rows() {
        counts.iter_mut().zip(row).for_each(|(n, t)| *n += t.as_f64());
    }
}

/// Checks that `probs` is a non-empty `[B, K]` array of distributions (entries finite and `≥ 0`,
/// rows summing to 1 within `√ε` of `F`) and returns `K`.
pub(crate) fn check_distributions<F: Float>(probs: &ArrayRef2<F>) -> Result<usize> {
    let (batch, classes) = probs.dim();
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    if classes == 0 {
        return Err(Error::NoClasses);
    }
    let tolerance = F::epsilon().sqrt().as_f64();
    for (row, t) in probs.rows().into_iter().enumerate() {
        if let Some(class) = t.iter().position(|&v| !(v.is_finite() && v >= F::zero())) {
            return Err(Error::InvalidTarget { row, class, value: t[class].as_f64() });
        }
        let sum = t.iter().fold(0.0_f64, |acc, v| acc + v.as_f64());
        if (sum - 1.0).abs() > tolerance {
            return Err(Error::TargetSum { row, sum, tolerance });
        }
    }
    Ok(classes)
}
