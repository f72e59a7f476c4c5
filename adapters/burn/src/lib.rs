//! The `longtail` losses as burn autodiff ops with their exact analytic gradients.
//!
//! [`LongtailLoss`] wraps any core loss (through the core's [`Loss`] interface) as a burn loss:
//! `try_forward(logits, &targets)` takes a `[B, K]` float [`burn::tensor::Tensor`] and
//! [`Targets`] (a label tensor or probability rows, optional sample weights) and returns the
//! reduced loss as a `[1]` tensor whose `backward()` is the core's gradient `dL/dz`, computed in
//! the same fused pass as the loss. The configs build the softmax family in burn's style:
//! [`SoftmaxLossConfig`], [`LogitAdjustedLossConfig`], [`FocalLossConfig`]. The statistics
//! helpers take tensors directly: [`prior_from_labels`], [`predict_adjusted`],
//! [`balanced_accuracy`].
//!
//! On burn's CPU backends (Flex, NdArray) the core kernel reads the logits in the backend's own
//! storage and its gradient becomes burn's tensor without a copy (only the labels, the sample
//! weights and the loss value are copied); on any other backend the softmax family runs as burn
//! tensor ops on the device and the other losses take a host round trip (see [`ComputePath`]).
//! Every error reaches the caller as a [`Result`] from `try_forward` ([`Error`] wraps the
//! core's error); `forward` is the panicking shorthand.
//!
//! # Example
//!
//! ```
//! use burn::tensor::{DType, Device, Int, Tensor};
//! use longtail_burn::{FocalLossConfig, Targets};
//!
//! let device = Device::flex().autodiff();
//! // burn stores floats as f32 unless told otherwise: an f64 loss takes f64 tensors.
//! let logits = Tensor::<2>::from_data([[1.0_f64, 0.0], [0.0, 3.0]], (&device, DType::F64)).require_grad();
//! let targets = Targets::labels(Tensor::<1, Int>::from_data([0, 1], &device));
//! let loss = FocalLossConfig::new(2.0).init::<f64>()?;
//! let value = loss.try_forward(logits.clone(), &targets)?;
//! let grad = logits.grad(&value.backward()).expect("tracked");
//! // The same numbers as the core call on the same batch.
//! use longtail::Loss;
//! let core = longtail::SoftmaxLoss::<f64>::focal(2.0)?;
//! let (core_value, core_grad) =
//!     core.loss_and_grad(&longtail::ndarray::array![[1.0, 0.0], [0.0, 3.0]], &[0, 1])?;
//! assert_eq!(value.into_scalar::<f64>(), core_value);
//! assert_eq!(grad.to_data().try_to_vec::<f64>().unwrap(), core_grad.into_raw_vec_and_offset().0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # References
//!
//! burn's custom backward (`burn-autodiff`'s `Backward` trait and its custom-kernel examples);
//! A. K. Menon et al., "Long-tail learning via logit adjustment", arXiv:2007.07314.

mod config;
mod element;
mod error;
mod host;
mod loss;
mod op;
mod stats;
mod targets;
mod tensor_ops;

pub use config::{FocalLossConfig, LogitAdjustedLossConfig, SoftmaxLossConfig};
pub use element::Element;
pub use error::{Error, Result};
pub use host::HostBackend;
pub use loss::LongtailLoss;
pub use op::ComputePath;
pub use stats::{
    balanced_accuracy, confusion_matrix, f1_stats, predict, predict_adjusted, prior_from_labels,
};
pub use targets::Targets;

/// The core crate's loss interface: every core loss implements it, and so can a user's.
pub use longtail::Loss;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
