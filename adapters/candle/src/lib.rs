//! The [`longtail`] losses as candle ops: every loss of the crate over `[B, K]` candle logits,
//! whose `backward()` is the core's exact analytic gradient, plus priors, post-hoc adjustment and
//! metrics from candle tensors.
//!
//! # With candle
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use candle_nn::{Linear, Module, Optimizer, SGD, VarBuilder, VarMap};
//! use longtail::SoftmaxLoss;
//! use longtail_candle::{CandleLoss, prior_from_labels};
//!
//! let dev = Device::Cpu;
//! let x = Tensor::randn(0f32, 1.0, (8, 4), &dev)?;
//! let labels = Tensor::new(&[0_u32, 0, 0, 0, 0, 1, 1, 2], &dev)?;
//!
//! let varmap = VarMap::new();
//! let model: Linear = candle_nn::linear(4, 3, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
//! let mut sgd = SGD::new(varmap.all_vars(), 0.1)?;
//!
//! // Logit-adjusted cross-entropy from the training labels' prior.
//! let prior = prior_from_labels(&labels, 3)?;
//! let loss = SoftmaxLoss::<f32>::logit_adjusted(&prior).map_err(candle_core::Error::wrap)?;
//! for _ in 0..10 {
//!     let value = loss.forward(&model.forward(&x)?, &labels)?;
//!     sgd.backward_step(&value)?; // candle's autodiff, through the crate's analytic gradient
//! }
//! let logits = model.forward(&x)?;
//! println!("balanced accuracy {:.3}", longtail_candle::balanced_accuracy(&logits, &labels)?);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! # How it runs
//!
//! [`CandleLoss::forward`] is a candle custom op. On the CPU device its kernel reads the logits'
//! and the targets' contiguous storage in place (a non-contiguous tensor is made contiguous
//! first) and calls the core once for the loss and the gradient; the gradient is kept in the
//! graph, and the backward pass scales it by the incoming gradient. A tensor on another device is
//! an error that says so: move the logits to the CPU for the loss (`.to_device(&Device::Cpu)`).
//!
//! Errors of the core (a label out of range, a NaN logit, a shape mismatch) are
//! [`candle_core::Error::Wrapped`] with the core's message; nothing panics.
//!
//! # Data-parallel training
//!
//! The statistics that span a batch merge across replicas: [`longtail::prior::PriorEstimator`]
//! (fed by [`update_prior`]), [`longtail::F1Stats`] (from [`f1_stats`]) and
//! [`longtail::ConfusionMatrix`] (from [`confusion_matrix`]). `examples/data_parallel.rs` runs two
//! model replicas and all-reduces them.
//!
//! # References
//!
//! - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
//! - candle, `candle_core::CustomOp2` and `candle_nn::ops` (custom ops over CPU storage).
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod op;
mod read;
mod targets;
mod tools;

pub use op::CandleLoss;
pub use read::CandleFloat;
pub use targets::TensorTargets;
pub use tools::{
    adjusted_logits, balanced_accuracy, confusion_matrix, f1_stats, predict_adjusted, prior_from_labels,
    prior_from_probs, smooth_f1_with_stats, update_prior,
};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
