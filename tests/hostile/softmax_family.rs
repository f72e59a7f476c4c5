//! The softmax family: a reference row.

use super::*;

/// One softmax row: logits `z` (already adjusted; `-inf` masks), masses `c_k ≥ 0`, focal `γ`.
/// Returns the row loss `Σ c_k (1 − p_k)^γ (−log p_k)`, its gradient `H p_j − h_j` and each
/// gradient entry's bound `p_j Σ_{k≠j} h_k + h_j (1 − p_j)`; `None` for a masked class with mass.
pub(crate) fn softmax_row(z: &[f64], c: &[X], gamma: f64) -> Option<(X, Vec<X>, Vec<X>)> {
    let k = z.len();
    for j in 0..k {
        if z[j] == f64::NEG_INFINITY && !c[j].is_zero() {
            return None;
        }
    }
    let Some(argmax) = (0..k)
        .filter(|&j| z[j] > f64::NEG_INFINITY)
        .max_by(|&a, &b| z[a].partial_cmp(&z[b]).unwrap().then(b.cmp(&a)))
    else {
        return Some((X::ZERO, vec![X::ZERO; k], vec![X::ZERO; k]));
    };
    let m = z[argmax];
    let d: Vec<X> = z.iter().map(|&v| diff(v, m)).collect();
    let others: Vec<X> = (0..k).filter(|&j| j != argmax).map(|j| d[j]).collect();
    // log r, r = Σ_{k≠argmax} e^{d_k}.
    let log_r = lse_x(&others);
    let r = log_r.map_or(0.0, |l| l.exp().f64());
    let ln_total = ln_1p(r);
    let lp: Vec<X> =
        d.iter().map(|&d| if d.m == f64::NEG_INFINITY { d } else { d.sub(X::new(ln_total)) }).collect();
    let p: Vec<X> = lp.iter().map(|&l| if l.m == f64::NEG_INFINITY { X::ZERO } else { l.exp() }).collect();
    // log(1 − p_j), (1 − p_j) and (−log p_j)/(1 − p_j).
    let mut log_q = vec![0.0; k];
    let mut q = vec![X::new(1.0); k];
    let mut ratio = vec![X::new(1.0); k];
    for j in 0..k {
        if j == argmax {
            match log_r {
                None => {
                    log_q[j] = f64::NEG_INFINITY;
                    q[j] = X::ZERO;
                }
                Some(log_r) => {
                    let lq = log_r.sub(X::new(ln_total));
                    log_q[j] = lq.f64();
                    q[j] = lq.exp();
                    ratio[j] =
                        if r < 1e-8 { X::new(1.0 + r / 2.0) } else { X::new(ln_total * (1.0 + r) / r) };
                }
            }
        } else {
            let pj = p[j].f64();
            log_q[j] = ln_1p(-pj);
            q[j] = X::new(1.0 - pj);
            ratio[j] = lp[j].neg().div(q[j]);
        }
    }
    let mut loss = X::ZERO;
    let mut h = vec![X::ZERO; k];
    for j in 0..k {
        if c[j].is_zero() {
            continue;
        }
        let mod_j = if gamma == 0.0 { X::new(1.0) } else { X::new(gamma).mul(X::new(log_q[j])).exp() };
        loss = loss.add(c[j].mul(mod_j).mul(lp[j].neg()));
        let extra = if gamma == 0.0 { X::ZERO } else { X::new(gamma).mul(p[j]).mul(ratio[j]) };
        h[j] = c[j].mul(mod_j).mul(X::new(1.0).add(extra));
    }
    let mut grad = vec![X::ZERO; k];
    let mut bound = vec![X::ZERO; k];
    for j in 0..k {
        let rest = (0..k).filter(|&i| i != j).fold(X::ZERO, |s, i| s.add(h[i]));
        let a = p[j].mul(rest);
        let b = h[j].mul(q[j]);
        grad[j] = a.sub(b);
        bound[j] = a.add(b);
    }
    Some((loss, grad, bound))
}

/// A generated softmax-loss case, with every parameter as the library stores it.
#[derive(Debug, Clone)]
pub(crate) struct SoftmaxCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) labels: Vec<usize>,
    pub(crate) probs: Option<Array2<F>>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) class_weights: Option<Vec<F>>,
    pub(crate) alpha: Option<Vec<F>>,
    pub(crate) gamma: F,
    pub(crate) smoothing: F,
    pub(crate) prior: Option<(Vec<F>, F)>,
    pub(crate) sum: bool,
}

/// `n` weights: one arbitrary magnitude (any bit pattern: subnormal, near the maximum, NaN, inf)
/// times factors in `{0} ∪ [2^−16, 1]`, with now and then an arbitrary entry in place that is not
/// a positive finite number (negative, NaN, `±inf`; a positive one is taken as its magnitude's
/// factor instead). The crate scales weights by their maximum, so any magnitude is covered;
/// weights whose ratios exceed the float's range (a product of a sample and a class weight more
/// than `2^126` below the largest in `f32`) are outside what the scaling keeps exact, and are left
/// out.
pub(crate) fn weights<F: Hostile>(n: usize) -> BoxedStrategy<Vec<F>> {
    let factor = prop_oneof![1 => Just(0.0), 1 => Just(1.0), 6 => (-16.0f64..0.0).prop_map(f64::exp2)];
    let entry = prop_oneof![30 => factor.clone().prop_map(Some), 1 => Just(None)];
    (F::values(), proptest::collection::vec((entry, F::values(), factor), n))
        .prop_map(|(base, entries)| {
            let base = base.as_f64().abs();
            let scaled = |f: f64| F::from_f64(base * f);
            let raw = |raw: F, f: f64| if raw.as_f64() > 0.0 && raw.is_finite() { scaled(f) } else { raw };
            entries.into_iter().map(|(f, r, spare)| f.map_or_else(|| raw(r, spare), scaled)).collect()
        })
        .boxed()
}

pub(crate) fn softmax_case<F: Hostile>() -> impl Strategy<Value = SoftmaxCase<F>> {
    (1usize..4, 1usize..6).prop_flat_map(|(b, k)| {
        let v = || F::values();
        let pos = || prop_oneof![3 => F::values().prop_map(|v| F::from_f64(v.as_f64().abs())), 1 => Just(F::one())];
        let gamma = prop_oneof![2 => Just(F::zero()), 1 => Just(F::from_f64(2.0)), 1 => Just(F::from_f64(0.5)), 2 => pos()];
        let smoothing = prop_oneof![3 => Just(F::zero()), 1 => Just(F::from_f64(0.1)), 1 => (0.0f64..1.0).prop_map(F::from_f64)];
        (
            proptest::collection::vec(v(), b * k),
            proptest::collection::vec(0..k, b),
            proptest::option::weighted(0.3, proptest::collection::vec(0.0f64..1.0, b * k)),
            proptest::option::weighted(0.4, weights::<F>(b)),
            proptest::option::weighted(0.3, weights::<F>(k)),
            proptest::option::weighted(0.2, weights::<F>(k)),
            gamma,
            smoothing,
            proptest::option::weighted(0.3, (proptest::collection::vec(pos(), k), v())),
            any::<bool>(),
        )
            .prop_map(move |(z, labels, probs, weights, class_weights, alpha, gamma, smoothing, prior, sum)| {
                let probs = probs.map(|raw| {
                    let mut t = Array2::from_shape_vec((b, k), raw).unwrap();
                    for mut row in t.rows_mut() {
                        let s: f64 = row.sum() + 1e-3;
                        row.mapv_inplace(|v| (v + 1e-3 / k as f64) / s);
                    }
                    t.mapv(F::from_f64)
                });
                SoftmaxCase {
                    logits: Array2::from_shape_vec((b, k), z).unwrap(),
                    labels,
                    probs,
                    weights,
                    class_weights,
                    alpha,
                    gamma,
                    smoothing,
                    prior,
                    sum,
                }
            })
    })
}

impl<F: Hostile> SoftmaxCase<F> {
    pub(crate) fn build(&self) -> Result<SoftmaxLoss<F>, Error> {
        let mut loss = SoftmaxLoss::cross_entropy();
        if let Some((prior, tau)) = &self.prior {
            loss = loss.with_logit_adjustment(prior, *tau)?;
        }
        if let Some(w) = &self.class_weights {
            loss = loss.with_class_weights(w)?;
        }
        if let Some(a) = &self.alpha {
            loss = loss.with_alpha(a)?;
        }
        loss = loss.with_focal(self.gamma)?.with_label_smoothing(self.smoothing)?;
        Ok(loss.with_reduction(if self.sum { Reduction::Sum } else { Reduction::Mean }))
    }

    pub(crate) fn targets(&self) -> Targets<'_, F> {
        let t = match &self.probs {
            Some(p) => Targets::probs(p),
            None => Targets::labels(&self.labels),
        };
        match &self.weights {
            Some(w) => t.with_sample_weights(w),
            None => t,
        }
    }

    /// `(reduced loss, reduced gradient)` and `(per-sample losses, per-sample gradient)`, each
    /// output with its bound.
    pub(crate) fn reference(&self, loss: &SoftmaxLoss<F>) -> Expect<Outputs> {
        let (b, k) = self.logits.dim();
        let f = |v: F| v.as_f64();
        if self.logits.iter().any(|&v| v.is_nan() || v == F::infinity()) {
            return Expect::Invalid;
        }
        if let Some(w) = &self.weights
            && w.iter().any(|&v| !(v.is_finite() && v >= F::zero()))
        {
            return Expect::Invalid;
        }
        let adjust = loss.logit_adjustment();
        let (eps, kf) = (f(self.smoothing), k as f64);
        let mut total = X::ZERO;
        let mut denominator = X::ZERO;
        let mut rows = Vec::new();
        for i in 0..b {
            // The adjusted logits as the library rounds them: a finite logit pushed out of range is
            // an overflow of the transform.
            let mut z = Vec::with_capacity(k);
            for j in 0..k {
                let v = self.logits[[i, j]];
                let a = adjust.map_or(F::zero(), |a| a[j]);
                let adjusted = v + a;
                if v.is_finite() && !adjusted.is_finite() {
                    return Expect::Invalid;
                }
                z.push(f(adjusted));
            }
            let s = self.weights.as_ref().map_or(X::new(1.0), |w| X::new(f(w[i])));
            let a_k = |j: usize| {
                let w = self.class_weights.as_ref().map_or(X::new(1.0), |w| X::new(f(w[j])));
                w.mul(self.alpha.as_ref().map_or(X::new(1.0), |a| X::new(f(a[j]))))
            };
            let c: Vec<X> = (0..k)
                .map(|j| {
                    let t = match &self.probs {
                        Some(p) => f(p[[i, j]]),
                        None => (j == self.labels[i]) as u8 as f64,
                    };
                    let mass =
                        if eps == 0.0 { X::new(t) } else { X::new((1.0 - eps) * t).add(X::new(eps / kf)) };
                    s.mul(a_k(j)).mul(mass)
                })
                .collect();
            let Some((l, g, bd)) = softmax_row(&z, &c, f(self.gamma)) else { return Expect::Invalid };
            total = total.add(l);
            denominator = denominator.add(match &self.probs {
                Some(_) => s,
                None => {
                    s.mul(self.class_weights.as_ref().map_or(X::new(1.0), |w| X::new(f(w[self.labels[i]]))))
                }
            });
            rows.push((l, g, bd));
        }
        note_sum(total);
        let divisor = if self.sum { X::new(1.0) } else { denominator };
        let mut reduced = Vec::new();
        let mut per_sample = Vec::new();
        if divisor.is_zero() {
            reduced.push((X::ZERO, X::ZERO));
            reduced.extend((0..b * k).map(|_| (X::ZERO, X::ZERO)));
        } else {
            reduced.push((total.div(divisor), total.div(divisor)));
            for (_, g, bd) in &rows {
                reduced.extend(g.iter().zip(bd).map(|(&g, &bd)| (g.div(divisor), bd.div(divisor))));
            }
        }
        for (l, _, _) in &rows {
            per_sample.push((*l, *l));
        }
        for (_, g, bd) in &rows {
            per_sample.extend(g.iter().copied().zip(bd.iter().copied()));
        }
        Expect::Value((reduced, per_sample))
    }
}

pub(crate) fn run_softmax<F: Hostile>(case: SoftmaxCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let Ok(loss) = case.build() else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let expect = case.reference(&loss);
    let (reduced, per_sample) = match expect {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
    };
    let got = loss.loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    let coef = weight_coef(&[case.weights.as_ref(), case.class_weights.as_ref(), case.alpha.as_ref()]);
    judge::<F>("SoftmaxLoss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = l.to_vec();
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("SoftmaxLoss::per_sample_loss_and_grad", &case, &got, &per_sample, coef)
}

#[test]
fn softmax_loss_on_arbitrary_bits_f32() {
    run("softmax_loss f32", CASES, softmax_case::<f32>(), run_softmax::<f32>);
}

#[test]
fn softmax_loss_on_arbitrary_bits_f64() {
    run("softmax_loss f64", CASES, softmax_case::<f64>(), run_softmax::<f64>);
}
