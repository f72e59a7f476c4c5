//! The losses over `[B, K]` logit batches, each with its analytic gradient with respect to the logits
//! (exact, except that the smooth-F1 losses hold the batch's F1 constant and the Seesaw loss its
//! compensation factor, as their references do).
//!
//! [`SoftmaxLoss`] is the softmax family (cross-entropy, logit-adjusted, class-weighted, focal,
//! label smoothing, probability targets, per-sample weights) in one fused kernel. Beside it:
//! the binary losses over `[B]` logits ([`SigmoidLoss`], [`BinarySmoothF1Loss`]), the smooth-F1
//! softmax loss with its mergeable [`F1Stats`] ([`SmoothF1Loss`]), the multi-label [`ZlprLoss`] and
//! [`AsymmetricLoss`],
//! the margin losses [`LdamLoss`] and [`PairwiseMarginLoss`], the cross-entropy variants on
//! transformed logits [`VsLoss`] (vector scaling) and [`Poly1Loss`], the stateful losses
//! [`SeesawLoss`] and [`EqlV2Loss`] with their running [`SeesawState`] and [`EqlV2State`], and the
//! batch-statistic [`TverskyLoss`] with its mergeable [`TverskyStats`].

mod asymmetric;
mod binary_rows;
mod binary_targets;
mod class_values;
mod contract;
mod eqlv2;
mod f1_stats;
mod few_classes;
mod hard_labels;
mod kernel;
mod ldam;
mod one_vs_rest;
mod pairwise;
mod poly;
mod results;
mod seesaw;
mod short_rows;
mod sigmoid;
mod smooth_f1;
mod smooth_f1_binary;
mod softmax_loss;
mod targets;
mod tversky;
mod tversky_stats;
mod two_classes;
mod validate;
mod vs;
mod zlpr;

pub use asymmetric::AsymmetricLoss;
pub use binary_targets::BinaryTargets;
pub use class_values::ClassValues;
pub use contract::Loss;
pub use eqlv2::{EqlV2Loss, EqlV2State};
pub use f1_stats::F1Stats;
pub use ldam::LdamLoss;
pub use pairwise::PairwiseMarginLoss;
pub use poly::Poly1Loss;
pub use seesaw::{SeesawLoss, SeesawState};
pub use sigmoid::SigmoidLoss;
pub use smooth_f1::{F1Average, SmoothF1Loss};
pub use smooth_f1_binary::BinarySmoothF1Loss;
pub use softmax_loss::SoftmaxLoss;
pub use targets::{Labels, Targets};
pub use tversky::{TverskyLoss, TverskyMode};
pub use tversky_stats::TverskyStats;
pub use vs::VsLoss;
pub use zlpr::ZlprLoss;

/// How a loss reduces the per-row losses `ℓ_i` of a batch to one number.
///
/// # Example
///
/// ```
/// use longtail::{Loss, Reduction, SoftmaxLoss};
/// use ndarray::array;
///
/// let logits = array![[0.0_f64, 1.0], [1.0, 0.0]];
/// let mean = SoftmaxLoss::cross_entropy().loss(&logits, &[0, 0])?;
/// let sum = SoftmaxLoss::cross_entropy().with_reduction(Reduction::Sum).loss(&logits, &[0, 0])?;
/// assert!((sum - 2.0 * mean).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// PyTorch `torch.nn.functional.cross_entropy` (`reduction=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// `Σ_i ℓ_i / D`: `D` is the total weight that counts (`Σ_i s_i·w_{y_i}` for hard labels,
    /// `Σ_i s_i` for probability targets; `B` without weights). `D = 0` gives loss 0, gradient 0.
    #[default]
    Mean,
    /// `Σ_i ℓ_i`.
    Sum,
}
