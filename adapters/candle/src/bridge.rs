//! The one place the adapter calls the core's losses.

use longtail::ndarray::{ArrayRef1, ArrayRef2};
use longtail::{Float, LdamLoss, PairwiseMarginLoss, Result, SmoothF1Loss, SoftmaxLoss, Targets};

/// A loss over `[B, K]` logits with its gradient, as the adapter calls it.
pub trait CoreLoss<F: Float>: core::fmt::Debug + Send + Sync {
    /// The reduced loss; `dL/dz` overwrites `grad_out`.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>;
    /// Every row's loss into `losses_out`; `dℓ_i/dz_i` overwrites `grad_out`.
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<()>;
}

impl<F: Float> CoreLoss<F> for SoftmaxLoss<F> {
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F> {
        self.loss_and_grad_into(logits, targets.clone(), grad_out)
    }
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<()> {
        self.per_sample_loss_and_grad_into(logits, targets.clone(), losses_out, grad_out)
    }
}

macro_rules! reduced_only {
    ($($ty:ty),*) => {$(
        impl<F: Float> CoreLoss<F> for $ty {
            fn loss_into(&self, logits: &ArrayRef2<F>, targets: &Targets<'_, F>, grad_out: &mut ArrayRef2<F>) -> Result<F> {
                self.loss_and_grad_into(logits, targets.clone(), grad_out)
            }
            fn per_sample_into(
                &self,
                _logits: &ArrayRef2<F>,
                _targets: &Targets<'_, F>,
                _losses_out: &mut ArrayRef1<F>,
                _grad_out: &mut ArrayRef2<F>,
            ) -> Result<()> {
                unimplemented!("until the core's loss trait")
            }
        }
    )*};
}
reduced_only!(LdamLoss<F>, PairwiseMarginLoss<F>);

impl<F: Float> CoreLoss<F> for SmoothF1Loss {
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F> {
        self.loss_and_grad_into(logits, targets.clone(), grad_out)
    }
    fn per_sample_into(
        &self,
        _logits: &ArrayRef2<F>,
        _targets: &Targets<'_, F>,
        _losses_out: &mut ArrayRef1<F>,
        _grad_out: &mut ArrayRef2<F>,
    ) -> Result<()> {
        unimplemented!("until the core's loss trait")
    }
}

impl<F: Float, L: CoreLoss<F> + ?Sized> CoreLoss<F> for &L {
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F> {
        (**self).loss_into(logits, targets, grad_out)
    }
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<()> {
        (**self).per_sample_into(logits, targets, losses_out, grad_out)
    }
}
