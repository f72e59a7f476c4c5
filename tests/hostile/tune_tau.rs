//! The `τ` search ([`tune_tau`], [`tune_tau_for`], [`tune_tau_by`]) on arbitrary logits, labels,
//! priors and grids, against the balanced log-loss and balanced accuracy of the formulas; and the
//! plain argmax and binary decisions with their `_into` forms.

use super::*;
use crate::adjust::{counts_strategy, log_prior_ref};
use longtail::adjust::{
    TauCriterion, TauSearch, predict, predict_adjusted, predict_adjusted_into, predict_binary,
    predict_binary_into, predict_into, predict_prior_shifted, predict_prior_shifted_into, tune_tau,
    tune_tau_by, tune_tau_for,
};

#[derive(Debug, Clone)]
pub(crate) struct TuneCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) labels: Vec<usize>,
    pub(crate) counts: Vec<f64>,
    pub(crate) taus: Vec<F>,
}

pub(crate) fn tune_case<F: Hostile>() -> impl Strategy<Value = TuneCase<F>> {
    (1usize..5, 1usize..4).prop_flat_map(|(b, k)| {
        let ordinary: Vec<F> = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, -1.0].iter().map(|&t| F::from_f64(t)).collect();
        let tau = prop_oneof![2 => F::values(), 3 => proptest::sample::select(ordinary)];
        let logit = prop_oneof![3 => F::values(), 2 => (-4.0f64..4.0).prop_map(F::from_f64)];
        (
            proptest::collection::vec(logit, b * k),
            proptest::collection::vec(prop_oneof![20 => 0..k, 1 => Just(k)], b),
            counts_strategy(k),
            proptest::collection::vec(tau, 0..5),
        )
            .prop_map(move |(z, labels, counts, taus)| TuneCase {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                labels,
                counts,
                taus,
            })
    })
}

/// What the reference makes of one `τ`: its exact adjusted logits `z + o` (with bounds), or an
/// overflow of `F` (`None`); `Some(false)` in the second place where the edge is too close to say.
/// Per row, per class, the adjusted logit and its bound (`None`: an overflow), and whether the
/// edge of the range is clear.
type Adjusted = (Option<Vec<Vec<(X, X)>>>, bool);

#[allow(clippy::needless_range_loop)] // logits and offsets indexed together
fn adjusted_ref<F: Hostile>(case: &TuneCase<F>, offset: &[X]) -> Adjusted {
    let (b, k) = case.logits.dim();
    let mut rows = Vec::new();
    let mut clear = true;
    for i in 0..b {
        let mut row = Vec::new();
        for j in 0..k {
            let z = case.logits[[i, j]].as_f64();
            if z == f64::NEG_INFINITY {
                row.push((X::new(f64::NEG_INFINITY), X::ZERO));
                continue;
            }
            let a = X::new(z).add(offset[j]);
            match fits::<F>(a) {
                Some(true) => {}
                Some(false) => return (None, true),
                None => clear = false,
            }
            row.push((a, X::new(z).abs().add(offset[j].abs())));
        }
        rows.push(row);
    }
    (Some(rows), clear)
}

/// `lse(a) − a_y` in `X` for a row with finite target entry (masks are `-inf`).
fn row_loss(row: &[(X, X)], y: usize) -> (X, X) {
    let live: Vec<&(X, X)> = row.iter().filter(|(a, _)| a.f64() != f64::NEG_INFINITY).collect();
    let top = live.iter().fold(live[0].0, |m, (a, _)| if a.gt(m) { *a } else { m });
    let rest: f64 = live.iter().map(|(a, _)| a.sub(top).f64().exp()).sum();
    let loss = top.sub(row[y].0).add(X::new(rest.ln()));
    let bound = live.iter().fold(X::new(1.0), |s, (_, b)| s.add(*b)).add(row[y].1);
    (loss, bound)
}

/// The predictions of exact adjusted logits, `None` for a row whose two best are within
/// rounding (`4ε` of their bounds) of each other.
fn predictions_ref<F: Hostile>(rows: &[Vec<(X, X)>]) -> Vec<Option<usize>> {
    rows.iter()
        .map(|row| {
            let mut order: Vec<usize> =
                (0..row.len()).filter(|&j| row[j].0.f64() != f64::NEG_INFINITY).collect();
            order.sort_by(|&a, &b| {
                if row[a].0.gt(row[b].0) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater }
            });
            let best = order[0];
            match order.get(1) {
                Some(&second) => {
                    let tol = row[best].1.add(row[second].1).mul(X::new(4.0 * F::epsilon().as_f64()));
                    row[best].0.sub(row[second].0).gt(tol).then_some(best)
                }
                None => Some(best),
            }
        })
        .collect()
}

/// Balanced accuracy and macro-F1 of predictions, from the counts.
fn scores_ref(labels: &[usize], predictions: &[usize], k: usize) -> (f64, f64) {
    let mut cm = vec![0usize; k * k];
    labels.iter().zip(predictions).for_each(|(&y, &p)| cm[y * k + p] += 1);
    let support = |c: usize| (0..k).map(|j| cm[c * k + j]).sum::<usize>();
    let predicted = |c: usize| (0..k).map(|i| cm[i * k + c]).sum::<usize>();
    let recalls: Vec<f64> =
        (0..k).filter(|&c| support(c) > 0).map(|c| cm[c * k + c] as f64 / support(c) as f64).collect();
    let f1: Vec<f64> = (0..k)
        .filter(|&c| support(c) + predicted(c) > 0)
        .map(|c| 2.0 * cm[c * k + c] as f64 / (support(c) + predicted(c)) as f64)
        .collect();
    (recalls.iter().sum::<f64>() / recalls.len() as f64, f1.iter().sum::<f64>() / f1.len() as f64)
}

/// The documented choice on a reported curve: of the scores within `10⁻⁹` (relative) of the
/// best, the `τ` closest to 1, then the first.
fn check_choice<F: Hostile>(search: &TauSearch<F>, lower: bool) -> Result<(), String> {
    let scores: Vec<f64> = search.curve.iter().map(|p| p.1).collect();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(format!("a score is not finite: {scores:?}"));
    }
    let best = scores.iter().copied().fold(if lower { f64::INFINITY } else { f64::NEG_INFINITY }, |m, s| {
        if lower { m.min(s) } else { m.max(s) }
    });
    let tied = |s: f64| (s - best).abs() <= 1e-9 * best.abs();
    let distance = |t: F| (t.as_f64() - 1.0).abs();
    let want = search
        .curve
        .iter()
        .filter(|p| tied(p.1))
        .fold(None, |c: Option<&(F, f64)>, p| match c {
            Some(c) if distance(c.0) <= distance(p.0) => Some(c),
            _ => Some(p),
        })
        .unwrap();
    if want.0.to_bits_u64() != search.tau.to_bits_u64() || want.1 != search.score {
        return Err(format!("chose ({:?}, {}), the rule gives {want:?}", search.tau, search.score));
    }
    Ok(())
}

trait Bits {
    fn to_bits_u64(self) -> u64;
}
impl<F: Hostile> Bits for F {
    fn to_bits_u64(self) -> u64 {
        self.as_f64().to_bits()
    }
}

/// Judges a search: `Err` where the reference refuses (or may refuse), otherwise the grid's `τ`
/// in order, each score against the reference where it is determined, and the documented choice.
fn judge_search<F: Hostile>(
    entry: &'static str,
    case: &TuneCase<F>,
    got: Result<TauSearch<F>, Error>,
    want: Option<Vec<Option<(f64, f64)>>>,
    may_fail: bool,
    lower: bool,
) -> std::result::Result<(), TestCaseError> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let want = match (got.as_ref(), want) {
        (Err(_), None) => return Ok(()),
        (Err(_), Some(_)) if may_fail => return Ok(()),
        (Err(e), Some(_)) => return fail(entry, format!("Err({e}) on {case:?}")),
        (Ok(s), None) => return fail(entry, format!("Ok({s:?}) for an invalid input {case:?}")),
        (Ok(_), Some(w)) => w,
    };
    let search = got.unwrap();
    let taus: Vec<u64> = search.curve.iter().map(|p| p.0.to_bits_u64()).collect();
    if taus != case.taus.iter().map(|t| t.to_bits_u64()).collect::<Vec<_>>() {
        return fail(entry, format!("curve {:?} is not the grid on {case:?}", search.curve));
    }
    for (i, (w, p)) in want.iter().zip(&search.curve).enumerate() {
        if let Some((value, bound)) = w
            && !(p.1.is_finite() && (p.1 - value).abs() <= F::RTOL * bound + 1e-300)
        {
            return fail(
                entry,
                format!("score {i} is {}, reference {value:e} (bound {bound:e}) on {case:?}", p.1),
            );
        }
    }
    match check_choice(&search, lower) {
        Ok(()) => Ok(()),
        Err(e) => fail(entry, format!("{e} on {case:?}")),
    }
}

pub(crate) fn run_tune<F: Hostile>(case: TuneCase<F>) -> std::result::Result<(), TestCaseError> {
    let Ok(prior) = Prior::from_counts(&case.counts) else { return Ok(()) };
    let (b, k) = case.logits.dim();
    let z = &case.logits;
    let logs = log_prior_ref(&case.counts);
    // The checks before any τ: the grid, the prior, the labels, the logits.
    let valid = !case.taus.is_empty()
        && case.taus.iter().all(|t| t.is_finite())
        && (case.taus.iter().all(|&t| t == F::zero()) || logs.iter().all(|l| l.is_some()))
        && case.labels.iter().all(|&y| y < k)
        && z.iter().all(|v| !(v.is_nan() || *v == F::infinity()))
        && (0..b).all(|i| (0..k).any(|j| z[[i, j]] != F::neg_infinity()));
    // −τ·log π_k, exact, and whether it fits F (checked before the logits).
    let offsets: Vec<Vec<X>> = case
        .taus
        .iter()
        .map(|&t| {
            let t = t.as_f64();
            logs.iter()
                .map(|l| if t == 0.0 { X::ZERO } else { X::new(t).mul(X::new(-l.unwrap_or(0.0))) })
                .collect()
        })
        .collect();
    let offsets_fit: Vec<Option<bool>> = offsets
        .iter()
        .map(|o| {
            let f: Vec<Option<bool>> = o.iter().map(|&v| fits::<F>(v)).collect();
            if f.contains(&Some(false)) {
                Some(false)
            } else if f.contains(&None) {
                None
            } else {
                Some(true)
            }
        })
        .collect();
    let adjusted: Vec<Adjusted> = offsets.iter().map(|o| adjusted_ref::<F>(&case, o)).collect();
    let edge = offsets_fit.contains(&None) || adjusted.iter().any(|a| !a.1);
    let refused = !valid || offsets_fit.contains(&Some(false));
    // The accuracy criteria: every τ's predictions, where determined.
    let by_predictions = |pick: fn((f64, f64)) -> f64| -> Option<Vec<Option<(f64, f64)>>> {
        if refused || adjusted.iter().any(|a| a.0.is_none()) {
            return None;
        }
        Some(
            adjusted
                .iter()
                .map(|a| {
                    let p: Option<Vec<usize>> =
                        predictions_ref::<F>(a.0.as_ref().unwrap()).into_iter().collect();
                    p.map(|p| (pick(scores_ref(&case.labels, &p, k)), 1e-10))
                })
                .collect(),
        )
    };
    let accuracy = by_predictions(|s| s.0);
    let f1 = by_predictions(|s| s.1);
    let got = tune_tau_for(z, &case.labels[..], &prior, &case.taus, TauCriterion::BalancedAccuracy);
    judge_search("tune_tau_for(BalancedAccuracy)", &case, got, accuracy, edge, false)?;
    let got = tune_tau_by(z, &case.labels[..], &prior, &case.taus, ConfusionMatrix::macro_f1);
    judge_search("tune_tau_by(macro_f1)", &case, got, f1, edge, false)?;
    if valid && offsets_fit.iter().all(|f| *f == Some(true)) {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let nan = tune_tau_by(z, &case.labels[..], &prior, &case.taus, |_| f64::NAN);
        if !matches!(nan, Err(Error::InvalidParameter { name: "score", .. } | Error::Overflow { .. })) {
            fail("tune_tau_by(NaN)", format!("{nan:?} on {case:?}"))?;
        }
    }
    // The balanced log-loss: a masked target is an error; each τ's loss from the exact logits.
    let masked_target = (0..b).any(|i| case.labels[i] < k && z[[i, case.labels[i]]] == F::neg_infinity());
    let mut sum_beyond = false;
    let losses: Option<Vec<Option<(f64, f64)>>> = if refused || masked_target {
        None
    } else {
        adjusted
            .iter()
            .map(|a| {
                let rows = a.0.as_ref()?;
                let mut per_class = vec![(X::ZERO, X::ZERO, 0usize); k];
                for (i, row) in rows.iter().enumerate() {
                    let (l, bound) = row_loss(row, case.labels[i]);
                    let c = &mut per_class[case.labels[i]];
                    *c = (c.0.add(l), c.1.add(bound), c.2 + 1);
                }
                let present: Vec<_> = per_class.iter().filter(|c| c.2 > 0).collect();
                let m = present.len() as f64;
                sum_beyond |= present.iter().any(|c| !c.0.f64().is_finite());
                let loss = present.iter().fold(X::ZERO, |s, c| s.add(c.0.div(X::new(c.2 as f64 * m))));
                let bound = present.iter().fold(X::ZERO, |s, c| s.add(c.1.div(X::new(c.2 as f64 * m))));
                if !loss.f64().is_finite() {
                    sum_beyond = true;
                }
                Some(Some((loss.f64(), bound.f64())))
            })
            .collect()
    };
    let got = tune_tau(z, &case.labels[..], &prior, &case.taus);
    let again = tune_tau_for(z, &case.labels[..], &prior, &case.taus, TauCriterion::BalancedLogLoss);
    if got.as_ref().ok() != again.as_ref().ok() {
        fail("tune_tau_for(BalancedLogLoss)", format!("{again:?} is not tune_tau's {got:?} on {case:?}"))?;
    }
    judge_search("tune_tau", &case, got, losses, edge || sum_beyond, true)
}

/// The plain argmax, the binary decisions, and every `_into` form against its allocating one
/// (a buffer left untouched on error).
pub(crate) fn run_predict<F: Hostile>(
    (case, scores, threshold): (TuneCase<F>, Vec<F>, f64),
) -> std::result::Result<(), TestCaseError> {
    let z = &case.logits;
    let (b, k) = z.dim();
    let invalid = z.iter().any(|v| v.is_nan() || *v == F::infinity())
        || (0..b).any(|i| (0..k).all(|j| z[[i, j]] == F::neg_infinity()));
    CALLS.fetch_add(2, Ordering::Relaxed);
    let got = predict(z);
    let mut out = vec![usize::MAX; b];
    let into = predict_into(z, &mut out);
    match &got {
        Ok(p) if invalid => fail("predict", format!("Ok({p:?}) for an invalid input {case:?}"))?,
        Err(e) if !invalid => fail("predict", format!("Err({e}) on {case:?}"))?,
        Ok(p) => {
            // The first index of the row's maximum, exactly.
            for (i, &y) in p.iter().enumerate() {
                let max = (0..k).map(|j| z[[i, j]].as_f64()).fold(f64::NEG_INFINITY, f64::max);
                let first = (0..k).position(|j| z[[i, j]].as_f64() == max).unwrap();
                if y != first {
                    fail(
                        "predict",
                        format!("row {i} predicts {y}, the first maximum is {first}, on {case:?}"),
                    )?;
                }
            }
        }
        Err(_) => {}
    }
    let untouched = out.iter().all(|&v| v == usize::MAX);
    if into.as_ref().ok().map(|_| &out) != got.as_ref().ok() || (into.is_err() && !untouched) {
        fail("predict_into", format!("{into:?} / {out:?} vs {got:?} on {case:?}"))?;
    }
    // The prior-based forms into a buffer agree with the allocating ones.
    if let Ok(prior) = Prior::from_counts(&case.counts) {
        CALLS.fetch_add(2, Ordering::Relaxed);
        let tau = case.taus.first().copied().unwrap_or(F::one());
        let mut out = vec![usize::MAX; b];
        let into = predict_adjusted_into(z, &prior, tau, &mut out);
        let got = predict_adjusted(z, &prior, tau);
        if into.as_ref().ok().map(|_| &out) != got.as_ref().ok()
            || (into.is_err() && out.iter().any(|&v| v != usize::MAX))
        {
            fail("predict_adjusted_into", format!("{into:?} / {out:?} vs {got:?} on {case:?}"))?;
        }
        let target = Prior::from_counts(&vec![1.0; k]).unwrap();
        let mut out = vec![usize::MAX; b];
        let into = predict_prior_shifted_into(z, &prior, &target, &mut out);
        let got = predict_prior_shifted(z, &prior, &target);
        if into.as_ref().ok().map(|_| &out) != got.as_ref().ok()
            || (into.is_err() && out.iter().any(|&v| v != usize::MAX))
        {
            fail("predict_prior_shifted_into", format!("{into:?} / {out:?} vs {got:?} on {case:?}"))?;
        }
    }
    // Binary decisions: s > t exactly; NaN threshold, NaN or +inf score are errors.
    let s = Array1::from_vec(scores);
    let invalid = threshold.is_nan() || s.iter().any(|v| v.is_nan() || *v == F::infinity());
    CALLS.fetch_add(2, Ordering::Relaxed);
    let got = predict_binary(&s, threshold);
    match &got {
        Ok(p) if invalid => fail("predict_binary", format!("Ok({p:?}) for invalid {s:?} > {threshold:e}"))?,
        Err(e) if !invalid => fail("predict_binary", format!("Err({e}) for {s:?} > {threshold:e}"))?,
        Ok(p) => {
            let want: Vec<bool> = s.iter().map(|v| v.as_f64() > threshold).collect();
            if *p != want {
                fail("predict_binary", format!("{p:?}, expected {want:?} for {s:?} > {threshold:e}"))?;
            }
        }
        Err(_) => {}
    }
    let mut out = vec![true; s.len()];
    let into = predict_binary_into(&s, threshold, &mut out);
    if into.as_ref().ok().map(|_| &out) != got.as_ref().ok() || (into.is_err() && out.iter().any(|&v| !v)) {
        fail("predict_binary_into", format!("{into:?} / {out:?} vs {got:?} for {s:?} > {threshold:e}"))?;
    }
    Ok(())
}

#[test]
fn tau_search_on_arbitrary_bits() {
    run("tune_tau f32", CASES, tune_case::<f32>(), run_tune::<f32>);
    run("tune_tau f64", CASES, tune_case::<f64>(), run_tune::<f64>);
}

#[test]
fn predictions_on_arbitrary_bits() {
    let case =
        |s: BoxedStrategy<f32>| (tune_case::<f32>(), proptest::collection::vec(s, 1..5), f64::values());
    run("predict f32", CASES, case(f32::values()), run_predict::<f32>);
    let case = (tune_case::<f64>(), proptest::collection::vec(f64::values(), 1..5), f64::values());
    run("predict f64", CASES, case, run_predict::<f64>);
}
