//! The priors, class weights and label-shift estimate on arbitrary counts.

use super::*;

/// The priors, class weights and label-shift estimate on arbitrary counts: `Err`, or finite
/// probabilities summing to 1 that equal `n_k / Σ n` (weights: `n_k^{−p}`, rescaled to mean 1).
#[test]
fn priors_and_class_weights_on_arbitrary_counts() {
    let counts = proptest::collection::vec(
        prop_oneof![3 => any::<u64>().prop_map(f64::from_bits), 2 => 0.0f64..100.0, 1 => proptest::sample::select(vec![0.0, 5e-324, 1e-308, f64::MAX, 1e308])],
        1..6,
    );
    run("prior", CASES, (counts, any::<u64>().prop_map(f64::from_bits)), |(counts, alpha)| {
        CALLS.fetch_add(4, Ordering::Relaxed);
        // The total is an output too (`Prior::total`): beyond f64 it is an overflow.
        let total_fits = |c: &[f64]| c.iter().fold(X::ZERO, |s, &v| s.add(X::new(v))).f64().is_finite();
        let valid = counts.iter().all(|&c| c.is_finite() && c >= 0.0)
            && counts.iter().any(|&c| c > 0.0)
            && total_fits(&counts);
        let max = counts.iter().fold(0.0f64, |m, &c| m.max(c));
        let reference: Vec<f64> = {
            let scaled: Vec<f64> = counts.iter().map(|&c| c / max).collect();
            let total: f64 = scaled.iter().sum();
            scaled.iter().map(|&c| c / total).collect()
        };
        match Prior::from_counts(&counts) {
            Err(e) if valid => fail("Prior::from_counts", format!("Err({e}) on {counts:?}"))?,
            Ok(_) if !valid => fail("Prior::from_counts", format!("Ok on {counts:?}"))?,
            Err(_) => {}
            Ok(prior) => {
                let p = prior.probabilities::<f64>();
                for (g, w) in p.iter().zip(&reference) {
                    if !(g.is_finite() && (g - w).abs() <= 1e-12 * w.max(1e-300) + 1e-300) {
                        fail("Prior::probabilities", format!("{p:?} vs {reference:?} on {counts:?}"))?;
                        break;
                    }
                }
                // Smoothing adds alpha to every count: valid for any finite alpha >= 0.
                let smoothed: Vec<f64> = counts.iter().map(|&c| X::new(c).add(X::new(alpha)).f64()).collect();
                let smooth_valid = alpha.is_finite() && alpha >= 0.0 && total_fits(&smoothed);
                match prior.clone().with_smoothing(alpha) {
                    Err(e) if smooth_valid => {
                        fail("Prior::with_smoothing", format!("Err({e}) on {counts:?} + {alpha:e}"))?
                    }
                    Ok(_) if !smooth_valid => {
                        fail("Prior::with_smoothing", format!("Ok on {counts:?} + {alpha:e}"))?
                    }
                    Ok(s) => {
                        let p = s.probabilities::<f64>();
                        if !p.iter().all(|v| v.is_finite()) || (p.sum() - 1.0).abs() > 1e-12 {
                            fail("Prior::with_smoothing", format!("{p:?} on {counts:?} + {alpha:e}"))?;
                        }
                    }
                    Err(_) => {}
                }
                // Power weights p = 1, rescaled: w_k ∝ 1/n_k, mean 1 over the classes with n_k > 0.
                if counts.iter().all(|&c| c > 0.0) {
                    let inv: Vec<f64> = reference.iter().map(|&p| 1.0 / p).collect();
                    let finite = inv.iter().all(|v| v.is_finite());
                    if finite {
                        let mean = inv.iter().map(|v| v / inv.len() as f64).sum::<f64>();
                        let want: Vec<f64> = inv.iter().map(|v| v / mean).collect();
                        match ClassWeights::power(1.0).unwrap().rescaled().weights::<f64>(&prior) {
                            Err(e) => fail("ClassWeights::weights", format!("Err({e}) on {counts:?}"))?,
                            Ok(w) => {
                                if w.iter()
                                    .zip(&want)
                                    .any(|(g, w)| !(g.is_finite() && (g - w).abs() <= 1e-9 * w))
                                {
                                    fail(
                                        "ClassWeights::weights",
                                        format!("{w:?} vs {want:?} on {counts:?}"),
                                    )?;
                                }
                            }
                        }
                    }
                }
                // Label shift EM with uniform posteriors converges to the train prior or errs.
                let posteriors = Array2::from_shape_fn((2, counts.len()), |(_, k)| reference[k]);
                if let Ok(est) = LabelShiftEm::new().estimate(&posteriors, &prior)
                    && !est.prior.probabilities::<f64>().iter().all(|v| v.is_finite())
                {
                    fail("LabelShiftEm::estimate", format!("non-finite prior on {counts:?}"))?;
                }
            }
        }
        Ok(())
    });
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Scheme {
    InverseFrequency,
    Power(f64),
    EffectiveNumber(f64),
}

/// The exact class weights of a scheme on counts (`None`: a zero count the scheme refuses), each
/// with its bound: `n/(K·n_k)`, `n_k^{−p}` (condition `p·|ln n_k|`), `(1 − β)/(1 − β^{n_k})`; and
/// rescaled to sum to `K`.
fn class_weights_ref(scheme: Scheme, counts: &[f64], rescale: bool) -> Option<Vec<(X, X)>> {
    let k = counts.len() as f64;
    let uniform = matches!(scheme, Scheme::Power(p) | Scheme::EffectiveNumber(p) if p == 0.0);
    if !uniform && counts.contains(&0.0) {
        return None;
    }
    let total = counts.iter().fold(X::ZERO, |s, &n| s.add(X::new(n)));
    let min = counts.iter().fold(f64::INFINITY, |m, &n| m.min(n));
    let eps = f64::EPSILON;
    let weight = |n: f64| -> (X, f64) {
        match scheme {
            Scheme::InverseFrequency => (total.div(X::new(k).mul(X::new(n))), 4.0 * eps),
            Scheme::Power(0.0) => (X::new(1.0), 0.0),
            Scheme::Power(p) => {
                // Rescaled weights are relative to the smallest count, as the crate forms them.
                let l = if rescale { n.ln() - min.ln() } else { n.ln() };
                (X::new(-p * l).exp(), 4.0 * eps * (1.0 + p * (1.0 + n.ln().abs())))
            }
            Scheme::EffectiveNumber(0.0) => (X::new(1.0), 0.0),
            Scheme::EffectiveNumber(b) => {
                let ln_b = if b >= 0.5 { (-(1.0 - b)).ln_1p() } else { b.ln() };
                let t = X::new(n).mul(X::new(ln_b));
                let tf = t.f64();
                let denom = if tf > -1e-5 {
                    t.neg().mul(X::new(1.0 + tf / 2.0 + tf * tf / 6.0))
                } else {
                    X::new(-tf.exp_m1())
                };
                (X::new(1.0 - b).div(denom), 8.0 * eps * (1.0 + tf.abs()))
            }
        }
    };
    let w: Vec<(X, f64)> = counts.iter().map(|&n| weight(n)).collect();
    if !rescale {
        return Some(w.into_iter().map(|(v, c)| (v, v.mul(X::new(1.0 + c / 1e-11)))).collect());
    }
    let sum = w.iter().fold(X::ZERO, |s, (v, _)| s.add(*v));
    let worst = w.iter().fold(0.0_f64, |m, (_, c)| m.max(*c));
    Some(
        w.into_iter()
            .map(|(v, _)| {
                let r = v.div(sum).mul(X::new(k));
                (r, r.abs().add(X::new(k)).mul(X::new(1.0 + 2.0 * worst / 1e-11)))
            })
            .collect(),
    )
}

fn run_class_weights<F: Hostile>(
    (counts, scheme, rescale): (Vec<f64>, Scheme, bool),
) -> std::result::Result<(), TestCaseError> {
    let Ok(prior) = Prior::from_counts(&counts) else { return Ok(()) };
    let (weights, entry) = match scheme {
        Scheme::InverseFrequency => {
            (Ok(ClassWeights::inverse_frequency()), "ClassWeights::inverse_frequency")
        }
        Scheme::Power(p) => (ClassWeights::power(p), "ClassWeights::power"),
        Scheme::EffectiveNumber(b) => (ClassWeights::effective_number(b), "ClassWeights::effective_number"),
    };
    let valid = match scheme {
        Scheme::InverseFrequency => true,
        Scheme::Power(p) => p.is_finite() && p >= 0.0,
        Scheme::EffectiveNumber(b) => (0.0..1.0).contains(&b),
    };
    CALLS.fetch_add(1, Ordering::Relaxed);
    let weights = match (weights, valid) {
        (Ok(w), true) => w,
        (Err(_), false) => return Ok(()),
        (got, _) => return fail(entry, format!("{got:?} for {scheme:?}")),
    };
    let weights = if rescale { weights.rescaled() } else { weights };
    let got = weights.weights::<F>(&prior).map(|w| w.to_vec());
    let want = match class_weights_ref(scheme, &counts, rescale) {
        Some(w) => Expect::Value(w),
        None => Expect::Invalid,
    };
    // The tolerance's bounds carry each weight's condition; 1e-11 is f64's rtol, and for f32
    // the rounding to F dominates.
    judge::<F>(entry, &(&counts, scheme, rescale), &got, &want, X::new(1.0))
}

/// The class-weight schemes on arbitrary counts and parameters, plain and rescaled: `Err` or
/// the weights of the formulas.
#[test]
fn class_weight_schemes_on_arbitrary_counts() {
    let counts = || {
        proptest::collection::vec(
            prop_oneof![
                3 => any::<u64>().prop_map(f64::from_bits),
                2 => 0.0f64..100.0,
                2 => proptest::sample::select(vec![0.0, 5e-324, 1e-310, 1e-308, 1.0, 1e300, 0.9 * f64::MAX, f64::MAX / 2.0, f64::MAX]),
            ],
            1..5,
        )
    };
    let param = |special: Vec<f64>| {
        prop_oneof![
            2 => any::<u64>().prop_map(f64::from_bits),
            2 => 0.0f64..4.0,
            2 => proptest::sample::select(special),
        ]
    };
    let scheme = prop_oneof![
        Just(Scheme::InverseFrequency),
        param(vec![0.0, 0.5, 1.0, 2.0, 1e300, 5e-324, 700.0, -1.0, f64::INFINITY, f64::NAN])
            .prop_map(Scheme::Power),
        param(vec![0.0, 0.9999, 1.0 - 1e-12, 1.0 - 1e-16, 5e-324, 0.5, 1.0, -0.0, f64::NAN])
            .prop_map(|b| Scheme::EffectiveNumber(if b > 1.0 { b.fract() } else { b })),
    ];
    let case = || (counts(), scheme.clone(), any::<bool>());
    run("class weights f32", CASES, case(), run_class_weights::<f32>);
    run("class weights f64", CASES, case(), run_class_weights::<f64>);
}
