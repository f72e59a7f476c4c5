//! Post-hoc adjustment: `z − τ·log π`, the prior shift `z + log π' − log π`, their argmax, and the
//! binary thresholds `τ·logit(π)` and `logit(π) − logit(π')`.

use super::*;
use longtail::adjust::{
    adjusted_logits, binary_shift_threshold, binary_threshold, predict_adjusted, predict_prior_shifted,
    prior_shifted_logits,
};

/// Arbitrary counts of a prior: any bit pattern, ordinary values, or the extremes.
pub(crate) fn counts_strategy(k: usize) -> BoxedStrategy<Vec<f64>> {
    proptest::collection::vec(
        prop_oneof![
            2 => any::<u64>().prop_map(f64::from_bits),
            3 => 0.0f64..100.0,
            1 => proptest::sample::select(vec![0.0, 5e-324, 1e-308, 1.0, 1e300, f64::MAX / 4.0]),
        ],
        k,
    )
    .boxed()
}

/// `log π_k` of counts, exact to the rounding of `f64` (`log(1 − rest/total)` for a class that
/// holds most of the mass); `None` for a count of 0.
pub(crate) fn log_prior_ref(counts: &[f64]) -> Vec<Option<f64>> {
    let total = counts.iter().fold(X::ZERO, |s, &n| s.add(X::new(n)));
    (0..counts.len())
        .map(|k| {
            if counts[k] == 0.0 {
                return None;
            }
            let own = X::new(counts[k]);
            let rest = counts
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != k)
                .fold(X::ZERO, |s, (_, &n)| s.add(X::new(n)));
            if own.gt(rest) { Some((-rest.div(total).f64()).ln_1p()) } else { Some(own.ln() - total.ln()) }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct AdjustCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) train: Vec<f64>,
    pub(crate) target: Vec<f64>,
    pub(crate) tau: F,
}

pub(crate) fn adjust_case<F: Hostile>() -> impl Strategy<Value = AdjustCase<F>> {
    (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        (proptest::collection::vec(F::values(), b * k), counts_strategy(k), counts_strategy(k), F::values())
            .prop_map(move |(z, train, target, tau)| AdjustCase {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                train,
                target,
                tau,
            })
    })
}

/// Judges the offset logits `z + o` (masks stay masks) and the argmax over them.
fn judge_offset<F: Hostile>(
    entry: (&'static str, &'static str),
    case: &AdjustCase<F>,
    offset: Option<Vec<(X, X)>>,
    logits: Result<Array2<F>, Error>,
    argmax: Result<Vec<usize>, Error>,
) -> std::result::Result<(), TestCaseError> {
    let z = &case.logits;
    let bad_logit = z.iter().any(|v| v.is_nan() || *v == F::infinity());
    let Some(offset) = offset.filter(|_| !bad_logit) else {
        let got = logits.map(|a| a.iter().copied().collect());
        judge::<F>(entry.0, case, &got, &Expect::Invalid, X::new(1.0))?;
        return judge::<F>(entry.1, case, &argmax.map(|_| vec![]), &Expect::Invalid, X::new(1.0));
    };
    let (b, k) = z.dim();
    let value = |i: usize, j: usize| X::new(z[[i, j]].as_f64()).add(offset[j].0);
    let bound = |i: usize, j: usize| X::new(z[[i, j]].as_f64()).abs().add(offset[j].1);
    let masked = |i: usize, j: usize| z[[i, j]] == F::neg_infinity();
    // The masked entries are -inf in the output; the others are judged.
    let mut want = Vec::new();
    let got = match logits {
        Ok(a) => {
            if (0..b).any(|i| (0..k).any(|j| masked(i, j) != (a[[i, j]] == F::neg_infinity()))) {
                return fail(entry.0, format!("a mask moved: {a:?} on {case:?}"));
            }
            Ok(a.indexed_iter().filter(|&((i, j), _)| !masked(i, j)).map(|(_, &v)| v).collect())
        }
        Err(e) => Err(e),
    };
    for i in 0..b {
        for j in (0..k).filter(|&j| !masked(i, j)) {
            want.push((value(i, j), bound(i, j)));
        }
    }
    judge::<F>(entry.0, case, &got, &Expect::Value(want.clone()), X::new(1.0))?;
    // The argmax: a fully masked row is an error; otherwise the prediction's exact value is the
    // row's maximum, within the rounding of the sum.
    let full_mask = (0..b).any(|i| (0..k).all(|j| masked(i, j)));
    let overflow = want.iter().any(|(v, _)| fits::<F>(*v) != Some(true));
    CALLS.fetch_add(1, Ordering::Relaxed);
    match argmax {
        Err(e) if !full_mask && !overflow => fail(entry.1, format!("Err({e}) on {case:?}")),
        Err(_) => Ok(()),
        Ok(p) if full_mask => fail(entry.1, format!("Ok({p:?}) for a fully masked row on {case:?}")),
        Ok(p) => {
            for (i, &y) in p.iter().enumerate() {
                let best =
                    (0..k).filter(|&j| !masked(i, j)).map(|j| value(i, j)).fold(None, |m: Option<X>, v| {
                        match m {
                            Some(m) if !v.gt(m) => Some(m),
                            _ => Some(v),
                        }
                    });
                let tol = (0..k)
                    .filter(|&j| !masked(i, j))
                    .fold(X::ZERO, |t, j| if bound(i, j).gt(t) { bound(i, j) } else { t })
                    .mul(X::new(4.0 * F::epsilon().as_f64()));
                let ok = y < k && !masked(i, y) && !best.unwrap().sub(value(i, y)).gt(tol);
                if !ok {
                    return fail(entry.1, format!("row {i} predicts {y}, not the argmax, on {case:?}"));
                }
            }
            Ok(())
        }
    }
}

pub(crate) fn run_adjust<F: Hostile>(case: AdjustCase<F>) -> std::result::Result<(), TestCaseError> {
    let (Ok(train), Ok(target)) = (Prior::from_counts(&case.train), Prior::from_counts(&case.target)) else {
        // The priors on arbitrary counts are the `priors` generator's.
        return Ok(());
    };
    let tau = case.tau.as_f64();
    let log_train = log_prior_ref(&case.train);
    let log_target = log_prior_ref(&case.target);
    // −τ·log π_k; documented: τ finite, no zero count unless τ = 0, and every offset within F.
    let adjustment: Option<Vec<(X, X)>> = (tau.is_finite())
        .then(|| {
            log_train
                .iter()
                .map(|l| if tau == 0.0 { Some(X::ZERO) } else { l.map(|l| X::new(tau).mul(X::new(-l))) })
                .collect::<Option<Vec<X>>>()
        })
        .flatten()
        .filter(|o| o.iter().all(|&v| fits::<F>(v) == Some(true)))
        .map(|o| o.into_iter().map(|v| (v, v.abs())).collect());
    let z = &case.logits;
    judge_offset(
        ("adjusted_logits", "predict_adjusted"),
        &case,
        adjustment,
        adjusted_logits(z, &train, case.tau),
        predict_adjusted(z, &train, case.tau),
    )?;
    // log π'_k − log π_k from the two logs (documented), so within the rounding of both.
    let shift: Option<Vec<(X, X)>> = log_train
        .iter()
        .zip(&log_target)
        .map(|(s, t)| {
            let (s, t) = (X::new((*s)?), X::new((*t)?));
            Some((t.sub(s), t.abs().add(s.abs())))
        })
        .collect();
    judge_offset(
        ("prior_shifted_logits", "predict_prior_shifted"),
        &case,
        shift,
        prior_shifted_logits(z, &train, &target),
        predict_prior_shifted(z, &train, &target),
    )
}

/// `logit(π) = log π − log(1 − π)` for `π ∈ (0, 1)`.
fn logit_ref(p: f64) -> Option<X> {
    (p > 0.0 && p < 1.0).then(|| X::new(p.ln() - (-p).ln_1p()))
}

pub(crate) fn run_binary_thresholds((p, q, tau): (f64, f64, f64)) -> std::result::Result<(), TestCaseError> {
    let case = (p, q, tau);
    let want = match logit_ref(p) {
        Some(l) if tau.is_finite() => {
            let t = X::new(tau).mul(l);
            Expect::Value(vec![(t, t)])
        }
        _ => Expect::Invalid,
    };
    judge::<f64>("binary_threshold", &case, &binary_threshold(p, tau).map(|t| vec![t]), &want, X::new(1.0))?;
    let want = match (logit_ref(p), logit_ref(q)) {
        (Some(a), Some(b)) => Expect::Value(vec![(a.sub(b), a.abs().add(b.abs()))]),
        _ => Expect::Invalid,
    };
    let got = binary_shift_threshold(p, q).map(|t| vec![t]);
    judge::<f64>("binary_shift_threshold", &case, &got, &want, X::new(1.0))
}

#[test]
fn adjust_on_arbitrary_bits() {
    run("adjust f32", CASES, adjust_case::<f32>(), run_adjust::<f32>);
    run("adjust f64", CASES, adjust_case::<f64>(), run_adjust::<f64>);
    let prob = || {
        prop_oneof![
            2 => any::<u64>().prop_map(f64::from_bits),
            2 => 0.0f64..1.0,
            1 => proptest::sample::select(vec![5e-324, 1e-300, 0.5, 1.0 - 1e-16, 0.0, 1.0]),
        ]
    };
    run("binary thresholds", CASES, (prob(), prob(), f64::values()), run_binary_thresholds);
}
