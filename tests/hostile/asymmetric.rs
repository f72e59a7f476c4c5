//! The asymmetric loss.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct AsymmetricCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) targets: Array2<F>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) gammas: (F, F),
    pub(crate) clip: F,
    pub(crate) sum: bool,
}

pub(crate) fn asymmetric_case<F: Hostile>() -> impl Strategy<Value = AsymmetricCase<F>> {
    (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
        let gamma =
            || prop_oneof![1 => Just(F::zero()), 1 => Just(F::one()), 1 => Just(F::from_f64(4.0)), 2 => pos()];
        let clip = prop_oneof![
            1 => Just(F::zero()),
            1 => Just(F::from_f64(0.05)),
            1 => (0.0f64..1.0).prop_map(F::from_f64),
            1 => pos().prop_filter("below 1", |c| *c < F::one()),
        ];
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(any::<bool>(), b * k),
            proptest::option::weighted(0.4, weights::<F>(b)),
            (gamma(), gamma()),
            clip,
            any::<bool>(),
        )
            .prop_map(move |(z, t, weights, gammas, clip, sum)| AsymmetricCase {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                targets: Array2::from_shape_vec((b, k), t.into_iter().map(|t| F::from_f64(t as u8 as f64)).collect())
                    .unwrap(),
                weights,
                gammas,
                clip,
                sum,
            })
    })
}

impl<F: Hostile> AsymmetricCase<F> {
    /// `(ℓ, its bound, ∂ℓ/∂s, its bound)` of one valid decision of weight 1.
    pub(crate) fn decision(&self, s: f64, positive: bool) -> (X, X, X, X) {
        let (gamma_pos, gamma_neg, m) = (self.gammas.0.as_f64(), self.gammas.1.as_f64(), self.clip.as_f64());
        let sx = X::new(s);
        let (sp_pos, sp_neg) = (softplus(sx), softplus(sx.neg()));
        let (p, q) = (sigmoid(sx), sigmoid(sx.neg()));
        let focus =
            |gamma: f64, log: X| if gamma == 0.0 { X::new(1.0) } else { X::new(gamma).mul(log).exp() };
        if positive {
            let f = focus(gamma_pos, sp_pos.neg());
            let a = X::new(gamma_pos).mul(p).mul(sp_neg);
            let value = f.mul(sp_neg);
            return (value, value, f.mul(a.add(q)).neg(), f.mul(a.add(q)));
        }
        if m == 0.0 {
            let f = focus(gamma_neg, sp_neg.neg());
            let a = X::new(gamma_neg).mul(q).mul(sp_pos);
            let value = f.mul(sp_pos);
            return (value, value, f.mul(a.add(p)), f.mul(a.add(p)));
        }
        // p_m = p − m, as the library rounds `p` (a few ulp): the value and slope at p_m ± δ
        // bound the error that rounding carries into `max(p − m, 0)`.
        let (pf, qf) = (p.f64(), q.f64());
        let at = |shifted: f64| -> (X, X) {
            if shifted <= 0.0 {
                return (X::ZERO, X::ZERO);
            }
            // 1 − p_m in extended range: σ(−s) + m may lie below f64's range.
            let one_minus = if shifted <= 0.5 { X::new(1.0 - shifted) } else { q.add(X::new(m)) };
            let lost = if shifted <= 0.5 { -(-shifted).ln_1p() } else { -one_minus.ln() };
            let f = focus(gamma_neg, X::new(shifted.ln()));
            let value = f.mul(X::new(lost));
            let inner = X::new(gamma_neg * lost / shifted).add(X::new(1.0).div(one_minus));
            (value, p.mul(q).mul(f).mul(inner))
        };
        let shifted = if pf <= 0.5 { pf - m } else { (1.0 - m) - qf };
        let delta = 8.0 * F::epsilon().as_f64() * pf.max(m);
        let ((v, g), (v_lo, g_lo), (v_hi, g_hi)) = (at(shifted), at(shifted - delta), at(shifted + delta));
        let spread = |a: X, b: X| a.sub(b).abs().div(X::new(F::RTOL));
        (v, v.add(spread(v_hi, v_lo)), g, g.add(spread(g_hi, g_lo)))
    }

    pub(crate) fn reference(&self) -> Expect<Outputs> {
        let (b, k) = self.logits.dim();
        let mut rows = Vec::new();
        let mut coefficients = Vec::new();
        for i in 0..b {
            let w = self.weights.as_ref().map_or(1.0, |w| w[i].as_f64());
            if !(w.is_finite() && w >= 0.0) {
                return Expect::Invalid;
            }
            let wx = X::new(w);
            let (mut l, mut l_bound, mut g, mut bd) = (X::ZERO, X::ZERO, Vec::new(), Vec::new());
            for j in 0..k {
                let s = self.logits[[i, j]].as_f64();
                let positive = self.targets[[i, j]] == F::one();
                if s.is_nan() || s == f64::INFINITY || (s == f64::NEG_INFINITY && positive && w > 0.0) {
                    return Expect::Invalid;
                }
                if s == f64::NEG_INFINITY || w == 0.0 {
                    g.push(X::ZERO);
                    bd.push(X::ZERO);
                    continue;
                }
                let (v, vb, d, db) = self.decision(s, positive);
                l = l.add(wx.mul(v));
                l_bound = l_bound.add(wx.mul(vb));
                g.push(wx.mul(d));
                bd.push(wx.mul(db));
            }
            rows.push((l, l_bound, g, bd));
            coefficients.push(wx.mul(X::new(k as f64)));
        }
        Expect::Value(batch_outputs(&rows, &coefficients, self.sum))
    }
}

pub(crate) fn run_asymmetric<F: Hostile>(case: AsymmetricCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let built =
        AsymmetricLoss::new().with_gammas(case.gammas.0, case.gammas.1).and_then(|l| l.with_clip(case.clip));
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(if case.sum { Reduction::Sum } else { Reduction::Mean });
    let (reduced, per_sample) = match case.reference() {
        Expect::Invalid => (Expect::Invalid, Expect::Invalid),
        Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
    };
    let targets = || {
        let t = Targets::multi_hot(&case.targets);
        match &case.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    };
    // The exponentials' flush to 0 below the smallest normal number is multiplied by γ in a
    // focusing term's derivative.
    let gamma = X::new(1.0 + case.gammas.0.as_f64().max(case.gammas.1.as_f64()));
    let coef = weight_coef(&[case.weights.as_ref()]).mul(gamma);
    let got = loss.loss_and_grad(&case.logits, targets()).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("AsymmetricLoss::loss_and_grad", &case, &got, &reduced, coef)?;
    let got = loss.per_sample_loss_and_grad(&case.logits, targets()).map(|(l, g)| {
        let mut v = l.to_vec();
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("AsymmetricLoss::per_sample_loss_and_grad", &case, &got, &per_sample, coef)
}

#[test]
fn asymmetric_loss_on_arbitrary_bits() {
    run("asymmetric f32", CASES / 3, asymmetric_case::<f32>(), run_asymmetric::<f32>);
    run("asymmetric f64", CASES / 3, asymmetric_case::<f64>(), run_asymmetric::<f64>);
}
