//! softmax, log_softmax, log_sum_exp.

use super::*;

pub(crate) fn run_softmax_fns<F: Hostile>(logits: Array2<F>) -> std::result::Result<(), TestCaseError> {
    let (b, k) = logits.dim();
    let invalid = logits.iter().any(|&v| v.is_nan() || v == F::infinity());
    let mut lse_ref = Vec::new();
    let mut lsm_ref = Vec::new();
    let mut sm_ref = Vec::new();
    let mut masked_row = false;
    for i in 0..b {
        let z: Vec<X> = (0..k).map(|j| X::new(logits[[i, j]].as_f64())).collect();
        let Some(lse) = lse_x(&z) else {
            lsm_ref.extend((0..k).map(|_| None));
            sm_ref.extend((0..k).map(|_| (X::ZERO, X::ZERO)));
            masked_row = true;
            lse_ref.push((X { m: f64::NEG_INFINITY, e: 0 }, X::ZERO));
            continue;
        };
        lse_ref.push((lse, lse.abs().add(X::new(1.0))));
        for j in 0..k {
            let v = logits[[i, j]].as_f64();
            // log p = (z − max) − ln Σ e^{z − max}, without rounding lse first.
            let max = z
                .iter()
                .copied()
                .filter(|x| x.m != f64::NEG_INFINITY)
                .fold(z[0], |m, x| if x.gt(m) || m.m == f64::NEG_INFINITY { x } else { m });
            let ln_sum = lse.sub(max).f64();
            let ln_sum =
                if ln_sum.abs() > 1e3 {
                    ln_sum
                } else {
                    z.iter()
                        .map(|&x| {
                            if x.m == f64::NEG_INFINITY { 0.0 } else { diff(x.f64(), max.f64()).f64().exp() }
                        })
                        .sum::<f64>()
                        .ln()
                };
            let lp = if v == f64::NEG_INFINITY { None } else { Some(diff(v, max.f64()).sub(X::new(ln_sum))) };
            // log p's rounding error is relative to |z| + |lse|.
            let scale = X::new(v.abs()).add(lse.abs()).add(X::new(1.0));
            lsm_ref.push(lp.map(|lp| (lp, scale)));
            let p = lp.map_or(X::ZERO, |lp| lp.exp());
            // p's error is ε·|log p| relative.
            sm_ref.push((p, p.mul(X::new(1.0 + lp.map_or(0.0, |lp| lp.abs().f64().min(1e300))))));
        }
    }
    CALLS.fetch_add(3, Ordering::Relaxed);
    let case = &logits;
    // log_sum_exp: -inf for a masked row.
    match log_sum_exp(&logits) {
        Err(_) if invalid => {}
        Ok(v) if invalid => fail("log_sum_exp", format!("Ok({v:?}) for invalid {case:?}"))?,
        Err(e) => {
            if lse_ref.iter().all(|(v, _)| v.m == f64::NEG_INFINITY || fits::<F>(*v) == Some(true)) {
                fail("log_sum_exp", format!("Err({e}) on {case:?}"))?
            }
        }
        Ok(v) => {
            for (g, (w, bd)) in v.iter().zip(&lse_ref) {
                let ok = if w.m == f64::NEG_INFINITY {
                    *g == F::neg_infinity()
                } else {
                    close::<F>(*g, *w, *bd, X::new(1.0))
                };
                if !ok {
                    fail("log_sum_exp", format!("{g:?} vs {:e} on {case:?}", w.f64()))?;
                    break;
                }
            }
        }
    }
    let invalid = invalid || masked_row;
    match log_softmax(&logits) {
        Err(_) if invalid => {}
        Ok(v) if invalid => fail("log_softmax", format!("Ok({v:?}) for invalid {case:?}"))?,
        Err(e) => {
            if lsm_ref.iter().flatten().all(|(v, _)| fits::<F>(*v) == Some(true)) {
                fail("log_softmax", format!("Err({e}) on {case:?}"))?
            }
        }
        Ok(v) => {
            for (g, want) in v.iter().zip(&lsm_ref) {
                let ok = match want {
                    None => *g == F::neg_infinity(),
                    Some((w, bd)) => fits::<F>(*w) != Some(false) && close::<F>(*g, *w, *bd, X::new(1.0)),
                };
                if !ok {
                    fail("log_softmax", format!("{g:?} vs {:?} on {case:?}", want.map(|w| w.0.f64())))?;
                    break;
                }
            }
        }
    }
    match softmax(&logits) {
        Err(_) if invalid => {}
        Ok(v) if invalid => fail("softmax", format!("Ok({v:?}) for invalid {case:?}"))?,
        Err(e) => fail("softmax", format!("Err({e}) on {case:?}"))?,
        Ok(v) => {
            for (g, (w, bd)) in v.iter().zip(&sm_ref) {
                if !close::<F>(*g, *w, *bd, X::new(1.0)) {
                    fail("softmax", format!("{g:?} vs {:e} on {case:?}", w.f64()))?;
                    break;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn logits_strategy<F: Hostile>() -> impl Strategy<Value = Array2<F>> {
    (1usize..4, 1usize..6).prop_flat_map(|(b, k)| {
        proptest::collection::vec(F::values(), b * k)
            .prop_map(move |z| Array2::from_shape_vec((b, k), z).unwrap())
    })
}

#[test]
fn softmax_functions_on_arbitrary_bits() {
    run("softmax fns f32", CASES, logits_strategy::<f32>(), run_softmax_fns::<f32>);
    run("softmax fns f64", CASES, logits_strategy::<f64>(), run_softmax_fns::<f64>);
}
