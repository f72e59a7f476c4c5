//! The softmax kernel's row finishers ([`one_hot_row`], [`plain_dense_row`]) for a [`Group`] of
//! short rows, in its transposed layout: the per-row factors are computed lane by lane, then every
//! column is scaled at once, so a group is written out once, already finished.
//!
//! Each lane's arithmetic is that of the row finisher, operation for operation: results are bit
//! for bit those of finishing the rows one at a time.
//!
//! [`one_hot_row`]: super::kernel::one_hot_row
//! [`plain_dense_row`]: super::kernel::plain_dense_row

use super::kernel::focal_factors;
use crate::Float;
use crate::softmax::{GROUP, Group, Lanes, SHORT_ROW};

/// Per lane: whether the row has a log-sum-exp (is not all `-inf`).
#[inline(always)]
fn found<F: Float>(group: &Group<F>) -> [bool; GROUP] {
    group.max.map(|m| m != F::neg_infinity())
}

/// [`one_hot_row`](super::kernel::one_hot_row) of every lane: row `r` has target class
/// `labels[r]` of coefficient `c[r] ≥ 0`. Turns `group.exp` into `scale · ∂ℓ/∂z` and returns each
/// row's `ℓ`; a lane without a log-sum-exp, or with `c = 0`, gets zeros.
#[inline(always)]
pub(super) fn one_hot_group<F: Float>(
    group: &mut Group<F>,
    labels: &[usize; GROUP],
    c: &[F; GROUP],
    gamma: F,
    scale: F,
) -> [F; GROUP] {
    let active = found(group);
    let (mut lp, mut e_label, mut on_argmax) = ([F::zero(); GROUP], [F::zero(); GROUP], [false; GROUP]);
    for r in 0..GROUP {
        let y = labels[r];
        lp[r] = group.shifted[y][r] - group.ln_total[r];
        e_label[r] = group.exp[y][r];
        on_argmax[r] = F::from_f64(y as f64) == group.argmax[r];
    }
    let (mut p_factor, mut label_grad, mut loss) =
        ([F::zero(); GROUP], [F::zero(); GROUP], [F::zero(); GROUP]);
    let mut one_minus_p = [F::zero(); GROUP];
    for r in 0..GROUP {
        // `RowLse::one_minus_p`: exact for the argmax.
        let inv_total = group.inv_total[r];
        one_minus_p[r] =
            if on_argmax[r] { group.rest[r] * inv_total } else { F::one() - e_label[r] * inv_total };
    }
    // Without focal modulation, `m = g = 1` (a separate loop: `powf` would be evaluated anyway).
    let mut m = [F::one(); GROUP];
    let mut g = [F::one(); GROUP];
    if gamma != F::zero() {
        for r in 0..GROUP {
            let p = e_label[r] * group.inv_total[r];
            (m[r], g[r]) = focal_factors(p, one_minus_p[r], lp[r], gamma);
        }
    }
    for r in 0..GROUP {
        let (inv_total, one_minus_p, m) = (group.inv_total[r], one_minus_p[r], m[r]);
        let factor = scale * c[r] * g[r];
        let on = active[r] && c[r] > F::zero();
        p_factor[r] = if on { factor * inv_total } else { F::zero() };
        // factor · (p_y − 1), exact near p_y = 1.
        label_grad[r] = if on { -factor * one_minus_p } else { F::zero() };
        loss[r] = if on { -(c[r] * m * lp[r]) } else { F::zero() };
    }
    scale_columns(&mut group.exp[..group.classes], &p_factor);
    for r in 0..GROUP {
        group.exp[labels[r]][r] = label_grad[r];
    }
    loss
}

/// Where the target mass of a group's rows comes from.
pub(super) enum GroupTargets<'a, F> {
    /// One label per lane.
    Labels(&'a [usize; GROUP]),
    /// Probability rows, transposed: `t[c][r]`.
    Probs(&'a [[F; GROUP]]),
}

/// [`plain_dense_row`](super::kernel::plain_dense_row) of every lane: the target mass of class
/// `k` in row `r` is `s[r]·(keep·t_rk + spread)`. Turns `group.exp` into `scale · ∂ℓ/∂z` and
/// returns each row's `ℓ`; a lane without a log-sum-exp gets zeros.
#[inline(always)]
pub(super) fn plain_dense_group<F: Float>(
    group: &mut Group<F>,
    s: &[F; GROUP],
    (keep, spread): (F, F),
    targets: GroupTargets<'_, F>,
    scale: F,
) -> [F; GROUP] {
    let active = found(group);
    let n = F::from_f64(group.classes as f64);
    let (mut base, mut on_target) = ([F::zero(); GROUP], [F::zero(); GROUP]);
    base.iter_mut().zip(s).for_each(|(b, &s)| *b = s * spread);
    on_target.iter_mut().zip(s).for_each(|(o, &s)| *o = s * keep);
    let mut t_sum = [F::zero(); GROUP];
    match targets {
        GroupTargets::Labels(_) => t_sum = [F::one(); GROUP],
        GroupTargets::Probs(t) => {
            for col in t {
                t_sum.iter_mut().zip(col).for_each(|(sum, &t)| *sum += t);
            }
        }
    }
    let mut p_factor = [F::zero(); GROUP];
    for r in 0..GROUP {
        p_factor[r] = (base[r] * n + on_target[r] * t_sum[r]) * group.inv_total[r];
    }
    let ln_total = group.ln_total;
    // A class without target mass contributes nothing, even when masked (log p = -inf).
    let term = |c: F, d: F, ln_total: F| if c > F::zero() { c * (d - ln_total) } else { F::zero() };
    let mut e_label = [F::zero(); GROUP];
    if let GroupTargets::Labels(labels) = targets {
        e_label.iter_mut().zip(labels).zip(0..GROUP).for_each(|((e, &y), r)| *e = group.exp[y][r]);
    }
    let mut loss = [F::zero(); GROUP];
    let columns = group.exp[..group.classes].iter_mut().zip(&group.shifted);
    for (k, (e, d)) in columns.enumerate() {
        let mut c = base;
        if let GroupTargets::Probs(t) = targets {
            c.iter_mut().zip(&on_target).zip(&t[k]).for_each(|((c, &o), &t)| *c += o * t);
        }
        for r in 0..GROUP {
            loss[r] += term(c[r], d[r], ln_total[r]);
            e[r] = scale * (p_factor[r] * e[r] - c[r]);
        }
    }
    // The label's own mass: the pass above gave it `base` only.
    if let GroupTargets::Labels(labels) = targets {
        for r in 0..GROUP {
            let (y, c) = (labels[r], base[r] + on_target[r]);
            let d = group.shifted[y][r];
            loss[r] += term(c, d, ln_total[r]) - term(base[r], d, ln_total[r]);
            group.exp[y][r] = scale * (p_factor[r] * e_label[r] - c);
        }
    }
    // Rows without a log-sum-exp are zeros.
    for col in &mut group.exp[..group.classes] {
        col.iter_mut().zip(&active).for_each(|(v, &on)| *v = if on { *v } else { F::zero() });
    }
    let mut value = [F::zero(); GROUP];
    value.iter_mut().zip(&loss).zip(&active).for_each(|((v, &l), &on)| *v = if on { -l } else { F::zero() });
    value
}

/// `columns[c][r] *= factor[r]`, as one flat loop over a copy of `factor` per column: a loop over
/// columns would be vectorised across columns, with shuffles.
#[inline(always)]
fn scale_columns<F: Float>(columns: &mut [Lanes<F>], factor: &Lanes<F>) {
    let factors = [*factor; SHORT_ROW];
    let factors = factors[..columns.len()].as_flattened();
    columns.as_flattened_mut().iter_mut().zip(factors).for_each(|(v, &f)| *v *= f);
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, s};

    use crate::{Float, SoftmaxLoss, Targets};

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
        for k in 1..=16 {
            let b = 21;
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
                let soft = [Targets::probs(&probs), Targets::probs(&probs).with_sample_weights(&weights)];
                let hard = [Targets::labels(&labels), Targets::labels(&labels).with_sample_weights(&weights)];
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
                    loss.per_sample_loss_and_grad_into(&contiguous, targets.clone(), &mut values, &mut grad)
                        .unwrap();
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
