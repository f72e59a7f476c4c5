//! Short rows eight at a time: up to [`GROUP`] rows of at most [`SHORT_ROW`] classes transposed so
//! that one vector lane holds one row, their log-sum-exp in full vectors ([`group_lse`]), and the
//! transposes back out, which apply each row's finishing map on the way.

use crate::Float;
use crate::float::exp_nonpos;
#[cfg(doc)]
use crate::softmax::row_lse;
use crate::softmax::{RowLse, ln_1p_rest};

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
        write_columns(&self.exp[..self.classes], map, out);
    }
}

/// Writes `columns` (`K` of them, lane `r` of each being row `r`) back row-major into `out`, as
/// `map` says: the inverse of [`transpose_rows`]. The length of `out` says how many rows to write.
#[inline(always)]
pub(crate) fn write_columns<F: Float>(columns: &[Lanes<F>], map: RowMap<F>, out: &mut [F]) {
    let k = columns.len();
    if out.len() == GROUP * k {
        scatter_group(columns, map, out);
    } else {
        let mut padded = [F::zero(); GROUP * SHORT_ROW];
        scatter_group(columns, map, &mut padded[..GROUP * k]);
        let n = out.len();
        out.copy_from_slice(&padded[..n]);
    }
}

/// What [`Group::write_rows`] writes for an exponential `v` of row `r`.
#[derive(Clone, Copy)]
pub(crate) enum RowMap<F> {
    /// `v`.
    Copy,
    /// `v·p_r`.
    Scale(Lanes<F>),
    /// `a_r·v − b_r`.
    MulSub { a: Lanes<F>, b: Lanes<F> },
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
        RowMap::MulSub { a, b } => {
            let [p0, p1, p2, p3, p4, p5, p6, p7] = a;
            let [c0, c1, c2, c3, c4, c5, c6, c7] = b;
            let f = |v: F, a: F, b: F| a * v - b;
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
    group.classes = classes;
    transpose_rows(z, adjust, &mut group.shifted[..classes]);
    columns_lse::<F, FMA>(group);
}

/// [`group_lse`] of a group whose `shifted` columns hold the (transformed) logits `x[c][r]`, class
/// `c` of row `r`, for its `classes` classes: replaces them by `x − m` and fills in the rest.
#[inline(always)]
pub(crate) fn columns_lse<F: Float, const FMA: bool>(group: &mut Group<F>) {
    let k = group.classes;
    // The steps are separate loops over whole columns of local lanes, which the compiler
    // vectorises.
    let x = &mut group.shifted[..k];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::ExpArgs;
    use crate::softmax::row_lse;

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
