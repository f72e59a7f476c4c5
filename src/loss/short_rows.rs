//! The softmax kernel's row finishers ([`one_hot_row`], [`plain_dense_row`]) for a [`Group`] of
//! short rows, in its transposed layout: the per-row factors are computed lane by lane, and the
//! gradient is written out once, already finished, as the group is transposed back. The one-hot
//! finisher works on lanes of any number ([`finish_one_hot`]), which the blocks of few-class rows
//! share.
//!
//! Each lane's arithmetic is that of the row finisher, operation for operation: results are bit
//! for bit those of finishing the rows one at a time.
//!
//! [`one_hot_row`]: super::kernel::one_hot_row
//! [`plain_dense_row`]: super::kernel::plain_dense_row

use super::kernel::{POW_GAMMA_MAX, argmax_fix, focal_factors, pow_focal_factors};
use crate::Float;
use crate::group::{GROUP, Group, Lanes, RowMap, SHORT_ROW};
use crate::softmax::log_one_minus_p;

/// A finished group: each row's loss, and its gradient as `map` of the exponentials, with the
/// label's entry of each row `(labels, values)` written after it, if given.
pub(super) struct Finished<F> {
    pub loss: Lanes<F>,
    pub map: RowMap<F>,
    pub label_grad: Option<([usize; GROUP], Lanes<F>)>,
    /// The argmax's entry of the rows that need it (`Some` lanes), written after the label's
    /// (boxed: rarely present, and the common group then moves a pointer, not the arrays).
    #[allow(clippy::type_complexity)] // the argmax and value of each lane
    pub argmax_grad: Option<Box<([usize; GROUP], [Option<F>; GROUP])>>,
}

impl<F: Float> Finished<F> {
    /// Writes the gradient of the group's rows (as many as `out` holds).
    #[inline(always)]
    pub fn write(&self, group: &Group<F>, out: &mut [F]) {
        group.write_rows(self.map, out);
        if let Some((labels, values)) = &self.label_grad {
            let rows = out.chunks_exact_mut(group.classes).zip(labels).zip(values);
            rows.for_each(|((row, &y), &v)| row[y] = v);
        }
        if let Some((argmax, values)) = self.argmax_grad.as_deref() {
            let rows = out.chunks_exact_mut(group.classes).zip(argmax).zip(values);
            rows.for_each(|((row, &k), v)| v.iter().for_each(|&v| row[k] = v));
        }
    }
}

/// Each lane's label as a float, as the lanes hold the argmax (`y < K ≤ 16`: converted from
/// `i32`, which vectorises, where a `usize` would be converted lane by lane).
#[inline(always)]
fn label_lanes<F: Float>(labels: &[usize; GROUP]) -> Lanes<F> {
    let mut label = [F::zero(); GROUP];
    label.iter_mut().zip(labels).for_each(|(l, &y)| *l = F::from_f64(f64::from(y as i32)));
    label
}

/// Per lane, `columns[labels[r]][r]`.
#[inline(always)]
fn at_label<F: Float>(columns: &[Lanes<F>; SHORT_ROW], labels: &[usize; GROUP]) -> Lanes<F> {
    let mut found = [F::zero(); GROUP];
    // `y < K ≤ SHORT_ROW`: the modulo only spares a bounds check.
    found.iter_mut().zip(labels).zip(0..GROUP).for_each(|((v, &y), r)| *v = columns[y % SHORT_ROW][r]);
    found
}

/// Each lane's `e^{x_y − m}` and `1 − p_y` for its label `y = labels[r]`, as
/// [`RowLse::one_minus_p`](crate::softmax::RowLse::one_minus_p) computes it: exact for the argmax.
#[inline(always)]
pub(super) fn label_parts<F: Float>(group: &Group<F>, labels: &[usize; GROUP]) -> (Lanes<F>, Lanes<F>) {
    let e_label = at_label(&group.exp, labels);
    let label: Lanes<F> = label_lanes(labels);
    let mut one_minus_p = [F::zero(); GROUP];
    for r in 0..GROUP {
        let (rest, inv_total) = (group.rest[r], group.inv_total[r]);
        let (at_argmax, elsewhere) = (rest * inv_total, F::one() - e_label[r] * inv_total);
        one_minus_p[r] = if label[r] == group.argmax[r] { at_argmax } else { elsewhere };
    }
    (e_label, one_minus_p)
}

/// [`one_hot_row`](super::kernel::one_hot_row) of every lane: row `r` has target class
/// `labels[r]` of coefficient `c[r] ≥ 0` and gradient scale `scale[r]`; a lane without a
/// log-sum-exp, or with `c = 0`, gets zeros.
#[inline(always)]
pub(super) fn one_hot_group<F: Float, const FMA: bool>(
    group: &Group<F>,
    labels: &[usize; GROUP],
    c: &Lanes<F>,
    gamma: F,
    scale: &Lanes<F>,
) -> Finished<F> {
    let (e_label, one_minus_p) = label_parts(group, labels);
    let mut lp = at_label(&group.shifted, labels);
    lp.iter_mut().zip(&group.ln_total).for_each(|(lp, &ln_total)| *lp -= ln_total);
    let label: Lanes<F> = label_lanes(labels);
    let mut at_max = [F::zero(); GROUP];
    at_max
        .iter_mut()
        .zip(&label)
        .zip(&group.argmax)
        .for_each(|((a, &y), &m)| *a = if y == m { F::one() } else { F::zero() });
    let parts = LabelLanes {
        e_label: &e_label,
        one_minus_p: &one_minus_p,
        lp: &lp,
        at_max: &at_max,
        max: &group.max,
        rest: &group.rest,
        ln_total: &group.ln_total,
        inv_total: &group.inv_total,
    };
    let (mut p_factor, mut label_grad, mut loss) =
        ([F::zero(); GROUP], [F::zero(); GROUP], [F::zero(); GROUP]);
    finish_one_hot::<F, FMA, GROUP>(parts, c, gamma, scale, (&mut p_factor, &mut label_grad, &mut loss));
    Finished {
        loss,
        map: RowMap::Scale(p_factor),
        label_grad: Some((*labels, label_grad)),
        argmax_grad: None,
    }
}

/// What [`finish_one_hot`] takes of each lane (a row of a group, or of a block of rows): its
/// label's `e^{x_y − m}`, `1 − p_y` and `log p_y`, 1 where the label is the argmax (else 0), and
/// the row's [`RowLse`](crate::softmax::RowLse) parts (`max = -inf` for a row without one).
pub(super) struct LabelLanes<'a, F> {
    pub e_label: &'a [F],
    pub one_minus_p: &'a [F],
    pub lp: &'a [F],
    pub at_max: &'a [F],
    pub max: &'a [F],
    pub rest: &'a [F],
    pub ln_total: &'a [F],
    pub inv_total: &'a [F],
}

/// [`one_hot_row`](super::kernel::one_hot_row)'s loss and gradient factors of every lane, from
/// its [`LabelLanes`], coefficient `c ≥ 0` and gradient scale: `c·m·(−log p_y)` into `loss`,
/// the gradient's `factor·inv_total` (times `e^{x_k − m}` off the label) into `p_factor` and
/// its label entry `−factor·(1 − p_y)` into `label_grad`, with `factor = scale·c·g` (`m`, `g`
/// the focal factors); zeros for a lane without a log-sum-exp or with `c = 0`.
///
/// `N ≥ loss.len()` sizes the focal factors' scratch lanes.
#[inline(always)]
pub(super) fn finish_one_hot<F: Float, const FMA: bool, const N: usize>(
    lanes: LabelLanes<'_, F>,
    c: &[F],
    gamma: F,
    scale: &[F],
    (p_factor, label_grad, loss): (&mut [F], &mut [F], &mut [F]),
) {
    // Every slice cut to the same length: the loops below need no bounds checks, and vectorise.
    let n = loss.len();
    let LabelLanes { e_label, one_minus_p, lp, at_max, max, rest, ln_total, inv_total } = lanes;
    let (e_label, one_minus_p, lp, at_max) = (&e_label[..n], &one_minus_p[..n], &lp[..n], &at_max[..n]);
    let (max, rest, ln_total, inv_total) = (&max[..n], &rest[..n], &ln_total[..n], &inv_total[..n]);
    let (c, scale, p_factor, label_grad) = (&c[..n], &scale[..n], &mut p_factor[..n], &mut label_grad[..n]);
    // Without focal modulation `m = g = 1`; a separate loop, else the powers would be evaluated anyway.
    let (mut m, mut g) = ([F::one(); N], [F::one(); N]);
    let (m, g) = (&mut m[..n], &mut g[..n]);
    if gamma != F::zero() && gamma <= F::from_f64(POW_GAMMA_MAX) {
        // The common `γ`, in a loop of its own (a branch on `γ` per lane costs the others), and
        // `γ = 2` in another, where `pow_focal_factors` then squares without a select.
        let mut lanes = |gamma: F| {
            for r in 0..n {
                let p = e_label[r] * inv_total[r];
                (m[r], g[r]) = pow_focal_factors::<F, FMA>(p, one_minus_p[r], lp[r], gamma);
            }
        };
        if gamma == F::from_f64(2.0) { lanes(F::from_f64(2.0)) } else { lanes(gamma) }
    } else if gamma != F::zero() {
        for r in 0..n {
            let p = e_label[r] * inv_total[r];
            let is_argmax = at_max[r] == F::one();
            let log_q = |p| log_one_minus_p(is_argmax, rest[r], ln_total[r], p);
            (m[r], g[r]) = focal_factors::<F, FMA>(p, one_minus_p[r], log_q, lp[r], gamma);
        }
    }
    // A row without a log-sum-exp counts as `c = 0`. (Each select below picks values computed
    // before it: a computation inside the branch leaves the lanes scalar.)
    let mut c_found = [F::zero(); N];
    let c_found = &mut c_found[..n];
    for r in 0..n {
        c_found[r] = if max[r] != F::neg_infinity() { c[r] } else { F::zero() };
    }
    for r in 0..n {
        let c = c_found[r];
        let factor = scale[r] * c * g[r];
        // factor · (p_y − 1), exact near p_y = 1.
        let (p, y, l) = (factor * inv_total[r], -factor * one_minus_p[r], -(c * m[r] * lp[r]));
        let on = c > F::zero();
        (p_factor[r], label_grad[r], loss[r]) =
            if on { (p, y, l) } else { (F::zero(), F::zero(), F::zero()) };
    }
}

/// Where the target mass of a group's rows comes from.
pub(super) enum GroupTargets<'a, F> {
    /// One label per lane.
    Labels(&'a [usize; GROUP]),
    /// Probability rows, transposed: `t[c][r]`, and each row's `Σ t` (from the validation).
    Probs(&'a [Lanes<F>], Lanes<F>),
}

/// [`plain_dense_row`](super::kernel::plain_dense_row) of every lane: the target mass of class
/// `k` in row `r` is `s[r]·(keep·t_rk + spread)`; a lane without a log-sum-exp gets zeros. With
/// probability targets, `group.exp` is turned into the gradient here.
#[inline(always)]
pub(super) fn plain_dense_group<F: Float>(
    group: &mut Group<F>,
    s: &Lanes<F>,
    (keep, spread): (F, F),
    targets: GroupTargets<'_, F>,
    scale: F,
) -> Finished<F> {
    let k = group.classes;
    let n = F::from_f64(k as f64);
    // A lane without a log-sum-exp gets no target mass: its gradient is then `+0` throughout.
    let (mut base, mut on_target) = ([F::zero(); GROUP], [F::zero(); GROUP]);
    for r in 0..GROUP {
        let s = if group.max[r] != F::neg_infinity() { s[r] } else { F::zero() };
        (base[r], on_target[r]) = (s * spread, s * keep);
    }
    let t_sum = match targets {
        GroupTargets::Labels(_) => [F::one(); GROUP],
        GroupTargets::Probs(_, sums) => sums,
    };
    let mut p_factor = [F::zero(); GROUP];
    for r in 0..GROUP {
        p_factor[r] = (base[r] * n + on_target[r] * t_sum[r]) * group.inv_total[r];
    }
    let ln_total = group.ln_total;
    // A class without target mass contributes nothing, even when masked (log p = -inf).
    // (Computed, then selected: a computation inside the branch leaves the lanes scalar.)
    let term = |c: F, d: F, ln_total: F| {
        let term = c * (d - ln_total);
        if c > F::zero() { term } else { F::zero() }
    };
    let mut loss = [F::zero(); GROUP];
    // Each lane's `t_{k*}` and estimate of `Σ_{k≠k*} c_k`, as `argmax_fix` takes them. Every
    // `Σ_{k≠k*} c_k ≥ spread·s·(K − 1)` and `c_max ≤ (keep + spread)·s`: where the first is at
    // least 1/24 of the second (label smoothing at the usual ε), no lane needs the exact entry
    // (which it does below 1/32; the margin is far beyond rounding).
    let may_need = spread * F::from_f64(24.0 * (k as f64 - 1.0)) < keep + spread;
    let (mut t_max, mut estimate) = ([F::zero(); GROUP], [F::zero(); GROUP]);
    let others = |r: usize| base[r] * F::from_f64(k as f64 - 1.0);
    let (map, label_grad) = match targets {
        GroupTargets::Labels(labels) => {
            // Every class has mass `base`, so the lanes sum `x − m` alone and the loss term is
            // `base·(Σ (x − m) − K ln_total)`; the label's own terms are added after the pass,
            // as `plain_dense_row` does (the `+ 0` is its fold over its unused lanes).
            let mut sum = [F::zero(); GROUP];
            for d in &group.shifted[..k] {
                sum.iter_mut().zip(d).for_each(|(sum, &d)| *sum += d);
            }
            for r in 0..GROUP {
                let all = base[r] * ((sum[r] + F::zero()) - n * ln_total[r]);
                loss[r] = if base[r] > F::zero() { all } else { F::zero() };
            }
            let (e_label, d_label) = (at_label(&group.exp, labels), at_label(&group.shifted, labels));
            let mut label_grad = [F::zero(); GROUP];
            for r in 0..GROUP {
                let (c, d) = (base[r] + on_target[r], d_label[r]);
                loss[r] += term(c, d, ln_total[r]) - term(base[r], d, ln_total[r]);
                label_grad[r] = scale * (p_factor[r] * e_label[r] - c);
            }
            if may_need {
                let label: Lanes<F> = label_lanes(labels);
                for r in 0..GROUP {
                    let elsewhere = label[r] != group.argmax[r];
                    estimate[r] = others(r) + if elsewhere { on_target[r] } else { F::zero() };
                    t_max[r] = if elsewhere { F::zero() } else { F::one() };
                }
            }
            let (mut a, mut b) = ([F::zero(); GROUP], [F::zero(); GROUP]);
            a.iter_mut().zip(&p_factor).for_each(|(a, &p)| *a = scale * p);
            b.iter_mut().zip(&base).for_each(|(b, &base)| *b = scale * base);
            (RowMap::MulSub { a, b }, Some((*labels, label_grad)))
        }
        GroupTargets::Probs(t, _) => {
            if may_need {
                for (c, t) in t[..k].iter().enumerate() {
                    let c = F::from_f64(c as f64);
                    for r in 0..GROUP {
                        t_max[r] += if group.argmax[r] == c { t[r] } else { F::zero() };
                    }
                }
                for r in 0..GROUP {
                    estimate[r] = others(r) + on_target[r] * (t_sum[r] - t_max[r]);
                }
            }
            // The mass `c[k][r]` of every term and the gradient, as flat loops over copies of
            // the lanes per column (a loop over columns would be vectorised across columns).
            let (bases, on_targets) = ([base; SHORT_ROW], [on_target; SHORT_ROW]);
            let mut mass = bases;
            let masses = mass[..k].as_flattened_mut().iter_mut().zip(on_targets.as_flattened());
            masses.zip(t.as_flattened()).for_each(|((c, &o), &t)| *c += o * t);
            for (c, d) in mass[..k].iter().zip(&group.shifted) {
                for r in 0..GROUP {
                    loss[r] += term(c[r], d[r], ln_total[r]);
                }
            }
            let factors = [p_factor; SHORT_ROW];
            let grad = group.exp[..k].as_flattened_mut().iter_mut().zip(factors.as_flattened());
            grad.zip(mass.as_flattened()).for_each(|((e, &p), &c)| *e = scale * (p * *e - c));
            (RowMap::Copy, None)
        }
    };
    let mut value = [F::zero(); GROUP];
    for r in 0..GROUP {
        value[r] = if group.max[r] != F::neg_infinity() { -loss[r] } else { F::zero() };
    }
    // The lanes whose argmax entry `plain_dense_row` replaces (branch-free), then their values.
    let mut needed = [false; GROUP];
    if may_need {
        for r in 0..GROUP {
            let c_max = base[r] + on_target[r] * t_max[r];
            let q_mass = c_max * (group.rest[r] * group.inv_total[r]);
            needed[r] = (estimate[r] + q_mass < c_max * F::from_f64(1.0 / 32.0))
                & (group.max[r] != F::neg_infinity());
        }
    }
    let argmax_grad = if may_need && needed.iter().any(|&n| n) {
        let lanes = ArgmaxLanes { needed, base, on_target, t_max, estimate, scale };
        Some(argmax_entries(group, lanes, &targets))
    } else {
        None
    };
    Finished { loss: value, map, label_grad, argmax_grad }
}

/// The lanes of a group of [`plain_dense_group`] whose argmax entry is replaced, with what
/// [`argmax_fix`] takes for each.
struct ArgmaxLanes<F> {
    needed: [bool; GROUP],
    base: Lanes<F>,
    on_target: Lanes<F>,
    t_max: Lanes<F>,
    estimate: Lanes<F>,
    scale: F,
}

/// The argmax's gradient entry of the `needed` lanes, out of line: rare (confident rows whose
/// target is nearly their argmax alone), and kept out of the common group's code.
#[cold]
#[inline(never)]
#[allow(clippy::type_complexity)] // the argmax and value of each lane
fn argmax_entries<F: Float>(
    group: &Group<F>,
    lanes: ArgmaxLanes<F>,
    targets: &GroupTargets<'_, F>,
) -> Box<([usize; GROUP], [Option<F>; GROUP])> {
    let ArgmaxLanes { needed, base, on_target, t_max, estimate, scale } = lanes;
    let k = group.classes;
    let mut argmax = [0; GROUP];
    argmax.iter_mut().zip(&group.argmax).for_each(|(a, &v)| *a = v.as_f64() as usize);
    let mut values = [None; GROUP];
    for r in (0..GROUP).filter(|&r| needed[r]) {
        let rest_mass = || match targets {
            GroupTargets::Labels(_) => estimate[r],
            GroupTargets::Probs(t, _) => {
                let a = argmax[r];
                let others = base[r] * F::from_f64(k as f64 - 1.0);
                others + on_target[r] * (0..k).filter(|&c| c != a).fold(F::zero(), |s, c| s + t[c][r])
            }
        };
        let c_max = base[r] + on_target[r] * t_max[r];
        values[r] = argmax_fix(c_max, estimate[r], (group.rest[r], group.inv_total[r]), rest_mass, scale);
    }
    Box::new((argmax, values))
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, s};

    use crate::{Float, Loss, SoftmaxLoss, Targets};

    /// Every loss of the family on short rows: the grouped path (a contiguous batch) against rows
    /// one at a time (the same values with a column stride), bit for bit, for every `K ≤ 16` and
    /// batches with a partial last group, masked classes, `-inf` rows, ties and sample weights.
    fn grouped_rows_match_rows_one_at_a_time<F: Float>() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // 21 rows: groups, the last partial; 150: blocks of rows, the last partial.
        for (k, b) in (1..=16).flat_map(|k| [(k, 21), (k, 150)]) {
            let wide = Array2::from_shape_fn((b, 2 * k), |(i, j)| match next() % 11 {
                _ if i == 5 => F::neg_infinity(),
                0 if j / 2 != (i * 3) % k => F::neg_infinity(),
                1 => F::from_f64(1.5),
                n => F::from_f64((n as f64 - 5.0) * 3.1 + (next() % 1000) as f64 / 999.0),
            });
            let finite = wide.mapv(|v| if v == F::neg_infinity() { F::from_f64(-7.0) } else { v });
            let labels: Vec<usize> = (0..b).map(|i| (i * 3) % k).collect();
            let weights: Vec<F> =
                (0..b).map(|i| F::from_f64(if i == 5 { 0.0 } else { 0.5 + (i % 4) as f64 })).collect();
            let probs = Array2::from_shape_fn((b, k), |(i, j)| {
                F::from_f64(if j == (i * 3) % k { 0.5 } else { 0.5 / (k as f64 - 1.0).max(1.0) })
            });
            let probs = if k == 1 { Array2::from_elem((b, 1), F::one()) } else { probs };
            // Strided targets too: their rows are read one at a time.
            let wide_labels = Array1::from_shape_fn(2 * b, |i| labels[i / 2]);
            let strided_labels = wide_labels.slice(s![..;2]);
            let wide_probs = Array2::from_shape_fn((b, 2 * k), |(i, j)| probs[[i, j / 2]]);
            let strided_probs = wide_probs.slice(s![.., ..;2]);
            let prior: Vec<F> = (0..k).map(|j| F::from_f64(1.0 + j as f64)).collect();
            let losses = [
                SoftmaxLoss::cross_entropy(),
                SoftmaxLoss::logit_adjusted(&prior).unwrap(),
                SoftmaxLoss::class_weighted(&prior).unwrap(),
                SoftmaxLoss::focal(F::from_f64(2.0)).unwrap(),
                SoftmaxLoss::focal(F::from_f64(0.5)).unwrap().with_class_weights(&prior).unwrap(),
                SoftmaxLoss::cross_entropy().with_label_smoothing(F::from_f64(0.1)).unwrap(),
                SoftmaxLoss::logit_adjusted(&prior).unwrap().with_label_smoothing(F::from_f64(0.2)).unwrap(),
            ];
            for loss in &losses {
                let soft = [
                    Targets::probs(&probs),
                    Targets::probs(&probs).with_sample_weights(&weights),
                    Targets::probs(strided_probs),
                ];
                let hard = [
                    Targets::labels(&labels),
                    Targets::labels(&labels).with_sample_weights(&weights),
                    Targets::labels(strided_labels),
                ];
                for targets in hard.into_iter().chain(soft) {
                    // Masks where the loss allows them (no target mass on a masked class).
                    let masked_ok = loss.loss(&wide.slice(s![.., ..;2]), targets.clone()).is_ok();
                    let strided =
                        if masked_ok { wide.slice(s![.., ..;2]) } else { finite.slice(s![.., ..;2]) };
                    let contiguous = strided.to_owned();
                    assert!(contiguous.is_standard_layout() && (k == 1 || strided.as_slice().is_none()));
                    let grouped = loss.loss_and_grad(&contiguous, targets.clone()).unwrap();
                    let one_at_a_time = loss.loss_and_grad(&strided, targets.clone()).unwrap();
                    assert_eq!(grouped.0.to_bits_u64(), one_at_a_time.0.to_bits_u64(), "k = {k}, {loss:?}");
                    assert!(bits_equal(&grouped.1, &one_at_a_time.1), "k = {k}, {loss:?}");
                    let (mut values, mut grad) = (Array1::zeros(b), Array2::zeros((b, k)));
                    loss.per_sample_into(&contiguous, &targets, &mut values, Some(&mut grad)).unwrap();
                    let (row_values, row_grad) =
                        loss.per_sample_loss_and_grad(&strided, targets.clone()).unwrap();
                    assert!(bits_equal(&values, &row_values) && bits_equal(&grad, &row_grad), "k = {k}");
                    let only_losses = loss.per_sample_loss(&contiguous, targets).unwrap();
                    assert!(bits_equal(&only_losses, &row_values), "k = {k}");
                }
            }
        }
    }

    trait Bits {
        fn to_bits_u64(self) -> u64;
    }

    impl<F: Float> Bits for F {
        fn to_bits_u64(self) -> u64 {
            // f32 → f64 is exact, so equal f64 bits mean equal values (and signs of zero).
            self.as_f64().to_bits()
        }
    }

    fn bits_equal<F: Float, D: ndarray::Dimension>(
        a: &ndarray::Array<F, D>,
        b: &ndarray::Array<F, D>,
    ) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| x.to_bits_u64() == y.to_bits_u64())
    }

    #[test]
    fn grouped_short_rows_finish_as_rows_one_at_a_time_bit_for_bit() {
        grouped_rows_match_rows_one_at_a_time::<f32>();
        grouped_rows_match_rows_one_at_a_time::<f64>();
    }
}
