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
