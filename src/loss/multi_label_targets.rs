//! The targets of a multi-label batch: multi-hot rows, with optional per-sample weights.

use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::Float;

/// The targets of a multi-label batch: a multi-hot `[B, K]` array (entries exactly 0 or 1, any
/// number of positives per row), with optional per-sample weights `s_i ≥ 0` (0 ignores a row;
/// without them every `s_i = 1`).
///
/// Multi-hot targets are floats, as data loaders produce them; soft values are rejected, since the
/// losses that take them are defined on label sets. A `[B, K]` array or view converts into
/// targets, so a loss call can take `&targets` directly.
///
/// # Example
///
/// ```
/// use longtail::{MultiLabelTargets, ZlprLoss};
/// use ndarray::array;
///
/// let logits = array![[2.0_f64, -1.0], [0.5, 0.5]];
/// let multi_hot = array![[1.0, 0.0], [1.0, 1.0]];
/// // Row 1 is padding: weight 0 ignores it, and the mean divides by the weights that count.
/// let targets = MultiLabelTargets::new(&multi_hot).with_sample_weights(&[1.0, 0.0]);
/// let (loss, grad) = ZlprLoss::new().loss_and_grad(&logits, targets)?;
/// let first = ZlprLoss::new().loss(&array![[2.0, -1.0]], &array![[1.0, 0.0]])?;
/// assert!((loss - first).abs() < 1e-15);
/// assert_eq!(grad.row(1).to_vec(), vec![0.0, 0.0]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Su et al., "ZLPR: A Novel Loss for Multi-label Classification", arXiv:2208.02955.
#[derive(Debug, Clone)]
pub struct MultiLabelTargets<'a, F> {
    pub(crate) multi_hot: ArrayView2<'a, F>,
    pub(crate) sample_weights: Option<ArrayView1<'a, F>>,
}

impl<'a, F: Float> MultiLabelTargets<'a, F> {
    /// Multi-hot targets `[B, K]`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::MultiLabelTargets;
    /// use ndarray::array;
    /// assert_eq!(MultiLabelTargets::new(&array![[1.0_f32, 0.0, 1.0]]).len(), 1);
    /// ```
    pub fn new(multi_hot: impl Into<ArrayView2<'a, F>>) -> Self {
        Self { multi_hot: multi_hot.into(), sample_weights: None }
    }

    /// Weights each row's loss by `s_i ≥ 0` (length `B`); 0 ignores the row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::MultiLabelTargets;
    /// use ndarray::array;
    /// let multi_hot = array![[1.0_f64], [0.0]];
    /// let targets = MultiLabelTargets::new(&multi_hot).with_sample_weights(&[1.0, 2.0]);
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
    /// use longtail::MultiLabelTargets;
    /// assert_eq!(MultiLabelTargets::<f64>::new(&ndarray::Array2::zeros((3, 2))).len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.multi_hot.nrows()
    }

    /// Whether the targets describe no row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::MultiLabelTargets;
    /// assert!(MultiLabelTargets::<f64>::new(&ndarray::Array2::zeros((0, 2))).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of row `i` (1 without sample weights).
    #[inline]
    pub(crate) fn sample_weight(&self, i: usize) -> F {
        self.sample_weights.as_ref().map_or(F::one(), |w| w[i])
    }
}

impl<'a, F: Float> From<&'a Array2<F>> for MultiLabelTargets<'a, F> {
    fn from(multi_hot: &'a Array2<F>) -> Self {
        Self::new(multi_hot.view())
    }
}

impl<'a, F: Float> From<ArrayView2<'a, F>> for MultiLabelTargets<'a, F> {
    fn from(multi_hot: ArrayView2<'a, F>) -> Self {
        Self::new(multi_hot)
    }
}
