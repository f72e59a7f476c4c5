//! What each row of a batch is fitted to, and how much each row counts.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::Float;

/// The targets of a batch: hard labels or probability (soft) targets, with optional per-sample
/// weights.
///
/// - Hard labels: `y_i ∈ 0..K`, one per row.
/// - Probability targets: a `[B, K]` array whose rows are distributions (non-negative, summing to 1
///   within `√ε` of the float type).
/// - Per-sample weights `s_i ≥ 0` scale row `i`'s loss and its share of the mean; a weight of 0
///   ignores the row (this replaces PyTorch's `ignore_index`). Without them every `s_i = 1`.
///
/// A slice, `Vec` or array of `usize` converts into hard labels, and a `[B, K]` array or view into
/// probability targets, so a loss call can take `&labels` or `&probs` directly.
///
/// # Example
///
/// ```
/// use longtail::{SoftmaxLoss, Targets};
/// use ndarray::array;
///
/// let logits = array![[2.0_f64, 0.0], [0.0, 1.0], [5.0, -5.0]];
/// // Row 2 is padding: weight 0 ignores it, and the mean divides by the weights that count.
/// let targets = Targets::labels(&[0, 1, 1]).with_sample_weights(&[1.0, 1.0, 0.0]);
/// let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, targets)?;
/// let two_rows = SoftmaxLoss::cross_entropy().loss(&logits.slice(ndarray::s![..2, ..]), &[0, 1])?;
/// assert!((loss - two_rows).abs() < 1e-15);
/// assert_eq!(grad.row(2).to_vec(), vec![0.0, 0.0]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// PyTorch `torch.nn.functional.cross_entropy` (its `target` and `ignore_index` arguments).
#[derive(Debug, Clone)]
pub struct Targets<'a, F> {
    pub(crate) kind: TargetKind<'a, F>,
    pub(crate) sample_weights: Option<ArrayView1<'a, F>>,
}

/// Hard labels or probability targets.
#[derive(Debug, Clone)]
pub(crate) enum TargetKind<'a, F> {
    Labels(ArrayView1<'a, usize>),
    Probs(ArrayView2<'a, F>),
}

impl<'a, F: Float> Targets<'a, F> {
    /// Hard labels, one class index per row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// let labels = vec![0, 2, 1];
    /// let targets = Targets::<f32>::labels(&labels);
    /// assert_eq!(targets.len(), 3);
    /// ```
    pub fn labels(labels: impl Into<ArrayView1<'a, usize>>) -> Self {
        Self { kind: TargetKind::Labels(labels.into()), sample_weights: None }
    }

    /// Probability targets, a `[B, K]` array whose rows are distributions.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// use ndarray::array;
    /// let probs = array![[0.9_f64, 0.1], [0.5, 0.5]];
    /// assert_eq!(Targets::probs(&probs).len(), 2);
    /// ```
    pub fn probs(probs: impl Into<ArrayView2<'a, F>>) -> Self {
        Self { kind: TargetKind::Probs(probs.into()), sample_weights: None }
    }

    /// Weights each row's loss by `s_i ≥ 0` (length `B`); 0 ignores the row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// let targets = Targets::labels(&[1, 0]).with_sample_weights(&[0.5_f32, 2.0]);
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
    /// use longtail::Targets;
    /// assert!(Targets::<f64>::labels(&[]).is_empty());
    /// ```
    pub fn len(&self) -> usize {
        match &self.kind {
            TargetKind::Labels(labels) => labels.len(),
            TargetKind::Probs(probs) => probs.nrows(),
        }
    }

    /// Whether the targets describe no row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// assert!(!Targets::<f64>::labels(&[3]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of row `i` (1 without sample weights).
    pub(crate) fn sample_weight(&self, i: usize) -> F {
        self.sample_weights.as_ref().map_or(F::one(), |w| w[i])
    }
}

impl<'a, F: Float> From<&'a [usize]> for Targets<'a, F> {
    fn from(labels: &'a [usize]) -> Self {
        Self::labels(labels)
    }
}

impl<'a, F: Float, const N: usize> From<&'a [usize; N]> for Targets<'a, F> {
    fn from(labels: &'a [usize; N]) -> Self {
        Self::labels(&labels[..])
    }
}

impl<'a, F: Float> From<&'a Vec<usize>> for Targets<'a, F> {
    fn from(labels: &'a Vec<usize>) -> Self {
        Self::labels(labels.as_slice())
    }
}

impl<'a, F: Float> From<&'a Array1<usize>> for Targets<'a, F> {
    fn from(labels: &'a Array1<usize>) -> Self {
        Self::labels(labels.view())
    }
}

impl<'a, F: Float> From<ArrayView1<'a, usize>> for Targets<'a, F> {
    fn from(labels: ArrayView1<'a, usize>) -> Self {
        Self::labels(labels)
    }
}

impl<'a, F: Float> From<&'a Array2<F>> for Targets<'a, F> {
    fn from(probs: &'a Array2<F>) -> Self {
        Self::probs(probs.view())
    }
}

impl<'a, F: Float> From<ArrayView2<'a, F>> for Targets<'a, F> {
    fn from(probs: ArrayView2<'a, F>) -> Self {
        Self::probs(probs)
    }
}
