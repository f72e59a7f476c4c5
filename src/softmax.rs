//! Row-wise log-sum-exp, log-softmax and softmax: stable for any finite logits, `-inf` aware.
//!
//! Each row is shifted by its own maximum `m`, and the sum is split as
//! `Σ_k e^{z_k − m} = 1 + r` with `r = Σ_{k ≠ k*} e^{z_k − m}` (`k*` the first argmax), so that
//! `lse(z) = m + ln_1p(r)`. This keeps `log p` of a near-certain class accurate down to `r ≈ 1e-300`
//! instead of rounding it to 0 (Blanchard, Higham & Higham 2021). A `-inf` logit is a masked class:
//! its probability is exactly 0.

use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

use crate::error::check_shape;
use crate::float::{lane_max, lane_sum};
use crate::rows::for_each_row;
use crate::{Float, LossError, Result};

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
    /// `1 − p_k` for the class whose `e^{z_k − m}` is `e_k`, without cancellation: for `k*` it is
    /// `r / (1 + r)`; any other class has `p_k ≤ 1/2`.
    #[inline]
    pub fn one_minus_p(&self, k: usize, e_k: F) -> F {
        if k == self.argmax { self.rest * self.inv_total } else { F::one() - e_k * self.inv_total }
    }
}

/// Overwrites `row` (logits) with `e^{z_k − m}` and returns its [`RowLse`], or `None` when every
/// entry is `-inf` (or the row is empty). The input must hold no NaN and no `+inf`.
#[inline]
pub(crate) fn exp_shift_in_place<F: Float>(row: &mut [F]) -> Option<RowLse<F>> {
    let max = lane_max(row);
    if max == F::neg_infinity() {
        return None;
    }
    let argmax = row.iter().position(|&v| v == max).unwrap_or(0);
    for v in row.iter_mut() {
        *v = (*v - max).exp();
    }
    let rest = lane_sum(&row[..argmax]) + lane_sum(&row[argmax + 1..]);
    let total = F::one() + rest;
    // ln_1p keeps a small r exact; for r ≥ 1/2 rounding 1 + r costs at most 2.5 ulp, and ln is
    // several times cheaper than ln_1p in common libms.
    let ln_total = if rest < F::from_f64(0.5) { rest.ln_1p() } else { total.ln() };
    Some(RowLse { max, argmax, rest, ln_total, inv_total: total.recip() })
}

/// One pass over the logits, failing at the first offending entry in row-major order: a NaN or
/// `+inf` logit, or a finite one that overflows to `+inf` once `adjust` (length `K`) is added
/// ([`LossError::NonFiniteLogit`]); or a `-inf` logit for which `masked_target(row, class)` holds
/// ([`LossError::MaskedTarget`]). Any other `-inf` is a mask and passes.
pub(crate) fn check_logits<F: Float>(
    logits: &ArrayRef2<F>,
    adjust: Option<&[F]>,
    masked_target: impl Fn(usize, usize) -> bool,
) -> Result<()> {
    let overflows = |k: usize, v: F| adjust.is_some_and(|a| is_nan_or_pos_inf(v + a[k]));
    for (row, z) in logits.rows().into_iter().enumerate() {
        // The common row is all finite: a branch-free scan says so; only other rows are searched.
        let finite = match adjust {
            None => z.fold(true, |ok, v| ok & v.is_finite()),
            Some(a) => z.iter().zip(a).fold(true, |ok, (&v, &a)| ok & (v + a).is_finite()),
        };
        if finite {
            continue;
        }
        for (class, &v) in z.iter().enumerate() {
            if is_nan_or_pos_inf(v) || overflows(class, v) {
                return Err(LossError::NonFiniteLogit { row, class, value: v.as_f64() });
            }
            if v == F::neg_infinity() && masked_target(row, class) {
                return Err(LossError::MaskedTarget { row, class });
            }
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
/// [`LossError::NonFiniteLogit`] for a NaN or `+inf` logit (`-inf` masks a class).
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
/// # Ok::<(), longtail::LossError>(())
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
/// [`LossError::ShapeMismatch`] (`"out"`) if `out` is not of length `B`;
/// [`LossError::NonFiniteLogit`] for a NaN or `+inf` logit. On error `out` is untouched.
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
/// # Ok::<(), longtail::LossError>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn log_sum_exp_into<F: Float>(logits: &ArrayRef2<F>, out: &mut ArrayRef1<F>) -> Result<()> {
    check_shape("out", &[logits.nrows()], out.shape())?;
    check_logits(logits, None, |_, _| false)?;
    for_each_row(logits, None, |i, z, scratch| {
        scratch.copy_from_slice(z);
        out[i] = exp_shift_in_place(scratch).map_or(F::neg_infinity(), |s| s.max + s.ln_total);
    });
    Ok(())
}

/// Row-wise log-softmax: `log_softmax(z)_ik = z_ik − lse(z)_i`.
///
/// Computed as `(z_ik − m_i) − ln_1p(r_i)` (see the [module docs](self)), so the log-probability of
/// a near-certain class keeps its relative accuracy. A masked (`-inf`) entry gives `-inf`.
///
/// # Errors
///
/// [`LossError::NonFiniteLogit`] for a NaN or `+inf` logit; [`LossError::FullyMasked`] for a row
/// whose every logit is `-inf`.
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
/// # Ok::<(), longtail::LossError>(())
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
/// [`LossError::ShapeMismatch`] (`"out"`) if `out` is not `[B, K]`, and the errors of
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
/// # Ok::<(), longtail::LossError>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn log_softmax_into<F: Float>(logits: &ArrayRef2<F>, out: &mut ArrayRef2<F>) -> Result<()> {
    softmax_family_into(logits, out, |z, out, s| {
        for (o, &zk) in out.iter_mut().zip(z) {
            *o = (zk - s.max) - s.ln_total;
        }
    })
}

/// Row-wise softmax: `softmax(z)_ik = exp(z_ik − lse(z)_i)`.
///
/// Each row sums to 1 up to rounding; a masked (`-inf`) entry gets probability exactly 0.
///
/// # Errors
///
/// [`LossError::NonFiniteLogit`] for a NaN or `+inf` logit; [`LossError::FullyMasked`] for a row
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
/// # Ok::<(), longtail::LossError>(())
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
/// [`LossError::ShapeMismatch`] (`"out"`) if `out` is not `[B, K]`, and the errors of
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
/// # Ok::<(), longtail::LossError>(())
/// ```
///
/// # References
///
/// Blanchard, Higham & Higham 2021 (see [`log_sum_exp`]).
pub fn softmax_into<F: Float>(logits: &ArrayRef2<F>, out: &mut ArrayRef2<F>) -> Result<()> {
    softmax_family_into(logits, out, |_, out, s| {
        for o in out.iter_mut() {
            *o *= s.inv_total;
        }
    })
}

/// Validates, then for each row leaves `e^{z − m}` in the output row and lets `finish` turn it
/// into the result from the input row and the row's [`RowLse`].
fn softmax_family_into<F: Float>(
    logits: &ArrayRef2<F>,
    out: &mut ArrayRef2<F>,
    finish: impl Fn(&[F], &mut [F], RowLse<F>),
) -> Result<()> {
    check_shape("out", logits.shape(), out.shape())?;
    check_logits(logits, None, |_, _| false)?;
    if logits.ncols() > 0 {
        if let Some(row) = logits.rows().into_iter().position(|z| z.iter().all(|&v| v == F::neg_infinity())) {
            return Err(LossError::FullyMasked { row });
        }
    }
    for_each_row(logits, Some(out), |_, z, out| {
        out.copy_from_slice(z);
        if let Some(stats) = exp_shift_in_place(out) {
            finish(z, out, stats);
        }
    });
    Ok(())
}

/// NaN and `+inf` are errors; `-inf` is a mask.
#[inline]
pub(crate) fn is_nan_or_pos_inf<F: Float>(v: F) -> bool {
    v.is_nan() || v == F::infinity()
}
