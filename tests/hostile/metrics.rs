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

#[derive(Debug, Clone)]
pub(crate) struct FreeMetricsCase {
    pub(crate) classes: usize,
    pub(crate) labels: Vec<usize>,
    pub(crate) predictions: Vec<usize>,
    pub(crate) thresholds: (f64, f64),
    pub(crate) counts: Vec<f64>,
}

/// Labels and predictions of any length (empty, mismatched) and class (out of range sometimes),
/// arbitrary shot thresholds and training counts.
pub(crate) fn free_metrics_case() -> impl Strategy<Value = FreeMetricsCase> {
    let threshold = || {
        prop_oneof![
            2 => any::<u64>().prop_map(f64::from_bits),
            3 => 0.0f64..200.0,
            2 => proptest::sample::select(vec![0.0, -0.0, 20.0, 100.0, 5e-324, f64::MAX, f64::INFINITY, f64::NAN, -1.0]),
        ]
    };
    (0usize..5, 0usize..7).prop_flat_map(move |(k, n)| {
        let idx = move || proptest::collection::vec(prop_oneof![12 => 0..k.max(1), 1 => Just(k)], n);
        let len = prop_oneof![8 => Just(0usize), 1 => Just(1usize)];
        (idx(), idx(), len, (threshold(), threshold()), crate::adjust::counts_strategy(k.max(1))).prop_map(
            move |(labels, mut predictions, extra, thresholds, counts)| {
                predictions.extend(std::iter::repeat_n(0, extra));
                FreeMetricsCase { classes: k, labels, predictions, thresholds, counts }
            },
        )
    })
}

pub(crate) fn run_free_metrics(case: FreeMetricsCase) -> std::result::Result<(), TestCaseError> {
    let k = case.classes;
    let (y, p) = (&case.labels, &case.predictions);
    let valid = k > 0 && !y.is_empty() && y.len() == p.len() && y.iter().chain(p).all(|&c| c < k);
    let reference = valid.then(|| {
        let tp = |c: usize| y.iter().zip(p).filter(|&(&a, &b)| a == c && b == c).count() as f64;
        let support = |c: usize| y.iter().filter(|&&a| a == c).count() as f64;
        let predicted = |c: usize| p.iter().filter(|&&b| b == c).count() as f64;
        let recalls: Vec<f64> = (0..k).filter(|&c| support(c) > 0.0).map(|c| tp(c) / support(c)).collect();
        let f1: Vec<f64> = (0..k)
            .filter(|&c| support(c) + predicted(c) > 0.0)
            .map(|c| 2.0 * tp(c) / (support(c) + predicted(c)))
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        ((0..k).map(tp).sum::<f64>() / y.len() as f64, mean(&recalls), mean(&f1))
    });
    CALLS.fetch_add(3, Ordering::Relaxed);
    let got = [
        ("metrics::accuracy", longtail::metrics::accuracy(&y[..], &p[..], k), reference.map(|r| r.0)),
        (
            "metrics::balanced_accuracy",
            longtail::metrics::balanced_accuracy(&y[..], &p[..], k),
            reference.map(|r| r.1),
        ),
        ("metrics::macro_f1", longtail::metrics::macro_f1(&y[..], &p[..], k), reference.map(|r| r.2)),
    ];
    for (entry, got, want) in got {
        match (got, want) {
            (Err(_), None) => {}
            (Ok(g), Some(w)) if g.is_finite() && (g - w).abs() <= 1e-14 * w.abs().max(1.0) => {}
            (got, want) => fail(entry, format!("{got:?}, expected {want:?} on {case:?}"))?,
        }
    }
    // The shot split: thresholds finite, >= 0, few_below <= many_above.
    let (many, few) = case.thresholds;
    let split_valid = many.is_finite() && many >= 0.0 && few.is_finite() && few >= 0.0 && few <= many;
    CALLS.fetch_add(1, Ordering::Relaxed);
    let split = match (ShotSplit::new(many, few), split_valid) {
        (Ok(s), true) if s.many_above() == many && s.few_below() == few => s,
        (Err(_), false) => ShotSplit::default(),
        (got, _) => return fail("ShotSplit::new", format!("{got:?} for ({many:e}, {few:e})")),
    };
    let (many, few) = (split.many_above(), split.few_below());
    let group = |n: f64| {
        if n > many {
            Shot::Many
        } else if n < few {
            Shot::Few
        } else {
            Shot::Medium
        }
    };
    for &n in &case.counts {
        CALLS.fetch_add(1, Ordering::Relaxed);
        match (split.shot(n), n.is_nan() || n < 0.0) {
            (Err(_), true) => {}
            (Ok(s), false) if s == group(n) => {}
            (got, _) => fail("ShotSplit::shot", format!("{got:?} for {n:e} in ({many:e}, {few:e})"))?,
        }
    }
    // The report: each group's mean recall over its classes present in the labels.
    if let (true, Ok(prior)) = (valid, Prior::from_counts(&case.counts)) {
        let cm = ConfusionMatrix::new(&y[..], &p[..], k).unwrap();
        CALLS.fetch_add(1, Ordering::Relaxed);
        let got = split.report(&cm, &prior);
        if case.counts.len() != k {
            if got.is_ok() {
                fail("ShotSplit::report", format!("Ok for {} counts of {k} classes", case.counts.len()))?;
            }
            return Ok(());
        }
        let mean = |shot: Shot| {
            let r: Vec<f64> = (0..k)
                .filter(|&c| group(case.counts[c]) == shot)
                .filter_map(|c| {
                    let support = y.iter().filter(|&&a| a == c).count() as f64;
                    let tp = y.iter().zip(p).filter(|&(&a, &b)| a == c && b == c).count() as f64;
                    (support > 0.0).then(|| tp / support)
                })
                .collect();
            (!r.is_empty()).then(|| r.iter().sum::<f64>() / r.len() as f64)
        };
        let want = [mean(Shot::Many), mean(Shot::Medium), mean(Shot::Few)];
        match got {
            Ok(r) if [r.many, r.medium, r.few].iter().zip(&want).all(|(g, w)| same(*g, *w) || g == w) => {}
            got => fail("ShotSplit::report", format!("{got:?}, expected {want:?} on {case:?}"))?,
        }
    }
    Ok(())
}

#[test]
fn free_metrics_and_shots_on_arbitrary_input() {
    run("free metrics", CASES, free_metrics_case(), run_free_metrics);
}
