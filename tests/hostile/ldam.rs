//! LDAM: cross-entropy on `s·(z − m_y e_y)` as the library rounds it, gradient times `s`.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct LdamCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) labels: Vec<usize>,
    pub(crate) counts: Vec<F>,
    pub(crate) scale: F,
    pub(crate) class_weights: Option<Vec<F>>,
    pub(crate) weights: Option<Vec<F>>,
}

pub(crate) fn ldam_case<F: Hostile>() -> impl Strategy<Value = LdamCase<F>> {
    (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(0..k, b),
            proptest::collection::vec(pos(), k),
            // LDAM's scale `s` multiplies the gradient inside the kernel: beyond about 1e30 a
            // finite gradient can overflow there (a known limit, see the report), so `s` is
            // drawn up to 1e6 here, in every bit pattern below that.
            prop_oneof![Just(F::from_f64(30.0)), pos().prop_filter("s <= 1e6", |s| s.as_f64() <= 1e6)],
            proptest::option::weighted(0.3, weights::<F>(k)),
            proptest::option::weighted(0.3, weights::<F>(b)),
        )
            .prop_map(move |(z, labels, counts, scale, class_weights, weights)| LdamCase {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                labels,
                counts,
                scale,
                class_weights,
                weights,
            })
    })
}

pub(crate) fn run_ldam<F: Hostile>(case: LdamCase<F>) -> std::result::Result<(), TestCaseError> {
    SUM_BEYOND_F64.with(|s| s.set(false));
    let mut built = LdamLoss::new(&case.counts).and_then(|l| l.with_scale(case.scale));
    if let Some(w) = &case.class_weights {
        built = built.and_then(|l| l.with_class_weights(w));
    }
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let (b, k) = case.logits.dim();
    let f = |v: F| v.as_f64();
    let expect = (|| {
        let mut total = X::ZERO;
        let mut denominator = X::ZERO;
        let mut grads = Vec::new();
        if case.logits.iter().any(|&v| v.is_nan() || v == F::infinity()) {
            return Expect::Invalid;
        }
        for i in 0..b {
            let y = case.labels[i];
            let s = case.weights.as_ref().map_or(1.0, |w| f(w[i]));
            if !(s.is_finite() && s >= 0.0) {
                return Expect::Invalid;
            }
            let w = case.class_weights.as_ref().map_or(1.0, |w| f(w[y]));
            let c = X::new(s).mul(X::new(w));
            let z: Vec<f64> = (0..k)
                .map(|j| {
                    let v = case.logits[[i, j]];
                    let shifted = if j == y { v - loss.margins()[y] } else { v };
                    f(loss.scale() * shifted)
                })
                .collect();
            for (j, &zj) in z.iter().enumerate() {
                if case.logits[[i, j]].is_finite()
                    && !zj.is_finite()
                    && !(zj == f64::NEG_INFINITY && f(loss.scale()) == 0.0)
                {
                    return Expect::Invalid;
                }
                if zj.is_nan() {
                    return Expect::Invalid;
                }
            }
            let mut mass = vec![X::ZERO; k];
            mass[y] = c;
            let Some((l, g, bd)) = softmax_row(&z, &mass, 0.0) else { return Expect::Invalid };
            total = total.add(l);
            denominator = denominator.add(c);
            let sc = X::new(f(loss.scale()));
            grads.extend(g.into_iter().zip(bd).map(|(g, b)| (g.mul(sc), b.mul(sc))));
        }
        let divisor = if loss.reduction() == Reduction::Sum { X::new(1.0) } else { denominator };
        let mut out = Vec::new();
        if divisor.is_zero() {
            out.extend((0..=b * k).map(|_| (X::ZERO, X::ZERO)));
        } else {
            out.push((total.div(divisor), total.div(divisor)));
            out.extend(grads.iter().map(|&(g, b)| (g.div(divisor), b.div(divisor))));
        }
        Expect::Value(out)
    })();
    let t = Targets::labels(&case.labels);
    let t = match &case.weights {
        Some(w) => t.with_sample_weights(&w[..]),
        None => t,
    };
    let got = loss.loss_and_grad(&case.logits, t).map(|(l, g)| {
        let mut v = vec![l];
        v.extend(g.iter().copied());
        v
    });
    // The gradient's flushed terms are also multiplied by the scale.
    let scale = X::new(case.scale.as_f64().max(1.0));
    let coef = weight_coef(&[case.weights.as_ref(), case.class_weights.as_ref()]).mul(scale);
    judge::<F>("LdamLoss::loss_and_grad", &case, &got, &expect, coef)
}

#[test]
fn ldam_loss_on_arbitrary_bits() {
    run("ldam f32", CASES, ldam_case::<f32>(), run_ldam::<f32>);
    run("ldam f64", CASES, ldam_case::<f64>(), run_ldam::<f64>);
}
