//! The smooth-F1 losses: cross-entropy in one-vs-rest form weighted by the batch's soft F1.

use super::*;

/// Statistics `(TP_k, S_k, W)` for [`F1Stats::from_parts`].
pub(crate) type Stats = (Vec<f64>, Vec<f64>, f64);

/// Arbitrary statistics for `k` classes (sometimes `k + 1`): sums of any bit pattern or
/// magnitude, true positives a fraction of half the mass (or any bits, mostly invalid).
pub(crate) fn stats_strategy(k: usize) -> BoxedStrategy<Stats> {
    let sum = || {
        prop_oneof![
            2 => any::<u64>().prop_map(f64::from_bits),
            3 => 0.0f64..10.0,
            2 => proptest::sample::select(vec![0.0, 5e-324, 1e-310, 1e-300, 1.0, 1e300, f64::MAX, f64::MAX / 3.0]),
        ]
    };
    let fraction =
        prop_oneof![3 => 0.0f64..=1.0, 1 => Just(0.0), 1 => Just(1.0), 1 => Just(2.0), 1 => Just(f64::NAN)];
    let classes = prop_oneof![12 => Just(k), 1 => Just(k + 1)];
    classes
        .prop_flat_map(move |k| {
            (proptest::collection::vec((sum(), fraction.clone()), k), sum()).prop_map(|(parts, w)| {
                let tp = parts.iter().map(|&(m, r)| if r.is_nan() { m } else { r * (0.5 * m) }).collect();
                (tp, parts.into_iter().map(|p| p.0).collect(), w)
            })
        })
        .boxed()
}

/// `F1Stats::from_parts` against its documented checks; the statistics if valid.
pub(crate) fn f1_stats_of(stats: &Stats) -> Result<Option<F1Stats>, String> {
    let (tp, mass, w) = stats;
    let ok = |v: f64| v.is_finite() && v >= 0.0;
    let valid = tp.len() == mass.len()
        && mass.iter().all(|&m| ok(m))
        && tp.iter().zip(mass).all(|(&t, &m)| ok(t) && t <= 0.5 * m)
        && ok(*w);
    CALLS.fetch_add(1, Ordering::Relaxed);
    match (F1Stats::from_parts(tp.clone(), mass.clone(), *w), valid) {
        (Ok(s), true) => Ok(Some(s)),
        (Err(_), false) => Ok(None),
        (got, _) => Err(format!("{got:?} for {stats:?}")),
    }
}

/// A smooth-F1 case: logits, hard labels or probability rows, sample weights, macro or micro.
#[derive(Debug, Clone)]
pub(crate) struct SmoothF1Case<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) labels: Vec<usize>,
    pub(crate) probs: Option<Array2<F>>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) micro: bool,
    pub(crate) sum: bool,
}

pub(crate) fn smooth_f1_case<F: Hostile>() -> impl Strategy<Value = SmoothF1Case<F>> {
    (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(0..k, b),
            proptest::option::weighted(0.3, proptest::collection::vec(0.0f64..1.0, b * k)),
            proptest::option::weighted(0.4, weights::<F>(b)),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(z, labels, probs, weights, micro, sum)| SmoothF1Case {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                labels,
                probs: probs.map(|raw| {
                    let mut t = Array2::from_shape_vec((b, k), raw).unwrap();
                    for mut row in t.rows_mut() {
                        let s: f64 = row.sum() + 1e-3;
                        row.mapv_inplace(|v| (v + 1e-3 / k as f64) / s);
                    }
                    t.mapv(F::from_f64)
                }),
                weights,
                micro,
                sum,
            })
    })
}

/// One softmax row's probabilities `p_k`, `−log p_k` and `−log(1 − p_k)` (each `None` where the
/// class is masked, resp. where no other class is unmasked), and `q^{(k)}_j`, the softmax over
/// the classes other than `k`; `None` for a fully masked row.
#[allow(clippy::type_complexity)]
pub(crate) fn one_vs_rest_row(z: &[f64]) -> Option<(Vec<X>, Vec<Option<X>>, Vec<Option<X>>, Vec<Vec<X>>)> {
    let k = z.len();
    let zx: Vec<X> =
        z.iter().map(|&v| if v == f64::NEG_INFINITY { X { m: v, e: 0 } } else { X::new(v) }).collect();
    let (max, ln_rest) = lse_parts(&zx)?;
    let minus_log_p: Vec<Option<X>> = z
        .iter()
        .map(|&v| (v != f64::NEG_INFINITY).then(|| diff(v, max.f64()).sub(X::new(ln_rest)).neg()))
        .collect();
    let p: Vec<X> = minus_log_p.iter().map(|l| l.map_or(X::ZERO, |l| l.neg().exp())).collect();
    let mut minus_log_q = Vec::with_capacity(k);
    let mut q = Vec::with_capacity(k);
    for c in 0..k {
        let others: Vec<X> =
            (0..k).map(|j| if j == c { X { m: f64::NEG_INFINITY, e: 0 } } else { zx[j] }).collect();
        match lse_parts(&others) {
            None => {
                minus_log_q.push(None);
                q.push(vec![X::ZERO; k]);
            }
            Some((max_o, ln_rest_o)) => {
                // −log(1 − p_c) = lse(z) − lse_{j≠c}(z) = softplus(z_c − lse_{j≠c}(z)).
                let term = if z[c] == f64::NEG_INFINITY {
                    X::ZERO
                } else {
                    softplus(diff(z[c], max_o.f64()).sub(X::new(ln_rest_o)))
                };
                minus_log_q.push(Some(term));
                q.push(
                    (0..k)
                        .map(|j| {
                            if j == c || z[j] == f64::NEG_INFINITY {
                                X::ZERO
                            } else {
                                diff(z[j], max_o.f64()).sub(X::new(ln_rest_o)).exp()
                            }
                        })
                        .collect(),
                );
            }
        }
    }
    Some((p, minus_log_p, minus_log_q, q))
}

impl<F: Hostile> SmoothF1Case<F> {
    pub(crate) fn target(&self, i: usize, j: usize) -> f64 {
        match &self.probs {
            Some(p) => p[[i, j]].as_f64(),
            None => (j == self.labels[i]) as u8 as f64,
        }
    }

    pub(crate) fn targets(&self) -> Targets<'_, F> {
        let t = match &self.probs {
            Some(p) => Targets::probs(p),
            None => Targets::labels(&self.labels),
        };
        match &self.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    }

    /// The outputs and the largest scale `c_k` (for the exponentials' flush in [`close`]).
    pub(crate) fn reference(&self) -> (Expect<Outputs>, X) {
        self.reference_with(None)
    }

    /// [`Self::reference`] with the statistics `(TP_k, S_k, W)` given (merged ones) instead of
    /// the batch's own.
    pub(crate) fn reference_with(&self, stats: Option<&Stats>) -> (Expect<Outputs>, X) {
        let (b, k) = self.logits.dim();
        if self.logits.iter().any(|&v| v.is_nan() || v == F::infinity()) {
            return (Expect::Invalid, X::new(1.0));
        }
        let mut rows = Vec::new();
        let mut s = Vec::new();
        for i in 0..b {
            let w = self.weights.as_ref().map_or(1.0, |w| w[i].as_f64());
            if !(w.is_finite() && w >= 0.0) {
                return (Expect::Invalid, X::new(1.0));
            }
            let z: Vec<f64> = (0..k).map(|j| self.logits[[i, j]].as_f64()).collect();
            let masked_mass = (0..k).any(|j| z[j] == f64::NEG_INFINITY && self.target(i, j) > 0.0);
            if w > 0.0 && masked_mass {
                return (Expect::Invalid, X::new(1.0));
            }
            rows.push(if w > 0.0 { one_vs_rest_row(&z) } else { None });
            s.push(X::new(w));
        }
        // The statistics: TP_k = Σ s y p, S_k = Σ s (y + p), W = Σ s.
        let (mut tp, mut mass) = (vec![X::ZERO; k], vec![X::ZERO; k]);
        for i in 0..b {
            if let Some((p, ..)) = &rows[i] {
                for j in 0..k {
                    let y = X::new(self.target(i, j));
                    tp[j] = tp[j].add(s[i].mul(y).mul(p[j]));
                    mass[j] = mass[j].add(s[i].mul(y.add(p[j])));
                }
            }
        }
        let mut total_weight = s.iter().fold(X::ZERO, |t, &v| t.add(v));
        if let Some((t, m, w)) = stats {
            tp = t.iter().map(|&v| X::new(v)).collect();
            mass = m.iter().map(|&v| X::new(v)).collect();
            total_weight = X::new(*w);
        }
        let ratio = |a: X, b: X| if b.is_zero() { X::ZERO } else { a.div(b) };
        let (f1, c): (Vec<X>, Vec<X>) = if self.micro {
            let f1 = ratio(
                X::new(2.0).mul(tp.iter().fold(X::ZERO, |t, &v| t.add(v))),
                mass.iter().fold(X::ZERO, |t, &v| t.add(v)),
            );
            (vec![f1; k], vec![X::new(1.0); k])
        } else {
            (0..k)
                .map(|j| {
                    (
                        ratio(X::new(2.0).mul(tp[j]), mass[j]),
                        ratio(X::new(2.0).mul(total_weight), X::new(k as f64).mul(mass[j])),
                    )
                })
                .unzip()
        };
        let c_max = c.iter().fold(X::new(1.0), |m, &v| if v.gt(m) { v } else { m });
        let half = X::new(0.5);
        let mut out_rows = Vec::new();
        for i in 0..b {
            let Some((p, minus_log_p, minus_log_q, q)) = &rows[i] else {
                out_rows.push((X::ZERO, X::ZERO, vec![X::ZERO; k], vec![X::ZERO; k]));
                continue;
            };
            let y: Vec<f64> = (0..k).map(|j| self.target(i, j)).collect();
            let a: Vec<X> = (0..k)
                .map(|j| s[i].mul(c[j]).mul(X::new(y[j])).mul(X::new(1.0).sub(f1[j].mul(half))))
                .collect();
            let bn: Vec<X> =
                (0..k).map(|j| s[i].mul(c[j]).mul(X::new(1.0 - y[j])).mul(f1[j].mul(half))).collect();
            let mut loss = X::ZERO;
            for j in 0..k {
                if !a[j].is_zero() {
                    loss = loss.add(a[j].mul(minus_log_p[j].unwrap()));
                }
                if let (false, Some(t)) = (bn[j].is_zero(), minus_log_q[j]) {
                    loss = loss.add(bn[j].mul(t));
                }
            }
            let (mut g, mut bd) = (vec![X::ZERO; k], vec![X::ZERO; k]);
            for j in 0..k {
                for c in 0..k {
                    let delta = X::new((j == c) as u8 as f64);
                    g[j] = g[j].add(a[c].mul(p[j].sub(delta)));
                    bd[j] = bd[j].add(a[c].mul(p[j].add(delta)));
                    if minus_log_q[c].is_some() {
                        g[j] = g[j].add(bn[c].mul(p[j].sub(q[c][j])));
                        bd[j] = bd[j].add(bn[c].mul(p[j].add(q[c][j])));
                    }
                }
            }
            out_rows.push((loss, loss, g, bd));
        }
        (Expect::Value(batch_outputs(&out_rows, &s, self.sum)), c_max)
    }
}

pub(crate) fn run_smooth_f1<F: Hostile>(case: SmoothF1Case<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let loss = if case.micro { SmoothF1Loss::<F>::micro_f1() } else { SmoothF1Loss::macro_f1() };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (expect, c_max) = case.reference();
    let (reduced, per_sample) = match expect {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
    };
    // The flush of an exponential is multiplied by a weight and a scale `c_k`.
    let coef = weight_coef(&[case.weights.as_ref()]).mul(c_max);
    let got = loss.loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("SmoothF1Loss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = l.to_vec();
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("SmoothF1Loss::per_sample_loss_and_grad", &case, &got, &per_sample, coef)
}

/// A binary smooth-F1 case: `[B, K]` logits and targets (multi-hot, or soft in `[0, 1]` for the
/// binary calls only), row weights, the reduction. The binary calls take the `B·K` decisions
/// flattened, each with its row's weight: the same pooled F1, sum and mean.
#[derive(Debug, Clone)]
pub(crate) struct BinaryF1Case<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) targets: Array2<F>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) sum: bool,
}

pub(crate) fn binary_f1_case<F: Hostile>() -> impl Strategy<Value = BinaryF1Case<F>> {
    (1usize..4, 1usize..4, any::<bool>()).prop_flat_map(|(b, k, soft)| {
        let target = if soft {
            prop_oneof![2 => Just(F::zero()), 2 => Just(F::one()), 1 => (0.0f64..=1.0).prop_map(F::from_f64)]
                .boxed()
        } else {
            any::<bool>().prop_map(|t| F::from_f64(t as u8 as f64)).boxed()
        };
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(target, b * k),
            proptest::option::weighted(0.4, weights::<F>(b)),
            any::<bool>(),
        )
            .prop_map(move |(z, t, weights, sum)| BinaryF1Case {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                targets: Array2::from_shape_vec((b, k), t).unwrap(),
                weights,
                sum,
            })
    })
}

impl<F: Hostile> BinaryF1Case<F> {
    /// `(reduced, per-row, per-decision)` outputs: the reduced loss and gradient, the row losses
    /// `Σ_k ℓ_ik` with the gradient, and the decisions' losses.
    pub(crate) fn reference(&self) -> Expect<Outputs> {
        self.reference_with(None)
    }

    /// [`Self::reference`] with one-class statistics `(TP, S, W)` given instead of the batch's.
    pub(crate) fn reference_with(&self, stats: Option<&Stats>) -> Expect<Outputs> {
        let (b, k) = self.logits.dim();
        let mut decisions = Vec::new();
        for i in 0..b {
            let w = self.weights.as_ref().map_or(1.0, |w| w[i].as_f64());
            if !(w.is_finite() && w >= 0.0) {
                return Expect::Invalid;
            }
            for j in 0..k {
                let (x, y) = (self.logits[[i, j]].as_f64(), self.targets[[i, j]].as_f64());
                if x.is_nan() || x == f64::INFINITY || (x == f64::NEG_INFINITY && y > 0.0 && w > 0.0) {
                    return Expect::Invalid;
                }
                decisions.push((x, y, X::new(w)));
            }
        }
        // F1 = 2·Σ s y σ / Σ s (y + σ).
        let (mut tp, mut mass) = (X::ZERO, X::ZERO);
        for &(x, y, w) in &decisions {
            let p = if x == f64::NEG_INFINITY { X::ZERO } else { sigmoid(X::new(x)) };
            tp = tp.add(w.mul(X::new(y)).mul(p));
            mass = mass.add(w.mul(X::new(y).add(p)));
        }
        if let Some((t, m, _)) = stats {
            (tp, mass) = (X::new(t[0]), X::new(m[0]));
        }
        // The batch F1 is an f64 statistic (documented): below f64's range it is 0.
        let f1 = if mass.is_zero() { X::ZERO } else { X::new(X::new(2.0).mul(tp).div(mass).f64()) };
        let (pos, neg) = (X::new(1.0).sub(f1.mul(X::new(0.5))), f1.mul(X::new(0.5)));
        let mut rows = Vec::new();
        let mut coefficients = Vec::new();
        for (i, chunk) in decisions.chunks(k).enumerate() {
            let (mut l, mut g, mut bd) = (X::ZERO, Vec::new(), Vec::new());
            for &(x, y, w) in chunk {
                if x == f64::NEG_INFINITY || w.is_zero() {
                    g.push(X::ZERO);
                    bd.push(X::ZERO);
                    continue;
                }
                let (a, c) = (w.mul(pos).mul(X::new(y)), w.mul(neg).mul(X::new(1.0 - y)));
                let xx = X::new(x);
                l = l.add(a.mul(softplus(xx.neg())).add(c.mul(softplus(xx))));
                let (up, down) = (c.mul(sigmoid(xx)), a.mul(sigmoid(xx.neg())));
                g.push(up.sub(down));
                bd.push(up.add(down));
            }
            rows.push((l, l, g, bd));
            coefficients.push(X::new(k as f64).mul(chunk[0].2));
            let _ = i;
        }
        let (reduced, per_row) = batch_outputs(&rows, &coefficients, self.sum);
        Expect::Value((reduced, per_row))
    }
}

pub(crate) fn run_binary_f1<F: Hostile>(case: BinaryF1Case<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let loss = BinarySmoothF1Loss::<F>::new().with_reduction(if case.sum {
        Reduction::Sum
    } else {
        Reduction::Mean
    });
    let (reduced, per_row) = match case.reference() {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
    };
    let coef = weight_coef(&[case.weights.as_ref()]);
    let k = case.logits.ncols();
    let flat = Array1::from_iter(case.logits.iter().copied());
    let flat_targets: Vec<F> = case.targets.iter().copied().collect();
    let flat_weights: Option<Vec<F>> =
        case.weights.as_ref().map(|w| w.iter().flat_map(|&v| std::iter::repeat_n(v, k)).collect());
    let binary_targets = || {
        let t = BinaryTargets::new(&flat_targets[..]);
        match &flat_weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    };
    let got = loss.binary_loss_and_grad(&flat, binary_targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("BinarySmoothF1Loss::binary_loss_and_grad", &case, &got, &reduced, coef)?;
    if case.targets.iter().any(|&t| t != F::zero() && t != F::one()) {
        return Ok(());
    }
    let targets = || {
        let t = Targets::multi_hot(&case.targets);
        match &case.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    };
    let got = loss.loss_and_grad(&case.logits, targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("BinarySmoothF1Loss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss_and_grad(&case.logits, targets()).map(|(l, g)| {
        let mut v = l.to_vec();
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("BinarySmoothF1Loss::per_sample_loss_and_grad", &case, &got, &per_row, coef)
}

#[test]
fn smooth_f1_loss_on_arbitrary_bits() {
    run("smooth_f1 f32", CASES / 3, smooth_f1_case::<f32>(), run_smooth_f1::<f32>);
    run("smooth_f1 f64", CASES / 3, smooth_f1_case::<f64>(), run_smooth_f1::<f64>);
}

#[test]
fn binary_smooth_f1_loss_on_arbitrary_bits() {
    run("binary_smooth_f1 f32", CASES / 3, binary_f1_case::<f32>(), run_binary_f1::<f32>);
    run("binary_smooth_f1 f64", CASES / 3, binary_f1_case::<f64>(), run_binary_f1::<f64>);
}

/// The smooth-F1 loss with merged statistics: the reduced loss and gradient with `F1_k` and `c_k`
/// from `stats` (`Err` for statistics of another class count).
pub(crate) fn run_smooth_f1_stats<F: Hostile>(
    (case, stats): (SmoothF1Case<F>, Stats),
) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let f1_stats = match f1_stats_of(&stats) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(()),
        Err(e) => return fail("F1Stats::from_parts", e),
    };
    let loss = if case.micro { SmoothF1Loss::<F>::micro_f1() } else { SmoothF1Loss::macro_f1() };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (expect, c_max) = if stats.1.len() == case.logits.ncols() {
        case.reference_with(Some(&stats))
    } else {
        (Expect::Invalid, X::new(1.0))
    };
    let reduced = match expect {
        Expect::Invalid => Expect::Invalid,
        Expect::Value((r, _)) => Expect::Value(r),
    };
    // The scales `c_k ∝ 1/S_k` are divided by the largest (a known limit): masses whose ratio
    // exceeds the float's range lose the small scales with their terms, so such cases are left
    // out, as weights are drawn within one range.
    let masses = stats.1.iter().filter(|&&m| m > 0.0);
    let spread =
        masses.clone().fold(0.0_f64, |a, &m| a.max(m)) / masses.fold(f64::INFINITY, |a, &m| a.min(m));
    if !case.micro && stats.2 > 0.0 && spread > 0.25 / min_normal::<F>() {
        return Ok(());
    }
    let coef = weight_coef(&[case.weights.as_ref()]).mul(c_max);
    let mut grad = Array2::zeros(case.logits.raw_dim());
    let got =
        loss.loss_and_grad_with_stats_into(&case.logits, case.targets(), &f1_stats, &mut grad).map(|l| {
            let mut v = vec![l];
            v.extend(grad.iter().copied());
            v
        });
    judge::<F>("SmoothF1Loss::loss_and_grad_with_stats_into", &(&case, &stats), &got, &reduced, coef)
}

/// The binary smooth-F1 loss with merged one-class statistics, `[B, K]` and `[B]` forms.
pub(crate) fn run_binary_f1_stats<F: Hostile>(
    (case, stats): (BinaryF1Case<F>, Stats),
) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let f1_stats = match f1_stats_of(&stats) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(()),
        Err(e) => return fail("F1Stats::from_parts", e),
    };
    let loss = BinarySmoothF1Loss::<F>::new().with_reduction(if case.sum {
        Reduction::Sum
    } else {
        Reduction::Mean
    });
    let reduced = match (stats.1.len() == 1).then(|| case.reference_with(Some(&stats))) {
        Some(Expect::Value((r, _))) => Expect::Value(r),
        _ => Expect::Invalid,
    };
    let coef = weight_coef(&[case.weights.as_ref()]);
    let k = case.logits.ncols();
    let flat = Array1::from_iter(case.logits.iter().copied());
    let flat_targets: Vec<F> = case.targets.iter().copied().collect();
    let flat_weights: Option<Vec<F>> =
        case.weights.as_ref().map(|w| w.iter().flat_map(|&v| std::iter::repeat_n(v, k)).collect());
    let t = BinaryTargets::new(&flat_targets[..]);
    let t = match &flat_weights {
        Some(w) => t.with_sample_weights(&w[..]),
        None => t,
    };
    let mut grad = Array1::zeros(flat.len());
    let got = loss.binary_loss_and_grad_with_stats_into(&flat, t, &f1_stats, &mut grad).map(|l| {
        let mut v = vec![l];
        v.extend(grad.iter().copied());
        v
    });
    judge::<F>(
        "BinarySmoothF1Loss::binary_loss_and_grad_with_stats_into",
        &(&case, &stats),
        &got,
        &reduced,
        coef,
    )?;
    if case.targets.iter().any(|&t| t != F::zero() && t != F::one()) {
        return Ok(());
    }
    let t = Targets::multi_hot(&case.targets);
    let t = match &case.weights {
        Some(w) => t.with_sample_weights(&w[..]),
        None => t,
    };
    let mut grad = Array2::zeros(case.logits.raw_dim());
    let got = loss.loss_and_grad_with_stats_into(&case.logits, t, &f1_stats, &mut grad).map(|l| {
        let mut v = vec![l];
        v.extend(grad.iter().copied());
        v
    });
    judge::<F>("BinarySmoothF1Loss::loss_and_grad_with_stats_into", &(&case, &stats), &got, &reduced, coef)
}

#[test]
fn smooth_f1_losses_with_merged_statistics() {
    run(
        "smooth_f1 stats f32",
        CASES / 3,
        smooth_f1_case::<f32>().prop_flat_map(|c| {
            let k = c.logits.ncols();
            (Just(c), stats_strategy(k))
        }),
        run_smooth_f1_stats::<f32>,
    );
    run(
        "smooth_f1 stats f64",
        CASES / 3,
        smooth_f1_case::<f64>().prop_flat_map(|c| {
            let k = c.logits.ncols();
            (Just(c), stats_strategy(k))
        }),
        run_smooth_f1_stats::<f64>,
    );
    run(
        "binary_smooth_f1 stats f32",
        CASES / 3,
        (binary_f1_case::<f32>(), stats_strategy(1)),
        run_binary_f1_stats::<f32>,
    );
    run(
        "binary_smooth_f1 stats f64",
        CASES / 3,
        (binary_f1_case::<f64>(), stats_strategy(1)),
        run_binary_f1_stats::<f64>,
    );
}
