//! What each row of a batch of candle logits is fitted to.

use candle_core::Tensor;

/// The targets of a batch as candle tensors: hard labels, probability rows or multi-hot rows,
/// with optional per-sample weights. The tensors live on the CPU device, as the logits do.
///
/// - [`labels`](Self::labels): a `[B]` tensor of class indices, `u32` or `i64` (candle's index
///   types; `argmax` gives `u32`).
/// - [`probs`](Self::probs): a `[B, K]` tensor of the logits' float type whose rows are
///   distributions (the softmax family, smooth F1; soft one-vs-rest targets for sigmoid losses).
/// - [`multi_hot`](Self::multi_hot): a `[B, K]` tensor of the logits' float type with entries in
///   `{0, 1}` (ZLPR, sigmoid losses).
/// - [`with_sample_weights`](Self::with_sample_weights): a `[B]` tensor of the logits' float type,
///   `s_i ≥ 0`; 0 ignores the row.
///
/// A `&Tensor` converts with `Into`: an integer tensor into labels, a float tensor into
/// probability rows.
///
/// The targets take no gradient: `backward()` fills in the logits' gradient only.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// use longtail::SoftmaxLoss;
/// use longtail_candle::{CandleLoss, TensorTargets};
///
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[2.0_f32, 0.0], [0.0, 1.0], [5.0, -5.0]], &dev)?;
/// let labels = Tensor::new(&[0_u32, 1, 1], &dev)?;
/// let weights = Tensor::new(&[1.0_f32, 1.0, 0.0], &dev)?; // row 2 is padding
/// let targets = TensorTargets::labels(&labels).with_sample_weights(&weights);
/// let loss = SoftmaxLoss::<f32>::cross_entropy().forward(&logits, targets)?;
/// assert!(loss.to_scalar::<f32>()? > 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`longtail::Targets`], which these tensors become without a copy.
#[derive(Debug, Clone, Copy)]
pub struct TensorTargets<'a> {
    pub(crate) kind: TargetKind,
    pub(crate) targets: &'a Tensor,
    pub(crate) sample_weights: Option<&'a Tensor>,
}

/// How the target tensor is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Labels,
    Probs,
    MultiHot,
}

impl TargetKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Labels => "labels",
            Self::Probs => "probability targets",
            Self::MultiHot => "multi-hot targets",
        }
    }
}

impl<'a> TensorTargets<'a> {
    /// Hard labels: a `[B]` tensor of class indices (`u32` or `i64`).
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let labels = Tensor::new(&[0_i64, 2, 1], &Device::Cpu)?;
    /// let targets = longtail_candle::TensorTargets::labels(&labels);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn labels(labels: &'a Tensor) -> Self {
        Self { kind: TargetKind::Labels, targets: labels, sample_weights: None }
    }

    /// Probability targets: a `[B, K]` tensor whose rows are distributions.
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let probs = Tensor::new(&[[0.9_f64, 0.1], [0.5, 0.5]], &Device::Cpu)?;
    /// let targets = longtail_candle::TensorTargets::probs(&probs);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn probs(probs: &'a Tensor) -> Self {
        Self { kind: TargetKind::Probs, targets: probs, sample_weights: None }
    }

    /// Multi-hot targets: a `[B, K]` tensor with entries in `{0, 1}`.
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let tags = Tensor::new(&[[1.0_f32, 0.0, 1.0]], &Device::Cpu)?;
    /// let targets = longtail_candle::TensorTargets::multi_hot(&tags);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn multi_hot(multi_hot: &'a Tensor) -> Self {
        Self { kind: TargetKind::MultiHot, targets: multi_hot, sample_weights: None }
    }

    /// Weights each row's loss by `s_i ≥ 0` (a `[B]` tensor of the logits' float type).
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let dev = Device::Cpu;
    /// let (labels, weights) = (Tensor::new(&[1_u32, 0], &dev)?, Tensor::new(&[0.5_f32, 2.0], &dev)?);
    /// let targets = longtail_candle::TensorTargets::labels(&labels).with_sample_weights(&weights);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn with_sample_weights(mut self, weights: &'a Tensor) -> Self {
        self.sample_weights = Some(weights);
        self
    }
}

impl<'a> From<&'a Tensor> for TensorTargets<'a> {
    /// An integer tensor is labels, a float tensor probability rows.
    fn from(targets: &'a Tensor) -> Self {
        if targets.dtype().is_int() { Self::labels(targets) } else { Self::probs(targets) }
    }
}
