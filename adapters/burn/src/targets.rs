//! What each row of a batch is fitted to, as burn tensors.

use burn::tensor::{Int, Tensor};

use crate::{Error, Result};

/// The targets of a batch as burn tensors: class labels or probability rows, with optional
/// per-sample weights (the core's [`longtail::Targets`] in tensor form).
///
/// - `labels`: a `[B]` integer tensor of class indices `0..K`.
/// - `probs`: a `[B, K]` float tensor whose rows are distributions, in the loss's float type.
/// - `multi_hot`: a `[B, K]` float tensor of entries in `{0, 1}` (ZLPR, the sigmoid losses).
/// - `with_sample_weights`: a `[B]` float tensor of weights `s_i ≥ 0` (0 ignores the row).
///
/// Targets are constants of the graph: no gradient flows into them.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use longtail_burn::Targets;
///
/// let device = Device::flex();
/// let targets = Targets::labels(Tensor::<1, Int>::from_data([0, 2, 1], &device))
///     .with_sample_weights(Tensor::<1>::from_data([1.0_f32, 1.0, 0.0], &device));
/// assert_eq!(targets.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Targets {
    pub(crate) kind: TargetKind,
    pub(crate) sample_weights: Option<Tensor<1>>,
}

#[derive(Debug, Clone)]
pub(crate) enum TargetKind {
    Labels(Tensor<1, Int>),
    Probs(Tensor<2>),
    MultiHot(Tensor<2>),
}

impl Targets {
    /// Hard labels, one class index per row.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Int, Tensor};
    /// let labels = Tensor::<1, Int>::from_data([1, 0], &Device::flex());
    /// assert_eq!(longtail_burn::Targets::labels(labels).len(), 2);
    /// ```
    pub fn labels(labels: Tensor<1, Int>) -> Self {
        Self { kind: TargetKind::Labels(labels), sample_weights: None }
    }

    /// Probability targets, a `[B, K]` tensor whose rows are distributions.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// let probs = Tensor::<2>::from_data([[0.9_f32, 0.1]], &Device::flex());
    /// assert_eq!(longtail_burn::Targets::probs(probs).len(), 1);
    /// ```
    pub fn probs(probs: Tensor<2>) -> Self {
        Self { kind: TargetKind::Probs(probs), sample_weights: None }
    }

    /// Multi-hot targets, a `[B, K]` tensor of entries in `{0, 1}` (several positives per row).
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// let m = Tensor::<2>::from_data([[1.0_f32, 0.0, 1.0]], &Device::flex());
    /// assert_eq!(longtail_burn::Targets::multi_hot(m).len(), 1);
    /// ```
    pub fn multi_hot(multi_hot: Tensor<2>) -> Self {
        Self { kind: TargetKind::MultiHot(multi_hot), sample_weights: None }
    }

    /// Weights each row's loss by `s_i ≥ 0` (a `[B]` float tensor); 0 ignores the row.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Int, Tensor};
    /// use longtail_burn::Targets;
    /// let device = Device::flex();
    /// let t = Targets::labels(Tensor::<1, Int>::from_data([1, 0], &device))
    ///     .with_sample_weights(Tensor::<1>::from_data([0.5_f32, 2.0], &device));
    /// assert_eq!(t.len(), 2);
    /// ```
    pub fn with_sample_weights(mut self, weights: Tensor<1>) -> Self {
        self.sample_weights = Some(weights);
        self
    }

    /// The number of rows `B` the targets describe.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Int, Tensor};
    /// let t = longtail_burn::Targets::labels(Tensor::<1, Int>::from_data([1, 0, 1], &Device::flex()));
    /// assert_eq!(t.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        match &self.kind {
            TargetKind::Labels(l) => l.dims()[0],
            TargetKind::Probs(p) | TargetKind::MultiHot(p) => p.dims()[0],
        }
    }

    /// Whether the batch has no rows.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Int, Tensor};
    /// let t = longtail_burn::Targets::labels(Tensor::<1, Int>::from_data([1], &Device::flex()));
    /// assert!(!t.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Tensor<1, Int>> for Targets {
    fn from(labels: Tensor<1, Int>) -> Self {
        Self::labels(labels)
    }
}

/// A label tensor's values as class indices (a copy of `B` integers).
///
/// # Errors
///
/// [`Error::Label`] for a negative value, [`Error::Read`] if the tensor cannot be read.
pub(crate) fn read_labels(labels: &Tensor<1, Int>) -> Result<Vec<usize>> {
    let data = labels.to_data().convert::<i64>();
    let values = data.try_into_vec::<i64>().map_err(|e| Error::Read(format!("{e:?}")))?;
    values
        .into_iter()
        .enumerate()
        .map(|(row, value)| usize::try_from(value).map_err(|_| Error::Label { row, value }))
        .collect()
}
