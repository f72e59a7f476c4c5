//! The one trait every loss implements, and its contract.

use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use super::{Reduction, Targets};
use crate::{Float, Result};

/// A classification loss over `[B, K]` logits, with its exact gradient with respect to the logits.
///
/// Every loss of the crate implements `Loss`, so training code is written once,
/// `fn step<L: Loss<F>>(loss: &L, …)`, or holds any loss as a `Box<dyn Loss<F>>` and switches at
/// run time.
///
/// # The contract
///
/// - **Shapes.** `logits` is `[B, K]`, `B ≥ 1` rows of `K ≥ 1` classes, any array or view
///   (contiguous rows are fastest). `targets` describe the same `B` rows ([`Targets`]: hard
///   labels, probability rows or multi-hot rows, with optional sample weights); each loss says
///   which kinds it takes. A gradient buffer is `[B, K]`, a per-sample loss buffer `[B]`.
/// - **Reductions.** The reduced loss is `Σ_i ℓ_i / D` ([`Reduction::Mean`], `D` the weight that
///   counts, stated by each loss) or `Σ_i ℓ_i` ([`Reduction::Sum`]); a batch whose weights are all
///   zero has loss 0 and gradient 0. The per-sample calls return every `ℓ_i` and `∂ℓ_i/∂z_i`,
///   unreduced, whatever the reduction.
/// - **Buffers.** The `_into` calls overwrite the caller's buffers, never accumulate into them;
///   they allocate no output, only scratch of a row or a block of rows (the one-vs-rest losses lay
///   hard labels, strided arrays and sample weights out as `B·K` values first). The allocating
///   calls wrap them.
/// - **Errors.** Parameters are checked when a loss is built; data on every call. Bad data is an
///   [`Err`](crate::Error) naming the row, class, shape or parameter at fault, never a panic, a
///   NaN or an `inf`. On an error no value is returned, and an `_into` buffer may hold partial
///   rows. Each loss lists its errors in the order it checks them.
/// - **Floats.** `f32` and `f64`; per-row losses are summed in `f64`.
///
/// The two required methods are the primitives; the others are provided. The provided methods
/// take targets as anything that converts into [`Targets`] (`&labels`, `&probs`, a `Targets`), and
/// are available on `Box<dyn Loss<F>>` and `&dyn Loss<F>` too.
///
/// # Example: every loss behind one interface
///
/// ```
/// use longtail::{
///     AsymmetricLoss, BinarySmoothF1Loss, LdamLoss, Loss, PairwiseMarginLoss, Poly1Loss, Prior,
///     SigmoidLoss, SmoothF1Loss, SoftmaxLoss, VsLoss, ZlprLoss,
/// };
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[100.0, 10.0, 1.0])?;
/// let losses: Vec<Box<dyn Loss<f64>>> = vec![
///     Box::new(SoftmaxLoss::cross_entropy()),
///     Box::new(SoftmaxLoss::logit_adjusted(&prior)?),
///     Box::new(SoftmaxLoss::focal(2.0)?.with_label_smoothing(0.1)?),
///     Box::new(SigmoidLoss::bce()),
///     Box::new(SigmoidLoss::focal(2.0)?.with_alpha(0.25)?),
///     Box::new(BinarySmoothF1Loss::new()),
///     Box::new(SmoothF1Loss::macro_f1()),
///     Box::new(ZlprLoss::new()),
///     Box::new(LdamLoss::new(&prior)?),
///     Box::new(PairwiseMarginLoss::from_prior(&prior, 1.0)?),
///     Box::new(VsLoss::new(&prior)?),
///     Box::new(Poly1Loss::new(2.0)?.with_logit_adjustment(&prior, 1.0)?),
///     Box::new(SigmoidLoss::bce().with_pos_weight(&[1.0, 10.0, 100.0])?),
///     Box::new(AsymmetricLoss::new()),
/// ];
/// let logits = array![[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]];
/// for loss in &losses {
///     let (value, grad) = loss.loss_and_grad(&logits, &[0, 2])?;
///     assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()));
/// }
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # Example: one generic training step
///
/// ```
/// use longtail::{Float, Loss, SoftmaxLoss, Targets};
/// use ndarray::{array, Array2, ArrayRef2};
///
/// /// One step of gradient descent on the logits themselves.
/// fn step<F: Float, L: Loss<F>>(loss: &L, logits: &mut Array2<F>, targets: &Targets<F>, lr: F) -> longtail::Result<F> {
///     let mut grad = Array2::zeros(logits.raw_dim());
///     let value = loss.loss_and_grad_into(logits, targets, &mut grad)?;
///     logits.zip_mut_with(&grad, |z, &g| *z = *z - lr * g);
///     Ok(value)
/// }
///
/// let mut logits = array![[0.0_f32, 0.0], [0.0, 0.0]];
/// let targets = Targets::labels(&[0, 1]);
/// let first = step(&SoftmaxLoss::cross_entropy(), &mut logits, &targets, 1.0)?;
/// let second = step(&SoftmaxLoss::cross_entropy(), &mut logits, &targets, 1.0)?;
/// assert!(second < first);
/// # Ok::<(), longtail::Error>(())
/// ```
pub trait Loss<F: Float>: core::fmt::Debug + Send + Sync {
    /// The reduced loss; if `grad_out` is given, its gradient with respect to the logits
    /// overwrites it (`[B, K]`).
    ///
    /// # Errors
    ///
    /// Each loss lists its errors, in the order they are checked; a `grad_out` of the wrong shape
    /// is [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) (`"grad_out"`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss, Targets};
    /// use ndarray::{array, Array2};
    ///
    /// let logits = array![[0.5_f64, -0.5], [2.0, 1.0]];
    /// let mut grad = Array2::from_elem((2, 2), f64::NAN); // overwritten, not accumulated into
    /// let value = SoftmaxLoss::cross_entropy().loss_into(&logits, &Targets::labels(&[1, 0]), Some(&mut grad))?;
    /// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F>;

    /// Every row's loss `ℓ_i` into `losses_out` (`[B]`); if `grad_out` is given, `∂ℓ_i/∂z_i`
    /// overwrites its row `i` (`[B, K]`). Unreduced: sample and class weights are applied, the
    /// mean's divisor is not.
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into), and
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) (`"losses_out"`) for a `losses_out`
    /// not of length `B`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss, Targets};
    /// use ndarray::{array, Array1};
    ///
    /// let logits = array![[1.0_f32, 0.0], [0.0, 1.0]];
    /// let mut losses = Array1::zeros(2);
    /// SoftmaxLoss::cross_entropy().per_sample_into(&logits, &Targets::labels(&[0, 0]), &mut losses, None)?;
    /// assert!(losses[1] > losses[0]); // the second row is wrong
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()>;

    /// How the per-row losses are reduced.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, SoftmaxLoss};
    /// assert_eq!(SoftmaxLoss::<f32>::cross_entropy().reduction(), Reduction::Mean);
    /// ```
    fn reduction(&self) -> Reduction;

    /// The reduced loss alone, for evaluation.
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let loss = SoftmaxLoss::cross_entropy().loss(&array![[0.0_f64, 0.0, 0.0]], &[1])?;
    /// assert!((loss - 3f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn loss<'t>(&self, logits: &ArrayRef2<F>, targets: impl Into<Targets<'t, F>>) -> Result<F>
    where
        Self: Sized,
        F: 't,
    {
        self.loss_into(logits, &targets.into(), None)
    }

    /// The reduced loss; its gradient with respect to the logits overwrites `grad_out` (`[B, K]`).
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::{array, Array2};
    ///
    /// let loss = SoftmaxLoss::focal(1.0)?;
    /// let logits = array![[0.5_f64, -0.5], [2.0, 1.0]];
    /// let mut grad = Array2::from_elem((2, 2), f64::NAN); // overwritten, not accumulated into
    /// let value = loss.loss_and_grad_into(&logits, &[1, 0], &mut grad)?;
    /// assert_eq!((value, grad), loss.loss_and_grad(&logits, &[1, 0])?);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn loss_and_grad_into<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        Self: Sized,
        F: 't,
    {
        self.loss_into(logits, &targets.into(), Some(grad_out))
    }

    /// The reduced loss and its gradient with respect to the logits, in a new `[B, K]` array.
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[1.0_f32, 2.0, 3.0], [1.0, 0.0, 0.0]];
    /// let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, &[2, 0])?;
    /// assert!(loss > 0.0);
    /// for row in grad.rows() {
    ///     assert!(row.sum().abs() < 1e-6); // each row of softmax − one-hot sums to 0
    /// }
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn loss_and_grad<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
    ) -> Result<(F, Array2<F>)>
    where
        Self: Sized,
        F: 't,
    {
        let mut grad = Array2::zeros(logits.raw_dim());
        let loss = self.loss_into(logits, &targets.into(), Some(&mut grad))?;
        Ok((loss, grad))
    }

    /// Every row's loss `ℓ_i`, unreduced.
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss, Targets};
    /// use ndarray::array;
    ///
    /// let logits = array![[1.0_f64, 0.0], [0.0, 1.0]];
    /// let targets = Targets::labels(&[0, 0]).with_sample_weights(&[1.0, 0.0]);
    /// let losses = SoftmaxLoss::cross_entropy().per_sample_loss(&logits, targets)?;
    /// assert_eq!(losses[1], 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn per_sample_loss<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
    ) -> Result<Array1<F>>
    where
        Self: Sized,
        F: 't,
    {
        let mut losses = Array1::zeros(logits.nrows());
        self.per_sample_into(logits, &targets.into(), &mut losses, None)?;
        Ok(losses)
    }

    /// Every row's loss `ℓ_i` into `losses_out` (`[B]`) and `∂ℓ_i/∂z_i` into `grad_out`
    /// (`[B, K]`), both overwritten.
    ///
    /// # Errors
    ///
    /// As [`per_sample_into`](Self::per_sample_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::{array, Array1, Array2};
    ///
    /// let logits = array![[1.0_f32, 0.0], [0.0, 1.0]];
    /// let (mut losses, mut grad) = (Array1::zeros(2), Array2::zeros((2, 2)));
    /// SoftmaxLoss::cross_entropy().per_sample_loss_and_grad_into(&logits, &[0, 0], &mut losses, &mut grad)?;
    /// assert!(losses[1] > losses[0] && grad[[1, 0]] < 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn per_sample_loss_and_grad_into<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<()>
    where
        Self: Sized,
        F: 't,
    {
        self.per_sample_into(logits, &targets.into(), losses_out, Some(grad_out))
    }

    /// Every row's loss `ℓ_i` and its gradient `∂ℓ_i/∂z_i`, unreduced, in new arrays.
    ///
    /// # Errors
    ///
    /// As [`per_sample_into`](Self::per_sample_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[1.0_f64, 0.0], [0.0, 3.0]];
    /// let loss = SoftmaxLoss::cross_entropy();
    /// let (losses, grads) = loss.per_sample_loss_and_grad(&logits, &[0, 0])?;
    /// let (sum, sum_grad) = loss.with_reduction(Reduction::Sum).loss_and_grad(&logits, &[0, 0])?;
    /// assert!((losses.sum() - sum).abs() < 1e-14);
    /// assert_eq!(grads, sum_grad);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    fn per_sample_loss_and_grad<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
    ) -> Result<(Array1<F>, Array2<F>)>
    where
        Self: Sized,
        F: 't,
    {
        let mut losses = Array1::zeros(logits.nrows());
        let mut grad = Array2::zeros(logits.raw_dim());
        self.per_sample_into(logits, &targets.into(), &mut losses, Some(&mut grad))?;
        Ok((losses, grad))
    }
}

/// Forwards the two primitives and the reduction of a loss behind a pointer.
macro_rules! forward_loss {
    ($($pointer:ty),*) => {$(
        impl<F: Float, L: Loss<F> + ?Sized> Loss<F> for $pointer {
            fn loss_into(
                &self,
                logits: &ArrayRef2<F>,
                targets: &Targets<'_, F>,
                grad_out: Option<&mut ArrayRef2<F>>,
            ) -> Result<F> {
                (**self).loss_into(logits, targets, grad_out)
            }

            fn per_sample_into(
                &self,
                logits: &ArrayRef2<F>,
                targets: &Targets<'_, F>,
                losses_out: &mut ArrayRef1<F>,
                grad_out: Option<&mut ArrayRef2<F>>,
            ) -> Result<()> {
                (**self).per_sample_into(logits, targets, losses_out, grad_out)
            }

            fn reduction(&self) -> Reduction {
                (**self).reduction()
            }
        }
    )*};
}

forward_loss!(Box<L>, &L, std::sync::Arc<L>);
