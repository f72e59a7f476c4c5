//! A core loss as a burn loss: `try_forward(logits, targets)` returns the loss tensor whose
//! `backward()` is the core's analytic gradient.

use burn::tensor::Tensor;

use crate::op::{ComputePath, forward};
use crate::{Element, Loss, Result, Targets};

/// Any core loss over `[B, K]` logits as a burn loss, generic over the core's [`Loss`] trait.
///
/// `try_forward` takes the `[B, K]` logits tensor and the [`Targets`] and returns the reduced
/// loss as a `[1]` tensor on the logits' device. Its backward is the core's exact gradient `dL/dz`,
/// computed in the same fused pass as the loss (see [`ComputePath`] for where it runs).
///
/// # Errors
///
/// `try_forward` returns the core's error for a bad batch or the adapter's for a tensor it
/// cannot read ([`Error`](crate::Error)); nothing is recorded in the graph then. `forward` is the
/// same call for code that treats a bad batch as a bug: it panics with the error's message.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use longtail::SoftmaxLoss;
/// use longtail_burn::{LongtailLoss, Targets};
///
/// let device = Device::flex().autodiff();
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.0, -1.0], [0.0, 1.0, 0.5]], &device).require_grad();
/// let labels = Targets::labels(Tensor::<1, Int>::from_data([0, 2], &device));
/// let loss = LongtailLoss::new(SoftmaxLoss::<f32>::focal(2.0)?);
/// let value = loss.try_forward(logits.clone(), &labels)?;
/// let grads = value.backward();
/// let grad = logits.grad(&grads).expect("the logits are tracked");
/// assert_eq!(grad.dims(), [2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
///
/// burn's custom backward (`burn-autodiff`'s `Backward` trait), as in its
/// `examples/custom-cubecl-kernel`.
#[derive(Debug, Clone)]
pub struct LongtailLoss<L> {
    loss: L,
    path: ComputePath,
}

impl<L> LongtailLoss<L> {
    /// The core loss `loss` as a burn loss, on the default [`ComputePath::Auto`].
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::LongtailLoss::new(longtail::SoftmaxLoss::<f64>::cross_entropy());
    /// assert_eq!(loss.path(), longtail_burn::ComputePath::Auto);
    /// ```
    pub fn new(loss: L) -> Self {
        Self { loss, path: ComputePath::Auto }
    }

    /// Forces a computation path (for a test against the core, or the host kernel on a GPU).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail_burn::{ComputePath, LongtailLoss};
    /// let loss = LongtailLoss::new(longtail::SoftmaxLoss::<f32>::cross_entropy())
    ///     .with_path(ComputePath::TensorOps);
    /// assert_eq!(loss.path(), ComputePath::TensorOps);
    /// ```
    pub fn with_path(mut self, path: ComputePath) -> Self {
        self.path = path;
        self
    }

    /// The computation path.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::LongtailLoss::new(longtail::SoftmaxLoss::<f32>::cross_entropy());
    /// assert_eq!(loss.path(), longtail_burn::ComputePath::Auto);
    /// ```
    pub fn path(&self) -> ComputePath {
        self.path
    }

    /// The core loss.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::LongtailLoss::new(longtail::SoftmaxLoss::<f32>::focal(2.0)?);
    /// assert_eq!(loss.inner().gamma(), 2.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn inner(&self) -> &L {
        &self.loss
    }

    /// The reduced loss as a `[1]` tensor whose backward is the core's gradient.
    ///
    /// # Errors
    ///
    /// [`Error::Core`](crate::Error::Core) for a batch the core rejects (shapes, a label out of
    /// range, a non-finite logit, a bad target or weight); [`Error::DType`](crate::Error::DType)
    /// if a tensor is not in the loss's float type; [`Error::Label`](crate::Error::Label) for a
    /// negative label; on the tensor-op path [`Error::NonFinite`](crate::Error::NonFinite) and
    /// [`Error::Invalid`](crate::Error::Invalid).
    ///
    /// # Example
    ///
    /// See [`LongtailLoss`].
    pub fn try_forward<F: Element>(&self, logits: Tensor<2>, targets: &Targets) -> Result<Tensor<1>>
    where
        L: Loss<F> + 'static,
    {
        forward(&self.loss, logits, targets, self.path)
    }

    /// [`try_forward`](Self::try_forward), panicking on an error.
    ///
    /// # Panics
    ///
    /// With the error's message, where `try_forward` returns an error.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Int, Tensor};
    /// use longtail_burn::{LongtailLoss, Targets};
    /// let device = Device::flex();
    /// let loss = LongtailLoss::new(longtail::SoftmaxLoss::<f32>::cross_entropy());
    /// let logits = Tensor::<2>::from_data([[0.0_f32, 0.0]], &device);
    /// let value = loss.forward(logits, &Targets::labels(Tensor::<1, Int>::from_data([1], &device)));
    /// assert!((value.into_scalar::<f32>() - 2f32.ln()).abs() < 1e-6);
    /// ```
    pub fn forward<F: Element>(&self, logits: Tensor<2>, targets: &Targets) -> Tensor<1>
    where
        L: Loss<F> + 'static,
    {
        self.try_forward(logits, targets).unwrap_or_else(|e| panic!("longtail loss: {e}"))
    }
}
