//! The core losses behind one interface, as the adapter calls them.
//!
//! [`Loss`] is the one primitive the adapter needs from a core loss: the reduced loss and, when
//! asked, its gradient with respect to the logits written into a caller's buffer.

use core::fmt::Debug;

use longtail::ndarray::ArrayRef2;
use longtail::{Float, LdamLoss, PairwiseMarginLoss, SoftmaxLoss, Targets};

/// A core loss over `[B, K]` logits: the reduced loss, and `dL/dz` into `grad_out` when given.
///
/// `grad_out` is overwritten, never accumulated into; on an error it may hold partial rows.
///
/// # Errors
///
/// The core's [`longtail::Error`] for a bad batch (shape, label, non-finite logit, target).
///
/// # Example
///
/// ```
/// use longtail::SoftmaxLoss;
/// use longtail::ndarray::array;
/// use longtail_burn::Loss;
///
/// let mut grad = array![[0.0_f64, 0.0]];
/// let loss = SoftmaxLoss::cross_entropy();
/// let value = Loss::loss_into(&loss, &array![[0.0, 0.0]], &(&[1][..]).into(), Some(&mut grad))?;
/// assert!((value - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(grad.row(0).to_vec(), vec![0.5, -0.5]);
/// # Ok::<(), longtail::Error>(())
/// ```
pub trait Loss<F: Float>: Debug + Send + Sync {
    /// The reduced loss; if `grad_out` is `Some`, `dL/dz` overwrites it.
    ///
    /// # Errors
    ///
    /// See the trait.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> longtail::Result<F>;
}

macro_rules! labelled_loss {
    ($($loss:ident),*) => {$(
        impl<F: Float> Loss<F> for $loss<F> {
            fn loss_into(
                &self,
                logits: &ArrayRef2<F>,
                targets: &Targets<'_, F>,
                grad_out: Option<&mut ArrayRef2<F>>,
            ) -> longtail::Result<F> {
                match grad_out {
                    Some(grad) => self.loss_and_grad_into(logits, targets.clone(), grad),
                    None => self.loss(logits, targets.clone()),
                }
            }
        }
    )*};
}

labelled_loss!(SoftmaxLoss, LdamLoss, PairwiseMarginLoss);

impl<F: Float, L: Loss<F> + ?Sized> Loss<F> for Box<L> {
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> longtail::Result<F> {
        (**self).loss_into(logits, targets, grad_out)
    }
}
