//! The vectorised loop of the binary losses: one logit per row, `softplus(±s)` and `σ(±s)` per
//! logit without a branch, over contiguous slices, so that the compiler vectorises it (inside a
//! [`Kernel`](crate::simd::Kernel), for AVX2+FMA).

use std::borrow::Cow;

use ndarray::{ArrayRef1, ArrayView1};

use crate::Float;
use crate::float::{exp_nonpos, lane_sum, ln_1p_unit};

/// Rows per block: a block's losses are summed in `F` lanes while in L1, the block sums in `f64`.
const BLOCK: usize = 256;

/// `softplus(±s)` and `σ(±s)` of one logit, from a single `e^{−|s|}` and a single `ln_1p`:
/// without overflow or cancellation, and a quarter of the transcendental calls of computing the
/// four separately.
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
        let log_term = ln_1p_unit::<F, FMA>(e);
        let (large, small) = sigmoid_pair(e);
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

/// Calls `visit(i, σ(s_i))` for every logit in order (NaN and `+inf` excluded), the `σ` computed a
/// block at a time by a vectorised loop.
#[inline(always)]
pub(super) fn for_sigmoids<F: Float, const FMA: bool>(logits: &[F], mut visit: impl FnMut(usize, F)) {
    let mut sigmoids = [F::zero(); BLOCK];
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        for (p, &s) in sigmoids.iter_mut().zip(block) {
            let (large, small) = sigmoid_pair(exp_nonpos::<F, FMA>(-s.abs()));
            *p = if s >= F::zero() { large } else { small };
        }
        sigmoids[..block.len()].iter().enumerate().for_each(|(i, &p)| visit(b * BLOCK + i, p));
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

/// Runs `row(s, y, w·weight_scale, v) = (ℓ, ∂ℓ/∂s)` over every row of a validated batch and
/// returns `Σ ℓ` (in `f64`) and whether every gradient entry is finite; writes each `ℓ` into `losses` and `scale · ∂ℓ/∂s` into `grads`, if
/// given. `w` is the row's weight and `v` its entry of `values` (a per-decision parameter, 1
/// without them). A row with `w = 0` or `s = -inf` gets exactly `(0, 0)`, whatever `row` returns
/// for it (inf or NaN included): a zero weight ignores the row, a `-inf` logit is a certain
/// negative. `weight_scale` is a power of two that keeps the scaled weights below 1
/// ([`binary_weight_exponent`]). A block whose losses or gradient entries do not all sum to a
/// finite value is summed again in `f64`, each row whose `ℓ` or gradient entry is not finite
/// recomputed by `exact` (the same formula in `f64`, where an intermediate of a representable
/// row, such as a large weight times a large logit, fits).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the batch, the outputs and the row's formula, all needed
pub(super) fn for_rows<F: Float>(
    logits: &[F],
    targets: &[F],
    weights: Option<&[F]>,
    values: Option<&[F]>,
    mut losses: Option<&mut [F]>,
    mut grads: Option<&mut [F]>,
    (scale, weight_scale): (F, F),
    row: impl Fn(F, F, F, F) -> (F, F),
    exact: impl Fn(F, F, F, F) -> (f64, f64),
) -> (f64, bool) {
    let check_grads = grads.is_some();
    let (zero, ones) = (F::zero(), [F::one(); BLOCK]);
    let (mut loss_block, mut grad_block) = ([zero; BLOCK], [zero; BLOCK]);
    let (mut total, mut grads_finite) = (0.0, true);
    for start in (0..logits.len()).step_by(BLOCK) {
        let block = start..logits.len().min(start + BLOCK);
        let n = block.len();
        let w = weights.map_or(&ones[..n], |w| &w[block.clone()]);
        let v = values.map_or(&ones[..n], |v| &v[block.clone()]);
        let loss = match losses.as_deref_mut() {
            Some(losses) => &mut losses[block.clone()],
            None => &mut loss_block[..n],
        };
        let grad = match grads.as_deref_mut() {
            Some(grads) => &mut grads[block.clone()],
            None => &mut grad_block[..n],
        };
        let (s, y) = (&logits[block.clone()], &targets[block]);
        let rows = s.iter().zip(y).zip(w.iter().zip(v));
        for ((l, g), ((&s, &y), (&w, &v))) in loss.iter_mut().zip(grad.iter_mut()).zip(rows) {
            let (value, slope) = row(s, y, w * weight_scale, v);
            let ignored = (w == zero) | (s == F::neg_infinity());
            *l = if ignored { zero } else { value };
            *g = if ignored { zero } else { slope * scale };
        }
        let block_sum = lane_sum(loss);
        // `x·0` is 0 for a finite `x`, NaN otherwise.
        let grad_check = if check_grads { lane_sum(grad) * zero } else { zero };
        if (block_sum + grad_check).is_finite() {
            total += block_sum.as_f64();
        } else {
            let (sum, finite) = exact_block(Block { s, y, w, v, loss, grad }, (scale, weight_scale), &exact);
            total += sum;
            grads_finite &= finite;
        }
    }
    (total, grads_finite)
}

/// A block of rows of [`for_rows`] and its outputs.
struct Block<'a, F> {
    s: &'a [F],
    y: &'a [F],
    w: &'a [F],
    v: &'a [F],
    loss: &'a mut [F],
    grad: &'a mut [F],
}

/// `Σ ℓ` of a block whose sum in `F` is not finite, in `f64`, and whether its gradient entries
/// are: each row whose `ℓ` or gradient entry is not finite is recomputed by `exact`, its `ℓ` and
/// `scale·∂ℓ/∂s` stored rounded to `F` (infinite where beyond its range: the callers report that).
#[cold]
#[inline(never)]
fn exact_block<F: Float>(
    block: Block<'_, F>,
    (scale, weight_scale): (F, F),
    exact: &dyn Fn(F, F, F, F) -> (f64, f64),
) -> (f64, bool) {
    let Block { s, y, w, v, loss, grad } = block;
    let (mut total, mut grads_finite) = (0.0, true);
    for (j, (l, g)) in loss.iter_mut().zip(grad.iter_mut()).enumerate() {
        if l.is_finite() && g.is_finite() {
            total += l.as_f64();
        } else {
            let (value, slope) = exact(s[j], y[j], w[j] * weight_scale, v[j]);
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
