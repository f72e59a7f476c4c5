//! Hostile inputs: arbitrary bit patterns of logits, weights and parameters for the public entry
//! points, `f32` and `f64`, and named regressions for extreme but legal inputs.
//!
//! Every call has three acceptable outcomes only:
//! - `Err` (for the generated cases: where the reference says the input is outside the documented
//!   domain, or the exact result — or a transform of a finite input — is beyond the float's range;
//!   an input whose exact result lies well inside the range must not be refused);
//! - `Ok` with every output finite and within the tolerance of a reference computed here from the
//!   formulas, in `f64` with an extended exponent ([`X`]: an `f64` mantissa and an `i64` binary
//!   exponent) wherever `f64` itself would overflow or underflow.
//!
//! Tolerances (`rtol` below) are relative to the magnitude of the terms that make up each output
//! (`p_j·Σ_{k≠j} h_k + h_j·(1 − p_j)` for a softmax gradient entry), plus the float's smallest
//! normal number for results that underflow: `1e-4` for `f32` and `1e-11` for `f64`, which allow
//! for `exp`'s condition number `|z − max|·ε` (up to ~750·ε) and nothing like a real bug.
//!
//! `HOSTILE_SURVEY=1 cargo test --test hostile -- --nocapture` prints the calls and the failing
//! ones per entry point (`HOSTILE_LOG=path` writes each failure, `HOSTILE_SEED=n` draws other
//! cases than the fixed default).
//!
//! Known limits, which the generators or tolerances state where they apply:
//! - the crate's vectorised `exp` flushes results below the smallest normal number to 0 (its
//!   documented contract), so a term `w·e^x` with such an `e^x` is lost: the tolerance grants
//!   `4·min_normal` times the largest weight product of the case (times what else multiplies the
//!   term: `γ` in a focusing derivative, `|ε|` in Poly-1, the cross-entropy in `(1 − p_t)^γ·ce`);
//! - row losses are summed in `f64`: for `f64` logits, a batch whose `Σ_i ℓ_i` exceeds `f64` may
//!   report an overflow although its mean would fit; likewise an `f64` sigmoid decision whose
//!   unweighted `v·softplus(−s)` (positive weight `v`) or `γ·ce` exceeds `f64`;
//! - weights are scaled by their maximum: weights whose ratios exceed the float's range lose the
//!   small ones, so the generators draw each case's weights within `2^16` of one magnitude (of any
//!   size, subnormal to the maximum);
//! - LDAM's scale multiplies the gradient inside the kernel, so the generator keeps it below
//!   `1e6`;
//! - the smooth-F1 and Tversky statistics are sums in `f64`: their public `stats` calls are an
//!   overflow beyond `f64`; the Tversky losses, whose `smooth` and `ε` are absolute, take the
//!   sums as they are, so `f64` sample weights whose sums exceed `f64` are beyond them;
//! - the Tversky generator draws `α`, `β` and `smooth` within `[10⁻⁶, 10⁶]` (or 0, ½, 1) and
//!   `ε` within `[10⁻¹², 1]`: beyond, `∂TI/∂TP = 1/D − (TP + smooth)(1 − α − β)/D²` cancels in the
//!   reference as in the crate;
//! - label-shift EM keeps its iterate `q` in `f64` and takes `q/π` from logarithms: its generator
//!   allows each step `8ε·(K + 2·(max|log π_k| + max|log q_k|))` relative to every `q_k`, and an iterate
//!   below the normal range the digits of a subnormal, which later steps multiply on;
//! - BBSE refuses a confusion matrix whose solve's error bound `K·κ∞·ε` exceeds `10⁻⁶`: its
//!   generator accepts either outcome within a factor 2 of that limit, and judges the other
//!   solutions within `8K²·κ∞·ε·‖v‖∞` of the exact (integer, Cramer) solution `v`;
//! - the Tversky statistics are the products `s·y·p` as they are: with an `f64` weight near the
//!   smallest subnormal they round to 0, and a class present in the batch may count as absent
//!   (other seeds than the default find such a case now and then);
//! - the macro smooth-F1 scales `c_k = 2W/(K·S_k)` are divided by the largest where it is 2 or
//!   more: a scale below `min_normal` times the largest (merged masses whose ratio exceeds the
//!   float's range) is lost with its terms, so the merged-statistics generator leaves such
//!   statistics out;
//! - the Tversky mean `(1/K)·Σ_k (1 − TI_k)` is an `f64`: merged statistics whose `FP_k`, `FN_k`
//!   are subnormal beside `TP_k` make it subnormal or 0, and the gradient of `γ ≠ 1` (through
//!   `L^{γ−1}`) loses its digits (other seeds than the default find such a case now and then);
//! - the cosine head holds its unit vectors in `F`: an entry below the smallest normal number
//!   loses its digits, an error the backward pass multiplies by up to `max|G|·B·K/|v|`;
//! - beyond these, every generator run must pass: [`KNOWN_LIMIT`] is 0.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use longtail::metrics::{Shot, ShotSplit};
use longtail::prior::{ClassWeights, LabelShiftEm};
use longtail::softmax::{log_softmax, log_sum_exp, softmax};
use longtail::{
    AsymmetricLoss, BinarySmoothF1Loss, BinaryTargets, ConfusionMatrix, Error, F1Stats, Float, LdamLoss,
    Loss, PairwiseMarginLoss, Poly1Loss, Prior, Reduction, SigmoidLoss, SmoothF1Loss, SoftmaxLoss, Targets,
    TverskyLoss, VsLoss, ZlprLoss,
};
use ndarray::{Array1, Array2, array};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

mod adjust;
mod asymmetric;
mod cosine;
mod drivers;
mod eqlv2;
mod estimator;
mod judge;
mod label_shift;
mod ldam;
mod log_loss;
mod margins;
mod metrics;
mod priors;
mod regressions;
mod seesaw;
mod sigmoid;
mod smooth_f1;
mod softmax_family;
mod softmax_fns;
mod tune_tau;
mod tversky;
mod x;
mod zlpr;

use drivers::*;
use judge::*;
use margins::*;
use sigmoid::*;
use smooth_f1::*;
use softmax_family::*;
use x::*;
