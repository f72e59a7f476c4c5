//! Imbalance-aware classification losses over `ndarray` batches, each returning its value **and
//! its analytic gradient with respect to the logits**, for `f32` and `f64`: the exact gradient
//! for every loss but the smooth-F1 ones, whose gradient holds the batch's F1 constant.
//!
//! Long-tailed data has a few frequent classes and many rare ones. The losses here account for the
//! class prior `π`: logit adjustment (`z + τ·log π`), class weights, focal modulation, label
//! smoothing and probability targets, freely combined in one fused pass ([`SoftmaxLoss`]). The
//! gradient is computed with the loss, so the crate drops into any Rust training loop.
//!
//! # Example: the whole path
//!
//! Estimate the prior, train with a prior-aware loss, predict with post-hoc adjustment, measure
//! balanced accuracy:
//!
//! ```
//! use longtail::adjust::{predict, predict_adjusted};
//! use longtail::metrics::balanced_accuracy;
//! use longtail::{Loss, Prior, SoftmaxLoss};
//! use ndarray::{Array2, array};
//!
//! // Training labels of a long-tailed problem: class 0 is 100× more frequent than class 2.
//! let train_labels: Vec<usize> = (0..111).map(|i| if i < 100 { 0 } else if i < 110 { 1 } else { 2 }).collect();
//! let prior = Prior::from_labels(&train_labels, 3)?;
//!
//! // Logit-adjusted cross-entropy (Menon et al. 2020): the rare classes get a larger margin.
//! let loss = SoftmaxLoss::logit_adjusted(&prior)?;
//! let mut logits = array![[2.0_f32, 0.1, -1.0], [1.5, 0.3, 0.0], [0.2, 1.1, 0.4], [1.0, 0.2, 0.9]];
//! let labels = [0, 0, 1, 2];
//!
//! // A few gradient steps on the logits stand in for a model's training loop.
//! let mut grad = Array2::zeros(logits.raw_dim());
//! let first = loss.loss_and_grad_into(&logits, &labels, &mut grad)?;
//! for _ in 0..20 {
//!     loss.loss_and_grad_into(&logits, &labels, &mut grad)?;
//!     logits.zip_mut_with(&grad, |z, &g| *z -= 2.0 * g);
//! }
//! assert!(loss.loss(&logits, &labels)? < first);
//!
//! // A model trained with logit adjustment predicts by the plain argmax. One trained with plain
//! // cross-entropy is adjusted after training instead: the argmax of z − τ·log π.
//! let predictions = predict(&logits)?;
//! let plain_ce_predictions = predict_adjusted(&logits, &prior, 1.0)?;
//! assert_eq!(plain_ce_predictions.len(), 4);
//!
//! // The long-tail metric: the mean of the per-class recalls.
//! assert_eq!(balanced_accuracy(&labels, &predictions, 3)?, 1.0);
//!
//! // Bad input is an error that names the culprit, never a panic or a NaN.
//! let err = loss.loss(&logits, &[0, 0, 1, 3]).unwrap_err();
//! assert_eq!(err.to_string(), "label 3 at row 3 is not a class index 0..3");
//! # Ok::<(), longtail::Error>(())
//! ```
//!
//! # The losses
//!
//! - [`SoftmaxLoss`]: softmax cross-entropy, logit-adjusted, class-weighted, focal, label smoothing.
//! - [`SigmoidLoss`]: binary cross-entropy with logits (`bce`) and sigmoid focal loss (`focal`), over
//!   `[B, K]` logits as one-vs-rest decisions or a binary model's `[B]` logits.
//! - [`BinarySmoothF1Loss`]: binary cross-entropy weighted by the batch's soft F1 (a surrogate
//!   gradient: F1 held constant).
//! - [`SmoothF1Loss`]: softmax one-vs-rest cross-entropy weighted by the soft macro or micro F1,
//!   from the local batch or merged [`F1Stats`] (a surrogate gradient: F1 held constant).
//! - [`ZlprLoss`]: the ZLPR multi-label loss, with `decode` (`s > 0`) and a label-prior adjustment.
//! - [`AsymmetricLoss`]: ASL, multi-label one-vs-rest with separate focusing of positives and
//!   negatives and a probability margin that drops easy negatives.
//! - [`LdamLoss`]: label-distribution-aware margins `∝ n_k^{−1/4}` on scaled logits (LDAM-DRW).
//! - [`PairwiseMarginLoss`]: cross-entropy with a `K×K` margin matrix; logit adjustment as a special case.
//! - [`VsLoss`]: vector scaling, cross-entropy on `Δ_k·z_k + τ·log π_k` with `Δ_k = (n_k/n_max)^γ`.
//! - [`Poly1Loss`]: cross-entropy plus `ε·(1 − p_y)`, with logit adjustment and class weights.
//!
//! # Conventions
//!
//! - Every loss implements [`Loss`]: its page states the contract once (shapes, reductions,
//!   buffers overwritten and never accumulated into, errors), and training code can hold any loss
//!   as a `Box<dyn Loss<F>>`. Every loss takes [`Targets`]: hard labels (`usize` or `u32`),
//!   probability rows or multi-hot rows, with sample weights.
//! - Parameters are validated when a loss is built (`with_*` setters return [`Result`]); data is
//!   validated on each call. Constructors that take a prior or counts take a [`&Prior`](Prior)
//!   or any array ([`ClassValues`]).
//! - `-inf` logits are legal masks; NaN and `+inf` are errors.
//! - Logits and gradient buffers may be any array or view (`&ArrayRef2<F>`); the crate re-exports
//!   the `ndarray` it is built on as [`longtail::ndarray`](ndarray).
//! - [`CosineHead`] gives the normalised logits (and their backward pass) that [`LdamLoss`]
//!   assumes.
//!
//! # Around the losses
//!
//! - [`prior`]: class priors from labels, counts or probability targets (streaming, mergeable),
//!   class weights and the DRW schedule, label-shift estimation of a target prior (EM, BBSE).
//! - [`adjust`]: post-hoc logit adjustment, Bayes prior shift, `τ` tuning, binary threshold moving.
//! - [`metrics`]: confusion matrix, balanced accuracy, per-class and macro scores, worst-class and
//!   geometric-mean recall, the many/medium/few-shot split.
//!
//! # See it work
//!
//! `cargo run --release -p longtail-demo` (in the repository) trains one model with every loss
//! here on long-tailed UCI digits and a Gaussian mixture with known Bayes errors, and prints
//! accuracy, balanced accuracy, worst-class recall and many/medium/few-shot recall for each
//! (`demo/`). `demo/examples/quickstart.rs` is the shortest useful program.
//!
//! # References
//!
//! - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
//! - T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
//! - K. Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
//!   NeurIPS 2019, arXiv:1906.07413.
//! - J. Su et al., "ZLPR: A Novel Loss for Multi-label Classification", arXiv:2208.02955.
//! - J. Su, "再谈类别不平衡问题：调节权重与魔改Loss的对比联系", kexue.fm/archives/7708 (smooth F1).
//! - P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the log-sum-exp and softmax
//!   functions", IMA Journal of Numerical Analysis, 2021.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod adjust;
mod cosine;
mod error;
mod float;
mod group;
pub mod loss;
pub mod metrics;
pub mod prior;
mod rows;
mod simd;
pub mod softmax;

pub use cosine::CosineHead;
pub use error::{Error, Result};
pub use float::Float;
pub use loss::{
    AsymmetricLoss, BinarySmoothF1Loss, BinaryTargets, ClassValues, F1Average, F1Stats, Labels, LdamLoss,
    Loss, PairwiseMarginLoss, Poly1Loss, Reduction, SigmoidLoss, SmoothF1Loss, SoftmaxLoss, Targets, VsLoss,
    ZlprLoss,
};
pub use metrics::ConfusionMatrix;
pub use ndarray;
pub use prior::Prior;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
