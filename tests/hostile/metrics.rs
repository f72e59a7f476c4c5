//! The metrics on counts of any size: a confusion matrix doubled by merges up to `u64::MAX`, its
//! scores against ratios of the exact counts, and a merge that would wrap as an error.

use super::*;

/// Per-class (or one) scores, `None` where undefined.
type Scores = Vec<Option<f64>>;

#[derive(Debug, Clone)]
pub(crate) struct MetricsCase {
    pub(crate) classes: usize,
    pub(crate) labels: Vec<usize>,
    pub(crate) predictions: Vec<usize>,
    pub(crate) doublings: u32,
    pub(crate) other: (Vec<usize>, Vec<usize>),
}

pub(crate) fn metrics_case() -> impl Strategy<Value = MetricsCase> {
    (1usize..5, 1usize..8).prop_flat_map(|(k, n)| {
        let idx = move || proptest::collection::vec(0..k, n);
        (idx(), idx(), prop_oneof![1 => 0u32..4, 2 => 55u32..66], (idx(), idx())).prop_map(
            move |(labels, predictions, doublings, other)| MetricsCase {
                classes: k,
                labels,
                predictions,
                doublings,
                other,
            },
        )
    })
}

/// Whether `got` is `want` within a few roundings (or both undefined).
fn same(got: Option<f64>, want: Option<f64>) -> bool {
    match (got, want) {
        (Some(g), Some(w)) => g.is_finite() && (g - w).abs() <= 1e-14 * w.abs(),
        (None, None) => true,
        _ => false,
    }
}

pub(crate) fn run_metrics(case: MetricsCase) -> std::result::Result<(), TestCaseError> {
    let k = case.classes;
    let mut cm = ConfusionMatrix::new(&case.labels[..], &case.predictions[..], k).unwrap();
    let mut exact = vec![0u128; k * k];
    case.labels.iter().zip(&case.predictions).for_each(|(&y, &p)| exact[y * k + p] += 1);
    CALLS.fetch_add(1, Ordering::Relaxed);
    for _ in 0..case.doublings {
        let copy = cm.clone();
        let total: u128 = exact.iter().sum();
        let result = cm.merge(&copy);
        if 2 * total > u64::MAX as u128 {
            if result.is_ok() || cm != copy {
                return fail(
                    "ConfusionMatrix::merge",
                    format!("{result:?}, not an unchanged error, on {case:?}"),
                );
            }
            break;
        }
        if let Err(e) = result {
            return fail("ConfusionMatrix::merge", format!("Err({e}) on {case:?}"));
        }
        exact.iter_mut().for_each(|c| *c *= 2);
    }
    let other = ConfusionMatrix::new(&case.other.0[..], &case.other.1[..], k).unwrap();
    let before = cm.clone();
    let mut other_exact = vec![0u128; k * k];
    case.other.0.iter().zip(&case.other.1).for_each(|(&y, &p)| other_exact[y * k + p] += 1);
    let merged: Vec<u128> = exact.iter().zip(&other_exact).map(|(a, b)| a + b).collect();
    CALLS.fetch_add(1, Ordering::Relaxed);
    match cm.merge(&other) {
        Ok(()) if merged.iter().sum::<u128>() <= u64::MAX as u128 => exact = merged,
        Err(_) if merged.iter().sum::<u128>() > u64::MAX as u128 && cm == before => {}
        got => return fail("ConfusionMatrix::merge", format!("{got:?} on {case:?}")),
    }
    let counts: Vec<u128> = cm.counts().iter().map(|&c| c as u128).collect();
    if counts != exact {
        return fail("ConfusionMatrix::merge", format!("counts {counts:?}, expected {exact:?}"));
    }
    // The scores from the exact counts.
    let support = |c: usize| (0..k).map(|j| exact[c * k + j]).sum::<u128>();
    let predicted = |c: usize| (0..k).map(|i| exact[i * k + c]).sum::<u128>();
    let ratio = |a: u128, b: u128| (b > 0).then(|| a as f64 / b as f64);
    let tp = |c: usize| exact[c * k + c];
    let total: u128 = exact.iter().sum();
    let recalls: Vec<Option<f64>> = (0..k).map(|c| ratio(tp(c), support(c))).collect();
    let precisions: Vec<Option<f64>> = (0..k).map(|c| ratio(tp(c), predicted(c))).collect();
    let f1: Vec<Option<f64>> = (0..k).map(|c| ratio(2 * tp(c), support(c) + predicted(c))).collect();
    let mean = |v: &[Option<f64>]| {
        let v: Vec<f64> = v.iter().flatten().copied().collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let gmean = {
        let v: Vec<f64> = recalls.iter().flatten().copied().collect();
        v.iter().product::<f64>().powf(1.0 / v.len() as f64)
    };
    let worst = recalls.iter().flatten().fold(f64::INFINITY, |m, &v| m.min(v));
    let accuracy = ratio((0..k).map(tp).sum(), total);
    CALLS.fetch_add(9, Ordering::Relaxed);
    let checks: Vec<(&'static str, Scores, Scores)> = vec![
        ("ConfusionMatrix::accuracy", vec![Some(cm.accuracy())], vec![accuracy]),
        ("ConfusionMatrix::recalls", cm.recalls(), recalls.clone()),
        ("ConfusionMatrix::precisions", cm.precisions(), precisions),
        ("ConfusionMatrix::f1_scores", cm.f1_scores(), f1.clone()),
        (
            "ConfusionMatrix::balanced_accuracy",
            vec![Some(cm.balanced_accuracy())],
            vec![Some(mean(&recalls))],
        ),
        ("ConfusionMatrix::macro_f1", vec![Some(cm.macro_f1())], vec![Some(mean(&f1))]),
        ("ConfusionMatrix::worst_class_recall", vec![Some(cm.worst_class_recall())], vec![Some(worst)]),
        ("ConfusionMatrix::geometric_mean_recall", vec![Some(cm.geometric_mean_recall())], vec![Some(gmean)]),
        ("ConfusionMatrix::total", vec![Some(cm.total() as f64)], vec![Some(total as f64)]),
    ];
    for (entry, got, want) in checks {
        let ok = got.len() == want.len()
            && got.iter().zip(&want).all(|(g, w)| same(*g, *w) || (w == &Some(0.0) && g == &Some(0.0)));
        if !ok {
            fail(entry, format!("{got:?}, expected {want:?} on {case:?}"))?;
        }
    }
    // The shot split of the evaluation counts as training counts: every class in one group.
    let prior = Prior::from_counts(&(0..k).map(|c| support(c) as f64 + 1.0).collect::<Vec<_>>()).unwrap();
    CALLS.fetch_add(1, Ordering::Relaxed);
    match ShotSplit::default().report(&cm, &prior) {
        Ok(r) => {
            for v in [r.many, r.medium, r.few].into_iter().flatten() {
                if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                    fail("ShotSplit::report", format!("{r:?} on {case:?}"))?;
                }
            }
        }
        Err(e) => fail("ShotSplit::report", format!("Err({e}) on {case:?}"))?,
    }
    Ok(())
}

#[test]
fn metrics_on_counts_up_to_u64_max() {
    run("metrics", CASES, metrics_case(), run_metrics);
}
