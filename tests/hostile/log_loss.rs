//! The balanced log-loss of the prior-corrected softmax, `(1/|C|) Σ_k (1/n_k) Σ_{y_i = k}
//! [lse(z_i − τ·log π) − (z_{i,y_i} − τ·log π_{y_i})]`, on arbitrary logits, priors and `τ`.

use super::*;
use crate::adjust::{counts_strategy, log_prior_ref};
use longtail::adjust::balanced_log_loss;

/// Logits, labels, prior counts and `τ`.
pub(crate) type LogLossCase<F> = (Array2<F>, Vec<usize>, Vec<f64>, F);

pub(crate) fn log_loss_case<F: Hostile>() -> impl Strategy<Value = LogLossCase<F>> {
    (1usize..5, 1usize..5).prop_flat_map(|(b, k)| {
        let tau = prop_oneof![2 => Just(F::one()), 1 => Just(F::zero()), 1 => (-3.0f64..3.0).prop_map(F::from_f64), 2 => F::values()];
        (
            proptest::collection::vec(F::values(), b * k).prop_map(move |z| Array2::from_shape_vec((b, k), z).unwrap()),
            proptest::collection::vec(0..k, b),
            counts_strategy(k),
            tau,
        )
    })
}

/// The exact balanced log-loss and its bound (the magnitudes of the terms each row's loss is made
/// of: the adjusted logits it subtracts and the log-sum-exp), the offsets rounded to `F` as the
/// library rounds `−τ·log π`; `Invalid` per the documented errors.
fn log_loss_ref<F: Hostile>((z, labels, counts, tau): &LogLossCase<F>) -> Expect<Vec<(X, X)>> {
    let (b, k) = z.dim();
    let tau = tau.as_f64();
    if !tau.is_finite() || (tau != 0.0 && counts.contains(&0.0)) {
        return Expect::Invalid;
    }
    // −τ·log π_k, rounded to F; an offset beyond F is an error. (Rounding to `F` overflows where
    // the library's does, but for the last bits of `log π` right at the edge.)
    let in_f = |v: X| F::from_f64(v.f64());
    let mut offsets = Vec::new();
    for l in log_prior_ref(counts) {
        let exact = if tau == 0.0 { X::ZERO } else { X::new(tau).mul(X::new(-l.unwrap())) };
        if !in_f(exact).is_finite() {
            return Expect::Invalid;
        }
        offsets.push(in_f(exact).as_f64());
    }
    let value = |i: usize, j: usize| X::new(z[[i, j]].as_f64()).add(X::new(offsets[j]));
    let masked = |i: usize, j: usize| z[[i, j]] == F::neg_infinity();
    for i in 0..b {
        if (0..k).any(|j| z[[i, j]].is_nan() || z[[i, j]] == F::infinity()) || (0..k).all(|j| masked(i, j)) {
            return Expect::Invalid;
        }
    }
    if (0..b).any(|i| masked(i, labels[i])) {
        return Expect::Invalid;
    }
    // A finite logit that overflows F once adjusted (the sum rounded to F) is an error.
    if (0..b).any(|i| (0..k).any(|j| !masked(i, j) && !in_f(value(i, j)).is_finite())) {
        return Expect::Invalid;
    }
    let mut sums = vec![(X::ZERO, X::ZERO); k];
    let mut n = vec![0usize; k];
    for (i, &y) in labels.iter().enumerate() {
        let a: Vec<X> = (0..k).filter(|&j| !masked(i, j)).map(|j| value(i, j)).collect();
        // lse − a_y = (max − a_y) + ln Σ e^{a − max}.
        let (max, ln_rest) = lse_parts(&a).unwrap();
        let loss = max.sub(value(i, y)).add(X::new(ln_rest));
        let bound = loss.add(max.abs()).add(value(i, y).abs());
        sums[y] = (sums[y].0.add(loss), sums[y].1.add(bound));
        n[y] += 1;
    }
    let present = n.iter().filter(|&&c| c > 0).count();
    let (mut total, mut bound) = (X::ZERO, X::ZERO);
    for (&(s, sb), &c) in sums.iter().zip(&n).filter(|&(_, &c)| c > 0) {
        // The library sums each class in f64: a class sum beyond it may be an overflow.
        note_sum(s);
        total = total.add(s.div(X::new(c as f64)));
        bound = bound.add(sb.div(X::new(c as f64)));
    }
    note_sum(total);
    let p = X::new(present as f64);
    Expect::Value(vec![(total.div(p), bound.div(p))])
}

pub(crate) fn run_log_loss<F: Hostile>(case: LogLossCase<F>) -> std::result::Result<(), TestCaseError> {
    let Ok(prior) = Prior::from_counts(&case.2) else {
        // The priors on arbitrary counts are the `priors` generator's.
        return Ok(());
    };
    SUM_BEYOND_F64.with(|s| s.set(false));
    let expect = log_loss_ref(&case);
    let got = balanced_log_loss(&case.0, &case.1[..], &prior, case.3).map(|v| vec![v]);
    // Computed in f64 whatever F: judged as an f64 result.
    judge::<f64>("balanced_log_loss", &case, &got, &expect, X::new(1.0))
}

#[test]
fn balanced_log_loss_on_arbitrary_bits() {
    run("balanced log-loss f32", CASES, log_loss_case::<f32>(), run_log_loss::<f32>);
    run("balanced log-loss f64", CASES, log_loss_case::<f64>(), run_log_loss::<f64>);
}
