//! The targets of a binary batch: one value in `[0, 1]` per logit, with optional per-sample weights.

use ndarray::{Array1, ArrayView1, Zip};

use crate::error::check_shape;
use crate::softmax::is_nan_or_pos_inf;
use crate::{Error, Float, Result};

/// The targets of a batch of binary logits `[B]`: `y_i ∈ [0, 1]` (hard 0/1 or soft), with optional
/// per-sample weights `s_i ≥ 0` (0 ignores a row; without them every `s_i = 1`).
///
/// A slice, `Vec` or array of floats converts into targets, so a binary loss call can take `&y`
/// directly.
///
/// # Example
///
/// ```
/// use longtail::{BinaryTargets, SigmoidLoss};
/// use ndarray::array;
///
/// let logits = array![2.0_f64, -1.0, 8.0];
/// // Row 2 is padding: weight 0 ignores it, and the mean divides by the weights that count.
/// let targets = BinaryTargets::new(&[1.0, 0.0, 0.0]).with_sample_weights(&[1.0, 1.0, 0.0]);
/// let (loss, grad) = SigmoidLoss::bce().binary_loss_and_grad(&logits, targets)?;
/// let two_rows = SigmoidLoss::bce().binary_loss(&array![2.0, -1.0], &[1.0, 0.0])?;
/// assert!((loss - two_rows).abs() < 1e-15);
/// assert_eq!(grad[2], 0.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// PyTorch `torch.nn.functional.binary_cross_entropy_with_logits` (its `target` and `weight`).
#[derive(Debug, Clone)]
pub struct BinaryTargets<'a, F> {
    pub(crate) targets: ArrayView1<'a, F>,
    pub(crate) sample_weights: Option<ArrayView1<'a, F>>,
}

impl<'a, F: Float> BinaryTargets<'a, F> {
    /// Targets `y_i ∈ [0, 1]`, one per logit.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinaryTargets;
    /// assert_eq!(BinaryTargets::new(&[1.0_f32, 0.0, 0.3]).len(), 3);
    /// ```
    pub fn new(targets: impl Into<ArrayView1<'a, F>>) -> Self {
        Self { targets: targets.into(), sample_weights: None }
    }

    /// Weights each row's loss by `s_i ≥ 0` (length `B`); 0 ignores the row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinaryTargets;
    /// let targets = BinaryTargets::new(&[1.0_f64, 0.0]).with_sample_weights(&[2.0, 0.5]);
    /// assert_eq!(targets.len(), 2);
    /// ```
    pub fn with_sample_weights(mut self, weights: impl Into<ArrayView1<'a, F>>) -> Self {
        self.sample_weights = Some(weights.into());
        self
    }

    /// The number of rows the targets describe.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinaryTargets;
    /// assert_eq!(BinaryTargets::<f64>::new(&[]).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the targets describe no row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinaryTargets;
    /// assert!(BinaryTargets::<f64>::new(&[]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The weight of row `i` (1 without sample weights).
    #[inline]
    pub(crate) fn sample_weight(&self, i: usize) -> F {
        self.sample_weights.as_ref().map_or(F::one(), |w| w[i])
    }

    /// Validates a batch of binary logits against these targets, before anything is written:
    /// [`Error::EmptyBatch`]; [`Error::ShapeMismatch`] for `targets`, the `outputs`
    /// (`(name, expected, found)`) and `sample_weights`; [`Error::InvalidSampleWeight`];
    /// [`Error::TargetOutOfRange`] for a target outside `[0, 1]`; then the logits in order:
    /// [`Error::NonFiniteLogit`] for NaN or `+inf`, [`Error::MaskedTarget`] for `-inf`
    /// on a row with `y_i > 0` and `s_i > 0` (`-inf` is a certain negative).
    pub(crate) fn check(
        &self,
        logits: ArrayView1<'_, F>,
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<()> {
        self.check_targets(logits.view(), outputs)?;
        self.check_logits(logits)
    }

    /// [`check`](Self::check) but for the logits (which a kernel then checks as it reads them,
    /// see [`for_rows`](super::binary_rows::for_rows)).
    pub(crate) fn check_targets(
        &self,
        logits: ArrayView1<'_, F>,
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<()> {
        let batch = logits.len();
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_shape("targets", &[batch], self.targets.shape())?;
        for &(name, expected, found) in outputs {
            check_shape(name, expected, found)?;
        }
        // Valid batches pass branch-free scans (which vectorise); only a failing one is searched
        // for its first offender, in the documented order.
        let (zero, one) = (F::zero(), F::one());
        if let Some(weights) = &self.sample_weights {
            check_shape("sample_weights", &[batch], weights.shape())?;
            if !weights.fold(true, |ok, &w| ok & (w >= zero) & (w <= F::max_value()))
                && let Some(row) = weights.iter().position(|&w| !(w.is_finite() && w >= zero))
            {
                return Err(Error::InvalidSampleWeight { row, value: weights[row].as_f64() });
            }
        }
        if !self.targets.fold(true, |ok, &y| ok & (y >= zero) & (y <= one))
            && let Some(row) = self.targets.iter().position(|&y| !(y >= zero && y <= one))
        {
            let value = self.targets[row].as_f64();
            return Err(Error::TargetOutOfRange { row, class: 0, value, expected: "in [0, 1]" });
        }
        Ok(())
    }

    /// The logits of validated targets, in order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
    /// [`Error::MaskedTarget`] for `-inf` on a row with `y_i > 0` and `s_i > 0`.
    fn check_logits(&self, logits: ArrayView1<'_, F>) -> Result<()> {
        let zero = F::zero();
        // NaN and +inf fail `s < inf`; -inf passes on a target of 0 (and on a weight of 0, searched).
        let fine =
            |ok: bool, &s: &F, &y: &F| ok & (s < F::infinity()) & ((s > F::neg_infinity()) | (y == zero));
        if Zip::from(&logits).and(&self.targets).fold(true, fine) {
            return Ok(());
        }
        for (row, &s) in logits.iter().enumerate() {
            if is_nan_or_pos_inf(s) {
                return Err(Error::NonFiniteLogit { row, class: 0, value: s.as_f64() });
            }
            if s == F::neg_infinity() && self.targets[row] > zero && self.sample_weight(row) > zero {
                return Err(Error::MaskedTarget { row, class: 0 });
            }
        }
        Ok(())
    }
}

impl<'a, F: Float> From<&'a [F]> for BinaryTargets<'a, F> {
    fn from(targets: &'a [F]) -> Self {
        Self::new(targets)
    }
}

impl<'a, F: Float, const N: usize> From<&'a [F; N]> for BinaryTargets<'a, F> {
    fn from(targets: &'a [F; N]) -> Self {
        Self::new(&targets[..])
    }
}

impl<'a, F: Float> From<&'a Vec<F>> for BinaryTargets<'a, F> {
    fn from(targets: &'a Vec<F>) -> Self {
        Self::new(targets.as_slice())
    }
}

impl<'a, F: Float> From<&'a Array1<F>> for BinaryTargets<'a, F> {
    fn from(targets: &'a Array1<F>) -> Self {
        Self::new(targets.view())
    }
}

impl<'a, F: Float> From<ArrayView1<'a, F>> for BinaryTargets<'a, F> {
    fn from(targets: ArrayView1<'a, F>) -> Self {
        Self::new(targets)
    }
}
