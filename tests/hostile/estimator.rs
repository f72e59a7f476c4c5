//! The streaming prior estimator on counts of any size: merges doubled up to `f64`'s range, the
//! exact counts or an overflow error with the estimator unchanged, and the prior of the counts.

use super::*;
use longtail::prior::PriorEstimator;

/// Labels, `K`, how many times the estimator merges into itself, and a decay.
pub(crate) type EstimatorCase = (Vec<usize>, usize, u32, f64);

pub(crate) fn estimator_case() -> impl Strategy<Value = EstimatorCase> {
    (1usize..5).prop_flat_map(|k| {
        (
            proptest::collection::vec(0..k, 1..6),
            Just(k),
            prop_oneof![1 => 0u32..4, 2 => 1015u32..1030],
            prop_oneof![2 => Just(1.0), 1 => 0.0f64..1.0, 1 => any::<u64>().prop_map(f64::from_bits)],
        )
    })
}

pub(crate) fn run_estimator(
    (labels, k, doublings, decay): EstimatorCase,
) -> std::result::Result<(), TestCaseError> {
    let case = (&labels, k, doublings, decay);
    CALLS.fetch_add(1, Ordering::Relaxed);
    let built = PriorEstimator::new(k).and_then(|e| e.with_decay(decay));
    let valid_decay = decay > 0.0 && decay <= 1.0;
    let mut est = match built {
        Ok(e) if valid_decay => e,
        Err(_) if !valid_decay => return Ok(()),
        got => return fail("PriorEstimator::with_decay", format!("{got:?} on {case:?}")),
    };
    est.update(&labels[..]).unwrap();
    // One step: the counts are the labels' counts exactly, whatever the decay.
    let mut exact: Vec<f64> = vec![0.0; k];
    labels.iter().for_each(|&y| exact[y] += 1.0);
    for _ in 0..doublings {
        let copy = est.clone();
        CALLS.fetch_add(1, Ordering::Relaxed);
        let result = est.merge(&copy);
        let beyond = exact.iter().any(|c| (2.0 * c).is_infinite());
        match result {
            Ok(()) if !beyond => exact.iter_mut().for_each(|c| *c *= 2.0),
            Err(_) if beyond && est.counts() == copy.counts() => break,
            got => {
                return fail("PriorEstimator::merge", format!("{got:?} -> {:?} on {case:?}", est.counts()));
            }
        }
    }
    if est.counts() != &exact[..] {
        return fail(
            "PriorEstimator::merge",
            format!("counts {:?}, expected {exact:?} on {case:?}", est.counts()),
        );
    }
    // The prior: its total is an output, beyond f64 an overflow.
    CALLS.fetch_add(1, Ordering::Relaxed);
    let total = exact.iter().fold(X::ZERO, |s, &c| s.add(X::new(c)));
    match est.prior() {
        Ok(p) => {
            let got = p.probabilities::<f64>();
            let want: Vec<f64> = exact.iter().map(|&c| X::new(c).div(total).f64()).collect();
            if got.iter().zip(&want).any(|(g, w)| !(g.is_finite() && (g - w).abs() <= 1e-15 * w)) {
                fail("PriorEstimator::prior", format!("{got:?}, expected {want:?} on {case:?}"))?;
            }
        }
        Err(_) if !total.f64().is_finite() => {}
        Err(e) => fail("PriorEstimator::prior", format!("Err({e}) on {case:?}"))?,
    }
    Ok(())
}

#[test]
fn prior_estimator_on_counts_up_to_f64_max() {
    run("prior estimator", CASES, estimator_case(), run_estimator);
}
