//! A streaming class-count estimator: updated batch by batch, optionally decayed, exactly mergeable.

use ndarray::ArrayRef2;

use super::{Prior, add_labels, add_probs, check_distributions};
use crate::Labels;
use crate::{Error, Float, Result};

/// Accumulates class counts over a stream of batches, optionally as an exponential moving
/// average, and merges exactly with another estimator.
///
/// Each update is one step `c ← m·c + n_batch`, with `n_batch` the batch's class counts and decay
/// `m ∈ (0, 1]` (`m = 1`, the default, is plain counting). After `T` steps
/// `c_k = Σ_t m^{T−t}·n_{t,k}`, so `c / Σc` is the exponential moving average of the batch class
/// frequencies with Adam's bias correction when batches have equal size (and weights each batch
/// by its size otherwise).
///
/// **Merging** is addition of counts: two estimators with the same decay that took the same
/// number of steps (data-parallel workers, one step each per global step) merge into exactly the
/// estimator of the union of their batches at every step. A trainer can equally all-reduce
/// [`counts`](Self::counts) with its own engine and build a [`Prior`] from the sum.
///
/// # Example
///
/// ```
/// use longtail::prior::PriorEstimator;
///
/// let mut worker_a = PriorEstimator::new(3)?;
/// let mut worker_b = PriorEstimator::new(3)?;
/// worker_a.update(&[0, 0, 1])?;
/// worker_b.update(&[2, 0])?;
/// worker_a.merge(&worker_b)?;
/// assert_eq!(worker_a.counts(), &[3.0, 1.0, 1.0]);
/// let prior = worker_a.prior()?;
/// assert_eq!(prior.total(), 5.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, arXiv:1412.6980
/// (bias-corrected moving averages).
#[derive(Debug, Clone, PartialEq)]
pub struct PriorEstimator {
    counts: Vec<f64>,
    decay: f64,
    steps: u64,
}

impl PriorEstimator {
    /// An estimator over `classes` classes with nothing counted, plain counting (decay 1).
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] if `classes` is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// assert_eq!(PriorEstimator::new(2)?.counts(), &[0.0, 0.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn new(classes: usize) -> Result<Self> {
        if classes == 0 {
            return Err(Error::NoClasses);
        }
        Ok(Self { counts: vec![0.0; classes], decay: 1.0, steps: 0 })
    }

    /// Sets the decay `m ∈ (0, 1]` applied to the counts at each update (1 = plain counting).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"decay"`) for `m` outside `(0, 1]`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    ///
    /// let mut ema = PriorEstimator::new(2)?.with_decay(0.5)?;
    /// ema.update(&[0, 0])?;
    /// ema.update(&[1, 1])?;
    /// assert_eq!(ema.counts(), &[1.0, 2.0]);
    /// assert!(PriorEstimator::new(2)?.with_decay(0.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Kingma & Ba 2015, arXiv:1412.6980.
    pub fn with_decay(mut self, decay: f64) -> Result<Self> {
        if !(decay > 0.0 && decay <= 1.0) {
            return Err(Error::InvalidParameter {
                name: "decay",
                index: None,
                value: decay,
                expected: "in (0, 1]",
            });
        }
        self.decay = decay;
        Ok(self)
    }

    /// The decay `m`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// assert_eq!(PriorEstimator::new(2)?.decay(), 1.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The number of updates taken.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// let mut estimator = PriorEstimator::new(2)?;
    /// estimator.update(&[1])?;
    /// assert_eq!(estimator.steps(), 1);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The accumulated (decayed) class counts `c_k`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// let mut estimator = PriorEstimator::new(2)?;
    /// estimator.update(&[1, 1, 0])?;
    /// assert_eq!(estimator.counts(), &[1.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn counts(&self) -> &[f64] {
        &self.counts
    }

    /// One step with a batch of hard labels (an empty batch still decays the counts).
    ///
    /// # Errors
    ///
    /// [`Error::LabelOutOfRange`] for a label `≥ K`; the estimator is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// let mut estimator = PriorEstimator::new(2)?;
    /// estimator.update(&[0, 1, 1])?;
    /// assert!(estimator.update(&[2]).is_err());
    /// assert_eq!(estimator.counts(), &[1.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Kingma & Ba 2015, arXiv:1412.6980.
    pub fn update<'a>(&mut self, labels: impl Into<Labels<'a>>) -> Result<()> {
        let mut batch = vec![0.0; self.counts.len()];
        add_labels(&mut batch, labels.into().view())?;
        self.step(&batch);
        Ok(())
    }

    /// One step with a batch of probability targets (`[B, K]`, rows summing to 1; an empty batch
    /// still decays the counts).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"targets"`) for a column count other than `K`;
    /// [`Error::InvalidTarget`] / [`Error::TargetSum`] for a row that is not a
    /// distribution. The estimator is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// use ndarray::array;
    ///
    /// let mut estimator = PriorEstimator::new(2)?;
    /// estimator.update_probs(&array![[0.25_f64, 0.75]])?;
    /// assert_eq!(estimator.counts(), &[0.25, 0.75]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Kingma & Ba 2015, arXiv:1412.6980.
    pub fn update_probs<F: Float>(&mut self, probs: &ArrayRef2<F>) -> Result<()> {
        crate::error::check_shape("targets", &[probs.nrows(), self.counts.len()], probs.shape())?;
        if probs.nrows() > 0 {
            check_distributions(probs)?;
        }
        let mut batch = vec![0.0; self.counts.len()];
        add_probs(&mut batch, probs);
        self.step(&batch);
        Ok(())
    }

    /// Adds another estimator's counts: afterwards `self` is the estimator of both streams.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"estimator"`) for a different number of classes;
    /// [`Error::InvalidParameter`] `"decay"` for a different decay, `"steps"` for a different
    /// number of steps when the decay is below 1 (decayed counts only add up step by step);
    /// [`Error::Overflow`] (`"estimator counts"`, the class) if a sum exceeds `f64`. `self` is
    /// then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    ///
    /// let mut a = PriorEstimator::new(2)?.with_decay(0.9)?;
    /// let mut b = PriorEstimator::new(2)?.with_decay(0.9)?;
    /// a.update(&[0])?;
    /// b.update(&[1, 1])?;
    /// a.merge(&b)?;
    /// assert_eq!(a.counts(), &[1.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Kingma & Ba 2015, arXiv:1412.6980.
    pub fn merge(&mut self, other: &PriorEstimator) -> Result<()> {
        crate::error::check_shape("estimator", &[self.counts.len()], &[other.counts.len()])?;
        if other.decay != self.decay {
            return Err(Error::InvalidParameter {
                name: "decay",
                index: None,
                value: other.decay,
                expected: "the decay of the estimator merged into",
            });
        }
        if self.decay < 1.0 && other.steps != self.steps {
            return Err(Error::InvalidParameter {
                name: "steps",
                index: None,
                value: other.steps as f64,
                expected: "the step count of the estimator merged into (decayed counts merge step by step)",
            });
        }
        if let Some(class) = self.counts.iter().zip(&other.counts).position(|(a, b)| (a + b).is_infinite()) {
            return Err(Error::Overflow {
                what: "estimator counts",
                row: None,
                class: Some(class),
                value: Some(self.counts[class]),
            });
        }
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        self.steps = self.steps.max(other.steps);
        Ok(())
    }

    /// The prior of the counts so far.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"counts"`) while nothing has been counted.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::PriorEstimator;
    /// let mut estimator = PriorEstimator::new(2)?;
    /// assert!(estimator.prior().is_err());
    /// estimator.update(&[1])?;
    /// assert_eq!(estimator.prior()?.probabilities::<f64>().to_vec(), vec![0.0, 1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Kingma & Ba 2015, arXiv:1412.6980.
    pub fn prior(&self) -> Result<Prior> {
        Prior::from_counts(&self.counts)
    }

    fn step(&mut self, batch: &[f64]) {
        self.counts.iter_mut().zip(batch).for_each(|(c, n)| *c = self.decay * *c + n);
        self.steps += 1;
    }
}
