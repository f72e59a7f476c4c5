//! Sigmoid BCE and focal.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct SigmoidCase<F> {
    pub(crate) logits: Vec<F>,
    pub(crate) targets: Vec<F>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) gamma: F,
    pub(crate) alpha: Option<F>,
    /// PyTorch's `pos_weight` `v`, multiplying a positive's part of the cross-entropy.
    pub(crate) pos_weight: Option<F>,
    pub(crate) sum: bool,
}

pub(crate) fn sigmoid_case<F: Hostile>() -> impl Strategy<Value = SigmoidCase<F>> {
    (1usize..6).prop_flat_map(|n| {
        let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
        let target =
            prop_oneof![2 => Just(F::zero()), 2 => Just(F::one()), 1 => (0.0f64..=1.0).prop_map(F::from_f64)];
        (
            proptest::collection::vec(F::values(), n),
            proptest::collection::vec(target, n),
            proptest::option::weighted(0.4, weights::<F>(n)),
            prop_oneof![1 => Just(F::zero()), 1 => Just(F::from_f64(2.0)), 1 => pos()],
            proptest::option::of((0.0f64..=1.0).prop_map(F::from_f64)),
            proptest::option::weighted(0.3, pos()),
            any::<bool>(),
        )
            .prop_map(|(logits, targets, weights, gamma, alpha, pos_weight, sum)| SigmoidCase {
                logits,
                targets,
                weights,
                gamma,
                alpha,
                pos_weight,
                sum,
            })
    })
}

/// `σ(x)` of an X.
pub(crate) fn sigmoid(x: X) -> X {
    let v = x.f64();
    if v >= 0.0 { X::new(1.0 / (1.0 + (-v).exp())) } else { softplus(x.neg()).neg().exp() }
}

impl<F: Hostile> SigmoidCase<F> {
    pub(crate) fn reference(&self) -> Expect<Outputs> {
        let n = self.logits.len();
        let f = |v: F| v.as_f64();
        let gamma = f(self.gamma);
        let mut total = X::ZERO;
        let mut denominator = X::ZERO;
        let mut rows = Vec::new();
        for i in 0..n {
            let (s, y) = (f(self.logits[i]), f(self.targets[i]));
            let w = self.weights.as_ref().map_or(1.0, |w| f(w[i]));
            if s.is_nan() || s == f64::INFINITY || !(w.is_finite() && w >= 0.0) {
                return Expect::Invalid;
            }
            denominator = denominator.add(X::new(w));
            if s == f64::NEG_INFINITY {
                if y > 0.0 && w > 0.0 {
                    return Expect::Invalid;
                }
                rows.push((X::ZERO, X::ZERO, X::ZERO));
                continue;
            }
            let sx = X::new(s);
            let (sp_pos, sp_neg) = (softplus(sx), softplus(sx.neg()));
            let (sig_pos, sig_neg) = (sigmoid(sx), sigmoid(sx.neg()));
            let vy = X::new(self.pos_weight.map_or(1.0, f)).mul(X::new(y));
            let ce = vy.mul(sp_neg).add(X::new(1.0 - y).mul(sp_pos));
            note_intermediate::<F>(ce);
            let d_ce = X::new(1.0 - y).mul(sig_pos).sub(vy.mul(sig_neg));
            let d_bound = X::new(1.0 - y).mul(sig_pos).add(vy.mul(sig_neg));
            let a_t = self.alpha.map_or(1.0, |a| f(a) * y + (1.0 - f(a)) * (1.0 - y));
            let weight = X::new(w).mul(X::new(a_t));
            if gamma == 0.0 {
                rows.push((weight.mul(ce), weight.mul(d_ce), weight.mul(d_bound)));
                continue;
            }
            let (log_q, ratio) = if y == 1.0 {
                (sp_pos.neg(), sig_pos.neg())
            } else if y == 0.0 {
                (sp_neg.neg(), sig_neg)
            } else {
                let q = X::new(y).mul(sig_neg).add(X::new(1.0 - y).mul(sig_pos));
                (X::new(q.ln()), X::new(1.0 - 2.0 * y).mul(sig_pos).mul(sig_neg).div(q))
            };
            let m = X::new(gamma).mul(log_q).exp();
            let extra = X::new(gamma).mul(ce).mul(ratio);
            note_intermediate::<F>(X::new(gamma).mul(ce));
            rows.push((
                weight.mul(m).mul(ce),
                weight.mul(m).mul(d_ce.add(extra)),
                weight.mul(m).mul(d_bound.add(extra.abs())),
            ));
        }
        for (l, _, _) in &rows {
            total = total.add(*l);
        }
        note_sum(total);
        let divisor = if self.sum { X::new(1.0) } else { denominator };
        let mut reduced = Vec::new();
        if divisor.is_zero() {
            reduced.extend((0..=n).map(|_| (X::ZERO, X::ZERO)));
        } else {
            reduced.push((total.div(divisor), total.div(divisor)));
            reduced.extend(rows.iter().map(|&(_, g, b)| (g.div(divisor), b.div(divisor))));
        }
        let per_sample = rows.iter().map(|&(l, _, _)| (l, l)).collect();
        Expect::Value((reduced, per_sample))
    }
}

pub(crate) fn run_sigmoid<F: Hostile>(case: SigmoidCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let built = SigmoidLoss::bce()
        .with_focal(case.gamma)
        .and_then(|l| match case.alpha {
            Some(alpha) => l.with_alpha(alpha),
            None => Ok(l),
        })
        .and_then(|l| match case.pos_weight {
            Some(v) => l.with_pos_weight(&[v]),
            None => Ok(l),
        });
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (reduced, per_sample) = match case.reference() {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
    };
    let logits = Array1::from(case.logits.clone());
    let targets = || {
        let t = BinaryTargets::new(&case.targets[..]);
        match &case.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    };
    let got = loss.binary_loss_and_grad(&logits, targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    let pos_weight = case.pos_weight.map(|v| vec![v]);
    // With focal modulation the flush of `(1 − p_t)^γ` below the smallest normal number is
    // multiplied by the row's cross-entropy, up to `|s| + 1`.
    let ce = case.logits.iter().filter(|s| s.is_finite()).fold(1.0_f64, |m, s| m.max(s.as_f64().abs() + 1.0));
    let focal = if case.gamma > F::zero() { X::new(ce) } else { X::new(1.0) };
    let coef = weight_coef(&[case.weights.as_ref(), pos_weight.as_ref()]).mul(focal);
    judge::<F>("SigmoidLoss::binary_loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.binary_per_sample_loss(&logits, targets()).map(|l| l.to_vec());
    judge::<F>("SigmoidLoss::binary_per_sample_loss", &case, &got, &per_sample, coef)?;
    // The same decisions as a `[B, 1]` one-vs-rest batch with probability targets.
    let (logits, probs) = (
        logits.insert_axis(ndarray::Axis(1)),
        Array1::from(case.targets.clone()).insert_axis(ndarray::Axis(1)),
    );
    let targets = || {
        let t = Targets::probs(&probs);
        match &case.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    };
    let got = loss.loss_and_grad(&logits, targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("SigmoidLoss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss(&logits, targets()).map(|l| l.to_vec());
    judge::<F>("SigmoidLoss::per_sample_loss", &case, &got, &per_sample, coef)
}

#[test]
fn sigmoid_loss_on_arbitrary_bits() {
    run("sigmoid f32", CASES, sigmoid_case::<f32>(), run_sigmoid::<f32>);
    run("sigmoid f64", CASES, sigmoid_case::<f64>(), run_sigmoid::<f64>);
}
