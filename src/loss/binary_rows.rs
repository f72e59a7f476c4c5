//! The vectorised loop of the binary losses: one logit per row, `softplus(±s)` and `σ(±s)` per
//! logit without a branch, over contiguous slices, so that the compiler vectorises it (inside a
//! [`Kernel`](crate::simd::Kernel), for AVX2+FMA).

use std::borrow::Cow;

use ndarray::{ArrayRef1, ArrayView1};

use crate::float::{exp_nonpos, lane_sum, ln_1p_unit_recip};
use crate::rows::{CHUNK, PARALLEL_MIN, fold_chunks};
use crate::simd::Kernel;
use crate::softmax::is_nan_or_pos_inf;
use crate::{Error, Float, Result};

/// Rows per block: a block's losses are summed in `F` lanes while in L1, the block sums in `f64`.
const BLOCK: usize = 256;

/// `softplus(±s)` and `σ(±s)` of one logit, from a single `e^{−|s|}`, a single `ln_1p` and a
/// single reciprocal `r = 1/(1 + e^{−|s|})` (`σ(|s|) = r`, `σ(−|s|) = e^{−|s|}·r`): without
/// overflow or cancellation, and a quarter of the transcendental calls of computing the four
/// separately.
///
/// `e^{−|s|}` flushes to 0 a little below the smallest normal number (`|s| ≥ 87.69` in f32,
/// `708.75` in f64; see [`exp_nonpos`]), so there `softplus(−|s|)` and `σ(−|s|)` are 0. A `-inf`
/// logit gives `softplus(s) = σ(s) = 0`, `softplus(−s) = inf`, `σ(−s) = 1`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Logistic<F> {
    /// `softplus(s) = ln(1 + e^s) = −log σ(−s)`.
    pub softplus_pos: F,
    /// `softplus(−s) = −log σ(s)`.
    pub softplus_neg: F,
    /// `σ(s) = 1 / (1 + e^{−s})`.
    pub sigmoid_pos: F,
    /// `σ(−s) = 1 − σ(s)`, not computed by subtraction.
    pub sigmoid_neg: F,
}

impl<F: Float> Logistic<F> {
    /// The four values of a logit that is not NaN or `+inf`; branch-free.
    #[inline(always)]
    pub(super) fn of<const FMA: bool>(s: F) -> Self {
        let zero = F::zero();
        let e = exp_nonpos::<F, FMA>(-s.abs());
        // `1/(1 + e)` serves both `ln(1 + e)` and the sigmoids: two divisions fewer.
        let (log_term, large) = ln_1p_unit_recip::<F, FMA>(e);
        let small = e * large;
        let positive = s >= zero;
        Self {
            softplus_pos: log_term + if s > zero { s } else { zero },
            softplus_neg: log_term + if s < zero { -s } else { zero },
            sigmoid_pos: if positive { large } else { small },
            sigmoid_neg: if positive { small } else { large },
        }
    }
}

/// `(σ(s), σ(−s))` of a logit that is not NaN or `+inf`, from a single `e^{−|s|}` (no logarithm,
/// unlike [`Logistic::of`]); branch-free.
#[inline(always)]
pub(super) fn sigmoids<F: Float, const FMA: bool>(s: F) -> (F, F) {
    let (large, small) = sigmoid_pair(exp_nonpos::<F, FMA>(-s.abs()));
    if s >= F::zero() { (large, small) } else { (small, large) }
}

/// `(σ(|s|), σ(−|s|))` from `e = e^{−|s|}`.
#[inline(always)]
fn sigmoid_pair<F: Float>(e: F) -> (F, F) {
    ((F::one() + e).recip(), e / (F::one() + e))
}

/// Calls `visit(first, σ)` for every block of logits in order, `σ` the block's sigmoids (NaN and
/// `+inf` logits excluded) from logit `first` on, computed by a vectorised loop.
#[inline(always)]
pub(super) fn for_sigmoid_blocks<F: Float, const FMA: bool>(
    logits: &[F],
    mut visit: impl FnMut(usize, &[F]),
) {
    let mut sigmoids = [F::zero(); BLOCK];
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        for (p, &s) in sigmoids.iter_mut().zip(block) {
            let (large, small) = sigmoid_pair(exp_nonpos::<F, FMA>(-s.abs()));
            *p = if s >= F::zero() { large } else { small };
        }
        visit(b * BLOCK, &sigmoids[..block.len()]);
    }
}

/// A 1-d array as a slice: borrowed if contiguous, else copied (a copy costs little beside the
/// transcendental functions of a row).
pub(super) fn contiguous<'a, F: Float>(a: &'a ArrayRef1<F>) -> Cow<'a, [F]> {
    a.as_slice().map_or_else(|| Cow::Owned(a.to_vec()), Cow::Borrowed)
}

/// Runs `f` on `a` as a mutable slice: in place if contiguous, else on a copy written back.
pub(super) fn with_slice_mut<F: Float, R>(a: &mut ArrayRef1<F>, f: impl FnOnce(&mut [F]) -> R) -> R {
    if let Some(slice) = a.as_slice_mut() {
        return f(slice);
    }
    let mut copy = a.to_vec();
    let result = f(&mut copy);
    a.assign(&ArrayView1::from(&copy[..]));
    result
}

/// One decision's formula, compiled into each kernel for its instruction set.
pub(super) trait Decision<F: Float>: Copy + Send + Sync {
    /// Whether [`row`](Self::row) reads `SOFT`: then a block whose targets are all 0 or 1 runs
    /// with `SOFT = false`, the others with `SOFT = true`.
    const SOFT_TARGETS: bool = false;

    /// `(ℓ, ∂ℓ/∂s)` of logit `s` (finite, or `-inf` with a result that is discarded), target `y`,
    /// weight `w` (scaled, see [`for_rows`]) and value `v`; `SOFT` whether `y` may lie strictly
    /// between 0 and 1. Branch-free and `#[inline(always)]`, with everything it calls, so that the
    /// block loop vectorises for the kernel's instruction set. A result that is not finite
    /// (where the formula in `F` leaves its range or its contract) is recomputed by
    /// [`exact`](Self::exact).
    fn row<const FMA: bool, const SOFT: bool>(self, s: F, y: F, w: F, v: F) -> (F, F);

    /// The same in `f64`, exactly where `row` is not: any finite `s`, `y`, `w`, `v`.
    fn exact(self, s: F, y: F, w: F, v: F) -> (f64, f64);
}

/// The decisions of a batch whose targets and weights are validated (its logits are checked by
/// [`for_rows`]), in row-major order: decision `j` is class `j mod classes` of row
/// `j / classes`.
#[derive(Clone, Copy)]
pub(super) struct Batch<'a, F> {
    /// The logits, one per decision.
    pub logits: &'a [F],
    /// The targets `y ∈ [0, 1]`, one per decision.
    pub targets: &'a [F],
    /// The sample weights, one per decision (a row's repeated `classes` times).
    pub weights: Option<&'a [F]>,
    /// A value per class (`classes` of them): decision `j` gets `values[j mod classes]`.
    pub values: Option<&'a [F]>,
    /// Decisions per row.
    pub classes: usize,
}

impl<'a, F: Float> Batch<'a, F> {
    /// The decisions of `decisions`, with `values` per class.
    pub fn of(decisions: &'a super::one_vs_rest::Decisions<'a, F>, values: Option<&'a [F]>) -> Self {
        Self {
            logits: &decisions.logits,
            targets: &decisions.targets,
            weights: decisions.weights.as_deref(),
            values,
            classes: decisions.classes,
        }
    }
}

/// Runs `decision` over every row of a batch, checking each block's logits just before it reads
/// them, and returns `Σ ℓ` (in `f64`) and whether every gradient entry is finite; writes each `ℓ`
/// into `losses` and `scale · ∂ℓ/∂s` into `grads`, if given. Row `j` gets its weight times
/// `weight_scale` and its value (1 without them).
///
/// A row with `w = 0` or `s = -inf` gets exactly `(0, 0)`, whatever `row` returns for it (inf or
/// NaN included): a zero weight ignores the row, a `-inf` logit is a certain negative.
/// `weight_scale` is a power of two that keeps the scaled weights below 1
/// ([`binary_weight_exponent`]). A block whose losses or gradient entries do not all sum to a
/// finite value is summed again in `f64`, each row whose `ℓ` or gradient entry is not finite
/// recomputed by [`Decision::exact`] (where an intermediate of a representable row, such as a
/// large weight times a large logit, fits).
///
/// # Errors
///
/// The first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
/// [`Error::MaskedTarget`] for `-inf` on a positive target (`y > 0`) of a row of positive
/// weight. The batch runs in chunks of [`CHUNK`] decisions (on rayon's pool from
/// [`PARALLEL_MIN`] on), whose results are added in order: the same bits, and the same error,
/// on any number of threads. On error `losses` and `grads` may hold partial results.
pub(super) fn for_rows<'a, F: Float, D: Decision<F>>(
    batch: Batch<'a, F>,
    losses: Option<&mut [F]>,
    grads: Option<&mut [F]>,
    scale: (F, F),
    decision: D,
) -> Result<(f64, bool)> {
    let len = batch.logits.len();
    let (mut losses, mut grads) = (losses, grads);
    let chunks = (0..len).step_by(CHUNK).map(|start| {
        let range = start..len.min(start + CHUNK);
        let n = range.len();
        let part = |x: &'a [F]| &x[range.clone()];
        Chunk {
            start,
            batch: Batch {
                logits: part(batch.logits),
                targets: part(batch.targets),
                weights: batch.weights.map(part),
                ..batch
            },
            losses: split_head(&mut losses, n),
            grads: split_head(&mut grads, n),
            scale,
            decision,
        }
    });
    let fold =
        |(total, finite): (f64, bool), (sum, chunk_finite): (f64, bool)| (total + sum, finite & chunk_finite);
    fold_chunks(chunks, len >= PARALLEL_MIN, len >= WIDE, (0.0, true), fold)
}

/// Decisions from which [`for_rows`] runs the AVX-512 build (where the CPU has it): below, the
/// 16-lane loop would leave too many to its scalar tail.
const WIDE: usize = 256;

/// The first `n` values of `rest`, leaving the others in it.
fn split_head<'a, F>(rest: &mut Option<&'a mut [F]>, n: usize) -> Option<&'a mut [F]> {
    let (head, tail) = rest.take()?.split_at_mut(n);
    *rest = Some(tail);
    Some(head)
}

/// A chunk of [`for_rows`]'s batch, from decision `start` on, and its outputs.
struct Chunk<'a, F, D> {
    start: usize,
    batch: Batch<'a, F>,
    losses: Option<&'a mut [F]>,
    grads: Option<&'a mut [F]>,
    scale: (F, F),
    decision: D,
}

impl<F: Float, D: Decision<F>> Kernel for Chunk<'_, F, D> {
    type Output = Result<(f64, bool)>;

    #[inline(always)]
    fn run<const FMA: bool>(self) -> Self::Output {
        let Chunk { start, batch, mut losses, mut grads, scale: (scale, weight_scale), decision } = self;
        let check_grads = grads.is_some();
        let (zero, ones) = (F::zero(), [F::one(); BLOCK]);
        let (mut loss_block, mut grad_block, mut value_block) = ([zero; BLOCK], [zero; BLOCK], [zero; BLOCK]);
        let (mut total, mut grads_finite) = (0.0, true);
        let mut class = start % batch.classes;
        // Fewer values than a block: each block's are a slice of them repeated, from its first
        // decision's class on (built once, rather than copied a few at a time per block).
        let periodic = batch.values.filter(|values| values.len() < BLOCK).map(|values| {
            let mut periodic = [zero; 2 * BLOCK];
            let filled = &mut periodic[..BLOCK + values.len()];
            filled.chunks_mut(values.len()).for_each(|p| p.copy_from_slice(&values[..p.len()]));
            periodic
        });
        // Without weights and values every row's are 1 (and the weight scale is 1): known to the
        // compiler, which then drops their products.
        let unit = batch.weights.is_none() && batch.values.is_none();
        debug_assert!(!unit || weight_scale == F::one());
        for first in (0..batch.logits.len()).step_by(BLOCK) {
            let block = first..batch.logits.len().min(first + BLOCK);
            let n = block.len();
            let (s, y) = (&batch.logits[block.clone()], &batch.targets[block.clone()]);
            let w = batch.weights.map_or(&ones[..n], |w| &w[block.clone()]);
            if !logits_fit(s, y) {
                first_bad_logit(start + first, batch.classes, s, y, w)?;
            }
            let v = match (batch.values, &periodic) {
                (Some(values), Some(periodic)) => {
                    let v = &periodic[class..class + n];
                    class = (class + n) % values.len();
                    v
                }
                (Some(values), None) => cycle(&mut value_block[..n], values, &mut class),
                (None, _) => &ones[..n],
            };
            let loss = match losses.as_deref_mut() {
                Some(losses) => &mut losses[block.clone()],
                None => &mut loss_block[..n],
            };
            let grad = match grads.as_deref_mut() {
                Some(grads) => &mut grads[block],
                None => &mut grad_block[..n],
            };
            let mut rows = Block { s, y, w, v, loss, grad };
            match (D::SOFT_TARGETS && !all_hard(y), unit) {
                (true, true) => rows.run::<D, FMA, true, true>(decision, scale, weight_scale),
                (true, false) => rows.run::<D, FMA, true, false>(decision, scale, weight_scale),
                (false, true) => rows.run::<D, FMA, false, true>(decision, scale, weight_scale),
                (false, false) => rows.run::<D, FMA, false, false>(decision, scale, weight_scale),
            }
            let block_sum = lane_sum(rows.loss);
            // `x·0` is 0 for a finite `x`, NaN otherwise.
            let grad_check = if check_grads { lane_sum(rows.grad) * zero } else { zero };
            if (block_sum + grad_check).is_finite() {
                total += block_sum.as_f64();
            } else {
                let (sum, finite) = exact_block(rows, (scale, weight_scale), decision);
                total += sum;
                grads_finite &= finite;
            }
        }
        Ok((total, grads_finite))
    }
}

impl<F: Float> Block<'_, F> {
    /// Each row's `ℓ` and `scale·∂ℓ/∂s`, `(0, 0)` for an ignored row; one branch-free loop.
    /// `UNIT`: every weight, value and the weight scale are 1, passed as constants.
    #[inline(always)]
    fn run<D: Decision<F>, const FMA: bool, const SOFT: bool, const UNIT: bool>(
        &mut self,
        decision: D,
        scale: F,
        weight_scale: F,
    ) {
        let (zero, one) = (F::zero(), F::one());
        let inputs = self.s.iter().zip(self.y).zip(self.w.iter().zip(self.v));
        for ((l, g), ((&s, &y), (&w, &v))) in self.loss.iter_mut().zip(self.grad.iter_mut()).zip(inputs) {
            let (w, v, weight_scale) = if UNIT { (one, one, one) } else { (w, v, weight_scale) };
            let (value, slope) = decision.row::<FMA, SOFT>(s, y, w * weight_scale, v);
            let ignored = (w == zero) | (s == F::neg_infinity());
            *l = if ignored { zero } else { value };
            *g = if ignored { zero } else { slope * scale };
        }
    }
}

/// Whether every logit is finite, or `-inf` on a target of 0 (a certain negative): a
/// branch-free scan.
#[inline(always)]
fn logits_fit<F: Float>(s: &[F], y: &[F]) -> bool {
    let fits = |s: F, y: F| (s < F::infinity()) & ((s > F::neg_infinity()) | (y == F::zero()));
    s.iter().zip(y).fold(true, |ok, (&s, &y)| ok & fits(s, y))
}

/// Whether every target is 0 or 1: a branch-free scan.
#[inline(always)]
fn all_hard<F: Float>(y: &[F]) -> bool {
    y.iter().fold(true, |ok, &y| ok & ((y == F::zero()) | (y == F::one())))
}

/// The error of the first offending logit of a block that starts at decision `first`, if any
/// (a `-inf` logit on a positive target of a row of weight 0 is none).
#[cold]
#[inline(never)]
fn first_bad_logit<F: Float>(first: usize, classes: usize, s: &[F], y: &[F], w: &[F]) -> Result<()> {
    for (j, ((&s, &y), &w)) in s.iter().zip(y).zip(w).enumerate() {
        let (row, class) = ((first + j) / classes, (first + j) % classes);
        if is_nan_or_pos_inf(s) {
            return Err(Error::NonFiniteLogit { row, class, value: s.as_f64() });
        }
        if s == F::neg_infinity() && y > F::zero() && w > F::zero() {
            return Err(Error::MaskedTarget { row, class });
        }
    }
    Ok(())
}

/// `out` filled with `values` from index `class` on, cycling; `class` is left at the entry after
/// the last.
#[inline(always)]
fn cycle<'a, F: Float>(out: &'a mut [F], values: &[F], class: &mut usize) -> &'a [F] {
    let mut filled = 0;
    while filled < out.len() {
        let take = (values.len() - *class).min(out.len() - filled);
        out[filled..filled + take].copy_from_slice(&values[*class..*class + take]);
        filled += take;
        *class = (*class + take) % values.len();
    }
    out
}

/// A block of rows of [`for_rows`]: their inputs and outputs.
struct Block<'a, F> {
    s: &'a [F],
    y: &'a [F],
    w: &'a [F],
    v: &'a [F],
    loss: &'a mut [F],
    grad: &'a mut [F],
}

/// `Σ ℓ` of a block whose sum in `F` is not finite, in `f64`, and whether its gradient entries
/// are: each row whose `ℓ` or gradient entry is not finite is recomputed by
/// [`Decision::exact`], its `ℓ` and `scale·∂ℓ/∂s` stored rounded to `F` (infinite where beyond
/// its range: the callers report that).
#[cold]
#[inline(never)]
fn exact_block<F: Float, D: Decision<F>>(
    block: Block<'_, F>,
    (scale, weight_scale): (F, F),
    decision: D,
) -> (f64, bool) {
    let Block { s, y, w, v, loss, grad } = block;
    let (mut total, mut grads_finite) = (0.0, true);
    for (j, (l, g)) in loss.iter_mut().zip(grad.iter_mut()).enumerate() {
        if l.is_finite() && g.is_finite() {
            total += l.as_f64();
        } else {
            let (value, slope) = decision.exact(s[j], y[j], w[j] * weight_scale, v[j]);
            *l = F::from_f64(value);
            *g = F::from_f64(slope * scale.as_f64());
            grads_finite &= g.is_finite();
            total += value;
        }
    }
    (total, grads_finite)
}

/// The exponent `e` that brings the largest sample weight below 1 (`max w · 2^−e ∈ [1/2, 1)`), so
/// that a weight times a loss term stays within the float's range wherever the term does; `2^−e`
/// is representable in `F` (subnormal for the largest `f32` weights, exactly). 0 without weights.
pub(super) fn binary_weight_exponent<F: Float>(weights: Option<&[F]>) -> i32 {
    let Some(weights) = weights else { return 0 };
    let max = weights.iter().fold(0.0_f64, |m, &w| m.max(w.as_f64()));
    if max == 0.0 {
        return 0;
    }
    let max_exp = crate::float::exponent_of(F::max_value().as_f64());
    (crate::float::exponent_of(max) + 1).max(-max_exp)
}

/// `Σ_i w_i·2^−e` in `f64` (`len` without weights, where `e = 0`): the mean's denominator in the
/// scaled weights.
pub(super) fn scaled_total_weight<F: Float>(weights: Option<&[F]>, len: usize, e: i32) -> f64 {
    match weights {
        None => len as f64,
        Some(w) => {
            let inv = crate::float::pow2::<F>(-e);
            w.iter().map(|&v| (v * inv).as_f64()).sum()
        }
    }
}
