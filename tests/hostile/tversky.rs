//! The Tversky loss: one minus the soft Tversky index per class, a statistic of the whole batch.

use super::*;

/// Statistics `(TP_k, FP_k, FN_k, W)` for `TverskyStats::from_parts`.
pub(crate) type TverskyParts = (Vec<f64>, Vec<f64>, Vec<f64>, f64);

/// A Tversky case: logits, targets (labels or probability rows for the multiclass mode, multi-hot
/// rows for the multilabel one), sample weights, `(α, β, smooth, ε, γ)`.
#[derive(Debug, Clone)]
pub(crate) struct TverskyCase<F> {
    pub(crate) multilabel: bool,
    pub(crate) logits: Array2<F>,
    pub(crate) labels: Vec<usize>,
    pub(crate) rows: Option<Array2<F>>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) params: (f64, f64, f64, f64, f64),
    pub(crate) sum: bool,
}

pub(crate) fn tversky_case<F: Hostile>() -> impl Strategy<Value = TverskyCase<F>> {
    // The parameters in every bit pattern within [1e-6, 1e6] (ε within [1e-12, 1]), see the
    // module docs.
    let any_pos = || {
        any::<u64>()
            .prop_map(|b| f64::from_bits(b).abs())
            .prop_filter("in [1e-6, 1e6]", |v| (1e-6..=1e6).contains(v))
    };
    let weight = move || prop_oneof![2 => Just(0.5), 1 => Just(1.0), 1 => 0.0f64..2.0, 1 => any_pos()];
    let smooth = prop_oneof![2 => Just(0.0), 1 => Just(1.0), 1 => any_pos()];
    let eps = prop_oneof![2 => Just(1e-7), 1 => (-12.0f64..0.0).prop_map(|e| 10f64.powf(e))];
    let gamma = prop_oneof![2 => Just(1.0), 1 => Just(2.0), 1 => Just(4.0 / 3.0), 1 => 1.0f64..10.0];
    let params = (weight(), weight(), smooth, eps, gamma);
    (1usize..4, 1usize..5, any::<bool>()).prop_flat_map(move |(b, k, multilabel)| {
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(0..k, b),
            proptest::option::weighted(0.4, proptest::collection::vec(0.0f64..1.0, b * k)),
            proptest::option::weighted(0.4, weights::<F>(b)),
            params.clone(),
            any::<bool>(),
        )
            .prop_map(move |(z, labels, raw, weights, params, sum)| {
                let rows = raw.map(|raw| {
                    let mut t = Array2::from_shape_vec((b, k), raw).unwrap();
                    for mut row in t.rows_mut() {
                        if multilabel {
                            row.mapv_inplace(|v| (v > 0.5) as u8 as f64);
                        } else {
                            let s: f64 = row.sum() + 1e-3;
                            row.mapv_inplace(|v| (v + 1e-3 / k as f64) / s);
                        }
                    }
                    t.mapv(F::from_f64)
                });
                TverskyCase {
                    multilabel,
                    logits: Array2::from_shape_vec((b, k), z).unwrap(),
                    labels,
                    rows,
                    weights,
                    params,
                    sum,
                }
            })
    })
}

impl<F: Hostile> TverskyCase<F> {
    pub(crate) fn target(&self, i: usize, j: usize) -> f64 {
        match &self.rows {
            Some(t) => t[[i, j]].as_f64(),
            None => (j == self.labels[i]) as u8 as f64,
        }
    }

    pub(crate) fn targets(&self) -> Targets<'_, F> {
        let t = match (&self.rows, self.multilabel) {
            (Some(t), true) => Targets::multi_hot(t),
            (Some(t), false) => Targets::probs(t),
            (None, _) => Targets::labels(&self.labels),
        };
        match &self.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    }

    /// `(reduced, per-sample)` outputs, and the largest `|a_k| + |b_k|` (which multiplies the
    /// exponentials' flush to 0 in the gradient, see [`close`]).
    pub(crate) fn reference(&self) -> (Expect<Outputs>, X) {
        match self.outputs() {
            Some((outputs, slope)) => (Expect::Value(outputs), slope),
            None => (Expect::Invalid, X::new(1.0)),
        }
    }

    pub(crate) fn outputs(&self) -> Option<(Outputs, X)> {
        self.outputs_with(None)
    }

    /// [`Self::outputs`] with the statistics `(TP_k, FP_k, FN_k, W)` given (merged ones) instead
    /// of the batch's own.
    #[allow(clippy::needless_range_loop)] // the per-class sums index several arrays at once
    pub(crate) fn outputs_with(&self, stats: Option<&TverskyParts>) -> Option<(Outputs, X)> {
        let (b, k) = self.logits.dim();
        let (alpha, beta, smooth, eps, gamma) = self.params;
        let mut p = Vec::new();
        let mut q = Vec::new();
        let mut s = Vec::new();
        for i in 0..b {
            let w = self.weights.as_ref().map_or(1.0, |w| w[i].as_f64());
            if !(w.is_finite() && w >= 0.0) {
                return None;
            }
            let z: Vec<f64> = (0..k).map(|j| self.logits[[i, j]].as_f64()).collect();
            for j in 0..k {
                if z[j].is_nan() || z[j] == f64::INFINITY {
                    return None;
                }
                if z[j] == f64::NEG_INFINITY && self.target(i, j) > 0.0 && w > 0.0 {
                    return None;
                }
            }
            s.push(X::new(w));
            if self.multilabel {
                let inf = |v: f64| v == f64::NEG_INFINITY;
                p.push(
                    z.iter().map(|&v| if inf(v) { X::ZERO } else { sigmoid(X::new(v)) }).collect::<Vec<_>>(),
                );
                q.push(
                    z.iter()
                        .map(|&v| if inf(v) { X::new(1.0) } else { sigmoid(X::new(-v)) })
                        .collect::<Vec<_>>(),
                );
            } else {
                match one_vs_rest_row(&z) {
                    // A fully masked row, valid only ignored.
                    None => {
                        p.push(vec![X::ZERO; k]);
                        q.push(vec![X::new(1.0); k]);
                    }
                    Some((pr, ..)) => {
                        // 1 − p_j as the others' sum, without cancellation.
                        let rest = (0..k)
                            .map(|j| (0..k).filter(|&c| c != j).fold(X::ZERO, |t, c| t.add(pr[c])))
                            .collect();
                        p.push(pr);
                        q.push(rest);
                    }
                }
            }
        }
        let (mut tp, mut fp, mut fn_, mut present) =
            (vec![X::ZERO; k], vec![X::ZERO; k], vec![X::ZERO; k], vec![false; k]);
        for i in 0..b {
            for j in 0..k {
                let y = X::new(self.target(i, j));
                tp[j] = tp[j].add(s[i].mul(y).mul(p[i][j]));
                fp[j] = fp[j].add(s[i].mul(X::new(1.0 - self.target(i, j))).mul(p[i][j]));
                fn_[j] = fn_[j].add(s[i].mul(y).mul(q[i][j]));
                present[j] |= !s[i].mul(y).is_zero();
            }
        }
        let mut total_weight = s.iter().fold(X::ZERO, |t, &v| t.add(v));
        if let Some((t, f, n, w)) = stats {
            let x = |v: &[f64]| v.iter().map(|&v| X::new(v)).collect::<Vec<_>>();
            (tp, fp, fn_, total_weight) = (x(t), x(f), x(n), X::new(*w));
            present = (0..k).map(|j| !tp[j].add(fn_[j]).is_zero()).collect();
        }
        // The statistics are sums in f64 (a documented limit): beyond it, an overflow is accepted.
        note_sum(total_weight);
        for j in 0..k {
            note_sum(tp[j].add(X::new(alpha).mul(fp[j])).add(X::new(beta).mul(fn_[j])));
        }
        let kx = X::new(k as f64);
        let (mut mean, mut mean_bound) = (X::ZERO, X::ZERO);
        let mut d_tp = vec![X::ZERO; k];
        let mut d_p = vec![X::ZERO; k];
        for j in 0..k {
            if !present[j] {
                continue;
            }
            let num = tp[j].add(X::new(smooth));
            let den = tp[j].add(X::new(alpha).mul(fp[j])).add(X::new(beta).mul(fn_[j])).add(X::new(smooth));
            let clamped_by_eps = X::new(eps).gt(den);
            let clamped = if clamped_by_eps { X::new(eps) } else { den };
            let ti = num.div(clamped);
            // 1 − TI = (α·FP + β·FN)/D, without cancellation where unclamped.
            let one_minus = if clamped_by_eps {
                X::new(1.0).sub(ti)
            } else {
                X::new(alpha).mul(fp[j]).add(X::new(beta).mul(fn_[j])).div(den)
            };
            mean = mean.add(one_minus.div(kx));
            mean_bound = mean_bound.add(one_minus.abs().add(ti).div(kx));
            if !clamped_by_eps {
                let through = num.div(clamped.mul(clamped));
                d_tp[j] = X::new(1.0).div(clamped).sub(through.mul(X::new(1.0 - alpha - beta)));
                d_p[j] = through.mul(X::new(alpha)).neg();
            } else {
                d_tp[j] = X::new(1.0).div(clamped);
            }
        }
        let (loss, loss_bound, outer) = if gamma == 1.0 {
            (mean, mean_bound, X::new(1.0))
        } else if mean.is_zero() {
            (X::ZERO, X::ZERO, X::ZERO)
        } else {
            let ln = mean.ln();
            let loss = X::new(gamma * ln).exp();
            let outer = X::new(gamma).mul(X::new((gamma - 1.0) * ln).exp());
            (loss, loss.add(outer.mul(mean_bound)), outer)
        };
        // a_k = ∂L/∂TP_k, b_k = ∂L/∂P_k.
        let a: Vec<X> = (0..k).map(|j| outer.mul(d_tp[j]).div(kx).neg()).collect();
        let bk: Vec<X> = (0..k).map(|j| outer.mul(d_p[j]).div(kx).neg()).collect();
        let c = (0..k).fold(X::ZERO, |t, j| t.add(a[j].mul(tp[j])).add(bk[j].mul(tp[j].add(fp[j]))));
        let c_bound =
            (0..k).fold(X::ZERO, |t, j| t.add(a[j].mul(tp[j]).abs()).add(bk[j].mul(tp[j].add(fp[j])).abs()));
        let scale = if self.sum { total_weight } else { X::new(1.0) };
        let mut reduced = vec![(scale.mul(loss), scale.mul(loss_bound))];
        let mut losses = Vec::new();
        let mut grads = Vec::new();
        for i in 0..b {
            let g: Vec<X> =
                (0..k).map(|j| s[i].mul(a[j].mul(X::new(self.target(i, j))).add(bk[j]))).collect();
            let g_bound: Vec<X> = (0..k)
                .map(|j| s[i].mul(a[j].mul(X::new(self.target(i, j))).abs().add(bk[j].abs())))
                .collect();
            let dot = (0..k).fold(X::ZERO, |t, j| t.add(p[i][j].mul(g[j])));
            let dot_bound = (0..k).fold(X::ZERO, |t, j| t.add(p[i][j].mul(g_bound[j])));
            if s[i].is_zero() {
                losses.push((X::ZERO, X::ZERO));
                grads.extend((0..k).map(|_| (X::ZERO, X::ZERO)));
                continue;
            }
            let l = s[i].mul(loss).add(total_weight.mul(dot)).sub(s[i].mul(c));
            let lb = s[i].mul(loss_bound).add(total_weight.mul(dot_bound)).add(s[i].mul(c_bound));
            losses.push((l, lb));
            for j in 0..k {
                let (d, db) = if self.multilabel {
                    let pq = p[i][j].mul(q[i][j]);
                    (g[j].mul(pq), g_bound[j].mul(pq))
                } else {
                    (p[i][j].mul(g[j].sub(dot)), p[i][j].mul(g_bound[j].add(dot_bound)))
                };
                grads.push((d, db));
            }
        }
        if total_weight.is_zero() {
            reduced = vec![(X::ZERO, X::ZERO)];
            reduced.extend((0..b * k).map(|_| (X::ZERO, X::ZERO)));
            losses = vec![(X::ZERO, X::ZERO); b];
            let mut per_sample = losses;
            per_sample.extend((0..b * k).map(|_| (X::ZERO, X::ZERO)));
            return Some(((reduced, per_sample), X::new(1.0)));
        }
        reduced.extend(grads.iter().map(|&(g, b)| (scale.mul(g), scale.mul(b))));
        let mut per_sample = losses;
        per_sample.extend(grads.iter().map(|&(g, b)| (total_weight.mul(g), total_weight.mul(b))));
        let slope = (0..k).fold(X::new(1.0), |m, j| {
            let v = a[j].abs().add(bk[j].abs());
            if v.gt(m) { v } else { m }
        });
        Some(((reduced, per_sample), slope))
    }
}

pub(crate) fn run_tversky<F: Hostile>(case: TverskyCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let (alpha, beta, smooth, eps, gamma) = case.params;
    let base = if case.multilabel { TverskyLoss::<F>::multilabel() } else { TverskyLoss::multiclass() };
    let built = base
        .with_weights(alpha, beta)
        .and_then(|l| l.with_smooth(smooth))
        .and_then(|l| l.with_eps(eps))
        .and_then(|l| l.with_gamma(gamma));
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (expect, slope) = case.reference();
    let (reduced, per_sample) = match expect {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
    };
    // A probability flushed to 0 loses its term `p·|∂L/∂p|`, a weight times `|a_k| + |b_k|`; the
    // per-sample gradients are `W` times the batch's.
    let total = case.weights.as_ref().map_or(X::new(case.logits.nrows() as f64), |w| {
        w.iter().filter(|v| v.as_f64().is_finite()).fold(X::ZERO, |t, v| t.add(X::new(v.as_f64().abs())))
    });
    let coef = weight_coef(&[case.weights.as_ref()]).mul(slope).mul(if total.gt(X::new(1.0)) {
        total
    } else {
        X::new(1.0)
    });
    let got = loss.loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("TverskyLoss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = l.to_vec();
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("TverskyLoss::per_sample_loss_and_grad", &case, &got, &per_sample, coef)
}

#[test]
fn tversky_loss_on_arbitrary_bits() {
    run("tversky f32", CASES / 3, tversky_case::<f32>(), run_tversky::<f32>);
    run("tversky f64", CASES / 3, tversky_case::<f64>(), run_tversky::<f64>);
}

/// Arbitrary Tversky statistics for `k` classes (sometimes `k + 1`): sums of any bit pattern or
/// magnitude, mostly valid.
pub(crate) fn tversky_stats_strategy(k: usize) -> BoxedStrategy<TverskyParts> {
    let sum = || {
        prop_oneof![
            1 => any::<u64>().prop_map(f64::from_bits),
            4 => 0.0f64..10.0,
            3 => proptest::sample::select(vec![0.0, 5e-324, 1e-310, 1e-300, 1.0, 1e300, f64::MAX / 8.0, 1e-7]),
        ]
    };
    prop_oneof![12 => Just(k), 1 => Just(k + 1)]
        .prop_flat_map(move |k| {
            let v = move || proptest::collection::vec(sum(), k);
            (v(), v(), v(), sum())
        })
        .boxed()
}

/// The Tversky loss with merged statistics: the reduced loss and gradient with `TI_k` and its
/// derivatives from `stats` (`Err` for statistics of another class count).
pub(crate) fn run_tversky_stats<F: Hostile>(
    (case, stats): (TverskyCase<F>, TverskyParts),
) -> std::result::Result<(), TestCaseError> {
    use longtail::loss::TverskyStats;
    SUM_BEYOND_F64.with(|s| s.set(false));
    let (t, f, n, w) = &stats;
    let ok = |v: f64| v.is_finite() && v >= 0.0;
    let valid = t.iter().chain(f).chain(n).all(|&v| ok(v)) && ok(*w);
    CALLS.fetch_add(1, Ordering::Relaxed);
    let parts = match (TverskyStats::from_parts(t.clone(), f.clone(), n.clone(), *w), valid) {
        (Ok(p), true) => p,
        (Err(_), false) => return Ok(()),
        (got, _) => return fail("TverskyStats::from_parts", format!("{got:?} for {stats:?}")),
    };
    let (alpha, beta, smooth, eps, gamma) = case.params;
    let base = if case.multilabel { TverskyLoss::<F>::multilabel() } else { TverskyLoss::multiclass() };
    let built = base
        .with_weights(alpha, beta)
        .and_then(|l| l.with_smooth(smooth))
        .and_then(|l| l.with_eps(eps))
        .and_then(|l| l.with_gamma(gamma));
    let Ok(loss) = built else { return Ok(()) };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (reduced, slope) = match (t.len() == case.logits.ncols()).then(|| case.outputs_with(Some(&stats))) {
        Some(Some(((r, _), slope))) => (Expect::Value(r), slope),
        _ => (Expect::Invalid, X::new(1.0)),
    };
    let total = X::new(*w).add(X::new(1.0));
    let coef = weight_coef(&[case.weights.as_ref()]).mul(slope).mul(total);
    let mut grad = Array2::zeros(case.logits.raw_dim());
    let got = loss.loss_and_grad_with_stats_into(&case.logits, case.targets(), &parts, &mut grad).map(|l| {
        let mut v = vec![l];
        v.extend(grad.iter().copied());
        v
    });
    judge::<F>("TverskyLoss::loss_and_grad_with_stats_into", &(&case, &stats), &got, &reduced, coef)
}

#[test]
fn tversky_loss_with_merged_statistics() {
    let case = || {
        tversky_case::<f32>().prop_flat_map(|c| {
            let k = c.logits.ncols();
            (Just(c), tversky_stats_strategy(k))
        })
    };
    run("tversky stats f32", CASES / 3, case(), run_tversky_stats::<f32>);
    let case = tversky_case::<f64>().prop_flat_map(|c| {
        let k = c.logits.ncols();
        (Just(c), tversky_stats_strategy(k))
    });
    run("tversky stats f64", CASES / 3, case, run_tversky_stats::<f64>);
}
