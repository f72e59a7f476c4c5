//! Equalization loss v2 and its state: one-vs-rest BCE weighted per class by `q_k = σ(γ(g_k − μ))`
//! (negatives) and `r_k = 1 + α(1 − q_k)` (positives) from the accumulated gradient ratio
//! `g_k = P_k / (Q_k + 10⁻¹⁰)`, and the state's gradient statistics, merges and updates.

use super::*;
use longtail::EqlV2Loss;
use longtail::loss::EqlV2State;

#[derive(Debug, Clone)]
pub(crate) struct EqlCase<F> {
    pub(crate) logits: Array2<F>,
    /// Multi-hot (0/1) or probability targets.
    pub(crate) targets: Array2<F>,
    pub(crate) multi_hot: bool,
    pub(crate) weights: Option<Vec<F>>,
    /// The state's sums `P`, `Q` and its batch count.
    pub(crate) state: StateParts,
    pub(crate) gamma: F,
    pub(crate) mu: F,
    pub(crate) alpha: F,
    pub(crate) sum: bool,
}

/// Gradient sums of any size: ordinary, subnormal to huge, any bit pattern, 0.
fn sums(k: usize) -> BoxedStrategy<Vec<f64>> {
    proptest::collection::vec(
        prop_oneof![
            3 => 0.0f64..10.0,
            1 => Just(0.0),
            2 => (-1074.0f64..1024.0).prop_map(f64::exp2),
            1 => any::<u64>().prop_map(f64::from_bits),
            1 => proptest::sample::select(vec![5e-324, 1e-300, f64::MAX, f64::MAX / 2.0, 1e300]),
        ],
        k,
    )
    .boxed()
}

pub(crate) fn eql_case<F: Hostile>() -> impl Strategy<Value = EqlCase<F>> {
    (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
        let gamma = prop_oneof![2 => Just(F::from_f64(12.0)), 1 => Just(F::one()), 2 => pos(), 1 => F::values()];
        let mu = prop_oneof![2 => Just(F::from_f64(0.8)), 1 => (-2.0f64..2.0).prop_map(F::from_f64), 1 => F::values()];
        let alpha = prop_oneof![2 => Just(F::from_f64(4.0)), 1 => Just(F::zero()), 2 => pos(), 1 => F::values()];
        let target = prop_oneof![3 => Just(0.0), 2 => Just(1.0), 1 => 0.0f64..=1.0];
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(target, b * k),
            any::<bool>(),
            proptest::option::weighted(0.4, weights::<F>(b)),
            (sums(k), sums(k), prop_oneof![1 => Just(0u64), 3 => 1u64..100]),
            (gamma, mu, alpha),
            any::<bool>(),
        )
            .prop_map(move |(z, t, multi_hot, weights, state, (gamma, mu, alpha), sum)| {
                let t = t.into_iter().map(|v| if multi_hot { v.round() } else { v }).map(F::from_f64).collect();
                EqlCase {
                    logits: Array2::from_shape_vec((b, k), z).unwrap(),
                    targets: Array2::from_shape_vec((b, k), t).unwrap(),
                    multi_hot,
                    weights,
                    state,
                    gamma,
                    mu,
                    alpha,
                    sum,
                }
            })
    })
}

impl<F: Hostile> EqlCase<F> {
    fn targets(&self) -> Targets<'_, F> {
        let t =
            if self.multi_hot { Targets::multi_hot(&self.targets) } else { Targets::probs(&self.targets) };
        match &self.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    }

    /// The rows of the loss with the class weights `(r_k, q_k)` as the loss holds them (checked
    /// separately), `Invalid` per the documented errors.
    fn reference(&self, r: &[F], q: &[F]) -> Expect<Outputs> {
        let (b, k) = self.logits.dim();
        let mut rows = Vec::new();
        let mut coefficients = Vec::new();
        for i in 0..b {
            let w = self.weights.as_ref().map_or(1.0, |w| w[i].as_f64());
            if !(w.is_finite() && w >= 0.0) {
                return Expect::Invalid;
            }
            let wx = X::new(w);
            let (mut l, mut lb, mut g, mut gb) = (X::ZERO, X::ZERO, Vec::new(), Vec::new());
            for j in 0..k {
                let (s, y) = (self.logits[[i, j]].as_f64(), self.targets[[i, j]].as_f64());
                if s.is_nan() || s == f64::INFINITY || (s == f64::NEG_INFINITY && y > 0.0 && w > 0.0) {
                    return Expect::Invalid;
                }
                if s == f64::NEG_INFINITY || w == 0.0 {
                    g.push(X::ZERO);
                    gb.push(X::ZERO);
                    continue;
                }
                let sx = X::new(s);
                let weight =
                    X::new(y).mul(X::new(r[j].as_f64())).add(X::new(1.0 - y).mul(X::new(q[j].as_f64())));
                let bce = X::new(y).mul(softplus(sx.neg())).add(X::new(1.0 - y).mul(softplus(sx)));
                let (p, not_p) = (sigmoid(sx), sigmoid(sx.neg()));
                // σ(s) − y = (1 − y)·σ(s) − y·σ(−s), bounded by the sum of the two.
                let slope = X::new(1.0 - y).mul(p).sub(X::new(y).mul(not_p));
                let slope_bound = X::new(1.0 - y).mul(p).add(X::new(y).mul(not_p));
                let value = wx.mul(weight).mul(bce);
                note_intermediate::<F>(weight.mul(bce));
                l = l.add(value);
                lb = lb.add(value);
                g.push(wx.mul(weight).mul(slope));
                gb.push(wx.mul(weight).mul(slope_bound));
            }
            rows.push((l, lb, g, gb));
            coefficients.push(X::new(w));
        }
        Expect::Value(batch_outputs(&rows, &coefficients, self.sum))
    }
}

/// `q_k = σ(γ(g_k − μ))` of the state's ratio, exactly (with its bound: `exp`'s condition number
/// `|x|` of `x = γ(g − μ)`), and `r_k = 1 + α(1 − q_k)` from the loss's `q_k` in `F` (bound
/// `1 + α`).
fn class_weights<F: Hostile>(case: &EqlCase<F>, state: &EqlV2State, q_f: &[F]) -> Vec<(X, X)> {
    let (gamma, mu, alpha) = (case.gamma.as_f64(), case.mu.as_f64(), case.alpha.as_f64());
    let mut out = Vec::new();
    let ratio = state.ratio();
    for (j, &q) in q_f.iter().enumerate() {
        if state.batches() == 0 {
            out.push((X::new(1.0), X::new(1.0)));
        } else {
            let x = X::new(gamma).mul(diff(ratio[j], mu));
            let exact = sigmoid(x);
            out.push((exact, exact.mul(X::new(1.0).add(x.abs()))));
        }
        let r = X::new(1.0).add(X::new(alpha).mul(X::new(1.0).sub(X::new(q.as_f64()))));
        out.push((r, X::new(1.0).add(X::new(alpha))));
    }
    out
}

pub(crate) fn run_eql<F: Hostile>(case: EqlCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let (positive, negative, batches) = case.state.clone();
    let valid_sums = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x >= 0.0);
    CALLS.fetch_add(1, Ordering::Relaxed);
    let state = match EqlV2State::from_parts(positive.clone(), negative.clone(), batches) {
        Ok(s) if valid_sums(&positive) && valid_sums(&negative) => s,
        Err(_) if !(valid_sums(&positive) && valid_sums(&negative)) => return Ok(()),
        got => return fail("EqlV2State::from_parts", format!("{got:?} on {case:?}")),
    };
    let valid_params = case.gamma.is_finite()
        && case.gamma > F::zero()
        && case.mu.is_finite()
        && case.alpha.is_finite()
        && case.alpha >= F::zero();
    let built =
        EqlV2Loss::<F>::new(&state).with_mapping(case.gamma, case.mu).and_then(|l| l.with_alpha(case.alpha));
    CALLS.fetch_add(1, Ordering::Relaxed);
    let loss = match built {
        Ok(l) if valid_params => l,
        Err(_) if !valid_params => return Ok(()),
        got => return fail("EqlV2Loss::with_mapping", format!("{got:?} on {case:?}")),
    };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (q, r) = (loss.negative_weights().to_vec(), loss.positive_weights().to_vec());
    let got: Vec<F> = q.iter().zip(&r).flat_map(|(&q, &r)| [q, r]).collect();
    let want = Expect::Value(class_weights(&case, &state, &q));
    judge::<F>("EqlV2Loss::class_weights", &case, &Ok(got), &want, X::new(1.0))?;
    let (reduced, per_sample) = match case.reference(&r, &q) {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((a, b)) => (Expect::Value(a), Expect::Value(b)),
    };
    let coef = weight_coef(&[case.weights.as_ref(), Some(&r)]);
    let got = loss.loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("EqlV2Loss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss_and_grad(&case.logits, case.targets()).map(|(l, g)| {
        let mut v = l.to_vec();
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("EqlV2Loss::per_sample_loss_and_grad", &case, &got, &per_sample, coef)?;
    run_eql_stats(&case, &loss, &state, matches!(reduced, Expect::Invalid))
}

/// The batch's gradient statistics `Σ_i s_i·w_ik·|σ(s_ik) − y_ik|` split by `y` (in `f64`, bound:
/// the terms' `(1 − y)·σ(s) + y·σ(−s)`), and the update that merges them: an overflow beyond `f64` is an error, the
/// state then unchanged.
fn run_eql_stats<F: Hostile>(
    case: &EqlCase<F>,
    loss: &EqlV2Loss<F>,
    state: &EqlV2State,
    invalid: bool,
) -> std::result::Result<(), TestCaseError> {
    let (b, k) = case.logits.dim();
    let (r, q) = (loss.positive_weights(), loss.negative_weights());
    let mut sums = vec![(X::ZERO, X::ZERO); 2 * k];
    for i in 0..b {
        let w = case.weights.as_ref().map_or(1.0, |w| w[i].as_f64());
        for j in 0..k {
            let (s, y) = (case.logits[[i, j]].as_f64(), case.targets[[i, j]].as_f64());
            if w == 0.0 || s == f64::NEG_INFINITY {
                continue;
            }
            let sx = X::new(s);
            let (p, not_p) = (sigmoid(sx), sigmoid(sx.neg()));
            let magnitude = X::new(1.0 - y).mul(p).sub(X::new(y).mul(not_p)).abs();
            let bound = X::new(1.0 - y).mul(p).add(X::new(y).mul(not_p));
            let weight = X::new(y).mul(X::new(r[j].as_f64())).add(X::new(1.0 - y).mul(X::new(q[j].as_f64())));
            let term = X::new(w).mul(weight);
            for (slot, share) in [(j, y), (k + j, 1.0 - y)] {
                let (v, bd) = sums[slot];
                sums[slot] = (
                    v.add(term.mul(magnitude).mul(X::new(share))),
                    bd.add(term.mul(bound).mul(X::new(share))),
                );
            }
        }
    }
    let expect = if invalid { Expect::Invalid } else { Expect::Value(sums) };
    let got = loss.gradient_stats(&case.logits, case.targets()).map(|s| {
        let mut v = s.positive().to_vec();
        v.extend(s.negative());
        v
    });
    // `σ` below f64's normal range flushes a term `w·σ` as the kernels' `exp` does.
    let coef = weight_coef(&[case.weights.as_ref(), Some(&r.to_vec())]);
    judge::<f64>("EqlV2Loss::gradient_stats", case, &got, &expect, coef)?;
    // The update is the statistics merged: their f64 sums with the state's, or an error (any
    // non-finite sum) with the state unchanged.
    CALLS.fetch_add(1, Ordering::Relaxed);
    let mut updated = state.clone();
    let result = updated.update(loss, &case.logits, case.targets());
    let merged = got.ok().map(|stats| {
        let (p, n) = stats.split_at(k);
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
        (add(state.positive(), p), add(state.negative(), n))
    });
    match (result, merged) {
        (Ok(()), Some((p, n)))
            if p.iter().chain(&n).all(|v| v.is_finite())
                && updated.positive() == &p[..]
                && updated.negative() == &n[..]
                && updated.batches() == state.batches() + 1 => {}
        (Err(_), Some((p, n))) if !p.iter().chain(&n).all(|v| v.is_finite()) && &updated == state => {}
        (Err(_), None) if &updated == state => {}
        (got, _) => fail("EqlV2State::update", format!("{got:?} -> {updated:?} on {case:?}"))?,
    }
    Ok(())
}

/// Merges of arbitrary sums: the `f64` sums, or an error (a sum beyond `f64`, a batch count beyond
/// `u64`) with the state unchanged.
/// A state's sums `P`, `Q` and batch count.
pub(crate) type StateParts = (Vec<f64>, Vec<f64>, u64);

pub(crate) fn run_eql_merge(
    ((pa, na, ba), (pb, nb, bb)): (StateParts, StateParts),
) -> std::result::Result<(), TestCaseError> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let (Ok(a), Ok(b)) = (
        EqlV2State::from_parts(pa.clone(), na.clone(), ba),
        EqlV2State::from_parts(pb.clone(), nb.clone(), bb),
    ) else {
        return Ok(());
    };
    let add = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(u, v)| u + v).collect::<Vec<f64>>();
    let (p, n) = (add(&pa, &pb), add(&na, &nb));
    let fits =
        pa.len() == pb.len() && p.iter().chain(&n).all(|v| v.is_finite()) && ba.checked_add(bb).is_some();
    let mut merged = a.clone();
    match merged.merge(&b) {
        Ok(())
            if fits
                && merged.positive() == &p[..]
                && merged.negative() == &n[..]
                && merged.batches() == ba + bb =>
        {
            Ok(())
        }
        Err(_) if !fits && merged == a => Ok(()),
        got => fail("EqlV2State::merge", format!("{got:?} -> {merged:?} on {a:?} + {b:?}")),
    }
}

#[test]
fn eqlv2_loss_and_state_on_arbitrary_bits() {
    run("eqlv2 f32", CASES / 2, eql_case::<f32>(), run_eql::<f32>);
    run("eqlv2 f64", CASES / 2, eql_case::<f64>(), run_eql::<f64>);
    let state = || {
        (1usize..4).prop_flat_map(|k| {
            (sums(k), sums(k), prop_oneof![3 => 0u64..100, 1 => Just(u64::MAX), 1 => any::<u64>()])
        })
    };
    run("eqlv2 state merge", CASES, (state(), state()), run_eql_merge);
}
