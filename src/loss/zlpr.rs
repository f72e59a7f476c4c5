//! ZLPR: the multi-label loss that ranks positives above an implicit zero logit and negatives below.

use super::results::{finish_gradient, reduced_loss};
use ndarray::{Array2, ArrayRef1, ArrayRef2, ArrayView1};

use super::Reduction;
use super::binary_rows::{binary_weight_exponent, scaled_total_weight};
use super::contract::Loss;
use super::one_vs_rest::{self, LabelSets};
use super::targets::{TargetKind, Targets};
use super::validate::{OutputShape, batch_dims, class_vector, output_shapes};
use crate::error::check_shape;
use crate::float::{BLOCK, LANES, exp_nonpos, ldexp, pow2, split_scale};
use crate::rows::{RowVisitor, visit_rows};
use crate::simd::{Kernel, dispatch};
use crate::{Error, Float, Result};

/// The ZLPR multi-label loss ("zero-bounded log-sum-exp & pairwise rank-based"), with the exact
/// gradient with respect to the logits.
///
/// Logits `s` are `[B, K]`; targets are multi-hot `[B, K]` rows with entries exactly 0 or 1 (any
/// number of positives per row, none or all included) or hard labels (one positive per row), with
/// optional sample weights `s_i` ([`Targets`]). With `P_i` the positive classes of row `i` and `s' = s + a` (`a` the
/// optional label-prior adjustment, else 0), row `i` costs
///
/// ```text
/// ℓ_i = s_i·[ log(1 + Σ_{j∉P_i} e^{s'_j}) + log(1 + Σ_{j∈P_i} e^{−s'_j}) ]
/// ```
///
/// Each term is a log-sum-exp that includes an implicit logit 0, so a row without positives (or
/// without negatives) simply has an empty sum: no `1e12` masking. The loss pushes positives above
/// 0 and negatives below it, so the labels are decoded by the threshold `s_j > 0`
/// ([`decode`](Self::decode)). `Mean` (default) divides `Σ_i ℓ_i` by `Σ_i s_i` (`B` without weights;
/// 0 if that is 0), `Sum` does not divide.
///
/// # Gradient
///
/// `∂ℓ_i/∂s_j = s_i·e^{s'_j} / (1 + Σ_{k∉P} e^{s'_k})` for a negative `j`, and
/// `−s_i·e^{−s'_j} / (1 + Σ_{k∈P} e^{−s'_k})` for a positive `j`: each half is a softmax over its
/// classes and the implicit zero.
///
/// # Numerics
///
/// Both halves are shifted by their own maximum (the implicit 0 included) and use `ln_1p` of the
/// sum without its terms that are exactly 1 (the maximum's, and any tie's), so a well-separated row
/// keeps its tiny loss instead of rounding it to 0. The exponentials are the crate's vectorised
/// `exp` (within 1 ulp in f32, 2 in f64; 0 a little below the smallest normal result). A `-inf` logit on a
/// negative class is a certain negative (zero loss and gradient); on a positive class of a row
/// that counts it is an error.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]; each call validates the batch first (see
/// [`loss_into`](Loss::loss_into)).
///
/// # Example
///
/// ```
/// use longtail::{Loss, Targets, ZlprLoss};
/// use ndarray::array;
///
/// let logits = array![[3.0_f64, -2.0, 0.5], [-1.0, -4.0, -3.0]];
/// let targets = array![[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]; // the second row has no label
/// let (loss, grad) = ZlprLoss::new().loss_and_grad(&logits, Targets::multi_hot(&targets))?;
/// assert!(loss > 0.0 && grad[[0, 2]] < 0.0 && grad[[1, 0]] > 0.0);
/// assert_eq!(ZlprLoss::decode(&logits)?, array![[true, false, true], [false, false, false]]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - J. Su, M. Zhu, A. Murtadha, S. Pan, B. Wen, Y. Liu, "ZLPR: A Novel Loss for Multi-label
///   Classification", arXiv:2208.02955 (2022); J. Su, "将“softmax+交叉熵”推广到多标签分类问题",
///   kexue.fm/archives/7359 (the reference `multilabel_categorical_crossentropy`).
/// - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314
///   (the label-prior adjustment).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZlprLoss<F> {
    adjustment: Option<Vec<F>>,
    reduction: Reduction,
}

impl<F: Float> ZlprLoss<F> {
    /// The ZLPR loss without adjustment, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, ZlprLoss};
    /// use ndarray::array;
    ///
    /// // One positive at logit 0 and one negative at logit 0: ln 2 + ln 2.
    /// let loss = ZlprLoss::new().loss(&array![[0.0_f64, 0.0]], &array![[1.0, 0.0]])?;
    /// assert!((loss - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Su et al., "ZLPR: A Novel Loss for Multi-label Classification", arXiv:2208.02955.
    pub fn new() -> Self {
        Self { adjustment: None, reduction: Reduction::Mean }
    }

    /// Adds a label-prior adjustment: training uses `s_j + τ·log(π_j / (1 − π_j))`, where `π_j` is
    /// label `j`'s positive rate (the fraction of training rows that carry it).
    ///
    /// This is logit adjustment (Menon et al.) applied to each label's binary decision against the
    /// implicit zero: a rare label (`π_j < 1/2`) gets a negative offset, so the model must raise
    /// its raw logit `s_j` further to call it positive. At inference decode the raw logits,
    /// `s_j > 0` ([`decode`](Self::decode)): that is the balanced decision. `τ = 0` turns the
    /// adjustment off; a negative `τ` is legal.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`]: `"prior"` for a rate not in the open interval `(0, 1)`;
    /// `"tau"` if `τ` is not finite, or some `τ·log(π_j/(1 − π_j))` overflows.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// let loss = ZlprLoss::new().with_label_prior(&[0.5_f64, 0.2], 1.0)?;
    /// let adjust = loss.logit_adjustment().unwrap();
    /// assert_eq!(adjust[0], 0.0);
    /// assert!((adjust[1] - 0.25f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    pub fn with_label_prior<'p>(mut self, prior: impl Into<ArrayView1<'p, F>>, tau: F) -> Result<Self>
    where
        F: 'p,
    {
        if !tau.is_finite() {
            return Err(invalid("tau", tau, "a finite number"));
        }
        let prior = class_vector("prior", prior.into(), "in the open interval (0, 1)", |v| {
            v > F::zero() && v < F::one()
        })?;
        let tau64 = tau.as_f64();
        let adjustment: Vec<F> = prior
            .iter()
            .map(|p| {
                let p = p.as_f64();
                F::from_f64(tau64 * (p.ln() - (-p).ln_1p()))
            })
            .collect();
        if adjustment.iter().any(|v| !v.is_finite()) {
            return Err(invalid("tau", tau, "small enough that tau * log(prior / (1 - prior)) is finite"));
        }
        self.adjustment = (tau != F::zero()).then_some(adjustment);
        Ok(self)
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, ZlprLoss};
    /// assert_eq!(ZlprLoss::<f32>::new().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The per-class logit adjustment `τ·log(π/(1 − π))`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// assert!(ZlprLoss::<f64>::new().logit_adjustment().is_none());
    /// ```
    pub fn logit_adjustment(&self) -> Option<&[F]> {
        self.adjustment.as_deref()
    }

    /// The predicted label set of every row: `s_ij > 0`, on the raw (unadjusted) logits.
    ///
    /// # Errors
    ///
    /// [`Error::NonFiniteLogit`] for a NaN logit (`±inf` decode as expected).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// let labels = ZlprLoss::decode(&array![[0.1_f32, 0.0, -3.0, f32::INFINITY]])?;
    /// assert_eq!(labels, array![[true, false, false, true]]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Su et al., "ZLPR: A Novel Loss for Multi-label Classification", arXiv:2208.02955.
    pub fn decode(logits: &ArrayRef2<F>) -> Result<Array2<bool>> {
        if let Some(((row, class), v)) = logits.indexed_iter().find(|(_, v)| v.is_nan()) {
            return Err(Error::NonFiniteLogit { row, class, value: v.as_f64() });
        }
        Ok(logits.mapv(|v| v > F::zero()))
    }

    /// Validates a batch in the order documented on [`Loss::loss_into`] for [`ZlprLoss`]: the
    /// prior's length, then the one-vs-rest checks with every target row read as a label set.
    fn check(&self, logits: &ArrayRef2<F>, targets: &Targets<F>, outputs: &[OutputShape<'_>]) -> Result<()> {
        let (_, classes) = batch_dims(logits)?;
        if let Some(a) = &self.adjustment {
            check_shape("prior", &[classes], &[a.len()])?;
        }
        one_vs_rest::check_batch(logits, targets, outputs, LabelSets::Always, self.adjustment.as_deref())
    }

    fn reduced(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        // For the mean the rows see the weights times 2^−e, which the mean does not depend on;
        // the sum takes them unscaled (a row's `w·ℓ_i` overflows only where `ℓ_i` does).
        let weights = targets.sample_weights.as_ref().and_then(|w| w.as_slice());
        let (divisor, weight_exp) = match self.reduction {
            Reduction::Mean if targets.sample_weights.is_some() && weights.is_none() => {
                let w: Vec<F> = targets.sample_weights.as_ref().map_or(Vec::new(), |w| w.to_vec());
                let e = binary_weight_exponent(Some(&w[..]));
                (scaled_total_weight(Some(&w[..]), targets.len(), e), e)
            }
            Reduction::Mean => {
                let e = binary_weight_exponent(weights);
                (scaled_total_weight(weights, targets.len(), e), e)
            }
            Reduction::Sum => (1.0, 0),
        };
        let exp = 0;
        if divisor == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return Ok(F::zero());
        }
        let (scale, k) = split_scale::<F>(divisor.recip(), exp);
        let mut grad_out = grad_out;
        let grad = grad_out.as_deref_mut();
        let total = dispatch(Rows { loss: self, logits, targets, grad, losses: None, scale, weight_exp });
        let loss = reduced_loss::<F>(total, divisor, exp)?;
        finish_gradient(grad_out, k)?;
        Ok(loss)
    }
}

impl<F: Float> Loss<F> for ZlprLoss<F> {
    /// The reduced loss, the gradient into `grad_out` if given.
    ///
    /// # Errors
    ///
    /// Checked in this order:
    /// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
    /// - [`Error::ShapeMismatch`]: the label prior not of length `K`;
    /// - [`Error::ShapeMismatch`]: `labels` not of length `B` or `targets` not `[B, K]`, an output
    ///   buffer of the wrong shape, `sample_weights` not of length `B`;
    /// - [`Error::InvalidSampleWeight`]: a negative or non-finite sample weight;
    /// - [`Error::LabelOutOfRange`] for a label `≥ K`, [`Error::TargetOutOfRange`] for a
    ///   target entry other than 0 or 1 (multi-hot rows; one-hot probability rows are label sets
    ///   too);
    /// - then the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or
    ///   `+inf` (or a logit that overflows once adjusted), [`Error::MaskedTarget`] for `-inf` on a
    ///   positive class of a row that counts.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        self.check(logits, targets, &output_shapes(logits, None, grad_out.as_deref()))?;
        self.reduced(logits, targets, grad_out)
    }

    /// Every row's loss and, if `grad_out` is given, its gradient.
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        self.check(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
        dispatch(Rows {
            loss: self,
            logits,
            targets,
            grad: grad_out,
            losses: Some(&mut *losses_out),
            scale: F::one(),
            // A row's `w·ℓ_i` overflows only where `ℓ_i` does: unscaled weights.
            weight_exp: 0,
        });
        match losses_out.iter().position(|v| !v.is_finite()) {
            Some(row) => Err(Error::Overflow { what: "loss", row: Some(row), class: None, value: None }),
            None => Ok(()),
        }
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// The rows of a validated batch, run by [`dispatch`] for the CPU's instruction set: `Σ_i ℓ_i`
/// (sample weights applied, in `f64`), each `ℓ_i` into `losses` and `scale·∂ℓ_i/∂s` into `grad`
/// if given.
struct Rows<'a, 't, F> {
    loss: &'a ZlprLoss<F>,
    logits: &'a ArrayRef2<F>,
    targets: &'a Targets<'t, F>,
    grad: Option<&'a mut ArrayRef2<F>>,
    losses: Option<&'a mut ArrayRef1<F>>,
    scale: F,
    /// The weights are seen times `2^−weight_exp`, and each `ℓ_i` written times `2^weight_exp`.
    weight_exp: i32,
}

impl<F: Float> Kernel for Rows<'_, '_, F> {
    type Output = f64;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> f64 {
        let Rows { loss, logits, targets, grad, losses, scale, weight_exp } = self;
        let padded = if pads::<F>(logits.ncols()) { logits.ncols().next_multiple_of(HALF_LANES) } else { 0 };
        let mut visitor = RowsVisitor::<F, FMA> {
            adjust: loss.adjustment.as_deref(),
            targets,
            losses,
            scale,
            weight_scale: pow2::<F>(-weight_exp),
            weight_exp,
            t_buf: vec![F::zero(); padded.max(logits.ncols())],
            v_buf: vec![F::zero(); padded],
            total: 0.0,
        };
        visit_rows(logits, grad, &mut visitor);
        visitor.total
    }
}

/// [`Rows`]' state while visiting them: buffers for a padded (or strided) row, `Σ ℓ_i` so far.
struct RowsVisitor<'a, 't, F, const FMA: bool> {
    adjust: Option<&'a [F]>,
    targets: &'a Targets<'t, F>,
    losses: Option<&'a mut ArrayRef1<F>>,
    scale: F,
    weight_scale: F,
    weight_exp: i32,
    t_buf: Vec<F>,
    v_buf: Vec<F>,
    total: f64,
}

impl<F: Float, const FMA: bool> RowVisitor<F> for RowsVisitor<'_, '_, F, FMA> {
    #[inline(always)]
    fn visit(&mut self, i: usize, s: &[F], grad: &mut [F]) {
        let w = self.targets.sample_weight(i) * self.weight_scale;
        let factor = w * self.scale;
        let value: f64 = if factor == F::zero() {
            // A zero weight ignores the row, even one whose positive class is masked.
            grad.fill(F::zero());
            0.0
        } else {
            let (k, padded) = (s.len(), !self.v_buf.is_empty());
            // The row's multi-hot targets: borrowed where they can be, else written into `t_buf`
            // (padded with negatives, which cost nothing at `-inf`).
            let targets = self.targets;
            let borrowed = match &targets.kind {
                TargetKind::Rows(rows, _) if !padded => rows.row(i).to_slice(),
                _ => None,
            };
            let t = match borrowed {
                Some(t) => t,
                None => {
                    let t = &mut self.t_buf[..if padded { self.v_buf.len() } else { k }];
                    t.fill(F::zero());
                    match &targets.kind {
                        TargetKind::Labels(labels) => t[labels[i]] = F::one(),
                        TargetKind::Rows(rows, _) => t.iter_mut().zip(rows.row(i)).for_each(|(d, &v)| *d = v),
                    }
                    t
                }
            };
            let value = if padded {
                adjusted(s, self.adjust, &mut self.v_buf[..k]);
                self.v_buf[k..].fill(F::neg_infinity());
                let value = w * row::<F, FMA>(&mut self.v_buf, t, factor);
                grad.copy_from_slice(&self.v_buf[..k]);
                value
            } else {
                adjusted(s, self.adjust, grad);
                w * row::<F, FMA>(grad, t, factor)
            };
            if value.is_finite() { value.as_f64() } else { exact_row_loss(s, self.adjust, &t[..k], w) }
        };
        if let Some(losses) = self.losses.as_mut() {
            losses[i] = F::from_f64(if self.weight_exp == 0 { value } else { ldexp(value, self.weight_exp) });
        }
        self.total += value;
    }
}

/// `w·ℓ` of a row whose two halves each fit the float type but whose sum, or its product with the
/// weight, did not (logits of opposite extremes), recomputed in `f64` from halved logits (infinite
/// if it is beyond `f64`; a per-sample value beyond `F` becomes infinite and the caller reports
/// it, while the batch's sum keeps the `f64` value).
#[cold]
#[inline(never)]
fn exact_row_loss<F: Float>(s: &[F], adjust: Option<&[F]>, t: &[F], w: F) -> f64 {
    // Half of `log(1 + Σ e^{x_j})` of the halves `x_j / 2` (the implicit 0 included).
    let half_lse = |values: &mut dyn Iterator<Item = f64>| {
        let halves: Vec<f64> = values.filter(|v| *v > f64::NEG_INFINITY).map(|v| v / 2.0).collect();
        let max = halves.iter().fold(0.0_f64, |m, &v| m.max(v));
        let sum: f64 = (-2.0 * max).exp() + halves.iter().map(|&v| (2.0 * (v - max)).exp()).sum::<f64>();
        max + sum.ln() / 2.0
    };
    let logit = |j: usize| adjust.map_or(s[j], |a| s[j] + a[j]).as_f64();
    let negatives = half_lse(&mut (0..s.len()).filter(|&j| t[j] != F::one()).map(logit));
    let positives = half_lse(&mut (0..s.len()).filter(|&j| t[j] == F::one()).map(|j| -logit(j)));
    w.as_f64() * (negatives + positives) * 2.0
}

/// Writes `s' = s + adjust` (or `s`) into `out`.
#[inline(always)]
fn adjusted<F: Float>(s: &[F], adjust: Option<&[F]>, out: &mut [F]) {
    match adjust {
        Some(a) => out.iter_mut().zip(s).zip(a).for_each(|((o, &s), &a)| *o = s + a),
        None => out.copy_from_slice(s),
    }
}

/// Rows up to this long whose length is not a multiple of [`HALF_LANES`] are padded, so that every
/// loop of [`row`] runs in full vectors: for them a scalar tail would cost more than the copies.
const PADDED_ROW: usize = 1024;

/// Whether rows of `k` classes are padded ([`PADDED_ROW`]). Only in `f32`: [`HALF_LANES`] of `f64`
/// fill four AVX2 registers a value, and there padded rows of 10 ran slower than the scalar tail.
fn pads<F: Float>(k: usize) -> bool {
    size_of::<F>() == size_of::<f32>() && !k.is_multiple_of(HALF_LANES) && k <= PADDED_ROW
}

/// Lanes of the two-sided reductions below: each keeps two or four accumulators, which must stay in
/// registers.
const HALF_LANES: usize = LANES / 2;

/// One validated row with multi-hot targets `t` and a weight that counts, its adjusted logits `s'`
/// in `x`: returns `ℓ` and overwrites `x` with `factor·∂ℓ/∂s`, branch-free so that its loops
/// vectorise.
///
/// With `v_j = −s'_j` on positives and `s'_j` on negatives, each half is `lse(0, v)` over its
/// classes, shifted by its own max `m` (the implicit 0 included). Its sum is split as `n + r`, with
/// `n` the number of terms that are exactly 1 (the max among them) and `r` the sum of the others,
/// so that `ln(n + r) = ln_1p((n − 1) + r)` keeps a tiny `r`.
#[inline(always)]
fn row<F: Float, const FMA: bool>(x: &mut [F], t: &[F], factor: F) -> F {
    let max = signed_max(x, t);
    let mut ones = [0.0_f64; 2];
    let mut rest = [0.0_f64; 2];
    for (e, t) in x.chunks_mut(BLOCK).zip(t.chunks(BLOCK)) {
        e.iter_mut().zip(t).for_each(|(v, &t)| {
            let shift = if t == F::one() { max[1] } else { max[0] };
            *v = exp_nonpos::<F, FMA>(*v - shift);
        });
        let (block_ones, block_rest) = split_sums(e, t);
        for side in 0..2 {
            ones[side] += block_ones[side].as_f64();
            rest[side] += block_rest[side].as_f64();
        }
    }
    let mut loss = F::zero();
    let mut inv_total = [F::zero(); 2];
    for side in 0..2 {
        // The implicit zero's term, e^{−m}: 1 when it is the max.
        let zero_term = (-max[side]).exp();
        let (n, r) = if zero_term == F::one() {
            (ones[side] + 1.0, rest[side])
        } else {
            (ones[side], rest[side] + zero_term.as_f64())
        };
        let r = F::from_f64((n - 1.0) + r);
        loss += max[side] + r.ln_1p();
        inv_total[side] = (F::one() + r).recip();
    }
    let (negative, positive) = (factor * inv_total[0], -(factor * inv_total[1]));
    x.iter_mut().zip(t).for_each(|(g, &t)| *g *= if t == F::one() { positive } else { negative });
    loss
}

/// Overwrites `x` (`s'`) with `v` (`−s'_j` on positives, `s'_j` on negatives) and returns the max
/// of each half, negatives first, the implicit 0 included.
#[inline(always)]
fn signed_max<F: Float>(x: &mut [F], t: &[F]) -> [F; 2] {
    let mut acc = [[F::zero(); HALF_LANES]; 2];
    let step = |[neg, pos]: [&mut F; 2], v: &mut F, t: F| {
        let positive = t == F::one();
        *v = if positive { -*v } else { *v };
        let (to_neg, to_pos) = if positive { (F::zero(), *v) } else { (*v, F::zero()) };
        *neg = if to_neg > *neg { to_neg } else { *neg };
        *pos = if to_pos > *pos { to_pos } else { *pos };
    };
    let mut chunks = x.chunks_exact_mut(HALF_LANES);
    let tail = t.len() / HALF_LANES * HALF_LANES;
    for (v, t) in (&mut chunks).zip(t.chunks_exact(HALF_LANES)) {
        let [neg, pos] = &mut acc;
        neg.iter_mut().zip(pos.iter_mut()).zip(v).zip(t).for_each(|(((n, p), v), &t)| step([n, p], v, t));
    }
    let [neg, pos] = &mut acc;
    let rest = neg.iter_mut().zip(pos.iter_mut()).zip(chunks.into_remainder()).zip(&t[tail..]);
    rest.for_each(|(((n, p), v), &t)| step([n, p], v, t));
    [fold_lanes(neg, max), fold_lanes(pos, max)]
}

/// The sums of each half of `e` (negatives first): the number of terms exactly 1, and the sum of
/// the others.
#[inline(always)]
fn split_sums<F: Float>(e: &[F], t: &[F]) -> ([F; 2], [F; 2]) {
    let mut acc = [[[F::zero(); HALF_LANES]; 2]; 2];
    let step = |[ones_neg, ones_pos, rest_neg, rest_pos]: [&mut F; 4], e: F, t: F| {
        let (one, positive) = (e == F::one(), t == F::one());
        let (count, rest) = if one { (F::one(), F::zero()) } else { (F::zero(), e) };
        *ones_neg += if positive { F::zero() } else { count };
        *ones_pos += if positive { count } else { F::zero() };
        *rest_neg += if positive { F::zero() } else { rest };
        *rest_pos += if positive { rest } else { F::zero() };
    };
    let tail = t.len() / HALF_LANES * HALF_LANES;
    for (e, t) in e.chunks_exact(HALF_LANES).zip(t.chunks_exact(HALF_LANES)) {
        let [[on, op], [rn, rp]] = &mut acc;
        let lanes = on.iter_mut().zip(op.iter_mut()).zip(rn.iter_mut()).zip(rp.iter_mut());
        lanes.zip(e).zip(t).for_each(|(((((on, op), rn), rp), &e), &t)| step([on, op, rn, rp], e, t));
    }
    let [[on, op], [rn, rp]] = &mut acc;
    let lanes = on.iter_mut().zip(op.iter_mut()).zip(rn.iter_mut()).zip(rp.iter_mut());
    let rest = lanes.zip(&e[tail..]).zip(&t[tail..]);
    rest.for_each(|(((((on, op), rn), rp), &e), &t)| step([on, op, rn, rp], e, t));
    let sum = |a: F, b: F| a + b;
    ([fold_lanes(on, sum), fold_lanes(op, sum)], [fold_lanes(rn, sum), fold_lanes(rp, sum)])
}

/// `max(a, b)` for NaN-free input.
#[inline(always)]
fn max<F: Float>(a: F, b: F) -> F {
    if b > a { b } else { a }
}

/// Folds the lanes pairwise, halving their number each step, so that the fold runs in vectors.
#[inline(always)]
fn fold_lanes<F: Float>(lanes: &mut [F; HALF_LANES], op: impl Fn(F, F) -> F) -> F {
    let mut width = HALF_LANES;
    while width > 1 {
        width /= 2;
        let (low, high) = lanes.split_at_mut(width);
        low.iter_mut().zip(&*high).for_each(|(a, &b)| *a = op(*a, b));
    }
    lanes[0]
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
