//! Priors and long-tail metrics straight from burn tensors.
//!
//! The logits are read in place on the CPU backends (a host copy elsewhere); labels are copied
//! (`B` integers).

use burn::tensor::{Int, Tensor};
use longtail::metrics::ConfusionMatrix;
use longtail::{F1Stats, Prior, SmoothF1Loss, adjust};

use crate::op::with_host_logits;
use crate::targets::read_labels;
use crate::{Element, Result};

/// The class prior (counts) of a `[B]` label tensor over `classes` classes.
///
/// # Errors
///
/// [`Error::Label`](crate::Error::Label) for a negative label; the errors of
/// [`Prior::from_labels`] (a label `≥ classes`, no classes, a class never seen).
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// let labels = Tensor::<1, Int>::from_data([0, 0, 0, 1], &Device::flex());
/// let prior = longtail_burn::prior_from_labels(&labels, 2)?;
/// assert_eq!(prior.counts(), &[3.0, 1.0]);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
pub fn prior_from_labels(labels: &Tensor<1, Int>, classes: usize) -> Result<Prior> {
    Ok(Prior::from_labels(&read_labels(labels)?, classes)?)
}

/// Post-hoc logit adjustment: `argmax_k z_ik − τ·log π_k` for each row of a `[B, K]` logits
/// tensor of float type `F`.
///
/// # Errors
///
/// [`Error::DType`](crate::Error::DType) if the logits are not `F`; the errors of
/// [`adjust::predict_adjusted`] (prior of another length, a non-finite logit or `τ`).
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let prior = longtail::Prior::from_counts(&[99.0, 1.0])?;
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.0]], &Device::flex());
/// assert_eq!(longtail_burn::predict_adjusted::<f32>(&logits, &prior, 1.0)?, vec![1]);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
pub fn predict_adjusted<F: Element>(logits: &Tensor<2>, prior: &Prior, tau: F) -> Result<Vec<usize>> {
    Ok(with_host_logits::<F, _>(logits, |z| adjust::predict_adjusted(z, prior, tau))??)
}

/// `argmax_k z_ik` for each row of a `[B, K]` logits tensor of float type `F`.
///
/// # Errors
///
/// [`Error::DType`](crate::Error::DType); the errors of [`adjust::predict`].
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.0], [0.0, 1.0]], &Device::flex());
/// assert_eq!(longtail_burn::predict::<f32>(&logits)?, vec![0, 1]);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
pub fn predict<F: Element>(logits: &Tensor<2>) -> Result<Vec<usize>> {
    Ok(with_host_logits::<F, _>(logits, |z| adjust::predict(z))??)
}

/// The confusion matrix of the logits' predictions (post-hoc adjusted by `(prior, τ)` if given)
/// against a `[B]` label tensor.
///
/// # Errors
///
/// The errors of [`predict`] / [`predict_adjusted`] and of [`ConfusionMatrix::new`].
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// let device = Device::flex();
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.0], [0.0, 1.0], [1.0, 0.0]], &device);
/// let labels = Tensor::<1, Int>::from_data([0, 1, 1], &device);
/// let m = longtail_burn::confusion_matrix::<f32>(&logits, &labels, None)?;
/// assert_eq!(m.balanced_accuracy(), 0.75); // class 0: 1 of 1, class 1: 1 of 2
/// # Ok::<(), longtail_burn::Error>(())
/// ```
pub fn confusion_matrix<F: Element>(
    logits: &Tensor<2>,
    labels: &Tensor<1, Int>,
    adjustment: Option<(&Prior, F)>,
) -> Result<ConfusionMatrix> {
    let predictions = match adjustment {
        Some((prior, tau)) => predict_adjusted(logits, prior, tau)?,
        None => predict::<F>(logits)?,
    };
    Ok(ConfusionMatrix::new(&read_labels(labels)?, &predictions, logits.dims()[1])?)
}

/// Balanced accuracy (mean per-class recall) of the logits' predictions, post-hoc adjusted by
/// `(prior, τ)` if given.
///
/// # Errors
///
/// The errors of [`confusion_matrix`].
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// let device = Device::flex();
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.0], [0.5, 0.0]], &device);
/// let labels = Tensor::<1, Int>::from_data([0, 1], &device);
/// assert_eq!(longtail_burn::balanced_accuracy::<f32>(&logits, &labels, None)?, 0.5);
/// let prior = longtail::Prior::from_counts(&[3.0, 1.0])?;
/// assert_eq!(longtail_burn::balanced_accuracy(&logits, &labels, Some((&prior, 1.0_f32)))?, 1.0);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
///
/// # References
///
/// scikit-learn `balanced_accuracy_score`.
pub fn balanced_accuracy<F: Element>(
    logits: &Tensor<2>,
    labels: &Tensor<1, Int>,
    adjustment: Option<(&Prior, F)>,
) -> Result<f64> {
    Ok(confusion_matrix(logits, labels, adjustment)?.balanced_accuracy())
}

/// The smooth-F1 batch statistics ([`F1Stats`]) of a `[B, K]` logits tensor against a `[B]`
/// label tensor: the per-class sums a data-parallel trainer all-reduces across replicas before
/// each loss call.
///
/// # Errors
///
/// [`Error::DType`](crate::Error::DType), [`Error::Label`](crate::Error::Label); the errors of
/// [`SmoothF1Loss::stats`].
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// let device = Device::flex();
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.0], [0.0, 1.0]], &device);
/// let labels = Tensor::<1, Int>::from_data([0, 1], &device);
/// let stats = longtail_burn::f1_stats(&longtail::SmoothF1Loss::<f32>::macro_f1(), &logits, &labels)?;
/// assert_eq!(stats.weight(), 2.0);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
///
/// # References
///
/// J. Su, kexue.fm/archives/7708 (2020).
pub fn f1_stats<F: Element>(
    loss: &SmoothF1Loss<F>,
    logits: &Tensor<2>,
    labels: &Tensor<1, Int>,
) -> Result<F1Stats> {
    let labels = read_labels(labels)?;
    Ok(with_host_logits::<F, _>(logits, |z| loss.stats(z, &labels[..]))??)
}
