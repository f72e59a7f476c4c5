//! The Seesaw loss and its state: cross-entropy on `z'_j = z_j + log M_yj + log C_yj` (the
//! factors from the counts and the detached log-softmax), and the counts' updates and merges.

use super::*;
use longtail::SeesawLoss;
use longtail::loss::SeesawState;

/// A Seesaw case: the batch, the counts, `p`, `q` and `ε`.
pub(crate) type SeesawCase<F> = (LabelledCase<F>, Vec<u64>, F, F, F);

/// Counts of any size: small, any `u64`, or near `u64::MAX`.
pub(crate) fn count_strategy() -> BoxedStrategy<u64> {
    prop_oneof![3 => 0u64..100, 2 => any::<u64>(), 1 => (0u64..4).prop_map(|d| u64::MAX - d)].boxed()
}

pub(crate) fn seesaw_case<F: Hostile>() -> impl Strategy<Value = SeesawCase<F>> {
    let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
    let param = move || prop_oneof![2 => Just(F::from_f64(0.8)), 2 => Just(F::from_f64(2.0)), 2 => pos(), 1 => F::values()];
    let eps = prop_oneof![2 => Just(F::from_f64(0.01)), 1 => Just(F::one()), 2 => (0.0f64..1.0).prop_map(F::from_f64), 1 => F::values()];
    labelled_case::<F>().prop_flat_map(move |mut case| {
        case.class_weights = None;
        let k = case.logits.ncols();
        (Just(case), proptest::collection::vec(count_strategy(), k), param(), param(), eps.clone())
    })
}

/// `log p_j` of a row, exactly (`-inf` for a masked class); `None` for a fully masked row.
fn log_softmax_ref(z: &[f64]) -> Option<(Vec<f64>, X)> {
    let zx: Vec<X> = z.iter().map(|&v| X::new(v)).collect();
    let (max, ln_rest) = lse_parts(&zx)?;
    let log_p = z
        .iter()
        .map(|&v| if v == f64::NEG_INFINITY { v } else { diff(v, max.f64()).f64() - ln_rest })
        .collect();
    Some((log_p, max.add(X::new(ln_rest))))
}

pub(crate) fn run_seesaw<F: Hostile>(all: SeesawCase<F>) -> std::result::Result<(), TestCaseError> {
    let (case, counts, p, q, eps) = &all;
    SUM_BEYOND_F64.with(|s| s.set(false));
    let state = SeesawState::from_counts(counts.clone()).unwrap();
    let built =
        SeesawLoss::<F>::new(&state).with_p(*p).and_then(|l| l.with_eps(*eps)).and_then(|l| l.with_q(*q));
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(case.reduction());
    let log_counts: Vec<F> = counts.iter().map(|&n| F::from_f64((n.max(1) as f64).ln())).collect();
    let (p, q, eps) = (*p, *q, *eps);
    let log_eps = eps.ln();
    // z' in F as the loss rounds it, from the exact log-softmax; the library's log-softmax is
    // within `ε·(|z_j| + |lse|)` of it, which `q` scales.
    let transform = |y: usize, z: &[F]| {
        let zf: Vec<f64> = z.iter().map(|v| v.as_f64()).collect();
        let Some((log_p, lse)) = log_softmax_ref(&zf) else { return (None, X::ZERO) };
        let own = F::from_f64(log_p[y]).max(log_eps);
        let shifted = (0..z.len())
            .map(|j| {
                if j == y {
                    return z[j];
                }
                let mitigation = p * (log_counts[j] - log_counts[y]).min(F::zero());
                let compensation = q * (F::from_f64(log_p[j]) - own).max(F::zero());
                // A mitigation beyond the range is the limit M_yj → 0 of a negative class, whose
                // e^{z'_j} vanishes: −MAX here, as the library's −inf.
                let shifted = z[j] + mitigation + compensation;
                if z[j].is_finite() && shifted == F::neg_infinity() { F::min_value() } else { shifted }
            })
            .collect();
        let spread =
            zf.iter().filter(|v| v.is_finite()).fold(X::ZERO, |s, &v| s.add(X::new(v).abs()).add(lse.abs()));
        let slack = X::new(8.0 * F::epsilon().as_f64() * (1.0 + q.as_f64())).mul(spread);
        (Some(shifted), slack)
    };
    let ones = vec![F::one(); case.logits.ncols()];
    let expect = case.reference_rows(transform, &ones, 0.0);
    let names = ("SeesawLoss::loss_and_grad", "SeesawLoss::per_sample_loss_and_grad");
    case.judge_loss((names, &all, X::new(1.0)), &loss, expect)
}

/// Updates and merges of arbitrary counts: the exact sums, or an error when one exceeds `u64`,
/// with the state unchanged.
pub(crate) fn run_seesaw_state(
    (a, b, labels): (Vec<u64>, Vec<u64>, Vec<usize>),
) -> std::result::Result<(), TestCaseError> {
    let k = a.len();
    CALLS.fetch_add(2, Ordering::Relaxed);
    let mut state = SeesawState::from_counts(a.clone()).unwrap();
    let other = SeesawState::from_counts(b.clone()).unwrap();
    let want: Option<Vec<u64>> =
        if b.len() == k { a.iter().zip(&b).map(|(x, y)| x.checked_add(*y)).collect() } else { None };
    match (state.merge(&other), &want) {
        (Ok(()), Some(w)) if state.counts() == &w[..] => {}
        (Err(_), None) if state.counts() == &a[..] => {}
        (got, _) => fail("SeesawState::merge", format!("{got:?} -> {:?} on {a:?} + {b:?}", state.counts()))?,
    }
    let mut state = SeesawState::from_counts(a.clone()).unwrap();
    let mut batch = vec![0u64; k];
    let in_range = labels.iter().all(|&y| y < k);
    labels.iter().filter(|&&y| y < k).for_each(|&y| batch[y] += 1);
    let want: Option<Vec<u64>> =
        if in_range { a.iter().zip(&batch).map(|(x, y)| x.checked_add(*y)).collect() } else { None };
    match (state.update(&labels[..]), &want) {
        (Ok(()), Some(w)) if state.counts() == &w[..] => {}
        (Err(_), None) if state.counts() == &a[..] => {}
        (got, _) => {
            fail("SeesawState::update", format!("{got:?} -> {:?} on {a:?} + {labels:?}", state.counts()))?
        }
    }
    Ok(())
}

#[test]
fn seesaw_loss_on_arbitrary_bits() {
    run("seesaw f32", CASES / 3, seesaw_case::<f32>(), run_seesaw::<f32>);
    run("seesaw f64", CASES / 3, seesaw_case::<f64>(), run_seesaw::<f64>);
    let counts = |k| proptest::collection::vec(count_strategy(), k);
    let states = (1usize..5).prop_flat_map(move |k| {
        (
            counts(k),
            prop_oneof![4 => Just(k), 1 => 1usize..5].prop_flat_map(counts),
            proptest::collection::vec(0..k + 1, 0..6),
        )
    });
    run("seesaw state", CASES, states, run_seesaw_state);
}
