//! The shared path of the hard-label margin losses: validating a labelled batch, and reducing rows
//! with PyTorch's weighted mean.

use super::results::{check_row_losses, finish_gradient, reduced_loss};
use ndarray::{ArrayRef1, ArrayRef2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};

use super::Reduction;
use super::few_classes::{self, FewClassRows, FewMargins};
use super::short_rows::{Finished, one_hot_group};
use super::softmax_loss::wide_rows;
use super::targets::{TargetKind, Targets};
use super::two_classes::{LabelMargins, TwoClassRows};
use super::validate::{OutputShape, batch_dims, check_labels, check_sample_weights, unsupported};
use crate::error::check_shape;
use crate::float::{LANES, ldexp, pow2, scale_exponent, split_scale};
use crate::group::{GROUP, Group, Lanes, SHORT_ROW, columns_lse, transpose_rows};
use crate::rows::{CHUNK, PARALLEL_MIN, RowVisitor, sum_chunks, visit_rows};
use crate::simd::{Kernel, dispatch};
use crate::softmax::is_nan_or_pos_inf;
use crate::{Error, Float, Result};

/// A validated batch of hard labels: the labels, the targets they came from, and the class weights.
///
/// Sample and class weights are each scaled by a power of two that brings their maximum into
/// `[1, 2)` (exactly), so that their products with each other and with the losses neither
/// overflow nor underflow; the reduction puts the powers back.
pub(super) struct LabelledBatch<'t, 'w, F> {
    pub labels: ArrayView1<'w, usize>,
    pub targets: &'w Targets<'t, F>,
    pub class_weights: Option<&'w [F]>,
    /// `2^−e_s`, `2^−e_w` and `2^−e_c`: the scales of the sample and class weights, and of their
    /// products (which brings the largest coefficient of the batch into `[1, 2)`, so that the
    /// mean's `1/Σ c` stays near 1 whatever the weights).
    inv_s: F,
    inv_w: F,
    inv_c: F,
    /// `e_s + e_w + e_c`.
    exp: i32,
}

impl<'t, 'w, F: Float> LabelledBatch<'t, 'w, F> {
    /// Validates everything but the logits' values, in the documented order: [`Error::EmptyBatch`],
    /// [`Error::NoClasses`]; [`Error::ShapeMismatch`] for `class_weights` and the other
    /// per-class parameters in `params` (`(name, shape)`, each axis of length `K`);
    /// [`Error::UnsupportedTargets`] for probability or multi-hot targets; [`Error::ShapeMismatch`] for `labels`, the `outputs` and
    /// `sample_weights`; [`Error::InvalidSampleWeight`]; [`Error::LabelOutOfRange`].
    pub fn new(
        loss: &'static str,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        class_weights: Option<&'w [F]>,
        params: &[(&'static str, &[usize])],
        outputs: &[OutputShape<'_>],
    ) -> Result<Self> {
        let (batch, classes) = batch_dims(logits)?;
        if let Some(w) = class_weights {
            check_shape("class_weights", &[classes], &[w.len()])?;
        }
        for &(name, shape) in params {
            check_shape(name, &vec![classes; shape.len()], shape)?;
        }
        let labels = match &targets.kind {
            TargetKind::Labels(labels) => labels.view(),
            kind => return Err(unsupported(loss, "hard labels", kind)),
        };
        check_shape("labels", &[batch], labels.shape())?;
        for &(name, expected, found) in outputs {
            check_shape(name, expected, found)?;
        }
        check_sample_weights(targets.sample_weights.as_ref(), batch)?;
        check_labels(&labels, classes)?;
        let exponent = |max: f64| scale_exponent::<F>(max);
        let e_s =
            targets.sample_weights.as_ref().map_or(0, |w| exponent(w.fold(0.0, |m, v| m.max(v.as_f64()))));
        let e_w = class_weights.map_or(0, |w| exponent(w.iter().fold(0.0, |m, v| m.max(v.as_f64()))));
        let (inv_s, inv_w) = (pow2(-e_s), pow2(-e_w));
        let mut batch = Self { labels, targets, class_weights, inv_s, inv_w, inv_c: F::one(), exp: 0 };
        let max = (0..batch.labels.len()).fold(0.0_f64, |m, i| m.max(batch.coefficient(i).as_f64()));
        let e_c = scale_exponent::<F>(max);
        batch.inv_c = pow2(-e_c);
        batch.exp = e_s + e_w + e_c;
        Ok(batch)
    }

    /// The coefficient `s_i·w_{y_i}` of row `i`, times `2^−(e_s + e_w + e_c)`: the product in
    /// `f64`, rounded once, so that in `f32` a small weight times a large one keeps its digits.
    #[inline]
    pub fn coefficient(&self, i: usize) -> F {
        let scaled = |v: F, inv: F| v.as_f64() * inv.as_f64();
        let w = self.class_weights.map_or(1.0, |w| scaled(w[self.labels[i]], self.inv_w));
        F::from_f64(scaled(self.targets.sample_weight(i), self.inv_s) * w * self.inv_c.as_f64())
    }

    /// Whether row `i` counts (a positive sample weight and class weight), exactly.
    #[inline]
    fn counts(&self, i: usize) -> bool {
        self.targets.sample_weight(i) > F::zero()
            && self.class_weights.is_none_or(|w| w[self.labels[i]] > F::zero())
    }

    /// Checks the logits of the batch's rows from row `first` on, in row-major order:
    /// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit; [`Error::Overflow`] (named `what`)
    /// for a finite one whose `transformed(row, class, z)` is not finite;
    /// [`Error::MaskedTarget`] for a `-inf` label logit in a row that counts.
    ///
    /// Contiguous rows of finite logits pass in one branch-free scan when `fits(max |z|)` says
    /// that no logit of that magnitude can overflow once transformed.
    #[inline(always)]
    pub fn check_logits(
        &self,
        logits: &ArrayRef2<F>,
        first: usize,
        what: &'static str,
        fits: impl Fn(F) -> bool,
        transformed: impl Fn(usize, usize, F) -> F,
    ) -> Result<()> {
        if logits.as_slice().and_then(finite_max_abs).is_some_and(fits) {
            return Ok(());
        }
        for (row, z) in (first..).zip(logits.rows()) {
            for (class, &v) in z.iter().enumerate() {
                if is_nan_or_pos_inf(v) {
                    return Err(Error::NonFiniteLogit { row, class, value: v.as_f64() });
                }
                if v.is_finite() && !transformed(row, class, v).is_finite() {
                    let value = Some(v.as_f64());
                    return Err(Error::Overflow { what, row: Some(row), class: Some(class), value });
                }
                if v == F::neg_infinity() && class == self.labels[row] && self.counts(row) {
                    return Err(Error::MaskedTarget { row, class });
                }
            }
        }
        Ok(())
    }

    /// The reduced loss of `loss`'s rows, the gradient into `grad_out` if given; the mean divides
    /// by `Σ_i s_i·w_{y_i}` (PyTorch's weighted mean), and a zero divisor gives loss 0 and
    /// gradient 0.
    pub fn reduced(
        &self,
        loss: &impl MarginRow<F>,
        logits: &ArrayRef2<F>,
        reduction: Reduction,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        // The scaled coefficients: the mean does not depend on their scale, the sum gets it back.
        let (divisor, exp) = match reduction {
            Reduction::Sum => (1.0, self.exp),
            Reduction::Mean => ((0..self.labels.len()).map(|i| self.coefficient(i).as_f64()).sum(), 0),
        };
        if divisor == 0.0 {
            // No row counts, and the kernel does not run: the logits are checked on their own.
            loss.check_chunk(self, logits, 0)?;
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return Ok(F::zero());
        }
        let (scale, k) = split_scale::<F>(divisor.recip(), exp);
        let mut grad_out = grad_out;
        let total = self.rows(loss, logits, grad_out.as_deref_mut(), None, scale, 0)?;
        let value = reduced_loss::<F>(total, divisor, exp)?;
        finish_gradient(grad_out, k)?;
        Ok(value)
    }

    /// Every row's loss `ℓ_i` (sample and class weights applied) into `losses`, its gradient into
    /// `grad_out` if given; [`Error::Overflow`] (`"loss"`, `"gradient"`) for a value beyond the
    /// float's range.
    pub fn per_sample(
        &self,
        loss: &impl MarginRow<F>,
        logits: &ArrayRef2<F>,
        losses: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        // The coefficients are scaled by 2^−exp: the gradient and the losses get it back.
        let (scale, k) = split_scale::<F>(1.0, self.exp);
        let mut grad_out = grad_out;
        self.rows(loss, logits, grad_out.as_deref_mut(), Some(&mut *losses), scale, self.exp)?;
        check_row_losses(losses)?;
        finish_gradient(grad_out, k)?;
        Ok(())
    }
}

impl<F: Float> LabelledBatch<'_, '_, F> {
    /// Runs `loss` over the batch: `scale·∂ℓ_i/∂z_i` into row `i` of `grad` if given, `ℓ_i·2^loss_exp`
    /// into `losses[i]` if given; returns `Σ_i ℓ_i`, summed in `f64`. Each chunk of rows checks its
    /// logits just before it reads them ([`MarginRow::check_chunk`]); the error of the first chunk
    /// that fails is returned, so it names the first bad logit in row-major order, and the rows
    /// before it are written.
    ///
    /// The chunks' size depends on `K` alone, each chunk's sum starts at 0 and the sums are added
    /// in order: with the `rayon` feature, batches of at least [`PARALLEL_MIN`] elements run their
    /// chunks in parallel, bit-identical to one thread.
    fn rows(
        &self,
        loss: &impl MarginRow<F>,
        logits: &ArrayRef2<F>,
        grad: Option<&mut ArrayRef2<F>>,
        losses: Option<&mut ArrayRef1<F>>,
        scale: F,
        loss_exp: i32,
    ) -> Result<f64> {
        let (batch, classes) = logits.dim();
        let chunk = (CHUNK / classes).max(1);
        let mut grads = grad.map(|g| g.axis_chunks_iter_mut(Axis(0), chunk));
        let mut losses = losses.map(|l| l.axis_chunks_iter_mut(Axis(0), chunk));
        let chunks = logits.axis_chunks_iter(Axis(0), chunk).enumerate().map(|(c, logits)| Rows {
            batch: self,
            loss,
            first: c * chunk,
            logits,
            grad: grads.as_mut().and_then(Iterator::next),
            losses: losses.as_mut().and_then(Iterator::next),
            scale,
            loss_exp,
        });
        // Grouped f64 margin rows measured 8–14 % slower on AVX-512 (4096×10 and 4096×16): they
        // stay on AVX2. Two classes take the closed form, 15–25 % faster there, and 3 to
        // `FEW_CLASSES` `FewClassRows`, 10–30 % faster there (LDAM f32 4096×5 3.1 → 2.1 ns/elem).
        let grouped_wide = wide_rows(classes) && (classes > SHORT_ROW || size_of::<F>() == 4);
        let wide = grouped_wide
            || (classes == 2 && loss.two_class_form().is_some())
            || takes_few_class_rows(loss, classes);
        sum_chunks(chunks, batch * classes >= PARALLEL_MIN && batch > chunk, wide)
    }
}

/// Whether the grouped rows of `classes` classes of `loss` run through [`FewClassRows`].
fn takes_few_class_rows<F: Float, L: MarginRow<F>>(loss: &L, classes: usize) -> bool {
    L::GROUPED
        && match classes {
            3 => loss.few_class_form::<3>().is_some(),
            4 => loss.few_class_form::<4>().is_some(),
            5 => loss.few_class_form::<5>().is_some(),
            6 => loss.few_class_form::<6>().is_some(),
            7 => loss.few_class_form::<7>().is_some(),
            _ => false,
        }
}

/// One row of a hard-label margin loss: cross-entropy on transformed logits.
pub(super) trait MarginRow<F: Float>: Sync {
    /// Validates a batch against the loss (its parameters' shapes, the labels), the `outputs`
    /// buffers' shapes among them: everything but the logits' values.
    fn check<'t, 'w>(
        &'w self,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<LabelledBatch<'t, 'w, F>>;

    /// Checks the logits of `batch`'s rows from row `first` on (as [`LabelledBatch::check_logits`],
    /// for the loss's transformed logits). Must be `#[inline(always)]`: it runs inside a
    /// [`Kernel`].
    fn check_chunk(
        &self,
        batch: &LabelledBatch<'_, '_, F>,
        logits: &ArrayRef2<F>,
        first: usize,
    ) -> Result<()>;

    /// Row `z` with label `y` and coefficient `c = s_i·w_y`: returns `ℓ_i` and writes
    /// `scale·∂ℓ_i/∂z` into `grad`; `scratch` is a spare row of length `K`. Must be
    /// `#[inline(always)]`: it runs inside a [`Kernel`].
    #[allow(clippy::too_many_arguments)] // the row, its label and weights, and two buffers
    fn row<const FMA: bool>(&self, z: &[F], y: usize, c: F, scale: F, grad: &mut [F], scratch: &mut [F])
    -> F;

    /// The transformed logit `z'_k` of logit `z` of class `k`, in a row with label `y`, as
    /// [`row`](Self::row) computes it.
    fn logit(&self, z: F, y: usize, k: usize) -> F;

    /// Whether short rows (`K ≤ SHORT_ROW`, contiguous) run [`GROUP`] at a time, one vector lane
    /// per row: through [`group_logits`](Self::group_logits), the group's log-sum-exp, then
    /// [`finish_group`](Self::finish_group) and [`chain_rows`](Self::chain_rows), which must give
    /// [`row`](Self::row)'s results bit for bit.
    const GROUPED: bool = false;

    /// Turns a group's logits into the transformed ones, in place: column `k`, lane `r` holds
    /// `z_rk` of row `r` (label `labels[r]`) and becomes `z'_rk`, as [`logit`](Self::logit).
    #[inline(always)]
    fn group_logits(&self, _columns: &mut [Lanes<F>], _labels: &[usize; GROUP]) {}

    /// The losses and gradients (with respect to `z'`, times `scale`) of a group's rows of
    /// coefficients `c`, once `group` holds the log-sum-exp of their transformed logits:
    /// cross-entropy unless the loss says otherwise.
    #[inline(always)]
    fn finish_group<const FMA: bool>(
        &self,
        group: &Group<F>,
        labels: &[usize; GROUP],
        c: &Lanes<F>,
        scale: F,
    ) -> Finished<F> {
        one_hot_group::<F, FMA>(group, labels, c, F::zero(), &[scale; GROUP])
    }

    /// Turns the gradient rows a finished group wrote (`K` entries each) into gradients with
    /// respect to `z`, where `∂z'_k/∂z_k` is not already in the gradient's scale.
    #[inline(always)]
    fn chain_rows(&self, _rows: &mut [F]) {}

    /// The transform of `K` logits that [`FewClassRows`] applies, if the loss's rows are
    /// cross-entropy on logits of that form (asked of a loss of `K` classes only, `3 ≤ K ≤
    /// FEW_CLASSES`, with [`GROUPED`](Self::GROUPED) rows).
    fn few_class_form<const K: usize>(&self) -> Option<FewMargins<F, K>> {
        None
    }

    /// The closed form of `K = 2` rows ([`TwoClassRows`]) on the transformed logits, if the loss
    /// has one (asked of a loss of two classes only).
    fn two_class_form(&self) -> Option<TwoClassForm<F>> {
        None
    }

    /// Row `z`'s `ℓ_i` in `f64`, for a row whose value in `F` is not finite: CE on the transformed
    /// logits (see [`exact_ce`]) times `c`.
    #[cold]
    #[inline(never)]
    fn exact_loss(&self, z: &[F], y: usize, c: F) -> f64 {
        let z: Vec<f64> = z.iter().enumerate().map(|(k, &v)| self.logit(v, y, k).as_f64()).collect();
        2.0 * (c.as_f64() * exact_ce(&z, y).0)
    }
}

/// A margin loss's `K = 2` rows as [`TwoClassRows`] computes them: cross-entropy on the
/// transformed logits `z'` (plus Poly-1's `ε·(1 − p_y)`), its gradient times `∂z'_k/∂z_k`.
pub(super) struct TwoClassForm<F> {
    /// `∂z'_k/∂z_k` of the two classes.
    pub slopes: [F; 2],
    /// Poly-1's `ε`, 0 for none.
    pub poly: F,
    /// The transform `z'` as [`TwoClassRows`] applies it to the logits as it reads them: label
    /// margins on scaled logits, then an additive adjustment (each optional). `z'` need only give
    /// the same margin `z'_other − z'_y` as [`MarginRow::logit`].
    pub margins: Option<LabelMargins<F, 2>>,
    pub adjust: Option<[F; 2]>,
}

/// `(−log p_y / 2, 1 − p_y)` of `p = softmax(z)` in `f64`, for logits so far apart that
/// `z_k − max z` overflows the float type (`±3e38` in `f32`, `±1.8e308` in `f64`): the
/// differences are halved, so that none overflows `f64`. Masked (`-inf`) classes count 0.
pub(super) fn exact_ce(z: &[f64], y: usize) -> (f64, f64) {
    let argmax = (0..z.len()).fold(y, |a, k| if z[k] > z[a] { k } else { a });
    let max = z[argmax];
    let half = |k: usize| z[k] / 2.0 - max / 2.0;
    let rest: f64 = (0..z.len()).filter(|&k| k != argmax).map(|k| (2.0 * half(k)).exp()).sum();
    let half_nll = rest.ln_1p() / 2.0 - half(y);
    let one_minus_p = if y == argmax { rest / (1.0 + rest) } else { -(-2.0 * half_nll).exp_m1() };
    (half_nll, one_minus_p)
}

/// A chunk of consecutive rows of a validated batch, from row `first` on, and its outputs, run by
/// [`sum_chunks`] for the CPU's instruction set.
struct Rows<'a, 't, 'w, F, L> {
    batch: &'a LabelledBatch<'t, 'w, F>,
    loss: &'a L,
    first: usize,
    logits: ArrayView2<'a, F>,
    grad: Option<ArrayViewMut2<'a, F>>,
    losses: Option<ArrayViewMut1<'a, F>>,
    scale: F,
    /// Each `ℓ_i` is stored times `2^loss_exp`.
    loss_exp: i32,
}

impl<F: Float, L: MarginRow<F>> Kernel for Rows<'_, '_, '_, F, L> {
    type Output = Result<f64>;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> Result<f64> {
        let Rows { batch, loss, first, logits, mut grad, mut losses, scale, loss_exp } = self;
        let classes = logits.ncols();
        // The chunk's logits, checked just before the kernel reads them again, from cache.
        loss.check_chunk(batch, &logits, first)?;
        if classes == 2
            && let Some(form) = loss.two_class_form()
        {
            let (grad, losses) = (grad.as_deref_mut(), losses.as_deref_mut());
            if let Some(total) =
                two_class_rows::<F, FMA>(batch, form, first, &logits, grad, losses, scale, loss_exp)
            {
                return Ok(total);
            }
        }
        let mut visitor = RowsVisitor::<F, L, FMA> {
            batch,
            loss,
            first,
            losses,
            scale,
            loss_exp,
            scratch: Vec::new(),
            total: 0.0,
        };
        if L::GROUPED && classes <= SHORT_ROW {
            match (logits.as_slice(), grad.as_deref_mut().map(|g| g.as_slice_mut())) {
                (Some(z), None) => return Ok(visitor.groups(z, classes, None)),
                (Some(z), Some(Some(out))) => return Ok(visitor.groups(z, classes, Some(out))),
                _ => {}
            }
        }
        visitor.scratch = vec![F::zero(); classes];
        visit_rows(&logits, grad.as_deref_mut(), &mut visitor);
        Ok(visitor.total)
    }
}

/// `Σ ℓ_i` of a chunk of `K = 2` rows (from row `first` of the batch on) in closed form, the
/// gradient into `grad` and the losses times `2^loss_exp` into `losses` if given; `None` (the
/// outputs partly written) where a row is beyond the closed form's range, as
/// [`TwoClassRows::run`] says.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the batch, the loss's form, and the outputs with their scales
fn two_class_rows<F: Float, const FMA: bool>(
    batch: &LabelledBatch<'_, '_, F>,
    form: TwoClassForm<F>,
    first: usize,
    logits: &ArrayRef2<F>,
    mut grad: Option<&mut ArrayRef2<F>>,
    losses: Option<&mut ArrayRef1<F>>,
    scale: F,
    loss_exp: i32,
) -> Option<f64> {
    let rows = logits.nrows();
    let labels = batch.labels.slice(s![first..first + rows]);
    let coefficients: Vec<F> = (first..first + rows).map(|i| batch.coefficient(i)).collect();
    // Equal slopes (LDAM's `s`) go into the gradient's factor, which spares a pass over it.
    let ([s0, s1], scale) = match form.slopes {
        [s0, s1] if s0 == s1 => ([F::one(); 2], scale * s0),
        slopes => (slopes, scale),
    };
    let rows = TwoClassRows {
        logits: logits.view(),
        adjust: form.adjust,
        labels: &labels,
        sample_weights: None,
        first: 0,
        weight_scale: F::one(),
        loss_exp,
        class_factors: None,
        coefficients: Some(&coefficients),
        gamma: F::zero(),
        poly: form.poly,
        transform: form.margins,
        scale,
    };
    let total = rows.run::<FMA>(losses.map(|l| l.view_mut()), grad.as_deref_mut().map(|g| g.view_mut()))?;
    if let (Some(grad), false) = (grad, s0 == F::one() && s1 == F::one()) {
        match grad.as_slice_mut() {
            Some(g) => g.chunks_exact_mut(2).for_each(|g| (g[0], g[1]) = (g[0] * s0, g[1] * s1)),
            None => grad.rows_mut().into_iter().for_each(|mut g| (g[0], g[1]) = (g[0] * s0, g[1] * s1)),
        }
    }
    Some(total)
}

/// [`Rows`]' state while visiting them: `Σ ℓ_i` so far.
struct RowsVisitor<'a, 't, 'w, F, L, const FMA: bool> {
    batch: &'a LabelledBatch<'t, 'w, F>,
    loss: &'a L,
    /// The batch's row of the chunk's row 0.
    first: usize,
    losses: Option<ArrayViewMut1<'a, F>>,
    scale: F,
    loss_exp: i32,
    scratch: Vec<F>,
    total: f64,
}

impl<F: Float, L: MarginRow<F>, const FMA: bool> RowsVisitor<'_, '_, '_, F, L, FMA> {
    /// Every row of `z` (`K = classes ≤ SHORT_ROW`, row-major), [`GROUP`] rows at a time (the last
    /// group padded with rows of label 0 and coefficient 0), the gradient into `out` (same
    /// layout) if given; returns `Σ ℓ_i`.
    #[inline(always)]
    fn groups(mut self, z: &[F], classes: usize, mut out: Option<&mut [F]>) -> f64 {
        if self.batch.labels.as_slice().is_some() {
            let out = out.as_deref_mut();
            match classes {
                3 => {
                    if let Some(form) = self.loss.few_class_form::<3>() {
                        return self.few_class_rows(z, out, form);
                    }
                }
                4 => {
                    if let Some(form) = self.loss.few_class_form::<4>() {
                        return self.few_class_rows(z, out, form);
                    }
                }
                5 => {
                    if let Some(form) = self.loss.few_class_form::<5>() {
                        return self.few_class_rows(z, out, form);
                    }
                }
                6 => {
                    if let Some(form) = self.loss.few_class_form::<6>() {
                        return self.few_class_rows(z, out, form);
                    }
                }
                7 => {
                    if let Some(form) = self.loss.few_class_form::<7>() {
                        return self.few_class_rows(z, out, form);
                    }
                }
                _ => {}
            }
        }
        let span = GROUP * classes;
        let mut group = Group::new();
        group.classes = classes;
        for (g, z) in z.chunks(span).enumerate() {
            let (first, rows) = (g * GROUP, z.len() / classes);
            let (mut labels, mut c) = ([0; GROUP], [F::zero(); GROUP]);
            for r in 0..rows {
                let i = self.first + first + r;
                (labels[r], c[r]) = (self.batch.labels[i], self.batch.coefficient(i));
            }
            let columns = &mut group.shifted[..classes];
            transpose_rows(z, None, columns);
            self.loss.group_logits(columns, &labels);
            columns_lse::<F, FMA>(&mut group);
            let done = self.loss.finish_group::<FMA>(&group, &labels, &c, self.scale);
            if let Some(out) = out.as_deref_mut() {
                let out = &mut out[g * span..g * span + z.len()];
                done.write(&group, out);
                self.loss.chain_rows(out);
            }
            for (r, (z, &value)) in z.chunks_exact(classes).zip(&done.loss).enumerate() {
                self.record(first + r, value, z, labels[r], c[r]);
            }
        }
        self.total
    }

    /// Every row of `z` (`K` classes, row-major, contiguous labels) by [`FewClassRows`] on the
    /// logits of `form`, a block at a time, the gradient into `out` (same layout) if given;
    /// returns `Σ ℓ_i`.
    // Out of line in unoptimised builds, as `SoftmaxLoss`'s few-class rows.
    #[cfg_attr(debug_assertions, inline(never))]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn few_class_rows<const K: usize>(
        mut self,
        z: &[F],
        out: Option<&mut [F]>,
        form: FewMargins<F, K>,
    ) -> f64 {
        let labels = self.batch.labels.as_slice().unwrap_or_default();
        let (mut c, mut values) = ([F::zero(); few_classes::BLOCK], [F::zero(); few_classes::BLOCK]);
        few_classes::for_blocks::<F, K>(
            z,
            out,
            #[inline(always)]
            |start: usize, z: &[F], mut out: Option<&mut [F]>| {
                let (n, i0) = (z.len() / K, self.first + start);
                c[..n].iter_mut().zip(i0..).for_each(|(c, i)| *c = self.batch.coefficient(i));
                let few = FewClassRows::<F, K> {
                    z,
                    labels: &labels[i0..i0 + n],
                    c: &c[..n],
                    adjust: form.adjust,
                    margins: form.margins,
                    gamma: F::zero(),
                    scale: self.scale * form.gradient_scale,
                };
                few.run::<FMA, true>(&mut values[..n], out.as_deref_mut());
                if let (Some(out), Some(slopes)) = (out, &form.slopes) {
                    out.chunks_exact_mut(K)
                        .for_each(|g| g.iter_mut().zip(slopes).for_each(|(g, &d)| *g *= d));
                }
                for (r, (z, &value)) in z.chunks_exact(K).zip(&values[..n]).enumerate() {
                    self.record(start + r, value, z, labels[i0 + r], c[r]);
                }
            },
        );
        self.total
    }

    /// Adds the chunk's row `i`'s loss `value` (logits `z`, label `y`, coefficient `c`) to the
    /// total, and stores it if asked.
    #[inline(always)]
    fn record(&mut self, i: usize, value: F, z: &[F], y: usize, c: F) {
        // Transformed logits so far apart that `z_y − max` overflows: the row again in `f64`.
        let value = if value.is_finite() { value.as_f64() } else { self.loss.exact_loss(z, y, c) };
        if let Some(losses) = self.losses.as_mut() {
            losses[i] = F::from_f64(if self.loss_exp == 0 { value } else { ldexp(value, self.loss_exp) });
        }
        self.total += value;
    }
}

impl<F: Float, L: MarginRow<F>, const FMA: bool> RowVisitor<F> for RowsVisitor<'_, '_, '_, F, L, FMA> {
    #[inline(always)]
    fn visit(&mut self, i: usize, z: &[F], grad: &mut [F]) {
        let (y, c) = (self.batch.labels[self.first + i], self.batch.coefficient(self.first + i));
        let value = self.loss.row::<FMA>(z, y, c, self.scale, grad, &mut self.scratch);
        self.record(i, value, z, y, c);
    }
}

/// `max |z|` if every `z` is finite, else `None`: a branch-free scan in lanes (`v·0` is 0 for finite
/// `v` and NaN otherwise, and a NaN stays in its lane's sum), run for the CPU's instruction set.
fn finite_max_abs<F: Float>(z: &[F]) -> Option<F> {
    struct Scan<'a, F>(&'a [F]);
    impl<F: Float> Kernel for Scan<'_, F> {
        type Output = Option<F>;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> Option<F> {
            let mut max = [F::zero(); LANES];
            let mut non_finite = [F::zero(); LANES];
            let step = |(m, n): (&mut F, &mut F), &v: &F| {
                let a = v.abs();
                *m = if a > *m { a } else { *m };
                *n += v * F::zero();
            };
            let chunks = self.0.chunks_exact(LANES);
            let tail = chunks.remainder();
            for chunk in chunks {
                max.iter_mut().zip(non_finite.iter_mut()).zip(chunk).for_each(|(lane, v)| step(lane, v));
            }
            max.iter_mut().zip(non_finite.iter_mut()).zip(tail).for_each(|(lane, v)| step(lane, v));
            let finite = non_finite.iter().fold(F::zero(), |s, &n| s + n) == F::zero();
            finite.then(|| max.iter().fold(F::zero(), |m, &a| if a > m { a } else { m }))
        }
    }
    dispatch(Scan(z))
}

/// Implements [`Loss`](super::Loss) for margin losses (each a [`MarginRow`] with a `reduction`
/// field): validate, then run the rows.
macro_rules! margin_loss {
    ($($loss:ident),*) => {$(
        impl<F: Float> super::Loss<F> for $loss<F> {
            fn loss_into(
                &self,
                logits: &ArrayRef2<F>,
                targets: &Targets<'_, F>,
                grad_out: Option<&mut ArrayRef2<F>>,
            ) -> Result<F> {
                let outputs = super::validate::output_shapes(logits, None, grad_out.as_deref());
                let batch = self.check(logits, targets, &outputs)?;
                batch.reduced(self, logits, self.reduction, grad_out)
            }

            fn per_sample_into(
                &self,
                logits: &ArrayRef2<F>,
                targets: &Targets<'_, F>,
                losses_out: &mut ArrayRef1<F>,
                grad_out: Option<&mut ArrayRef2<F>>,
            ) -> Result<()> {
                let outputs = super::validate::output_shapes(logits, Some(losses_out), grad_out.as_deref());
                let batch = self.check(logits, targets, &outputs)?;
                batch.per_sample(self, logits, losses_out, grad_out)
            }

            fn reduction(&self) -> Reduction {
                self.reduction
            }
        }
    )*};
}

use super::{ldam::LdamLoss, pairwise::PairwiseMarginLoss, poly::Poly1Loss, seesaw::SeesawLoss, vs::VsLoss};
margin_loss!(LdamLoss, PairwiseMarginLoss, Poly1Loss, SeesawLoss, VsLoss);
