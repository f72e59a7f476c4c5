//! ZLPR.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct ZlprCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) targets: Array2<F>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) prior: Option<(Vec<F>, F)>,
}

pub(crate) fn zlpr_case<F: Hostile>() -> impl Strategy<Value = ZlprCase<F>> {
    (1usize..4, 1usize..6).prop_flat_map(|(b, k)| {
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(any::<bool>(), b * k),
            proptest::option::weighted(0.4, weights::<F>(b)),
            proptest::option::weighted(
                0.3,
                (proptest::collection::vec((1e-3f64..1.0).prop_map(F::from_f64), k), F::values()),
            ),
        )
            .prop_map(move |(z, t, weights, prior)| ZlprCase {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                targets: Array2::from_shape_vec(
                    (b, k),
                    t.into_iter().map(|t| F::from_f64(t as u8 as f64)).collect(),
                )
                .unwrap(),
                weights,
                prior,
            })
    })
}

impl<F: Hostile> ZlprCase<F> {
    pub(crate) fn reference(&self, loss: &ZlprLoss<F>) -> Expect<Vec<(X, X)>> {
        let (b, k) = self.logits.dim();
        let f = |v: F| v.as_f64();
        let adjust = loss.logit_adjustment();
        let mut total = X::ZERO;
        let mut denominator = X::ZERO;
        let mut grads = Vec::new();
        for i in 0..b {
            let w = self.weights.as_ref().map_or(1.0, |w| f(w[i]));
            if !(w.is_finite() && w >= 0.0) {
                return Expect::Invalid;
            }
            denominator = denominator.add(X::new(w));
            let mut neg = vec![X::ZERO];
            let mut pos = vec![X::ZERO];
            let mut vals = Vec::new();
            for j in 0..k {
                let v = self.logits[[i, j]];
                if v.is_nan() || v == F::infinity() {
                    return Expect::Invalid;
                }
                let s = v + adjust.map_or(F::zero(), |a| a[j]);
                if v.is_finite() && !s.is_finite() {
                    return Expect::Invalid;
                }
                let positive = self.targets[[i, j]] == F::one();
                if s == F::neg_infinity() && positive && w > 0.0 {
                    return Expect::Invalid;
                }
                let sx = if s == F::neg_infinity() { X { m: f64::NEG_INFINITY, e: 0 } } else { X::new(f(s)) };
                if positive {
                    pos.push(sx.neg())
                } else {
                    neg.push(sx)
                }
                vals.push((sx, positive));
            }
            let (lse_n, lse_p) = (lse_x(&neg).unwrap(), lse_x(&pos).unwrap());
            let (parts_n, parts_p) = (lse_parts(&neg).unwrap(), lse_parts(&pos).unwrap());
            let ratio = |x: X, (max, ln_rest): (X, f64)| X::new(x.sub(max).f64() - ln_rest).exp();
            let wx = X::new(w);
            if w > 0.0 {
                total = total.add(wx.mul(lse_n.add(lse_p)));
            }
            for (sx, positive) in vals {
                let g = if w == 0.0 || sx.m == f64::NEG_INFINITY {
                    X::ZERO
                } else if positive {
                    ratio(sx.neg(), parts_p).neg()
                } else {
                    ratio(sx, parts_n)
                };
                grads.push(wx.mul(g));
            }
        }
        let _ = total;
        let total_ref = total;
        note_sum(total);
        let divisor = if loss.reduction() == Reduction::Sum { X::new(1.0) } else { denominator };
        let mut out = Vec::new();
        if divisor.is_zero() {
            out.extend((0..=b * k).map(|_| (X::ZERO, X::ZERO)));
        } else {
            out.push((total_ref.div(divisor), total_ref.div(divisor)));
            out.extend(grads.iter().map(|g| (g.div(divisor), g.div(divisor))));
        }
        Expect::Value(out)
    }
}

pub(crate) fn run_zlpr<F: Hostile>(case: ZlprCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let built = match &case.prior {
        Some((p, tau)) => ZlprLoss::new().with_label_prior(p, *tau),
        None => Ok(ZlprLoss::new()),
    };
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let expect = case.reference(&loss);
    let t = Targets::multi_hot(&case.targets);
    let t = match &case.weights {
        Some(w) => t.with_sample_weights(&w[..]),
        None => t,
    };
    let got = loss.loss_and_grad(&case.logits, t).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    judge::<F>("ZlprLoss::loss_and_grad", &case, &got, &expect, weight_coef(&[case.weights.as_ref()]))
}

#[test]
fn zlpr_loss_on_arbitrary_bits() {
    run("zlpr f32", CASES, zlpr_case::<f32>(), run_zlpr::<f32>);
    run("zlpr f64", CASES, zlpr_case::<f64>(), run_zlpr::<f64>);
}

/// `decode`: `z > 0` for every logit, `±inf` included; a NaN is an error.
fn run_decode<F: Hostile>(z: Array2<F>) -> std::result::Result<(), TestCaseError> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    match (ZlprLoss::<F>::decode(&z), z.iter().any(|v| v.is_nan())) {
        (Err(_), true) => Ok(()),
        (Ok(d), false) if d == z.mapv(|v| v.as_f64() > 0.0) => Ok(()),
        (got, _) => fail("ZlprLoss::decode", format!("{got:?} on {z:?}")),
    }
}

#[test]
fn zlpr_decode_on_arbitrary_bits() {
    let case = |v: BoxedStrategy<f32>| {
        (1usize..4, 1usize..5).prop_flat_map(move |(b, k)| {
            proptest::collection::vec(v.clone(), b * k)
                .prop_map(move |z| Array2::from_shape_vec((b, k), z).unwrap())
        })
    };
    run("zlpr decode f32", CASES, case(f32::values()), run_decode::<f32>);
    let case = (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        proptest::collection::vec(f64::values(), b * k)
            .prop_map(move |z| Array2::from_shape_vec((b, k), z).unwrap())
    });
    run("zlpr decode f64", CASES, case, run_decode::<f64>);
}
