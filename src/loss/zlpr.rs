//! ZLPR: the multi-label loss that ranks positives above an implicit zero logit and negatives below.

use super::results::{check_row_losses, finish_gradient, reduced_loss};
use ndarray::{Array2, ArrayRef1, ArrayRef2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use super::Reduction;
use super::binary_rows::{binary_weight_exponent, scaled_total_weight};
use super::contract::Loss;
use super::one_vs_rest::{self, LabelSets};
use super::targets::{TargetKind, Targets};
use super::validate::{OutputShape, batch_dims, class_vector, output_shapes};
use crate::error::check_shape;
use crate::float::{BLOCK, exp_nonpos, ldexp, mul_add, pow2, split_scale};
use crate::group::{GROUP, Lanes, RowMap, SHORT_ROW, transpose_rows, write_columns};
use crate::rows::{CHUNK, PARALLEL_MIN, RowVisitor, sum_chunks, visit_rows};
use crate::simd::Kernel;
use crate::softmax::{check_rows, ln_1p_rest};
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
/// sum without the terms at the maximum (each exactly 1: the maximum's, and any tie's), so a
/// well-separated row keeps its tiny loss instead of rounding it to 0. The exponentials are the crate's vectorised
/// `exp` (within 1 ulp in f32, 2 in f64; 0 a little below the smallest normal result). A `-inf` logit on a
/// negative class is a certain negative (zero loss and gradient); on a positive class of a row
/// that counts it is an error.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]; each call validates the batch's shapes, weights
/// and labels first, and its target entries and logits in the kernel, row by row as it reads them
/// (see [`loss_into`](Loss::loss_into)).
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

    /// Validates all of a batch but its target entries and logits (which the kernel checks as it
    /// reads them), in the order documented on [`Loss::loss_into`] for [`ZlprLoss`]: the prior's
    /// length, then the one-vs-rest layout checks.
    fn check(&self, logits: &ArrayRef2<F>, targets: &Targets<F>, outputs: &[OutputShape<'_>]) -> Result<()> {
        let (_, classes) = batch_dims(logits)?;
        if let Some(a) = &self.adjustment {
            check_shape("prior", &[classes], &[a.len()])?;
        }
        one_vs_rest::check_target_layout(logits, targets, outputs)
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
        let mut grad_out = grad_out;
        if divisor == 0.0 {
            // No row counts: every row is only checked, its gradient zeroed.
            self.rows(logits, targets, grad_out.as_deref_mut(), None, F::zero(), weight_exp)?;
            return Ok(F::zero());
        }
        let (scale, k) = split_scale::<F>(divisor.recip(), 0);
        let total = self.rows(logits, targets, grad_out.as_deref_mut(), None, scale, weight_exp)?;
        let loss = reduced_loss::<F>(total, divisor, 0)?;
        finish_gradient(grad_out, k)?;
        Ok(loss)
    }

    /// Runs the kernel over a batch whose layout is checked: `scale·∂ℓ_i/∂s_i` into row `i` of
    /// `grad_out` (or a scratch row), `ℓ_i` into `losses_out[i]` if given; returns `Σ_i ℓ_i`
    /// (sample weights applied, times `2^−weight_exp`), summed in `f64`.
    ///
    /// The kernel checks each row's targets and logits in the pass that reads them first, and stops
    /// at the first row that fails; its error is returned unless a target entry of the batch fails
    /// (target entries are checked before logits), so the error names the first offending entry in
    /// row-major order, and the rows before it may be written. The rows are cut into chunks whose
    /// size depends on `K` alone, whose sums are added in order; with the `rayon` feature, batches
    /// of at least [`PARALLEL_MIN`] logits run their chunks in parallel, bit-identical to one
    /// thread.
    fn rows(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
        losses_out: Option<&mut ArrayRef1<F>>,
        scale: F,
        weight_exp: i32,
    ) -> Result<f64> {
        let (batch, classes) = logits.dim();
        let chunk = (CHUNK / classes).max(1);
        let mut grads = grad_out.map(|g| g.axis_chunks_iter_mut(Axis(0), chunk));
        let mut losses = losses_out.map(|l| l.axis_chunks_iter_mut(Axis(0), chunk));
        let chunks = logits.axis_chunks_iter(Axis(0), chunk).enumerate().map(|(c, logits)| Chunk {
            adjust: self.adjustment.as_deref(),
            targets,
            first: c * chunk,
            logits,
            grad: grads.as_mut().and_then(Iterator::next),
            losses: losses.as_mut().and_then(Iterator::next),
            scale,
            weight_exp,
        });
        let total = sum_chunks(chunks, batch * classes >= PARALLEL_MIN && batch > chunk, classes >= WIDE_ROW);
        if total.is_err() {
            one_vs_rest::check_target_values(targets, LabelSets::Always)?;
        }
        total
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
    ///   `+inf`, [`Error::Overflow`] (`"logit + adjustment"`) for a finite logit that overflows
    ///   once adjusted, [`Error::MaskedTarget`] for `-inf` on a positive class of a row that
    ///   counts.
    ///
    /// Target entries and logits are checked by the kernel, row by row as it reads them, so on
    /// such an error `grad_out` may hold the rows before it (the [`Loss`] contract).
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
    /// As [`loss_into`](Self::loss_into), and [`Error::Overflow`] (`"loss"`, naming the row) for
    /// a row's loss beyond the float's range.
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        self.check(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
        // A row's `w·ℓ_i` overflows only where `ℓ_i` does: unscaled weights.
        self.rows(logits, targets, grad_out, Some(&mut *losses_out), F::one(), 0)?;
        check_row_losses(losses_out)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// Rows of at least this many classes run on AVX-512 where the CPU has it.
const WIDE_ROW: usize = 128;

/// A chunk of consecutive rows of a batch, from row `first` on, and its outputs, run by
/// [`sum_chunks`] for the CPU's instruction set: `Σ_i ℓ_i` (sample weights applied, in `f64`),
/// each `ℓ_i` into `losses` and `scale·∂ℓ_i/∂s` into `grad` if given.
struct Chunk<'a, 't, F> {
    adjust: Option<&'a [F]>,
    targets: &'a Targets<'t, F>,
    first: usize,
    logits: ArrayView2<'a, F>,
    grad: Option<ArrayViewMut2<'a, F>>,
    losses: Option<ArrayViewMut1<'a, F>>,
    scale: F,
    /// The weights are seen times `2^−weight_exp`, and each `ℓ_i` written times `2^weight_exp`.
    weight_exp: i32,
}

impl<F: Float> Kernel for Chunk<'_, '_, F> {
    type Output = Result<f64>;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> Result<f64> {
        // Two AVX2 vectors of f32 per step, one of f64: eight f64 lanes (two vectors for each of
        // the passes' accumulators) would not fit in AVX2's sixteen registers.
        if size_of::<F>() == size_of::<f32>() { self.rows::<FMA, 16>() } else { self.rows::<FMA, 4>() }
    }
}

impl<F: Float> Chunk<'_, '_, F> {
    /// The chunk's rows, `W` lanes per step of their passes.
    #[inline(always)]
    fn rows<const FMA: bool, const W: usize>(self) -> Result<f64> {
        let Chunk { adjust, targets, first, logits, mut grad, losses, scale, weight_exp } = self;
        let classes = logits.ncols();
        // A row's targets as a slice: borrowed where they are one, else written into `t_buf`.
        let borrowed = matches!(&targets.kind, TargetKind::Rows(rows, _) if rows.row(0).to_slice().is_some());
        let mut rows = ChunkRows::<F, FMA, W> {
            adjust,
            targets,
            first,
            losses,
            scale,
            weight_scale: pow2::<F>(-weight_exp),
            weight_exp,
            t_buf: if borrowed { Vec::new() } else { vec![F::zero(); classes] },
            label: None,
            total: 0.0,
            error: None,
        };
        // Short contiguous rows go in groups, one vector lane per row; the rest one at a time.
        let t_all = match &targets.kind {
            TargetKind::Rows(rows, _) => rows.as_slice(),
            TargetKind::Labels(_) => None,
        };
        let grouped =
            classes <= SHORT_ROW && (t_all.is_some() || matches!(targets.kind, TargetKind::Labels(_)));
        match (grouped, logits.as_slice(), grad.as_mut().map(|g| g.as_slice_mut())) {
            (true, Some(z), None) => rows.short_rows(z, classes, t_all, None),
            (true, Some(z), Some(Some(out))) => rows.short_rows(z, classes, t_all, Some(out)),
            _ => visit_rows(&logits, grad.as_deref_mut(), &mut rows),
        }
        match rows.error {
            Some(error) => Err(error),
            None => Ok(rows.total),
        }
    }
}

/// The kernel's state over the rows of a [`Chunk`].
struct ChunkRows<'a, 't, F, const FMA: bool, const W: usize> {
    adjust: Option<&'a [F]>,
    targets: &'a Targets<'t, F>,
    first: usize,
    losses: Option<ArrayViewMut1<'a, F>>,
    scale: F,
    weight_scale: F,
    weight_exp: i32,
    /// A row's targets where they are not a contiguous row (labels, strided rows).
    t_buf: Vec<F>,
    /// The class of the 1 that `t_buf` holds for hard labels.
    label: Option<usize>,
    total: f64,
    /// The error of the first row that fails, after which no row is visited.
    error: Option<Error>,
}

impl<F: Float, const FMA: bool, const W: usize> RowVisitor<F> for ChunkRows<'_, '_, F, FMA, W> {
    #[inline(always)]
    fn visit(&mut self, r: usize, s: &[F], grad: &mut [F]) {
        let i = self.first + r;
        let t = match &self.targets.kind {
            TargetKind::Rows(rows, _) => match rows.row(i).to_slice() {
                Some(t) => t,
                None => {
                    for (d, &v) in self.t_buf.iter_mut().zip(rows.row(i)) {
                        *d = v;
                    }
                    &self.t_buf[..]
                }
            },
            TargetKind::Labels(labels) => {
                if let Some(previous) = self.label.replace(labels[i]) {
                    self.t_buf[previous] = F::zero();
                }
                self.t_buf[labels[i]] = F::one();
                &self.t_buf[..]
            }
        };
        let raw_weight = self.targets.sample_weight(i);
        let w = raw_weight * self.weight_scale;
        let factor = w * self.scale;
        let value = if factor == F::zero() {
            // A zero weight ignores the row, even one whose positive class is masked.
            if let Err(error) = check_row(i, s, self.adjust, t, raw_weight > F::zero()) {
                self.error = Some(error);
                return;
            }
            grad.fill(F::zero());
            0.0
        } else {
            match row::<F, FMA, W>(i, s, self.adjust, t, factor, grad) {
                Ok(loss) => {
                    let value = w.as_f64() * loss;
                    if value.is_finite() { value } else { exact_row_loss(s, self.adjust, t, w) }
                }
                Err(error) => {
                    self.error = Some(error);
                    return;
                }
            }
        };
        if let Some(losses) = self.losses.as_mut() {
            losses[r] = F::from_f64(ldexp(value, self.weight_exp));
        }
        self.total += value;
    }

    #[inline(always)]
    fn done(&self) -> bool {
        self.error.is_some()
    }
}

impl<F: Float, const FMA: bool, const W: usize> ChunkRows<'_, '_, F, FMA, W> {
    /// Every row of `z` (`K = classes ≤ SHORT_ROW`, row-major), [`GROUP`] rows at a time, the
    /// gradient into `out` (same layout) if given; `t_all` the batch's target rows, row-major,
    /// unless the targets are labels. A group with a row that is not the common case (an error, a
    /// loss beyond the float type) is run again one row at a time, which the group's results
    /// equal bit for bit, and which handles that row.
    #[inline(always)]
    fn short_rows(&mut self, z: &[F], classes: usize, t_all: Option<&[F]>, mut out: Option<&mut [F]>) {
        let span = GROUP * classes;
        for (g, z) in z.chunks(span).enumerate() {
            let (first, rows) = (g * GROUP, z.len() / classes);
            let mut scratch = [F::zero(); GROUP * SHORT_ROW];
            let out = match out.as_deref_mut() {
                Some(out) => &mut out[g * span..g * span + z.len()],
                None => &mut scratch[..z.len()],
            };
            if self.group(first, rows, classes, z, t_all, out) {
                continue;
            }
            for (r, (z, out)) in z.chunks_exact(classes).zip(out.chunks_exact_mut(classes)).enumerate() {
                self.visit(first + r, z, out);
                if self.error.is_some() {
                    return;
                }
            }
        }
    }

    /// [`row`] of the `rows ≤ GROUP` rows of `z` from row `first` of the chunk, transposed so
    /// that lane `r` of every column is row `r`, operation for operation as `row` runs them
    /// (its sums in the same order, by lane `c mod W` of its passes), so that the results are bit
    /// for bit those of the rows one at a time. Returns whether every row is the common case (its
    /// targets, logits and loss fine); only then are its gradient, losses and sum recorded.
    #[inline(always)]
    fn group(
        &mut self,
        first: usize,
        rows: usize,
        k: usize,
        z: &[F],
        t_all: Option<&[F]>,
        out: &mut [F],
    ) -> bool {
        let (zero, one, inf) = (F::zero(), F::one(), F::infinity());
        let start = self.first + first;
        // The targets, transposed; padding lanes are rows of negatives at logit 0, weight 0.
        let mut t = [[zero; GROUP]; SHORT_ROW];
        match (&self.targets.kind, t_all) {
            (_, Some(t_all)) => transpose_rows(&t_all[start * k..(start + rows) * k], None, &mut t[..k]),
            (TargetKind::Labels(labels), None) => {
                // `y < K ≤ SHORT_ROW` (checked): the modulo only spares a bounds check.
                (0..rows).for_each(|r| t[labels[start + r] % SHORT_ROW][r] = one);
            }
            (TargetKind::Rows(..), None) => return false,
        }
        let (mut w, mut factor) = ([zero; GROUP], [zero; GROUP]);
        for r in 0..rows {
            w[r] = self.targets.sample_weight(start + r) * self.weight_scale;
            factor[r] = w[r] * self.scale;
        }
        // Pass 1 (`scan`): `v = ∓s'` into `x`, each half's max, and the checks. Each loop works
        // on copies of a column's lanes, which the compiler knows no store aliases: the lanes
        // stay in vectors.
        let mut x = [[zero; GROUP]; SHORT_ROW];
        transpose_rows(z, None, &mut x[..k]);
        let mut flags = [zero; GROUP];
        if let Some(a) = self.adjust {
            for (column, &a) in x[..k].iter_mut().zip(a) {
                let mut x = *column;
                for r in 0..GROUP {
                    let adjusted = x[r] + a;
                    // `s − s'`: `+inf` where a finite logit overflows to `-inf` once adjusted.
                    flags[r] = greater(flags[r], x[r] - adjusted);
                    x[r] = adjusted;
                }
                *column = x;
            }
        }
        let (mut neg, mut pos, mut high) = ([zero; GROUP], [zero; GROUP], [F::neg_infinity(); GROUP]);
        for (column, t) in x[..k].iter_mut().zip(&t) {
            let (mut x, t) = (*column, *t);
            for r in 0..GROUP {
                let positive = t[r] == one;
                let signed = pick(positive, -x[r], x[r]);
                neg[r] = greater(neg[r], pick(positive, zero, signed));
                pos[r] = greater(pos[r], pick(positive, signed, zero));
                high[r] = greater(high[r], x[r]);
                // A target other than 0 or 1.
                flags[r] = pick(positive | (t[r] == zero), flags[r], inf);
                x[r] = signed;
            }
            *column = x;
        }
        // Pass 2 (`exp_pass`): `e^{v − m}` in place, and each half's sums: the terms below its
        // max in `W` partial lanes (`row`'s lanes: those of the classes before `body`, and
        // those of the rest apart), folded as `row` folds them; the number at the max, exact in
        // any order.
        let body = k / W * W;
        let mut partial = [[[[zero; GROUP]; W]; 2]; 2];
        let (mut ties_neg, mut ties_pos) = ([zero; GROUP], [zero; GROUP]);
        for (c, (column, t)) in x[..k].iter_mut().zip(&t).enumerate() {
            let [sums_neg, sums_pos] = &mut partial[usize::from(c >= body)];
            let (mut v, t) = (*column, *t);
            let (mut rest_neg, mut rest_pos) = (sums_neg[c % W], sums_pos[c % W]);
            for r in 0..GROUP {
                let positive = t[r] == one;
                let d = v[r] - pick(positive, pos[r], neg[r]);
                let e = exp_nonpos::<F, FMA>(d);
                v[r] = e;
                let tie = d == zero;
                let (rest, count) = (pick(tie, zero, e), pick(tie, one, zero));
                rest_neg[r] += pick(positive, zero, rest);
                rest_pos[r] += pick(positive, rest, zero);
                ties_neg[r] += pick(positive, zero, count);
                ties_pos[r] += pick(positive, count, zero);
            }
            (*column, sums_neg[c % W], sums_pos[c % W]) = (v, rest_neg, rest_pos);
        }
        let mut rest = [[0.0_f64; GROUP]; 2];
        for part in &mut partial[..1 + usize::from(k > body)] {
            for (rest, lanes) in rest.iter_mut().zip(part) {
                let sum = fold_columns(lanes);
                rest.iter_mut().zip(&sum).for_each(|(r, &s)| *r += s.as_f64());
            }
        }
        // The finish of `row`, lane by lane, in flat loops.
        let (mut loss, mut inv_total) = ([0.0_f64; GROUP], [[zero; GROUP]; 2]);
        for (side, (max, ties)) in [(neg, ties_neg), (pos, ties_pos)].into_iter().enumerate() {
            let mut zero_term = [zero; GROUP];
            zero_term.iter_mut().zip(&max).for_each(|(e, &m)| *e = exp_nonpos::<F, FMA>(-m));
            let (mut n, mut sum) = ([0.0_f64; GROUP], [0.0_f64; GROUP]);
            for r in 0..GROUP {
                let (ties, rest, zero_term) = (ties[r].as_f64(), rest[side][r], zero_term[r].as_f64());
                let at_zero = max[r] == zero;
                n[r] = if at_zero { ties + 1.0 } else { ties };
                sum[r] = if at_zero { rest } else { rest + zero_term };
            }
            let mut ln = [0.0_f64; GROUP];
            ln.iter_mut().zip(&n).zip(&sum).for_each(|((l, &n), &s)| *l = ln_1p_rest((n - 1.0) + s));
            for r in 0..GROUP {
                loss[r] += max[r].as_f64() + ln[r];
            }
            let mut inv = [0.0_f64; GROUP];
            inv.iter_mut().zip(&n).zip(&sum).for_each(|((i, &n), &s)| *i = (n + s).recip());
            inv_total[side].iter_mut().zip(&inv).for_each(|(i, &v)| *i = F::from_f64(v));
        }
        // Every row must be the common case: checks passed, sums and `w·ℓ` finite. (Padding
        // lanes are.)
        let (mut value, mut fine) = ([0.0_f64; GROUP], [false; GROUP]);
        for r in 0..GROUP {
            let weighted = w[r].as_f64() * loss[r];
            value[r] = if factor[r] == zero { 0.0 } else { weighted };
        }
        for r in 0..GROUP {
            let checked = (neg[r] < inf) & (pos[r] < inf) & (high[r] < inf) & (flags[r] < inf);
            let total = rest[0][r] + rest[1][r] + value[r];
            fine[r] = checked & total.is_finite();
        }
        if !fine.iter().all(|&f| f) {
            return false;
        }
        // Pass 3 (`scale_pass`); a row of weight 0 gets zeros.
        let (mut f_neg, mut f_pos) = ([zero; GROUP], [zero; GROUP]);
        for r in 0..GROUP {
            f_neg[r] = factor[r] * inv_total[0][r];
            f_pos[r] = -(factor[r] * inv_total[1][r]);
        }
        for (column, t) in x[..k].iter_mut().zip(&t) {
            let (mut e, t) = (*column, *t);
            for r in 0..GROUP {
                let g = e[r] * pick(t[r] == one, f_pos[r], f_neg[r]);
                e[r] = pick(factor[r] == zero, zero, g);
            }
            *column = e;
        }
        write_columns(&x[..k], RowMap::Copy, out);
        for (r, &value) in value[..rows].iter().enumerate() {
            if let Some(losses) = self.losses.as_mut() {
                losses[first + r] = F::from_f64(ldexp(value, self.weight_exp));
            }
            self.total += value;
        }
        true
    }
}

/// [`fold_lanes`] of `W` columns of lanes: lane `r` of the result folds lane `r` of each.
#[inline(always)]
fn fold_columns<F: Float, const W: usize>(columns: &mut [Lanes<F>; W]) -> Lanes<F> {
    let mut width = W;
    while width > 1 {
        width /= 2;
        let (low, high) = columns.split_at_mut(width);
        for (a, b) in low.iter_mut().zip(&*high) {
            a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
        }
    }
    columns[0]
}

/// The first offending entry of row `i` (logits `s`, targets `t`), in the order the batch is
/// checked: a target other than 0 or 1 ([`Error::TargetOutOfRange`]), then the first offending
/// logit ([`Error::NonFiniteLogit`], [`Error::Overflow`] of `s + adjust`, and
/// [`Error::MaskedTarget`] for `-inf` on a positive if the row `counts`).
#[cold]
#[inline(never)]
fn check_row<F: Float>(i: usize, s: &[F], adjust: Option<&[F]>, t: &[F], counts: bool) -> Result<()> {
    if let Some(class) = t.iter().position(|&t| t != F::zero() && t != F::one()) {
        let value = t[class].as_f64();
        return Err(Error::TargetOutOfRange { row: i, class, value, expected: "0 or 1" });
    }
    let row = ArrayView1::from(s).insert_axis(Axis(0));
    check_rows::<F, false>(row, i, adjust, None, |_, class| counts && t[class] == F::one())
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

/// One row of a weight that counts (`factor = scale·w ≠ 0`): returns `ℓ` and writes
/// `factor·∂ℓ/∂s` into `grad`, or the row's error. Three branch-free passes of `W` lanes, the
/// last `K mod W` classes padded to `W` on the stack (with `s = -inf` negatives, which cost
/// nothing):
///
/// 1. [`scan`]: `v_j = −s'_j` on positives, `s'_j` on negatives (`s' = s + a`) into `grad`; the
///    max `m` of each half (the implicit 0 included), and what the checks need;
/// 2. [`exp_pass`]: `e_j = e^{v_j − m}` over `grad`, each half's sum split as `n + r`, with `n`
///    the number of its classes at its max (`v_j = m`, whose terms are exactly 1; the implicit 0's
///    if `m = 0`) and `r` the sum of the others, so that `ln(n + r) = ln_1p((n − 1) + r)` keeps a
///    tiny `r`;
/// 3. [`scale_pass`]: `grad_j = ±factor·e_j / (n + r)`.
///
/// The checks run on the passes' results, with no branch per class: a `+inf` in `s'` raises the
/// max of `s'`; a `-inf` on a positive, or a `+inf` on a negative, that of its half of `v`; a
/// target other than 0 or 1 makes `Σ |t² − t|` nonzero; a finite logit that overflows to `-inf`
/// once adjusted makes `s − s'` infinite; a NaN makes the sums of pass 2 NaN. A row that any of
/// them flags is searched by [`check_row`] for its error.
#[inline(always)]
fn row<F: Float, const FMA: bool, const W: usize>(
    i: usize,
    s: &[F],
    adjust: Option<&[F]>,
    t: &[F],
    factor: F,
    grad: &mut [F],
) -> Result<f64> {
    let (k, body) = (s.len(), s.len() / W * W);
    let (t_body, t_rest) = t.as_chunks::<W>();
    let (g_body, g_rest) = grad.as_chunks_mut::<W>();
    let mut t_tail = [F::zero(); W];
    t_tail[..k - body].copy_from_slice(t_rest);
    let mut g_tail = [F::zero(); W];
    let mut s_tail = [F::neg_infinity(); W];
    s_tail[..k - body].copy_from_slice(&s[body..]);
    let (one, one_mut) = (core::slice::from_ref, core::slice::from_mut);
    let acc = match adjust {
        None => {
            let s_body = s.as_chunks::<W>().0;
            let acc = scan::<F, FMA, W, false>(s_body, s_body, t_body, g_body);
            acc.merge(scan::<F, FMA, W, false>(
                one(&s_tail),
                one(&s_tail),
                one(&t_tail),
                one_mut(&mut g_tail),
            ))
        }
        Some(a) => {
            let (s_body, a_body) = (s.as_chunks::<W>().0, a.as_chunks::<W>().0);
            let acc = scan::<F, FMA, W, true>(s_body, a_body, t_body, g_body);
            let mut a_tail = [F::zero(); W];
            a_tail[..k - body].copy_from_slice(&a[body..]);
            acc.merge(scan::<F, FMA, W, true>(one(&s_tail), one(&a_tail), one(&t_tail), one_mut(&mut g_tail)))
        }
    };
    let (max, fits) = acc.finish();
    if !fits {
        check_row(i, s, adjust, t, true)?;
    }
    // Pass 2, in blocks of `BLOCK` classes whose sums are kept in `F` lanes, then added in `f64`.
    let mut sums = [[0.0_f64; 2]; 2];
    let mut add = |acc: Sums<F, W>| {
        let [rest, ties] = acc.finish();
        for side in 0..2 {
            sums[0][side] += rest[side];
            sums[1][side] += ties[side];
        }
    };
    for (v, t) in g_body.chunks_mut(BLOCK / W).zip(t_body.chunks(BLOCK / W)) {
        add(exp_pass::<F, FMA, W>(v, t, max));
    }
    if k > body {
        add(exp_pass::<F, FMA, W>(one_mut(&mut g_tail), one(&t_tail), max));
    }
    let [rest, ties] = sums;
    if !(rest[0] + rest[1]).is_finite() {
        check_row(i, s, adjust, t, true)?;
    }
    let mut loss = 0.0;
    let mut inv_total = [F::zero(); 2];
    for side in 0..2 {
        // The implicit zero's term, e^{−m}: one of the `n` when it is the max.
        let m = max[side];
        let (n, r) = if m == F::zero() {
            (ties[side] + 1.0, rest[side])
        } else {
            (ties[side], rest[side] + exp_nonpos::<F, FMA>(-m).as_f64())
        };
        loss += m.as_f64() + ln_1p_rest((n - 1.0) + r);
        inv_total[side] = F::from_f64((n + r).recip());
    }
    let factors = [factor * inv_total[0], -(factor * inv_total[1])];
    scale_pass(g_body.as_flattened_mut(), t_body.as_flattened(), factors);
    if k > body {
        scale_pass(&mut g_tail, &t_tail, factors);
        g_rest.copy_from_slice(&g_tail[..k - body]);
    }
    Ok(loss)
}

/// What [`scan`] gathers over a row, `W` lanes of each.
struct Scan<F, const W: usize> {
    /// The max of `v` over the negatives and over the positives, 0 included.
    max: [[F; W]; 2],
    /// The max of `s'`: `+inf` if one is.
    high: [F; W],
    /// The max of `s − s'` with an adjustment: `+inf` where a finite `s` gives `s' = -inf`.
    lost: [F; W],
    /// `Σ |t² − t|`: 0 if and only if every target is 0 or 1.
    targets: [F; W],
}

impl<F: Float, const W: usize> Scan<F, W> {
    #[inline(always)]
    fn new() -> Self {
        let zero = [F::zero(); W];
        Self { max: [zero; 2], high: [F::neg_infinity(); W], lost: zero, targets: zero }
    }

    /// Both scans' accumulators, lane by lane.
    #[inline(always)]
    fn merge(mut self, other: Self) -> Self {
        let [neg, pos] = &mut self.max;
        let pairs = [
            (neg, &other.max[0]),
            (pos, &other.max[1]),
            (&mut self.high, &other.high),
            (&mut self.lost, &other.lost),
        ];
        for (a, b) in pairs {
            a.iter_mut().zip(b).for_each(|(a, &b)| *a = greater(*a, b));
        }
        self.targets.iter_mut().zip(&other.targets).for_each(|(a, &b)| *a += b);
        self
    }

    /// The max of each half (negatives first), and whether the row passes the checks of
    /// pass 1 (see [`row`]).
    #[inline(always)]
    fn finish(mut self) -> ([F; 2], bool) {
        let [mut neg, mut pos] = self.max;
        let max = [fold_lanes(&mut neg, greater), fold_lanes(&mut pos, greater)];
        let high = fold_lanes(&mut self.high, greater);
        let lost = fold_lanes(&mut self.lost, greater);
        let targets = fold_lanes(&mut self.targets, |a, b| a + b);
        let inf = F::infinity();
        (max, (max[0] < inf) & (max[1] < inf) & (high < inf) & (lost < inf) & (targets == F::zero()))
    }
}

/// Pass 1 over runs of `W` classes: logits `s`, adjustment `a` (read with `ADJ`), targets `t`;
/// writes `v` and gathers what [`Scan`] holds. The accumulators are locals, initialised here, so
/// that they stay in registers.
#[inline(always)]
fn scan<F: Float, const FMA: bool, const W: usize, const ADJ: bool>(
    s: &[[F; W]],
    a: &[[F; W]],
    t: &[[F; W]],
    v: &mut [[F; W]],
) -> Scan<F, W> {
    let zero = F::zero();
    let Scan { max: [mut neg, mut pos], mut high, mut lost, mut targets } = Scan::new();
    // One counted loop (a zip of four would leave it by two exits, and the accumulators in
    // scalars).
    let n = s.len();
    let (a, t, v) = (&a[..n], &t[..n], &mut v[..n]);
    for i in 0..n {
        // Copies, which the compiler knows no store aliases: the lanes stay in registers.
        let (s, a, t) = (s[i], a[i], t[i]);
        let v = &mut v[i];
        for j in 0..W {
            let x = if ADJ { s[j] + a[j] } else { s[j] };
            let positive = t[j] == F::one();
            let signed = pick(positive, -x, x);
            v[j] = signed;
            neg[j] = greater(neg[j], pick(positive, zero, signed));
            pos[j] = greater(pos[j], pick(positive, signed, zero));
            high[j] = greater(high[j], x);
            if ADJ {
                lost[j] = greater(lost[j], s[j] - x);
            }
            targets[j] += mul_add::<F, FMA>(t[j], t[j], -t[j]).abs();
        }
    }
    Scan { max: [neg, pos], high, lost, targets }
}

/// What [`exp_pass`] sums over a block of classes, `W` lanes of each, negatives first: the terms
/// below the max, and the number at it.
struct Sums<F, const W: usize> {
    rest: [[F; W]; 2],
    ties: [[F; W]; 2],
}

impl<F: Float, const W: usize> Sums<F, W> {
    /// `[rest, ties]`, each `[negatives, positives]`, in `f64`.
    #[inline(always)]
    fn finish(self) -> [[f64; 2]; 2] {
        let sum = |a: F, b: F| a + b;
        [self.rest, self.ties].map(|half| half.map(|mut lanes| fold_lanes(&mut lanes, sum).as_f64()))
    }
}

/// Pass 2 over runs of `W` classes: `v ← e^{v − m}` with its half's max `m` (`max`, negatives
/// first), and their sums.
#[inline(always)]
fn exp_pass<F: Float, const FMA: bool, const W: usize>(
    v: &mut [[F; W]],
    t: &[[F; W]],
    max: [F; 2],
) -> Sums<F, W> {
    let zero = F::zero();
    let [mut rest_neg, mut rest_pos, mut ties_neg, mut ties_pos] = [[zero; W]; 4];
    for (out, t) in v.iter_mut().zip(t) {
        // Copies, which the compiler knows no store aliases: the lanes stay in registers.
        let (mut v, t) = (*out, *t);
        for j in 0..W {
            let positive = t[j] == F::one();
            let x = v[j] - pick(positive, max[1], max[0]);
            let e = exp_nonpos::<F, FMA>(x);
            v[j] = e;
            let tie = x == zero;
            let (rest, count) = (pick(tie, zero, e), pick(tie, F::one(), zero));
            rest_neg[j] += pick(positive, zero, rest);
            rest_pos[j] += pick(positive, rest, zero);
            ties_neg[j] += pick(positive, zero, count);
            ties_pos[j] += pick(positive, count, zero);
        }
        *out = v;
    }
    Sums { rest: [rest_neg, rest_pos], ties: [ties_neg, ties_pos] }
}

/// Pass 3: `g ← g·factors[positive]`, a plain element-wise loop (one over runs of `W` would be
/// vectorised across the runs, with gathers).
#[inline(always)]
fn scale_pass<F: Float>(g: &mut [F], t: &[F], factors: [F; 2]) {
    for (g, &t) in g.iter_mut().zip(t) {
        *g *= pick(t == F::one(), factors[1], factors[0]);
    }
}

/// `max(a, b)`, `a` where `b` is NaN.
#[inline(always)]
fn greater<F: Float>(a: F, b: F) -> F {
    pick(b > a, b, a)
}

/// `if c { a } else { b }` as a select, never a branch: the compiler would otherwise merge the
/// passes' selects on the same condition into one branch per class, which does not vectorise.
#[inline(always)]
fn pick<F: Float>(c: bool, a: F, b: F) -> F {
    core::hint::select_unpredictable(c, a, b)
}

/// Folds the lanes pairwise, halving their number each step, so that the fold runs in vectors.
#[inline(always)]
fn fold_lanes<F: Float, const W: usize>(lanes: &mut [F; W], op: impl Fn(F, F) -> F) -> F {
    let mut width = W;
    while width > 1 {
        width /= 2;
        let (low, high) = lanes.split_at_mut(width);
        for (a, &b) in low.iter_mut().zip(&*high) {
            *a = op(*a, b);
        }
    }
    lanes[0]
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, s};

    use crate::{Float, Loss, Reduction, Targets, ZlprLoss};

    /// Whether two arrays hold the same values bit for bit (f32 → f64 is exact).
    fn bits_equal<F: Float, D: ndarray::Dimension>(
        a: &ndarray::Array<F, D>,
        b: &ndarray::Array<F, D>,
    ) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits())
    }

    /// Short rows in groups (contiguous batches) against rows one at a time (the same values with
    /// a column stride), bit for bit: every `K ≤ 16`, a partial last group, labels and multi-hot
    /// rows, an adjustment, sample weights with zeros, masked negatives, ties at the max and at the
    /// implicit zero, rows without positives or negatives; and the same error, for each kind of
    /// bad entry, in a group of good rows.
    fn grouped_rows_match_rows_one_at_a_time<F: Float>() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for k in 1..=16 {
            let b = 21;
            let wide = Array2::from_shape_fn((b, 2 * k), |(i, _)| match next() % 11 {
                0 if i % 4 == 1 => F::neg_infinity(),
                1 => F::from_f64(1.5),
                2 => F::zero(),
                n => F::from_f64((n as f64 - 6.0) * 3.1 + (next() % 1000) as f64 / 999.0),
            });
            let multi_hot = Array2::from_shape_fn((b, k), |(i, j)| match i % 4 {
                0 => F::zero(),
                1 => F::from_f64(f64::from(u8::from(j % 3 == 0 && (i + j) % 2 == 0 && k > 1))),
                2 => F::one(),
                _ => F::from_f64(f64::from(u8::from((i + j) % 3 == 0))),
            });
            let labels: Vec<usize> = (0..b).map(|i| (i * 7) % k).collect();
            // Masked classes only on negatives (of both kinds of targets).
            let wide = Array2::from_shape_fn(wide.dim(), |(i, j)| {
                let (v, positive) = (wide[[i, j]], multi_hot[[i, j / 2]] == F::one() || labels[i] == j / 2);
                if v == F::neg_infinity() && positive { F::from_f64(-2.0) } else { v }
            });
            let weights = Array1::from_shape_fn(b, |i| {
                F::from_f64(if i % 5 == 3 { 0.0 } else { 0.5 + (i % 4) as f64 })
            });
            let prior: Vec<F> = (0..k).map(|j| F::from_f64(0.9 / (1.0 + j as f64))).collect();
            let losses = [
                ZlprLoss::new(),
                ZlprLoss::new().with_label_prior(&prior, F::one()).unwrap(),
                ZlprLoss::new().with_reduction(Reduction::Sum),
            ];
            let strided = wide.slice(s![.., ..;2]);
            let contiguous = strided.to_owned();
            assert!(contiguous.is_standard_layout() && strided.as_slice().is_none());
            for loss in &losses {
                let targets = [
                    Targets::labels(&labels),
                    Targets::multi_hot(&multi_hot),
                    Targets::multi_hot(&multi_hot).with_sample_weights(&weights),
                ];
                for targets in targets {
                    let grouped = loss.loss_and_grad(&contiguous, targets.clone()).unwrap();
                    let one_at_a_time = loss.loss_and_grad(&strided, targets.clone()).unwrap();
                    assert_eq!(grouped.0.as_f64().to_bits(), one_at_a_time.0.as_f64().to_bits(), "k = {k}");
                    assert!(bits_equal(&grouped.1, &one_at_a_time.1), "k = {k}");
                    let grouped = loss.per_sample_loss_and_grad(&contiguous, targets.clone()).unwrap();
                    let one_at_a_time = loss.per_sample_loss_and_grad(&strided, targets.clone()).unwrap();
                    assert!(
                        bits_equal(&grouped.0, &one_at_a_time.0) && bits_equal(&grouped.1, &one_at_a_time.1)
                    );
                    let only_losses = loss.per_sample_loss(&contiguous, targets).unwrap();
                    assert!(bits_equal(&only_losses, &one_at_a_time.0), "k = {k}");
                }
                // One bad entry in row 10 (the third group) of each kind, and a later one in row
                // 17: the same error, naming row 10.
                let bad = [
                    (10, F::nan(), None),
                    (10, F::infinity(), None),
                    (10, F::neg_infinity(), Some(F::one())),
                    (10, F::zero(), Some(F::from_f64(0.5))),
                ];
                for (row, logit, target) in bad {
                    let (mut logits, mut t) = (strided.to_owned(), multi_hot.clone());
                    logits[[row, k - 1]] = logit;
                    logits[[17, 0]] = F::nan();
                    if let Some(target) = target {
                        t[[row, k - 1]] = target;
                    }
                    let wide_logits = Array2::from_shape_fn(wide.dim(), |(i, j)| logits[[i, j / 2]]);
                    let targets = Targets::multi_hot(&t);
                    let grouped = loss.loss_and_grad(&logits, targets.clone()).unwrap_err();
                    let one_at_a_time =
                        loss.loss_and_grad(&wide_logits.slice(s![.., ..;2]), targets).unwrap_err();
                    // (Compared as text: a NaN value is not equal to itself.)
                    let (grouped, one_at_a_time) = (format!("{grouped:?}"), format!("{one_at_a_time:?}"));
                    assert_eq!(grouped, one_at_a_time, "k = {k}");
                    assert!(grouped.contains("row: 10"), "{grouped}");
                }
            }
        }
    }

    #[test]
    fn grouped_short_rows_match_rows_one_at_a_time_bit_for_bit() {
        grouped_rows_match_rows_one_at_a_time::<f32>();
        grouped_rows_match_rows_one_at_a_time::<f64>();
    }
}
