//! The vectorised loop of the binary losses: one logit per row, `softplus(±s)` and `σ(±s)` per
//! logit without a branch, over contiguous slices, so that the compiler vectorises it (inside a
//! [`Kernel`](crate::simd::Kernel), for AVX2+FMA).

use std::borrow::Cow;

use ndarray::{ArrayRef1, ArrayView1};

use crate::Float;
use crate::float::{LANES, exp_nonpos, lane_sum, ln_1p_unit};

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

/// Runs `row(s, y, w·weight_scale) = (ℓ, ∂ℓ/∂s)` over every row of a validated batch and returns
/// `Σ ℓ` (in `f64`); writes each `ℓ` into `losses` and `scale · ∂ℓ/∂s` into `grads`, if given. A
/// row with `w = 0` or `s = -inf` gets exactly `(0, 0)`, whatever `row` returns for it (inf or NaN
/// included): a zero weight ignores the row, a `-inf` logit is a certain negative.
/// `weight_scale` is a power of two that keeps the scaled weights below 1 ([`weight_exponent`]);
/// a block whose sum overflows `F` is summed again in `f64`.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the batch, the outputs and the row's formula, all needed
pub(super) fn for_rows<F: Float>(
    logits: &[F],
    targets: &[F],
    weights: Option<&[F]>,
    mut losses: Option<&mut [F]>,
    mut grads: Option<&mut [F]>,
    (scale, weight_scale): (F, F),
    row: impl Fn(F, F, F) -> (F, F),
) -> f64 {
    let (zero, ones) = (F::zero(), [F::one(); BLOCK]);
    let (mut loss_block, mut grad_block) = ([zero; BLOCK], [zero; BLOCK]);
    let mut total = 0.0;
    for start in (0..logits.len()).step_by(BLOCK) {
        let block = start..logits.len().min(start + BLOCK);
        let n = block.len();
        let w = weights.map_or(&ones[..n], |w| &w[block.clone()]);
        let loss = match losses.as_deref_mut() {
            Some(losses) => &mut losses[block.clone()],
            None => &mut loss_block[..n],
        };
        let grad = match grads.as_deref_mut() {
            Some(grads) => &mut grads[block.clone()],
            None => &mut grad_block[..n],
        };
        let rows = logits[block.clone()].iter().zip(&targets[block]).zip(w);
        for ((l, g), ((&s, &y), &w)) in loss.iter_mut().zip(grad.iter_mut()).zip(rows) {
            let (value, slope) = row(s, y, w * weight_scale);
            let ignored = (w == zero) | (s == F::neg_infinity());
            *l = if ignored { zero } else { value };
            *g = if ignored { zero } else { slope * scale };
        }
        let block_sum = lane_sum(loss);
        total += if block_sum.is_finite() { block_sum.as_f64() } else { f64_sum(loss) };
    }
    total
}

/// `Σ x` in `f64`, for a block whose sum in `F` overflowed.
#[cold]
fn f64_sum<F: Float>(x: &[F]) -> f64 {
    x.iter().map(|v| v.as_f64()).sum()
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

/// `Σ w` in `f64`, summed in [`LANES`] partial sums so that the additions do not wait on each other.
pub(super) fn weight_sum<F: Float>(weights: &[F]) -> f64 {
    let mut sums = [0.0; LANES];
    for (i, &w) in weights.iter().enumerate() {
        sums[i % LANES] += w.as_f64();
    }
    lane_sum(&sums)
}
