//! Softmax cross-entropy (with focal modulation, class and sample weights, logit adjustment) of
//! `K = 2` hard-label rows in closed form: a row's loss depends only on the margin
//! `d = x_other − x_y` (`x = z + adjust`), `ℓ = softplus(d)` and `1 − p_y = σ(d)`, so one
//! exponential and one logarithm per row replace the general row's transposes and per-class
//! exponentials, in a branch-free loop over a block of rows that the compiler vectorises.
//!
//! With focal modulation `γ`, `ℓ = σ(d)^γ·softplus(d)`, where `σ(d)^γ = e^{−γ·softplus(−d)}` comes
//! from the logarithm of `σ(d)` without rounding `σ(d)` first (exact for any `γ`), and
//! `∂ℓ/∂d = σ(d)^γ·(γ·σ(−d)·softplus(d) + σ(d))`. The gradient is `±c·scale·∂ℓ/∂d`: `+` at the
//! other class, `−` at the label.
//!
//! Poly-1's term `ε·(1 − p_y) = ε·σ(d)` adds `ε·σ(d)·σ(−d)` to `∂ℓ/∂d` (without focal modulation).

use ndarray::{ArrayRef1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use super::binary_rows::Logistic;
use crate::Float;
use crate::float::{exp_nonpos, lane_sum, ldexp};

/// Rows per block: the block's margins, coefficients and losses stay in L1.
const BLOCK: usize = 128;

/// A validated `[B, 2]` chunk of hard-label rows and the loss's parameters. Any layout: strided
/// rows are copied a block at a time, so every layout gives the same bits.
pub(super) struct TwoClassRows<'a, F> {
    pub logits: ArrayView2<'a, F>,
    /// The additive logit adjustment of the two classes, if any.
    pub adjust: Option<[F; 2]>,
    /// The batch's labels and sample weights, read from row `first` on.
    pub labels: &'a ArrayRef1<usize>,
    pub sample_weights: Option<&'a ArrayRef1<F>>,
    pub first: usize,
    /// The sample weights' scale `2^−e_s`, and the exponent that turns a row's scaled loss into
    /// `ℓ_i` (see `SoftmaxLoss`'s weight scaling).
    pub weight_scale: F,
    pub loss_exp: i32,
    /// The class factors `w_k·α_k`, if any.
    pub class_factors: Option<[F; 2]>,
    /// Each row's coefficient `c_i`, read from row `first` on, if given: it then replaces the
    /// sample weight, `weight_scale` and the class factor.
    pub coefficients: Option<&'a [F]>,
    pub gamma: F,
    /// Poly-1's `ε` (0 for none; only with `γ = 0`).
    pub poly: F,
    /// A margin loss's transform of the logits before `adjust`, if any.
    pub transform: Option<LabelMargins<F, 2>>,
    /// The gradient's factor (`1/Σc` for the mean).
    pub scale: F,
}

/// The logits `x_k = g_k·(z_k − m_k)` of the label `k = y` and `g_k·z_k` of the other classes,
/// for `K` classes: the margin losses' transforms (LDAM's margins on scaled logits, VS's scales,
/// and for two classes the pairwise margins as `m_y = Δ_{y,other}`).
#[derive(Debug, Clone, Copy)]
pub(super) struct LabelMargins<F, const K: usize> {
    /// `g_k`.
    pub scales: [F; K],
    /// `m_k`, subtracted where `k` is the label.
    pub margins: [F; K],
}

impl<F: Float> TwoClassRows<'_, F> {
    /// `Σ_i c_i·ℓ_i` (in `f64`), each row's `c_i·ℓ_i` into `losses` and `c_i·scale·∂ℓ_i/∂z_i` into
    /// `grad` (`[B, 2]`) if given. A row with `c_i = 0` gets exactly zeros. `None`, with
    /// the outputs partly written, if a row that counts has a margin or loss beyond the float's
    /// range (`x_other − x_y` overflowing, or a huge weight): the general row handles those.
    #[inline(always)]
    pub fn run<const FMA: bool>(
        &self,
        mut losses: Option<ArrayViewMut1<'_, F>>,
        mut grad: Option<ArrayViewMut2<'_, F>>,
    ) -> Option<f64> {
        let (zero, one) = (F::zero(), F::one());
        let rows = self.logits.nrows();
        let mut z_copy = [zero; 2 * BLOCK];
        let mut total = 0.0;
        let (mut margin, mut c, mut label) = ([zero; BLOCK], [zero; BLOCK], [zero; BLOCK]);
        let (mut loss, mut slope) = ([zero; BLOCK], [zero; BLOCK]);
        let (mut y_copy, mut w_copy) = ([0; BLOCK], [one; BLOCK]);
        for start in (0..rows).step_by(BLOCK) {
            let n = BLOCK.min(rows - start);
            let z = match self.logits.as_slice() {
                Some(z) => &z[2 * start..2 * (start + n)],
                None => {
                    let rows = self.logits.rows().into_iter().skip(start).take(n);
                    z_copy
                        .chunks_exact_mut(2)
                        .zip(rows)
                        .for_each(|(pair, z)| (pair[0], pair[1]) = (z[0], z[1]));
                    &z_copy[..2 * n]
                }
            };
            // Labels and weights as slices (copied if strided), so that the loops below vectorise.
            let (i0, i1) = (self.first + start, self.first + start + n);
            let ys = self.labels.as_slice().map_or_else(
                || {
                    y_copy[..n].iter_mut().zip(i0..).for_each(|(y, i)| *y = self.labels[i]);
                    &y_copy[..n]
                },
                |labels| &labels[i0..i1],
            );
            let ws = match self.sample_weights {
                Some(w) => w.as_slice().map_or_else(
                    || {
                        w_copy[..n].iter_mut().zip(i0..).for_each(|(v, i)| *v = w[i]);
                        &w_copy[..n]
                    },
                    |w| &w[i0..i1],
                ),
                None => &w_copy[..n], // all ones: no row of the batch has a weight
            };
            let [f0, f1] = self.class_factors.unwrap_or([one; 2]);
            for ((l, c), (&y, &w)) in label[..n].iter_mut().zip(&mut c[..n]).zip(ys.iter().zip(ws)) {
                let first_class = y == 0;
                *l = if first_class { zero } else { one };
                *c = w * self.weight_scale * if first_class { f0 } else { f1 };
            }
            if let Some(coefficients) = self.coefficients {
                c[..n].copy_from_slice(&coefficients[i0..i1]);
            }
            let [a0, a1] = self.adjust.unwrap_or([zero; 2]);
            let pairs = margin[..n].iter_mut().zip(z.chunks_exact(2)).zip(&label[..n]);
            match self.transform {
                None => pairs.for_each(|((d, pair), &y)| {
                    let diff = (pair[1] + a1) - (pair[0] + a0);
                    *d = if y == zero { diff } else { -diff };
                }),
                Some(LabelMargins { scales: [g0, g1], margins: [m0, m1] }) => {
                    pairs.for_each(|((d, pair), &y)| {
                        let at_first = y == zero;
                        let x0 = g0 * (pair[0] - if at_first { m0 } else { zero });
                        let x1 = g1 * (pair[1] - if at_first { zero } else { m1 });
                        let diff = (x1 + a1) - (x0 + a0);
                        *d = if at_first { diff } else { -diff };
                    })
                }
            }
            // Without focal modulation in a loop of its own: a select on `γ` per row would
            // compute the modulation's exponential for every row.
            if self.gamma == zero {
                self.finish_rows::<FMA, false>(&margin[..n], &c[..n], &mut loss[..n], &mut slope[..n]);
            } else {
                self.finish_rows::<FMA, true>(&margin[..n], &c[..n], &mut loss[..n], &mut slope[..n]);
            }
            // A row that counts with `d = +inf` or `NaN`, or an infinite `c·ℓ`: the sum is not finite.
            let beyond = margin[..n]
                .iter()
                .zip(&c[..n])
                .fold(false, |beyond, (&d, &c)| beyond | (c != zero && (d.is_nan() || d == F::infinity())));
            let sum = lane_sum(&loss[..n]);
            if beyond || !sum.is_finite() {
                return None;
            }
            total += sum.as_f64();
            if let Some(grad) = grad.as_mut() {
                // `+g` at the other class, `−g` at the label.
                let first = slope[..n].iter().zip(&label[..n]).map(|(&g, &y)| if y == zero { -g } else { g });
                match grad.as_slice_mut() {
                    Some(out) => {
                        let out = out[2 * start..2 * (start + n)].chunks_exact_mut(2);
                        out.zip(first).for_each(|(pair, g0)| (pair[0], pair[1]) = (g0, -g0));
                    }
                    None => {
                        let out = grad.rows_mut().into_iter().skip(start).take(n);
                        out.zip(first).for_each(|(mut pair, g0)| (pair[0], pair[1]) = (g0, -g0));
                    }
                }
            }
            if let Some(losses) = losses.as_mut() {
                let unscaled =
                    |l: F| if self.loss_exp == 0 { l } else { F::from_f64(ldexp(l.as_f64(), self.loss_exp)) };
                loss[..n].iter().enumerate().for_each(|(r, &l)| losses[start + r] = unscaled(l));
            }
        }
        Some(total)
    }

    /// Each row's `c·ℓ` into `loss` and `c·scale·∂ℓ/∂d` into `slope`, from its margin `d` and
    /// coefficient `c` (zeros for `c = 0`); `FOCAL` whether `γ ≠ 0`.
    #[inline(always)]
    fn finish_rows<const FMA: bool, const FOCAL: bool>(
        &self,
        margin: &[F],
        c: &[F],
        loss: &mut [F],
        slope: &mut [F],
    ) {
        let zero = F::zero();
        let (gamma, poly) = (self.gamma, self.poly);
        for ((&d, &c), (l, g)) in margin.iter().zip(c).zip(loss.iter_mut().zip(slope)) {
            // `d = +inf` (only with c = 0, else an error or an overflow) and NaN are left to
            // the selects below; `Logistic::of` needs `d < +inf` to be meaningful.
            let f = Logistic::of::<FMA>(if d < F::infinity() { d } else { zero });
            let (value, dl) = if FOCAL {
                let modulation = exp_nonpos::<F, FMA>(-gamma * f.softplus_neg);
                let dl = gamma * f.sigmoid_neg * f.softplus_pos + f.sigmoid_pos;
                (modulation * f.softplus_pos, modulation * dl)
            } else {
                (
                    f.softplus_pos + poly * f.sigmoid_pos,
                    f.sigmoid_pos + poly * (f.sigmoid_pos * f.sigmoid_neg),
                )
            };
            let on = c != zero;
            *l = if on { c * value } else { zero };
            *g = if on { c * self.scale * dl } else { zero };
        }
    }
}
