//! Softmax rows of hard labels with few classes (`3 ≤ K ≤ FEW_CLASSES`, a constant of the
//! instantiation), a block of rows at a time: one row per iteration of loops that the compiler
//! vectorises across rows (the `K` logits of a row are an interleaved load), where the grouped
//! path of [`group`](crate::group) transposes eight rows of any `K` through memory.
//!
//! Each row's arithmetic is that of [`row_lse`](crate::softmax::row_lse) and
//! [`one_hot_row`](super::kernel::one_hot_row), operation for operation: results are bit for bit
//! those of finishing the rows one at a time.

use super::short_rows::{LabelLanes, finish_one_hot};
use super::two_classes::LabelMargins;
use crate::Float;
use crate::float::exp_nonpos;
use crate::softmax::ln_1p_rest;

/// Rows per block: the block's per-row values stay in L1.
pub(super) const BLOCK: usize = 64;

/// The most classes a row of this path has (more run grouped, on AVX-512 where the CPU has it).
pub(super) const FEW_CLASSES: usize = 7;

/// Calls `block(start, z, out)` for each block of up to [`BLOCK`] rows of `z` (`K` logits a row)
/// from row `start` on, `out` the matching rows of the gradient if given (else of a scratch
/// buffer). The closure must be `#[inline(always)]`: a closure the compiler leaves out of line is
/// compiled without the kernel's instruction set (10× slower).
#[inline(always)]
pub(super) fn for_blocks<F: Float, const K: usize>(
    z: &[F],
    mut out: Option<&mut [F]>,
    mut block: impl FnMut(usize, &[F], Option<&mut [F]>),
) {
    const { assert!(K <= FEW_CLASSES) };
    for (b, z) in z.chunks(BLOCK * K).enumerate() {
        let at = b * BLOCK * K;
        block(b * BLOCK, z, out.as_deref_mut().map(|out| &mut out[at..at + z.len()]));
    }
}

/// One-hot rows of `K` classes: `z` row-major, with labels, coefficients `c ≥ 0`, and the
/// logits `x_k = z_k + a_k` (or, for a margin loss, `x_k = g_k·(z_k − m_k) + a_k` where `k` is
/// the label and `g_k·z_k + a_k` elsewhere).
pub(super) struct FewClassRows<'a, F, const K: usize> {
    pub z: &'a [F],
    pub labels: &'a [usize],
    pub c: &'a [F],
    /// `a_k`.
    pub adjust: [F; K],
    /// A margin loss's `g_k` and `m_k`.
    pub margins: LabelMargins<F, K>,
    /// The focal exponent `γ` (0: cross-entropy).
    pub gamma: F,
    /// The gradient's factor.
    pub scale: F,
}

/// A margin loss's transform of `K` logits for [`FewClassRows`]: scales `g_k` and label margins
/// `m_k`, the additive `a_k`, and the chain rule's `∂x_k/∂z_k = g_k`: a factor of the gradient's
/// scale where the scales are equal, else `slopes` to multiply each class's gradient by.
pub(super) struct FewMargins<F, const K: usize> {
    pub margins: LabelMargins<F, K>,
    pub adjust: [F; K],
    pub gradient_scale: F,
    pub slopes: Option<[F; K]>,
}

impl<F: Float, const K: usize> FewClassRows<'_, F, K> {
    /// The first `n = loss.len() ≤ BLOCK` rows: each row's `c·ℓ` into `loss`, and its gradient
    /// with respect to `x` into `out` (row-major, `K` per row) if given, as
    /// [`one_hot_row`](super::kernel::one_hot_row); `MARGINS` whether `x` takes the margins.
    #[inline(always)]
    pub fn run<const FMA: bool, const MARGINS: bool>(&self, loss: &mut [F], out: Option<&mut [F]>) {
        let zero = F::zero();
        let n = loss.len();
        // The exponentials go into the gradient's rows, where it is asked for.
        let mut scratch = [zero; BLOCK * FEW_CLASSES];
        let gradient = out.is_some();
        let out = out.unwrap_or(&mut scratch[..n * K]);
        let (z, out, labels, c) = (&self.z[..n * K], &mut out[..n * K], &self.labels[..n], &self.c[..n]);
        // Labels as floats, compared with the class index as the argmax is (same lane width).
        let mut label = [zero; BLOCK];
        label[..n].iter_mut().zip(labels).for_each(|(l, &y)| *l = F::from_f64(f64::from(y as i32)));
        // Per row, as `row_lse` and `columns_lse` compute them: the exponentials (into `out`),
        // the maximum, `r`, and the label's `x_y − m` and `e^{x_y − m}`; 1 where the label is
        // the argmax. (Each select picks values computed before it: the loop then vectorises.)
        let (mut max, mut rest, mut d_y, mut e_y, mut at_max) =
            ([zero; BLOCK], [zero; BLOCK], [zero; BLOCK], [zero; BLOCK], [zero; BLOCK]);
        for r in 0..n {
            let (row, e, y) = (&z[r * K..r * K + K], &mut out[r * K..r * K + K], label[r]);
            let LabelMargins { scales, margins } = &self.margins;
            let x: [F; K] = core::array::from_fn(|k| {
                let at_label = F::from_f64(k as f64) == y;
                // `g·(z − 0)` is `g·z` exactly, also for `-inf` and `-0`.
                let x = if MARGINS {
                    scales[k] * (row[k] - if at_label { margins[k] } else { zero })
                } else {
                    row[k]
                };
                x + self.adjust[k]
            });
            // The first index of the maximum; a row of `-inf` keeps index 0 and is shifted by 0.
            let (mut m, mut argmax) = (F::neg_infinity(), zero);
            for (k, &v) in x.iter().enumerate() {
                (m, argmax) = if v > m { (v, F::from_f64(k as f64)) } else { (m, argmax) };
            }
            let shift = if m == F::neg_infinity() { zero } else { m };
            let (mut sum, mut dy, mut ey) = (zero, zero, zero);
            for (k, (e, &x)) in e.iter_mut().zip(&x).enumerate() {
                let (k, d) = (F::from_f64(k as f64), x - shift);
                let v = exp_nonpos::<F, FMA>(d);
                // `r` excludes the maximum's `e^0 = 1` exactly, which is stored as exactly 1.
                sum += if k == argmax { zero } else { v };
                let v = if k == argmax { F::one() } else { v };
                (dy, ey) = if k == y { (d, v) } else { (dy, ey) };
                *e = v;
            }
            (max[r], rest[r], d_y[r], e_y[r]) = (m, sum, dy, ey);
            at_max[r] = if argmax == y { F::one() } else { zero };
        }
        // `RowLse::new`'s `ln(1 + r)` and `1/(1 + r)`, in f64, in a loop of their own (in the
        // loop above they would halve its vector width), then the label's parts.
        let (mut ln_total, mut inv_total, mut one_minus_p, mut lp) =
            ([zero; BLOCK], [zero; BLOCK], [zero; BLOCK], [zero; BLOCK]);
        for r in 0..n {
            let r64 = rest[r].as_f64();
            (ln_total[r], inv_total[r]) = (F::from_f64(ln_1p_rest(r64)), F::from_f64((1.0 + r64).recip()));
        }
        for r in 0..n {
            let (at_argmax, elsewhere) = (rest[r] * inv_total[r], F::one() - e_y[r] * inv_total[r]);
            one_minus_p[r] = if at_max[r] == F::one() { at_argmax } else { elsewhere };
            lp[r] = d_y[r] - ln_total[r];
        }
        let lanes = LabelLanes {
            e_label: &e_y,
            one_minus_p: &one_minus_p,
            lp: &lp,
            at_max: &at_max,
            max: &max,
            rest: &rest,
            ln_total: &ln_total,
            inv_total: &inv_total,
        };
        let (mut p_factor, mut label_grad) = ([zero; BLOCK], [zero; BLOCK]);
        let scale = [self.scale; BLOCK];
        finish_one_hot::<F, FMA, BLOCK>(lanes, c, self.gamma, &scale, (&mut p_factor, &mut label_grad, loss));
        if !gradient {
            return;
        }
        // The gradient: `p_factor·e` off the label, `label_grad` at it.
        let rows = out.chunks_exact_mut(K).zip(&label[..n]);
        for ((g, &y), (&p, &at_label)) in rows.zip(p_factor[..n].iter().zip(&label_grad[..n])) {
            for (k, g) in g.iter_mut().enumerate() {
                *g = if F::from_f64(k as f64) == y { at_label } else { *g * p };
            }
        }
    }
}
