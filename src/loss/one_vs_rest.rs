//! The binary losses over a batch: `[B, K]` logits as `B·K` one-vs-rest decisions, or `[B]` logits
//! of a binary model, both as flat slices of logits, targets and weights.

use std::borrow::Cow;

use ndarray::{ArrayRef1, ArrayRef2, ArrayView2};

use super::Reduction;
use super::binary_rows::{binary_weight_exponent, contiguous, scaled_total_weight};
use super::binary_targets::BinaryTargets;
use super::results::reduced_loss;
use super::targets::{RowKind, TargetKind, Targets};
use super::validate::{OutputShape, batch_dims, check_labels, check_sample_weights};
use crate::error::check_shape;
use crate::float::{LANES, apply_pow2, split_scale};
use crate::simd::{Kernel, dispatch};
use crate::softmax::check_logits;
use crate::{Error, Float, Result};

/// The decisions of a validated batch, one per logit, in row-major order: each logit `s`, its
/// target `y ∈ [0, 1]` and its row's sample weight.
pub(super) struct Decisions<'a, F: Clone> {
    pub logits: Cow<'a, [F]>,
    pub targets: Cow<'a, [F]>,
    /// Per decision: row `i`'s weight repeated `K` times (`None` without sample weights).
    pub weights: Option<Cow<'a, [F]>>,
    /// Decisions per row: `K`, or 1 for a binary model.
    pub classes: usize,
}

impl<'a, F: Float> Decisions<'a, F> {
    /// The `B·K` decisions of a validated `[B, K]` batch: hard labels as one-hot rows, probability
    /// or multi-hot rows as they are (borrowed when contiguous).
    pub fn of_batch(logits: &'a ArrayRef2<F>, targets: &'a Targets<'_, F>) -> Self {
        let (batch, classes) = logits.dim();
        let targets_flat = match &targets.kind {
            TargetKind::Labels(labels) => {
                let mut one_hot = vec![F::zero(); batch * classes];
                labels.iter().enumerate().for_each(|(i, &y)| one_hot[i * classes + y] = F::one());
                Cow::Owned(one_hot)
            }
            TargetKind::Rows(rows, _) => flat(rows),
        };
        let weights = targets
            .sample_weights
            .as_ref()
            .map(|w| Cow::Owned(w.iter().flat_map(|&w| std::iter::repeat_n(w, classes)).collect::<Vec<F>>()));
        let logits =
            logits.as_slice().map_or_else(|| Cow::Owned(logits.iter().copied().collect()), Cow::Borrowed);
        Self { logits, targets: targets_flat, weights, classes }
    }

    /// The `B` decisions of a validated `[B]` batch.
    pub fn of_binary(logits: &'a ArrayRef1<F>, targets: &'a BinaryTargets<'_, F>) -> Self {
        Self {
            logits: contiguous(logits),
            targets: contiguous(&targets.targets),
            weights: targets.sample_weights.as_ref().map(|w| contiguous(w)),
            classes: 1,
        }
    }
}

/// A `[B, K]` array as a row-major slice, borrowed if it is one.
fn flat<'a, F: Float>(rows: &ArrayView2<'a, F>) -> Cow<'a, [F]> {
    match rows.to_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(rows.iter().copied().collect()),
    }
}

/// Validates a `[B, K]` batch of one-vs-rest decisions (`adjust` added to the logits), in this
/// order: [`check_targets`], then the logits in row-major order: [`Error::NonFiniteLogit`] for
/// NaN or `+inf` (or a logit that overflows once adjusted), [`Error::MaskedTarget`] for `-inf` on
/// a positive target (`y > 0`) of a row that counts.
pub(super) fn check_batch<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<'_, F>,
    outputs: &[OutputShape<'_>],
    label_sets: LabelSets,
    adjust: Option<&[F]>,
) -> Result<()> {
    check_targets(logits, targets, outputs, label_sets)?;
    let positive = |row: usize, class: usize| match &targets.kind {
        TargetKind::Labels(labels) => labels[row] == class,
        TargetKind::Rows(rows, _) => rows[[row, class]] > F::zero(),
    };
    check_logits(logits, adjust, |row, class| positive(row, class) && targets.sample_weight(row) > F::zero())
}

/// Validates all of a `[B, K]` batch of one-vs-rest decisions but its logits (which a kernel then
/// checks as it reads them, see [`for_rows`](super::binary_rows::for_rows)), in this order:
/// [`check_target_layout`], then [`check_target_values`].
pub(super) fn check_targets<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<'_, F>,
    outputs: &[OutputShape<'_>],
    label_sets: LabelSets,
) -> Result<()> {
    check_target_layout(logits, targets, outputs)?;
    check_target_values(targets, label_sets)
}

/// Validates the layout of a `[B, K]` batch of one-vs-rest decisions, in this order:
/// [`Error::EmptyBatch`], [`Error::NoClasses`]; [`Error::ShapeMismatch`] for `labels` (`[B]`)
/// or `targets` (`[B, K]`), the `outputs` and `sample_weights`; [`Error::InvalidSampleWeight`];
/// [`Error::LabelOutOfRange`] for a label `≥ K`. Everything but the entries of `[B, K]` target
/// rows ([`check_target_values`]) and the logits.
pub(super) fn check_target_layout<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<'_, F>,
    outputs: &[OutputShape<'_>],
) -> Result<()> {
    let (batch, classes) = batch_dims(logits)?;
    match &targets.kind {
        TargetKind::Labels(labels) => check_shape("labels", &[batch], labels.shape())?,
        TargetKind::Rows(rows, _) => check_shape("targets", logits.shape(), rows.shape())?,
    }
    for &(name, expected, found) in outputs {
        check_shape(name, expected, found)?;
    }
    check_sample_weights(targets.sample_weights.as_ref(), batch)?;
    match &targets.kind {
        TargetKind::Labels(labels) => check_labels(labels, classes),
        TargetKind::Rows(..) => Ok(()),
    }
}

/// Validates the entries of `[B, K]` target rows (nothing for hard labels):
/// [`Error::TargetOutOfRange`] for a probability target outside `[0, 1]` or a label-set one other
/// than 0 or 1 (see [`LabelSets`]), the first in row-major order.
pub(super) fn check_target_values<F: Float>(targets: &Targets<'_, F>, label_sets: LabelSets) -> Result<()> {
    match &targets.kind {
        TargetKind::Labels(_) => Ok(()),
        TargetKind::Rows(rows, kind) => {
            if *kind == RowKind::MultiHot || label_sets == LabelSets::Always {
                check_multi_hot(rows)
            } else {
                check_soft(rows)
            }
        }
    }
}

/// Whether a loss reads every `[B, K]` target row as a label set (entries 0 or 1), or
/// probability rows as soft targets in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LabelSets {
    /// Every row is a label set (ZLPR).
    Always,
    /// Multi-hot rows are label sets, probability rows soft targets (the binary losses).
    MultiHotOnly,
}

/// Soft targets: every entry in `[0, 1]` ([`Error::TargetOutOfRange`] names the first that is
/// not). A branch-free scan passes the common batch; only a failing one is searched.
fn check_soft<F: Float>(rows: &ArrayView2<'_, F>) -> Result<()> {
    let valid = |y: F| y >= F::zero() && y <= F::one();
    let failing = || rows.indexed_iter().find(|&(_, &y)| !valid(y));
    match if rows.fold(true, |ok, &y| ok & valid(y)) { None } else { failing() } {
        Some(((row, class), &y)) => {
            Err(Error::TargetOutOfRange { row, class, value: y.as_f64(), expected: "in [0, 1]" })
        }
        None => Ok(()),
    }
}

/// Multi-hot targets: every entry exactly 0 or 1 ([`Error::TargetOutOfRange`] names the first
/// that is not). A branch-free scan passes the common batch; only a failing one is searched.
fn check_multi_hot<F: Float>(multi_hot: &ArrayView2<'_, F>) -> Result<()> {
    let binary = |t: &F| (*t == F::zero()) | (*t == F::one());
    let passes =
        multi_hot.as_slice().map_or_else(|| multi_hot.fold(true, |ok, t| ok & binary(t)), all_binary);
    let failing = || multi_hot.indexed_iter().find(|(_, t)| !binary(t));
    match if passes { None } else { failing() } {
        Some(((row, class), &t)) => {
            Err(Error::TargetOutOfRange { row, class, value: t.as_f64(), expected: "0 or 1" })
        }
        None => Ok(()),
    }
}

/// Whether every `t` is exactly 0 or 1: `t·(t − 1)` is 0 for those and nonzero (or NaN) for any
/// other value, so a sum of its magnitudes in lanes, run for the CPU's instruction set, says so
/// without a branch.
fn all_binary<F: Float>(t: &[F]) -> bool {
    struct Scan<'a, F>(&'a [F]);
    impl<F: Float> Kernel for Scan<'_, F> {
        type Output = bool;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> bool {
            let mut acc = [F::zero(); LANES];
            let chunks = self.0.chunks_exact(LANES);
            let tail = chunks.remainder();
            for chunk in chunks {
                acc.iter_mut().zip(chunk).for_each(|(a, &t)| *a += (t * (t - F::one())).abs());
            }
            acc.iter_mut().zip(tail).for_each(|(a, &t)| *a += (t * (t - F::one())).abs());
            acc.iter().fold(F::zero(), |s, &a| s + a) == F::zero()
        }
    }
    dispatch(Scan(t))
}

/// The reduced loss of validated decisions, the gradient into `grads` if given, from
/// `sum(grads, (scale, weight_exp))`: `Σ ℓ` in `f64` of the decisions with their weights times
/// `2^−weight_exp` and the gradient times `scale`, and whether every gradient entry is finite.
///
/// The mean divides by the total weight over `per_mean` (`K` for a mean over rows); the kernel
/// sees the weights scaled by a power of two near their largest (the mean does not depend on their
/// scale), the sum takes them unscaled (a decision's product then overflows only where its loss
/// does). The gradient's factor `1/divisor` is split into one near 1 for the kernel and a power of
/// two applied after. An error of `sum` (a bad logit) is returned as it is; then a loss or
/// gradient beyond the float's range is [`Error::Overflow`].
pub(super) fn reduce<F: Float>(
    decisions: &Decisions<'_, F>,
    reduction: Reduction,
    per_mean: f64,
    grads: Option<&mut [F]>,
    sum: impl FnOnce(Option<&mut [F]>, (F, i32)) -> Result<(f64, bool)>,
) -> Result<F> {
    let weights = decisions.weights.as_deref();
    let (divisor, e) = match reduction {
        Reduction::Mean => {
            let e = binary_weight_exponent(weights);
            (scaled_total_weight(weights, decisions.logits.len(), e) / per_mean, e)
        }
        Reduction::Sum => (1.0, 0),
    };
    let mut grads = grads;
    if divisor == 0.0 {
        // Every weight is 0: the kernel ignores every row but still validates the logits.
        sum(grads.as_deref_mut(), (F::one(), e))?;
        if let Some(grads) = grads {
            grads.fill(F::zero());
        }
        return Ok(F::zero());
    }
    let (scale, k) = split_scale::<F>(divisor.recip(), 0);
    let overflow = |what| Error::Overflow { what, row: None, class: None, value: None };
    let (total, grads_finite) = sum(grads.as_deref_mut(), (scale, e))?;
    let loss = reduced_loss::<F>(total, divisor, 0)?;
    if grads.is_some() && !grads_finite {
        return Err(overflow("gradient"));
    }
    if let Some(g) = grads
        && !apply_pow2(&mut ndarray::ArrayViewMut1::from(g), k)
    {
        return Err(overflow("gradient"));
    }
    Ok(loss)
}

/// The reduced loss of a validated `[B, K]` batch: `reduced(decisions, grads)` over its decisions,
/// the gradient written into `grad_out` (in place when it is a row-major slice).
pub(super) fn reduced_over<F: Float, R>(
    logits: &ArrayRef2<F>,
    targets: &Targets<'_, F>,
    grad_out: Option<&mut ArrayRef2<F>>,
    reduced: impl FnOnce(&Decisions<'_, F>, Option<&mut [F]>) -> R,
) -> R {
    let decisions = Decisions::of_batch(logits, targets);
    match grad_out {
        Some(grad) => with_flat_mut(grad, |grad| reduced(&decisions, Some(grad))),
        None => reduced(&decisions, None),
    }
}

/// Every row's loss of a `[B, K]` batch into `losses_out`: `sum(decisions, losses, grads)` writes
/// each decision's loss (and unscaled gradient), and a row's `K` losses are added; or the error
/// of `sum`.
pub(super) fn per_sample_over<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<'_, F>,
    losses_out: &mut ArrayRef1<F>,
    grad_out: Option<&mut ArrayRef2<F>>,
    sum: impl FnOnce(&Decisions<'_, F>, &mut [F], Option<&mut [F]>) -> Result<()>,
) -> Result<()> {
    let decisions = Decisions::of_batch(logits, targets);
    let mut losses = vec![F::zero(); decisions.logits.len()];
    match grad_out {
        Some(grad) => with_flat_mut(grad, |grad| sum(&decisions, &mut losses, Some(grad))),
        None => sum(&decisions, &mut losses, None),
    }?;
    row_sums(&losses, decisions.classes, losses_out);
    Ok(())
}

/// Runs `f` on `grad_out` as a row-major slice: in place if it is one, else on a copy written back.
fn with_flat_mut<F: Float, R>(grad_out: &mut ArrayRef2<F>, f: impl FnOnce(&mut [F]) -> R) -> R {
    if let Some(slice) = grad_out.as_slice_mut() {
        return f(slice);
    }
    let mut copy: Vec<F> = grad_out.iter().copied().collect();
    let result = f(&mut copy);
    grad_out.iter_mut().zip(copy).for_each(|(g, v)| *g = v);
    result
}

/// Sums each row's `K` decision losses into `losses_out[i]`.
fn row_sums<F: Float>(decision_losses: &[F], classes: usize, losses_out: &mut ArrayRef1<F>) {
    let rows = decision_losses.chunks_exact(classes);
    losses_out
        .iter_mut()
        .zip(rows)
        .for_each(|(l, row)| *l = F::from_f64(row.iter().map(|v| v.as_f64()).sum()));
}
