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
    ExpArgs, LANES, all_finite, exp_nonpos, exp_sum, finite_max, lane_max, lane_max_sum, ln_1p_unit,
    ln_normal,
};
use crate::rows::{RowVisitor, all_chunks, visit_rows};
use crate::simd::{Kernel, dispatch};
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
}

/// `ln(1 + r)` of a row's `r ≥ 0`, in f64 (exact for f32), branch-free so that the rows of a group
/// vectorise: `ln_1p` keeps a small `r` exact; above 1, rounding `1 + r` costs at most 1 ulp.
#[inline(always)]
fn ln_1p_rest(rest: f64) -> f64 {
    let small = ln_1p_unit::<f64, false>(if rest < 1.0 { rest } else { 1.0 });
    let large = ln_normal::<f64, false>(1.0 + rest);
    if rest < 1.0 { small } else { large }
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

/// Rows of at most this many classes can be processed [`GROUP`] at a time by [`group_lse`].
pub(crate) const SHORT_ROW: usize = 16;

/// The rows [`group_lse`] processes at once: one vector lane per row (8 f32 in AVX2).
pub(crate) const GROUP: usize = 8;

/// One value per row of a [`Group`]: a vector of 8 f32 (two of 4 f64).
pub(crate) type Lanes<F> = [F; GROUP];

/// Up to [`GROUP`] short rows after [`group_lse`], transposed: lane `r` of every column is row `r`
/// (lanes past the group's rows hold a padding row of zeros). Columns past `classes` are unused.
pub(crate) struct Group<F> {
    /// The number of classes `K`.
    pub classes: usize,
    /// `x_rc − m_r`, the argument of each exponential (`x = z + adjust`, `m` the row maximum; a row
    /// of `-inf` is shifted by 0).
    pub shifted: [Lanes<F>; SHORT_ROW],
    /// `e^{x_rc − m_r}`, exactly 1 at the argmax.
    pub exp: [Lanes<F>; SHORT_ROW],
    /// The lanes of each row's [`RowLse`], the argmax as a float.
    pub max: Lanes<F>,
    pub argmax: Lanes<F>,
    pub rest: Lanes<F>,
    pub ln_total: Lanes<F>,
    pub inv_total: Lanes<F>,
}

impl<F: Float> Group<F> {
    /// An empty group, for [`group_lse`] to fill.
    #[inline(always)]
    pub fn new() -> Self {
        let zeros = [F::zero(); GROUP];
        Group {
            classes: 0,
            shifted: [zeros; SHORT_ROW],
            exp: [zeros; SHORT_ROW],
            max: zeros,
            argmax: zeros,
            rest: zeros,
            ln_total: zeros,
            inv_total: zeros,
        }
    }

    /// Row `r`'s [`RowLse`], `None` for a row of `-inf` (as [`row_lse`]).
    #[inline(always)]
    pub fn lse(&self, r: usize) -> Option<RowLse<F>> {
        (self.max[r] != F::neg_infinity()).then(|| RowLse {
            max: self.max[r],
            argmax: self.argmax[r].as_f64() as usize,
            rest: self.rest[r],
            ln_total: self.ln_total[r],
            inv_total: self.inv_total[r],
        })
    }

    /// Writes the exponentials back row-major into `out`, as `map` says; the length of `out` says
    /// how many rows to write.
    #[inline(always)]
    pub fn write_rows(&self, map: RowMap<F>, out: &mut [F]) {
        let k = self.classes;
        let columns = &self.exp[..k];
        if out.len() == GROUP * k {
            scatter_group(columns, map, out);
        } else {
            let mut padded = [F::zero(); GROUP * SHORT_ROW];
            scatter_group(columns, map, &mut padded[..GROUP * k]);
            let n = out.len();
            out.copy_from_slice(&padded[..n]);
        }
    }
}

/// What [`Group::write_rows`] writes for an exponential `v` of row `r`.
#[derive(Clone, Copy)]
pub(crate) enum RowMap<F> {
    /// `v`.
    Copy,
    /// `v·p_r`.
    Scale(Lanes<F>),
    /// `scale·(p_r·v − c_r)`.
    ScaleShift { scale: F, p: Lanes<F>, c: Lanes<F> },
}

/// Writes `columns` (`K` of them) row-major into the [`GROUP`] rows of `out`, as `map` says.
#[inline(always)]
fn scatter_group<F: Float>(columns: &[Lanes<F>], map: RowMap<F>, out: &mut [F]) {
    let k = columns.len();
    let (r0, rows) = out.split_at_mut(k);
    let (r1, rows) = rows.split_at_mut(k);
    let (r2, rows) = rows.split_at_mut(k);
    let (r3, rows) = rows.split_at_mut(k);
    let (r4, rows) = rows.split_at_mut(k);
    let (r5, rows) = rows.split_at_mut(k);
    let (r6, r7) = rows.split_at_mut(k);
    scatter_columns(columns, map, r0, r1, r2, r3, r4, r5, r6, r7);
}

/// `row_r[c] = map(columns[c][r])`. The rows are separate `&mut` arguments: the compiler then
/// knows that they do not overlap, and vectorises the column loop as 8×8 transposes, the map
/// applied to whole rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // one per row of a group
fn scatter_columns<F: Float>(
    columns: &[Lanes<F>],
    map: RowMap<F>,
    r0: &mut [F],
    r1: &mut [F],
    r2: &mut [F],
    r3: &mut [F],
    r4: &mut [F],
    r5: &mut [F],
    r6: &mut [F],
    r7: &mut [F],
) {
    let k = columns.len();
    let (r0, r1, r2, r3) = (&mut r0[..k], &mut r1[..k], &mut r2[..k], &mut r3[..k]);
    let (r4, r5, r6, r7) = (&mut r4[..k], &mut r5[..k], &mut r6[..k], &mut r7[..k]);
    match map {
        RowMap::Copy => {
            for (c, col) in columns.iter().enumerate() {
                (r0[c], r1[c], r2[c], r3[c]) = (col[0], col[1], col[2], col[3]);
                (r4[c], r5[c], r6[c], r7[c]) = (col[4], col[5], col[6], col[7]);
            }
        }
        RowMap::Scale([p0, p1, p2, p3, p4, p5, p6, p7]) => {
            for (c, col) in columns.iter().enumerate() {
                (r0[c], r1[c], r2[c], r3[c]) = (col[0] * p0, col[1] * p1, col[2] * p2, col[3] * p3);
                (r4[c], r5[c], r6[c], r7[c]) = (col[4] * p4, col[5] * p5, col[6] * p6, col[7] * p7);
            }
        }
        RowMap::ScaleShift { scale, p, c: shift } => {
            let [p0, p1, p2, p3, p4, p5, p6, p7] = p;
            let [c0, c1, c2, c3, c4, c5, c6, c7] = shift;
            let f = |v: F, p: F, c: F| scale * (p * v - c);
            for (c, col) in columns.iter().enumerate() {
                (r0[c], r1[c]) = (f(col[0], p0, c0), f(col[1], p1, c1));
                (r2[c], r3[c]) = (f(col[2], p2, c2), f(col[3], p3, c3));
                (r4[c], r5[c]) = (f(col[4], p4, c4), f(col[5], p5, c5));
                (r6[c], r7[c]) = (f(col[6], p6, c6), f(col[7], p7, c7));
            }
        }
    }
}

/// `columns[c][r] = z_rc (+ adjust_c)` for the up to [`GROUP`] rows of `z` (row-major, `K =
/// columns.len()` classes), rows past them 0 (`+ adjust_c`).
#[inline(always)]
pub(crate) fn transpose_rows<F: Float>(z: &[F], adjust: Option<&[F]>, columns: &mut [Lanes<F>]) {
    let k = columns.len();
    // A partial group is padded with rows of zeros (initialised only then).
    let padded;
    let z = if z.len() < GROUP * k {
        let mut rows = [F::zero(); GROUP * SHORT_ROW];
        rows[..z.len()].copy_from_slice(z);
        padded = rows;
        &padded[..GROUP * k]
    } else {
        z
    };
    // Rows the compiler knows to hold exactly `K` entries: the column loop needs no bounds checks,
    // and is vectorised as 8×8 transposes.
    let [r0, r1, r2, r3, r4, r5, r6, r7] = split_rows(z, k);
    gather_columns(columns, adjust, r0, r1, r2, r3, r4, r5, r6, r7);
}

/// `columns[c][r] = row_r[c] (+ adjust[c])`, the inverse of [`scatter_columns`].
#[inline(always)]
#[allow(clippy::too_many_arguments)] // one per row of a group
fn gather_columns<F: Float>(
    columns: &mut [Lanes<F>],
    adjust: Option<&[F]>,
    r0: &[F],
    r1: &[F],
    r2: &[F],
    r3: &[F],
    r4: &[F],
    r5: &[F],
    r6: &[F],
    r7: &[F],
) {
    let k = columns.len();
    let (r0, r1, r2, r3) = (&r0[..k], &r1[..k], &r2[..k], &r3[..k]);
    let (r4, r5, r6, r7) = (&r4[..k], &r5[..k], &r6[..k], &r7[..k]);
    match adjust {
        Some(adjust) => {
            for (c, (col, &a)) in columns.iter_mut().zip(&adjust[..k]).enumerate() {
                *col = [r0[c], r1[c], r2[c], r3[c], r4[c], r5[c], r6[c], r7[c]];
                col.iter_mut().for_each(|v| *v += a);
            }
        }
        None => {
            for (c, col) in columns.iter_mut().enumerate() {
                *col = [r0[c], r1[c], r2[c], r3[c], r4[c], r5[c], r6[c], r7[c]];
            }
        }
    }
}

/// The [`GROUP`] rows of `K = k` entries of a full group `z`.
#[inline(always)]
fn split_rows<F>(z: &[F], k: usize) -> [&[F]; GROUP] {
    let (r0, z) = z.split_at(k);
    let (r1, z) = z.split_at(k);
    let (r2, z) = z.split_at(k);
    let (r3, z) = z.split_at(k);
    let (r4, z) = z.split_at(k);
    let (r5, z) = z.split_at(k);
    let (r6, z) = z.split_at(k);
    [r0, r1, r2, r3, r4, r5, r6, &z[..k]]
}

/// [`row_lse`] of up to [`GROUP`] consecutive rows of `K ≤ SHORT_ROW` logits, `z` row-major
/// (`z + adjust` with `adjust` of length `K`), transposed into `group`.
///
/// The group is transposed so that one lane holds one row: the max, argmax, exponentials and sums
/// of short rows then run in full vectors, without a fold per row. Results are bit for bit those of
/// [`row_lse`]: same exponentials, same sums in the same order.
#[inline(always)]
pub(crate) fn group_lse<F: Float, const FMA: bool>(
    z: &[F],
    classes: usize,
    adjust: Option<&[F]>,
    group: &mut Group<F>,
) {
    let k = classes;
    group.classes = k;
    // `x[c][r]`: class `c` of row `r`. The steps are separate loops over whole columns of local
    // lanes, which the compiler vectorises.
    let x = &mut group.shifted[..k];
    transpose_rows(z, adjust, x);
    // The maximum and the first index of it (a strictly greater value moves it; as a float: lanes
    // of the same width as the data), in one pass; a row of `-inf` keeps index 0.
    let (mut max, mut argmax) = ([F::neg_infinity(); GROUP], [F::zero(); GROUP]);
    for (c, col) in x.iter().enumerate() {
        let c = F::from_f64(c as f64);
        for r in 0..GROUP {
            let greater = col[r] > max[r];
            (max[r], argmax[r]) = if greater { (col[r], c) } else { (max[r], argmax[r]) };
        }
    }
    // A row of `-inf` (no lse) is shifted by 0, which gives zeros rather than NaN.
    let shift = max.map(|m| if m == F::neg_infinity() { F::zero() } else { m });
    // One flat loop over a copy of the shifts per column: a loop over columns would be vectorised
    // across columns, with shuffles.
    let shifts = [shift; SHORT_ROW];
    let e = &mut group.exp[..k];
    let (e_flat, x_flat) = (e.as_flattened_mut(), x.as_flattened_mut());
    for ((e, v), &s) in e_flat.iter_mut().zip(x_flat).zip(shifts.as_flattened()) {
        *v -= s;
        *e = exp_nonpos::<F, FMA>(*v);
    }
    // `r` excludes the maximum's `e^0 = 1` exactly, by a 0 in its place; `e` holds exactly 1 there.
    let mut rest = [F::zero(); GROUP];
    for (c, col) in e.iter_mut().enumerate() {
        let c = F::from_f64(c as f64);
        rest.iter_mut()
            .zip(&argmax)
            .zip(&*col)
            .for_each(|((s, &a), &v)| *s += if a == c { F::zero() } else { v });
        col.iter_mut().zip(&argmax).for_each(|(v, &a)| *v = if a == c { F::one() } else { *v });
    }
    // The parts of `RowLse::new`, lane by lane.
    let (mut rest64, mut total) = ([0.0; GROUP], [0.0; GROUP]);
    rest64.iter_mut().zip(&rest).for_each(|(r64, &r)| *r64 = r.as_f64());
    total.iter_mut().zip(&rest64).for_each(|(l, &r)| *l = ln_1p_rest(r));
    group.ln_total.iter_mut().zip(&total).for_each(|(l, &t)| *l = F::from_f64(t));
    total.iter_mut().zip(&rest64).for_each(|(t, &r)| *t = (1.0 + r).recip());
    group.inv_total.iter_mut().zip(&total).for_each(|(i, &t)| *i = F::from_f64(t));
    (group.max, group.argmax, group.rest) = (max, argmax, rest);
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
    // A contiguous batch of finite logits passes in one scan (in parallel chunks when large),
    // short rows included; with an adjustment, no `z_k + a_k` can exceed `max z + max a`
    // (rounding is monotone).
    let adjust_max = adjust.map(|a| a.iter().fold(F::neg_infinity(), |m, &v| if v > m { v } else { m }));
    if logits.as_slice().is_some_and(|z| all_chunks(z, |chunk| dispatch(FitsAll(chunk, adjust_max)))) {
        return Ok(());
    }
    struct Check<'a, F, M>(&'a ArrayRef2<F>, Option<&'a [F]>, M);
    impl<F: Float, M: Fn(usize, usize) -> bool> Kernel for Check<'_, F, M> {
        type Output = Result<()>;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> Self::Output {
            let Check(logits, adjust, masked_target) = self;
            for (row, z) in logits.rows().into_iter().enumerate() {
                // The common row is all finite: a branch-free scan says so; only other rows are
                // searched.
                let finite = match (z.as_slice(), adjust) {
                    (Some(z), adjust) => row_is_finite::<F, FMA>(z, adjust),
                    (None, None) => z.fold(true, |ok, v| ok & v.is_finite()),
                    (None, Some(a)) => z.iter().zip(a).fold(true, |ok, (&v, &a)| ok & (v + a).is_finite()),
                };
                if !finite {
                    first_bad_logit(row, z, adjust, &masked_target)?;
                }
            }
            Ok(())
        }
    }
    dispatch(Check(logits, adjust, masked_target))
}

/// Whether every logit of a chunk is finite and, given the adjustment's maximum, no `z + a` can
/// overflow.
struct FitsAll<'a, F>(&'a [F], Option<F>);

impl<F: Float> Kernel for FitsAll<'_, F> {
    type Output = bool;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> bool {
        match self.1 {
            None => all_finite::<F, FMA>(self.0),
            Some(a) => finite_max::<F, FMA>(self.0).is_some_and(|max| max + a < F::infinity()),
        }
    }
}

/// Whether every `z_k` (`z_k + a_k` with `adjust`) is finite, without a branch per value. With
/// `adjust` (finite), a finite `z_k + a_k` can only fail by overflowing to `±inf`; `-inf` is a
/// legal mask, so only `max (z + a) = +inf` counts, and the caller's slow path sorts out the rest.
#[inline(always)]
fn row_is_finite<F: Float, const FMA: bool>(z: &[F], adjust: Option<&[F]>) -> bool {
    // One call site per closure: a closure the compiler does not inline runs without AVX2.
    all_finite::<F, FMA>(z) && adjust.is_none_or(|adjust| lane_max_sum(z, adjust) < F::infinity())
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
        if is_nan_or_pos_inf(v) || adjust.is_some_and(|a| is_nan_or_pos_inf(v + a[class])) {
            return Err(LossError::NonFiniteLogit { row, class, value: v.as_f64() });
        }
        if v == F::neg_infinity() && masked_target(row, class) {
            return Err(LossError::MaskedTarget { row, class });
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
    softmax_family_into(logits, out, Finish::LogSoftmax)
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
    if logits.ncols() > 0 {
        if let Some(row) = logits.rows().into_iter().position(|z| z.iter().all(|&v| v == F::neg_infinity())) {
            return Err(LossError::FullyMasked { row });
        }
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

/// NaN and `+inf` are errors; `-inf` is a mask.
#[inline]
pub(crate) fn is_nan_or_pos_inf<F: Float>(v: F) -> bool {
    v.is_nan() || v == F::infinity()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of every short length, with ties, masked classes and fully masked rows, with and without
    /// an adjustment: [`group_lse`] gives [`row_lse`]'s exponentials and parts bit for bit.
    fn group_matches_rows<F: Float>() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for k in 1..=SHORT_ROW {
            let z: Vec<F> = (0..GROUP * k)
                .map(|i| match next() % 9 {
                    _ if i / k == 3 => F::neg_infinity(),
                    0 => F::neg_infinity(),
                    1 => F::from_f64(2.0),
                    n => F::from_f64((n as f64 - 4.0) * 7.3 + (next() % 1000) as f64 / 997.0),
                })
                .collect();
            let adjust: Vec<F> = (0..k).map(|c| F::from_f64(c as f64 * 0.37 - 1.0)).collect();
            for (adjust, rows) in [None, Some(&adjust[..])].into_iter().zip([GROUP, 5]) {
                // A partial group too: its lanes past the rows are padding.
                let z = &z[..rows * k];
                let mut out = vec![F::zero(); z.len()];
                let mut group = Group::new();
                group_lse::<F, false>(z, k, adjust, &mut group);
                group.write_rows(RowMap::Copy, &mut out);
                for (r, (z, out)) in z.chunks_exact(k).zip(out.chunks_exact(k)).enumerate() {
                    let mut expected = vec![F::zero(); k];
                    let args = adjust.map_or(ExpArgs::Logits(z), |a| ExpArgs::Adjusted(z, a));
                    let parts =
                        |s: Option<RowLse<F>>| s.map(|s| (s.max, s.argmax, s.rest, s.ln_total, s.inv_total));
                    let want = row_lse::<F, false>(&mut expected, args);
                    assert_eq!(parts(group.lse(r)), parts(want), "k = {k}, row {r}");
                    if want.is_some() {
                        assert_eq!(out, &expected[..], "k = {k}, row {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn grouped_short_rows_match_rows_one_at_a_time_bit_for_bit() {
        group_matches_rows::<f32>();
        group_matches_rows::<f64>();
    }
}
