//! Row-wise log-sum-exp, log-softmax and softmax: stable for any finite logits, `-inf` aware.
//!
//! Each row is shifted by its own maximum `m`, and the sum is split as
//! `Σ_k e^{z_k − m} = 1 + r` with `r = Σ_{k ≠ k*} e^{z_k − m}` (`k*` the first argmax), so that
//! `lse(z) = m + ln_1p(r)`. This keeps `log p` of a near-certain class accurate down to `r ≈ 1e-300`
//! instead of rounding it to 0 (Blanchard, Higham & Higham 2021). A `-inf` logit is a masked class:
//! its probability is exactly 0.

use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use crate::error::check_shape;
use crate::float::{
    ExpArgs, LANES, all_finite, exp_sum, finite_abs_max, lane_abs_max_sum, lane_max, lane_max_sum,
    ln_compensated,
};
#[cfg(doc)]
use crate::float::{ln_1p_unit, ln_normal};
use crate::rows::{RowVisitor, all_chunks, visit_rows};
use crate::simd::{Kernel, dispatch};
use crate::{Error, Float, Result};

/// The log-sum-exp of one row, kept in the parts that make it accurate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowLse<F> {
    /// The row maximum `m`.
    pub max: F,
    /// The first index of the maximum, `k*`.
    pub argmax: usize,
    /// `r = Σ_{k≠k*} e^{z_k − m}`.
    pub rest: F,
    /// `ln(1 + r)`, so that `lse = max + ln_total` and `log p_k = (z_k − max) − ln_total`.
    pub ln_total: F,
    /// `1 / (1 + r)`, so that `p_k = e^{z_k − max} · inv_total`.
    pub inv_total: F,
}

impl<F: Float> RowLse<F> {
    /// The parts of a row with maximum `max` at `argmax`, `r = rest` and `ln(1 + r) = ln_total`
    /// (from [`ln_1p_rest`]).
    #[inline(always)]
    fn new(max: F, argmax: usize, rest: f64, ln_total: f64) -> Self {
        RowLse {
            max,
            argmax,
            rest: F::from_f64(rest),
            ln_total: F::from_f64(ln_total),
            inv_total: F::from_f64((1.0 + rest).recip()),
        }
    }

    /// `1 − p_k` for the class whose `e^{z_k − m}` is `e_k`, without cancellation: for `k*` it is
    /// `r / (1 + r)`; any other class has `p_k ≤ 1/2`.
    #[inline]
    pub fn one_minus_p(&self, k: usize, e_k: F) -> F {
        if k == self.argmax { self.rest * self.inv_total } else { F::one() - e_k * self.inv_total }
    }

    /// `log(1 − p_k)` for the class of probability `p_k`, without rounding `1 − p_k` first: for
    /// `k*` it is `ln r − ln(1 + r)`, for any other class `ln_1p(−p_k)`.
    #[inline]
    pub fn log_one_minus_p(&self, k: usize, p_k: F) -> F {
        log_one_minus_p(k == self.argmax, self.rest, self.ln_total, p_k)
    }
}

/// `log(1 − p)` of a class of probability `p` in a row with `r` and `ln(1 + r)`
/// ([`RowLse::log_one_minus_p`]): `ln r − ln(1 + r)` for the argmax, `ln_1p(−p)` for any other.
#[inline(always)]
pub(crate) fn log_one_minus_p<F: Float>(is_argmax: bool, rest: F, ln_total: F, p: F) -> F {
    if is_argmax { rest.ln() - ln_total } else { (-p).ln_1p() }
}

/// `ln(1 + r)` of a row's `r ≥ 0`, in f64 (exact for f32), branch-free so that the rows of a group
/// vectorise: below 1 it is [`ln_1p_unit`], which adds the rounding error of `1 + r` back and so
/// keeps a small `r` exact; above 1, [`ln_normal`] of the rounded `1 + r` (at most 1 ulp off). Both
/// are `ln_compensated(1 + r, c)`, with `c` the rounding error or 0: one logarithm.
#[inline(always)]
pub(crate) fn ln_1p_rest(rest: f64) -> f64 {
    let u = 1.0 + rest;
    let c = if rest < 1.0 { rest - (u - 1.0) } else { 0.0 };
    ln_compensated::<f64, false>(u, c)
}

/// Writes `e^{x_k − m}` into `out` (`x` = `args`, `m = max x`) and returns the row's
/// [`RowLse`], or `None` when every `x_k` is `-inf` (or the row is empty). `x` must hold no NaN
/// and no `+inf`.
#[inline(always)]
pub(crate) fn row_lse<F: Float, const FMA: bool>(out: &mut [F], args: ExpArgs<'_, F>) -> Option<RowLse<F>> {
    let max = match args {
        ExpArgs::InPlace => lane_max(out),
        ExpArgs::Logits(z) => lane_max(z),
        ExpArgs::Adjusted(z, adjust) => lane_max_sum(z, adjust),
    };
    if max == F::neg_infinity() {
        return None;
    }
    let argmax = match args {
        ExpArgs::InPlace => first_index_of(out, None, max),
        ExpArgs::Logits(z) => first_index_of(z, None, max),
        ExpArgs::Adjusted(z, adjust) => first_index_of(z, Some(adjust), max),
    };
    let rest = exp_sum::<F, FMA>(out, args, max, argmax);
    Some(RowLse::new(max, argmax, rest, ln_1p_rest(rest)))
}

/// One pass over the logits, failing at the first offending entry in row-major order: a NaN or
/// `+inf` logit ([`Error::NonFiniteLogit`]); a finite one that overflows to `±inf` once `adjust`
/// (length `K`) is added ([`Error::Overflow`], `"logit + adjustment"`); or a `-inf` logit for
/// which `masked_target(row, class)` holds ([`Error::MaskedTarget`]). Any other `-inf` is a mask
/// and passes.
pub(crate) fn check_logits<F: Float>(
    logits: &ArrayRef2<F>,
    adjust: Option<&[F]>,
    masked_target: impl Fn(usize, usize) -> bool,
) -> Result<()> {
    // A contiguous batch of finite logits passes in one scan (in parallel chunks when large).
    let adjust_max = abs_max(adjust);
    if logits.as_slice().is_some_and(|z| all_chunks(z, |chunk| dispatch(FitsAll(chunk, adjust_max)))) {
        return Ok(());
    }
    struct Check<'a, F, M>(ndarray::ArrayView2<'a, F>, Option<&'a [F]>, M);
    impl<F: Float, M: Fn(usize, usize) -> bool> Kernel for Check<'_, F, M> {
        type Output = Result<()>;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> Self::Output {
            let Check(logits, adjust, masked_target) = self;
            check_rows::<F, FMA>(logits, 0, adjust, None, masked_target)
        }
    }
    dispatch(Check(logits.view(), adjust, masked_target))
}

/// `max |a_k|` of an adjustment, for [`check_rows`].
pub(crate) fn abs_max<F: Float>(adjust: Option<&[F]>) -> Option<F> {
    adjust.map(|a| a.iter().fold(F::zero(), |m, &v| if v.abs() > m { v.abs() } else { m }))
}

/// [`check_logits`] of the rows `logits` of a batch, from row `first` on, inside a kernel (so
/// that a kernel checks the rows it is about to read while they are in cache); `adjust_max` is
/// [`abs_max`] of `adjust`, or `None` to skip the batch-wide scan.
#[inline(always)]
pub(crate) fn check_rows<F: Float, const FMA: bool>(
    logits: ndarray::ArrayView2<'_, F>,
    first: usize,
    adjust: Option<&[F]>,
    adjust_max: Option<F>,
    masked_target: impl Fn(usize, usize) -> bool,
) -> Result<()> {
    // A contiguous block of finite logits passes in one scan, short rows included; with an
    // adjustment, no `|z_k + a_k|` can exceed `max |z| + max |a|` (rounding is monotone).
    let scan = adjust.is_none() || adjust_max.is_some();
    if scan && logits.as_slice().is_some_and(|z| FitsAll(z, adjust_max).run::<FMA>()) {
        return Ok(());
    }
    for (r, z) in logits.rows().into_iter().enumerate() {
        // The common row is all finite: a branch-free scan says so; only other rows are searched.
        let finite = match (z.as_slice(), adjust) {
            (Some(z), adjust) => row_is_finite::<F, FMA>(z, adjust),
            (None, None) => z.fold(true, |ok, v| ok & v.is_finite()),
            (None, Some(a)) => z.iter().zip(a).fold(true, |ok, (&v, &a)| ok & (v + a).is_finite()),
        };
        if !finite {
            first_bad_logit(first + r, z, adjust, &masked_target)?;
        }
    }
    Ok(())
}

/// Whether every logit of a chunk is finite and, given the adjustment's largest magnitude, no
/// `z + a` can overflow.
struct FitsAll<'a, F>(&'a [F], Option<F>);

impl<F: Float> Kernel for FitsAll<'_, F> {
    type Output = bool;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> bool {
        match self.1 {
            None => all_finite::<F, FMA>(self.0),
            Some(a) => finite_abs_max::<F, FMA>(self.0).is_some_and(|max| max + a < F::infinity()),
        }
    }
}

/// Whether every `z_k` and `z_k + a_k` (with `adjust`) is finite, without a branch per value.
#[inline(always)]
fn row_is_finite<F: Float, const FMA: bool>(z: &[F], adjust: Option<&[F]>) -> bool {
    // One call site per closure: a closure the compiler does not inline runs without AVX2.
    all_finite::<F, FMA>(z) && adjust.is_none_or(|adjust| lane_abs_max_sum(z, adjust) < F::infinity())
}

/// The first `k` with `z_k (+ a_k) == max`, which exists: a branch-free test of each chunk of
/// [`LANES`], then a scan of the chunk that holds it.
#[inline(always)]
fn first_index_of<F: Float>(z: &[F], adjust: Option<&[F]>, max: F) -> usize {
    let mut start = 0;
    match adjust {
        None => {
            for chunk in z.chunks_exact(LANES) {
                if chunk.iter().fold(false, |found, &v| found | (v == max)) {
                    break;
                }
                start += LANES;
            }
        }
        Some(adjust) => {
            for (chunk, a) in z.chunks_exact(LANES).zip(adjust.chunks_exact(LANES)) {
                if chunk.iter().zip(a).fold(false, |found, (&v, &a)| found | (v + a == max)) {
                    break;
                }
                start += LANES;
            }
        }
    }
    let value = |k: usize| adjust.map_or(z[k], |a| z[k] + a[k]);
    (start..z.len()).find(|&k| value(k) == max).unwrap_or(0)
}

/// The error of the first offending logit of a row that is not all finite, if any.
#[cold]
fn first_bad_logit<F: Float>(
    row: usize,
    z: ndarray::ArrayView1<'_, F>,
    adjust: Option<&[F]>,
    masked_target: impl Fn(usize, usize) -> bool,
) -> Result<()> {
    for (class, &v) in z.iter().enumerate() {
        if is_nan_or_pos_inf(v) {
            return Err(Error::NonFiniteLogit { row, class, value: v.as_f64() });
        }
        if v.is_finite() && adjust.is_some_and(|a| !(v + a[class]).is_finite()) {
            let value = Some(v.as_f64());
            return Err(Error::Overflow {
                what: "logit + adjustment",
                row: Some(row),
                class: Some(class),
                value,
            });
        }
        if v == F::neg_infinity() && masked_target(row, class) {
            return Err(Error::MaskedTarget { row, class });
        }
    }
    Ok(())
}

/// Row-wise log-sum-exp: `lse(z)_i = log Σ_k exp(z_ik)`.
///
/// Computed as `m_i + ln_1p(Σ_{k≠k*} exp(z_ik − m_i))` with `m_i` the row maximum, so it neither
/// overflows nor underflows for any finite logits (rows near `±1e30` in `f64`). A row whose every
/// entry is `-inf` has `lse = -inf`; a row of zero classes too (the empty sum).
///
/// # Errors
///
/// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit (`-inf` masks a class).
///
/// # Example
///
/// ```
/// use longtail::softmax::log_sum_exp;
/// use ndarray::array;
///
/// let lse = log_sum_exp(&array![[0.0_f64, 0.0], [1e30, 1e30], [f64::NEG_INFINITY, 2.0]])?;
/// assert!((lse[0] - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(lse[1], 1e30);
/// assert_eq!(lse[2], 2.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the log-sum-exp and softmax
/// functions", IMA Journal of Numerical Analysis 41(4), 2021.
pub fn log_sum_exp<F: Float>(logits: &ArrayRef2<F>) -> Result<Array1<F>> {
    let mut out = Array1::zeros(logits.nrows());
    log_sum_exp_into(logits, &mut out)?;
    Ok(out)
}

/// [`log_sum_exp`] into a caller's buffer of length `B`, overwriting it.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] (`"out"`) if `out` is not of length `B`;
/// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit. On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::softmax::log_sum_exp_into;
/// use ndarray::{array, Array1};
///
/// let mut out = Array1::zeros(1);
/// log_sum_exp_into(&array![[1.0_f32, 1.0]], &mut out)?;
/// assert!((out[0] - (1.0 + 2f32.ln())).abs() < 1e-6);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn log_sum_exp_into<F: Float>(logits: &ArrayRef2<F>, out: &mut ArrayRef1<F>) -> Result<()> {
    check_shape("out", &[logits.nrows()], out.shape())?;
    check_logits(logits, None, |_, _| false)?;
    struct Lse<'a, F>(&'a ArrayRef2<F>, &'a mut ArrayRef1<F>);
    struct LseRows<'a, F, const FMA: bool>(&'a mut ArrayRef1<F>);
    impl<F: Float, const FMA: bool> RowVisitor<F> for LseRows<'_, F, FMA> {
        #[inline(always)]
        fn visit(&mut self, i: usize, z: &[F], scratch: &mut [F]) {
            let lse = row_lse::<F, FMA>(scratch, ExpArgs::Logits(z));
            self.0[i] = lse.map_or(F::neg_infinity(), |s| s.max + s.ln_total);
        }
    }
    impl<F: Float> Kernel for Lse<'_, F> {
        type Output = ();
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            visit_rows(self.0, None, &mut LseRows::<F, FMA>(self.1));
        }
    }
    dispatch(Lse(logits, out));
    Ok(())
}

/// Row-wise log-softmax: `log_softmax(z)_ik = z_ik − lse(z)_i`.
///
/// Computed as `(z_ik − m_i) − ln_1p(r_i)` (see the [module docs](self)), so the log-probability of
/// a near-certain class keeps its relative accuracy. A masked (`-inf`) entry gives `-inf`.
///
/// # Errors
///
/// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit; [`Error::FullyMasked`] for a row
/// whose every logit is `-inf`; [`Error::Overflow`] (`"log_softmax"`) for a finite logit whose
/// log-probability is below the float's range (`z_k − max_j z_j < −MAX`, as for `±3e38` in
/// `f32`).
///
/// # Example
///
/// ```
/// use longtail::softmax::log_softmax;
/// use ndarray::array;
///
/// let lp = log_softmax(&array![[0.0_f64, -40.0]])?;
/// // log(1 − 1/(1 + e^40)) ≈ −e^−40, not 0.
/// assert!((lp[[0, 0]] / -(-40f64).exp() - 1.0).abs() < 1e-12);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn log_softmax<F: Float>(logits: &ArrayRef2<F>) -> Result<Array2<F>> {
    let mut out = Array2::zeros(logits.raw_dim());
    log_softmax_into(logits, &mut out)?;
    Ok(out)
}

/// [`log_softmax`] into a caller's `[B, K]` buffer, overwriting it.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] (`"out"`) if `out` is not `[B, K]`, and the errors of
/// [`log_softmax`]. On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::softmax::log_softmax_into;
/// use ndarray::{array, Array2};
///
/// let mut out = Array2::zeros((1, 2));
/// log_softmax_into(&array![[0.0_f32, 0.0]], &mut out)?;
/// assert!((out[[0, 1]] + 2f32.ln()).abs() < 1e-7);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn log_softmax_into<F: Float>(logits: &ArrayRef2<F>, out: &mut ArrayRef2<F>) -> Result<()> {
    softmax_family_into(logits, out, Finish::LogSoftmax)
}

/// Row-wise softmax: `softmax(z)_ik = exp(z_ik − lse(z)_i)`.
///
/// Each row sums to 1 up to rounding; a masked (`-inf`) entry gets probability exactly 0.
///
/// # Errors
///
/// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit; [`Error::FullyMasked`] for a row
/// whose every logit is `-inf`.
///
/// # Example
///
/// ```
/// use longtail::softmax::softmax;
/// use ndarray::array;
///
/// let p = softmax(&array![[1e4_f32, 1e4, f32::NEG_INFINITY]])?;
/// assert_eq!(p.row(0).to_vec(), vec![0.5, 0.5, 0.0]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn softmax<F: Float>(logits: &ArrayRef2<F>) -> Result<Array2<F>> {
    let mut out = Array2::zeros(logits.raw_dim());
    softmax_into(logits, &mut out)?;
    Ok(out)
}

/// [`softmax`] into a caller's `[B, K]` buffer, overwriting it.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] (`"out"`) if `out` is not `[B, K]`, and the errors of
/// [`softmax`]. On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::softmax::softmax_into;
/// use ndarray::{array, Array2};
///
/// let mut out = Array2::zeros((1, 2));
/// softmax_into(&array![[0.0_f64, 2f64.ln()]], &mut out)?;
/// assert!((out[[0, 1]] - 2.0 / 3.0).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn softmax_into<F: Float>(logits: &ArrayRef2<F>, out: &mut ArrayRef2<F>) -> Result<()> {
    softmax_family_into(logits, out, Finish::Softmax)
}

/// What [`softmax_family_into`] leaves in each output row.
#[derive(Clone, Copy)]
enum Finish {
    /// `p_k = e^{z_k − m} / (1 + r)`.
    Softmax,
    /// `log p_k = (z_k − m) − ln(1 + r)`.
    LogSoftmax,
}

/// Validates, then for each row leaves `e^{z − m}` in the output row and turns it into `finish`.
fn softmax_family_into<F: Float>(
    logits: &ArrayRef2<F>,
    out: &mut ArrayRef2<F>,
    finish: Finish,
) -> Result<()> {
    check_shape("out", logits.shape(), out.shape())?;
    check_logits(logits, None, |_, _| false)?;
    if logits.ncols() > 0
        && let Some(row) = logits.rows().into_iter().position(|z| z.iter().all(|&v| v == F::neg_infinity()))
    {
        return Err(Error::FullyMasked { row });
    }
    if let Finish::LogSoftmax = finish {
        check_log_range(logits)?;
    }
    struct Rows<'a, F>(&'a ArrayRef2<F>, &'a mut ArrayRef2<F>, Finish);
    struct FinishRows<F, const FMA: bool>(Finish, core::marker::PhantomData<F>);
    impl<F: Float, const FMA: bool> RowVisitor<F> for FinishRows<F, FMA> {
        #[inline(always)]
        fn visit(&mut self, _: usize, z: &[F], out: &mut [F]) {
            if let Some(s) = row_lse::<F, FMA>(out, ExpArgs::Logits(z)) {
                match self.0 {
                    Finish::Softmax => out.iter_mut().for_each(|o| *o *= s.inv_total),
                    Finish::LogSoftmax => {
                        out.iter_mut().zip(z).for_each(|(o, &zk)| *o = (zk - s.max) - s.ln_total);
                    }
                }
            }
        }
    }
    impl<F: Float> Kernel for Rows<'_, F> {
        type Output = ();
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            let Rows(logits, out, finish) = self;
            visit_rows(logits, Some(out), &mut FinishRows::<F, FMA>(finish, core::marker::PhantomData));
        }
    }
    dispatch(Rows(logits, out, finish));
    Ok(())
}

/// [`Error::Overflow`] (`"log_softmax"`) for the first finite logit, in row-major order, whose
/// `z_k − max_j z_j` is below the float's range (logits of opposite extremes): its log-probability
/// is not representable. Finite logits only (checked before).
fn check_log_range<F: Float>(logits: &ArrayRef2<F>) -> Result<()> {
    for (row, z) in logits.rows().into_iter().enumerate() {
        let max = z.iter().fold(F::neg_infinity(), |m, &v| if v > m { v } else { m });
        let min = z.iter().fold(F::infinity(), |m, &v| if v < m && v.is_finite() { v } else { m });
        if min.is_finite() && (min - max).is_finite() {
            continue;
        }
        if let Some(class) = z.iter().position(|&v| v.is_finite() && !(v - max).is_finite()) {
            let value = Some(z[class].as_f64());
            return Err(Error::Overflow { what: "log_softmax", row: Some(row), class: Some(class), value });
        }
    }
    Ok(())
}

/// NaN and `+inf` are errors; `-inf` is a mask.
#[inline]
pub(crate) fn is_nan_or_pos_inf<F: Float>(v: F) -> bool {
    v.is_nan() || v == F::infinity()
}
