//! Label-shift estimation: EM for the target prior from posteriors and the training prior
//! (Saerens et al.), and BBSE from a validation confusion matrix (Lipton et al.).

use super::*;
use crate::adjust::counts_strategy;

/// Posteriors `[B, K]`, the training counts, the tolerance and the iteration limit.
pub(crate) type EmCase<F> = (Array2<F>, Vec<f64>, f64, usize);

/// A posterior row: a distribution of any spread (weights from subnormal to huge, normalised in
/// `f64` and rounded to `F`, so within rounding of summing to 1), one-hot, or arbitrary bits.
fn posterior_row<F: Hostile>(k: usize) -> BoxedStrategy<Vec<F>> {
    let weight = prop_oneof![
        3 => 0.0f64..1.0,
        1 => Just(0.0),
        1 => (-1074.0f64..1023.0).prop_map(f64::exp2),
        1 => proptest::sample::select(vec![5e-324, 1e-300, 1e-45, 1e-20, 1.0, 1e300]),
    ];
    prop_oneof![
        6 => proptest::collection::vec(weight, k).prop_map(|w| {
            let total: f64 = w.iter().sum();
            let total = if total > 0.0 && total.is_finite() { total } else { 1.0 };
            w.iter().map(|&v| F::from_f64(v / total)).collect()
        }),
        2 => (0..k).prop_map(move |j| (0..k).map(|i| if i == j { F::one() } else { F::zero() }).collect()),
        1 => proptest::collection::vec(F::values(), k),
    ]
    .boxed()
}

pub(crate) fn em_case<F: Hostile>() -> impl Strategy<Value = EmCase<F>> {
    (1usize..5, 1usize..5).prop_flat_map(|(b, k)| {
        (
            proptest::collection::vec(posterior_row::<F>(k), b)
                .prop_map(move |rows| Array2::from_shape_vec((b, k), rows.concat()).unwrap()),
            counts_strategy(k),
            prop_oneof![
                3 => Just(1e-8),
                1 => Just(1e-4),
                1 => Just(1e-13),
                1 => any::<u64>().prop_map(f64::from_bits),
            ],
            prop_oneof![1 => Just(0usize), 4 => 1usize..30, 2 => Just(1000usize)],
        )
    })
}

/// One exact EM step from `q` (a probability vector, as `X`) under the training prior `train`:
/// `q'_k = (1/B) Σ_i a_ik`, `a_ik = p_ik q_k/π_k / Σ_j p_ij q_j/π_j`.
fn em_step(posteriors: &[Vec<X>], train: &[X], q: &[X]) -> Vec<X> {
    let ratio: Vec<X> = q.iter().zip(train).map(|(&q, &p)| q.div(p)).collect();
    let b = X::new(posteriors.len() as f64);
    let mut next = vec![X::ZERO; q.len()];
    for row in posteriors {
        let a: Vec<X> = row.iter().zip(&ratio).map(|(&p, &r)| p.mul(r)).collect();
        let total = a.iter().fold(X::ZERO, |s, &v| s.add(v));
        next.iter_mut().zip(&a).for_each(|(n, &v)| *n = n.add(v.div(total).div(b)));
    }
    next
}

/// The relative error a library step may add to each `q_k`: the ratio `q/π` comes from
/// logarithms (`e^{ln q − ln π − top}`, whose rounding is `ε` times their magnitudes), then `K`
/// products and sums per row; EM carries a relative perturbation of `q` on to the next step
/// without amplifying it beyond a small factor (`q'_k = q_k·g_k(q)`).
fn em_step_rtol(log_train: &[f64], q: &[X]) -> f64 {
    let logs = log_train.iter().fold(0.0_f64, |m, l| m.max(l.abs()))
        + q.iter().filter(|v| !v.is_zero()).fold(0.0_f64, |m, v| m.max(v.ln().abs()));
    8.0 * f64::EPSILON * (q.len() as f64 + 2.0 * logs)
}

pub(crate) fn run_em<F: Hostile>(case: EmCase<F>) -> std::result::Result<(), TestCaseError> {
    let (posteriors, counts, tolerance, max_iterations) = &case;
    let k = posteriors.ncols();
    let Ok(train) = Prior::from_counts(counts) else {
        // The priors on arbitrary counts are the `priors` generator's.
        return Ok(());
    };
    CALLS.fetch_add(1, Ordering::Relaxed);
    let built =
        LabelShiftEm::new().with_tolerance(*tolerance).and_then(|e| e.with_max_iterations(*max_iterations));
    let valid_params = tolerance.is_finite() && *tolerance > 0.0 && *max_iterations > 0;
    let em = match built {
        Ok(em) if valid_params => em,
        Err(_) if !valid_params => return Ok(()),
        got => return fail("LabelShiftEm::with_tolerance", format!("{got:?} on {case:?}")),
    };
    // Documented: every training count > 0; each row finite, >= 0 and summing to 1 within √ε
    // (the sum in f64, in order).
    let sqrt_eps = F::epsilon().sqrt().as_f64();
    let valid = counts.iter().all(|&c| c > 0.0)
        && posteriors.rows().into_iter().all(|r| {
            r.iter().all(|&v| v.is_finite() && v >= F::zero())
                && (r.iter().fold(0.0_f64, |s, v| s + v.as_f64()) - 1.0).abs() <= sqrt_eps
        });
    let got = em.estimate(posteriors, &train);
    let estimate = match got {
        Err(_) if !valid => return Ok(()),
        Ok(e) if !valid => {
            return fail("LabelShiftEm::estimate", format!("Ok({e:?}) for invalid input {case:?}"));
        }
        Err(e) => return fail("LabelShiftEm::estimate", format!("Err({e}) on {case:?}")),
        Ok(e) => e,
    };
    let n = estimate.iterations;
    if n == 0 || n > *max_iterations || (!estimate.converged && n != *max_iterations) {
        return fail(
            "LabelShiftEm::estimate",
            format!("{n} iterations, converged {} on {case:?}", estimate.converged),
        );
    }
    // The exact iteration, as many steps as the library took.
    let total = counts.iter().fold(X::ZERO, |s, &c| s.add(X::new(c)));
    let train_x: Vec<X> = counts.iter().map(|&c| X::new(c).div(total)).collect();
    let rows: Vec<Vec<X>> =
        posteriors.rows().into_iter().map(|r| r.iter().map(|v| X::new(v.as_f64())).collect()).collect();
    let log_train: Vec<f64> = train_x.iter().map(|v| v.ln()).collect();
    let mut q = train_x.clone();
    let mut changes = Vec::new();
    // Per class, the relative error allowed so far: each step's rounding, and an iterate stored
    // below f64's normal range keeps only a subnormal's digits, an error that the following steps
    // multiply on.
    let mut rtol = vec![0.0_f64; k];
    for _ in 0..n {
        let step = em_step_rtol(&log_train, &q);
        let next = em_step(&rows, &train_x, &q);
        changes.push(next.iter().zip(&q).fold(X::ZERO, |s, (&a, &b)| s.add(a.sub(b).abs())).f64());
        q = next;
        for (r, v) in rtol.iter_mut().zip(&q) {
            let stored =
                if v.is_zero() || v.f64() >= f64::MIN_POSITIVE { 0.0 } else { (5e-324 / v.f64()).min(1.0) };
            *r += step + stored;
        }
    }
    // Each q_k within its allowance of its exact value (plus the f64 underflow threshold).
    let got = estimate.prior.probabilities::<f64>();
    let within = |g: f64, w: X, rtol: f64| {
        g.is_finite()
            && !X::new(g).sub(w).abs().gt(X::new(rtol).mul(w.abs()).add(X::new(4.0 * f64::MIN_POSITIVE)))
    };
    if got.len() != k || (0..k).any(|j| !within(got[j], q[j], rtol[j])) {
        let want: Vec<f64> = q.iter().map(|v| v.f64()).collect();
        return fail(
            "LabelShiftEm::estimate",
            format!("prior {got:?} after {n} steps, exact {want:?} on {case:?}"),
        );
    }
    // The stopping rule, within the drift of the library's iterates (their L1 distance, twice).
    let slack =
        2.0 * q.iter().zip(&rtol).fold(0.0, |s, (v, r)| s + v.f64() * r) + 8.0 * k as f64 * f64::MIN_POSITIVE;
    let last = changes[n - 1];
    let early = changes[..n - 1].iter().position(|&c| c + slack < *tolerance);
    let flag_ok = if estimate.converged { last <= *tolerance + slack } else { last + slack >= *tolerance };
    if !flag_ok || early.is_some() {
        return fail(
            "LabelShiftEm::estimate",
            format!(
                "stopped after {n} steps (converged {}), exact changes {changes:?} on {case:?}",
                estimate.converged
            ),
        );
    }
    Ok(())
}

#[test]
fn label_shift_em_on_arbitrary_bits() {
    run("label-shift EM f32", CASES, em_case::<f32>(), run_em::<f32>);
    run("label-shift EM f64", CASES, em_case::<f64>(), run_em::<f64>);
}

/// A BBSE case: the validation confusion counts `M[true][predicted]`, the target's predicted-class
/// counts, and a target prediction out of range (`≥ K`) if set.
pub(crate) type BbseCase = (Vec<Vec<u32>>, Vec<u32>, bool);

/// Confusion counts of every kind: small, diagonal-heavy, exactly singular (a rank-1 matrix, a
/// class never predicted or never present), and nearly singular (rank 1 plus a 0/1 perturbation,
/// with entries up to thousands; `a + i + j` plus one, with entries up to 20,000, so `κ` up to
/// ~1e12).
pub(crate) fn bbse_case() -> impl Strategy<Value = BbseCase> {
    (1usize..5).prop_flat_map(|k| {
        let small = proptest::collection::vec(proptest::collection::vec(0u32..12, k), k).boxed();
        let diagonal = proptest::collection::vec(proptest::collection::vec(0u32..4, k), k)
            .prop_map(|mut m| {
                (0..m.len()).for_each(|i| m[i][i] += 40);
                m
            })
            .boxed();
        let rank1 = |c: u32| {
            (proptest::collection::vec(1u32..c, k), proptest::collection::vec(1u32..c, k), proptest::collection::vec(proptest::collection::vec(0u32..2, k), k), any::<bool>())
                .prop_map(|(u, v, e, exact)| {
                    (0..u.len()).map(|i| (0..v.len()).map(|j| u[i] * v[j] + if exact { 0 } else { e[i][j] }).collect()).collect()
                })
                .boxed()
        };
        let zero_line = (small.clone(), 0..k, any::<bool>())
            .prop_map(|(mut m, l, row)| {
                (0..m.len()).for_each(|i| if row { m[l][i] = 0 } else { m[i][l] = 0 });
                m
            })
            .boxed();
        // `a + i + j` (rank 2) plus a 0/1 perturbation: nearly singular with large counts.
        let hankel = (1000u32..20000, proptest::collection::vec(proptest::collection::vec(0u32..2, k), k))
            .prop_map(|(a, e)| {
                (0..e.len()).map(|i| (0..e.len()).map(|j| a + (i + j) as u32 + e[i][j]).collect()).collect()
            })
            .boxed();
        (
            prop_oneof![3 => small, 2 => diagonal, 2 => rank1(8), 2 => rank1(60), 1 => zero_line, 1 => hankel],
            proptest::collection::vec(prop_oneof![1 => Just(0u32), 3 => 0u32..30], k),
            proptest::bool::weighted(0.05),
        )
    })
}

/// `det` of an integer matrix (fraction-free Gaussian elimination, exact in `i128`).
fn det(mut a: Vec<Vec<i128>>) -> i128 {
    let n = a.len();
    let (mut sign, mut prev) = (1, 1i128);
    for c in 0..n {
        let Some(p) = (c..n).find(|&r| a[r][c] != 0) else { return 0 };
        if p != c {
            a.swap(p, c);
            sign = -sign;
        }
        for r in c + 1..n {
            for j in c + 1..n {
                a[r][j] = (a[r][j] * a[c][c] - a[r][c] * a[c][j]) / prev;
            }
            a[r][c] = 0;
        }
        prev = a[c][c];
    }
    sign * a[n - 1][n - 1]
}

/// `det` with column `j` replaced by `b` (Cramer's rule).
fn det_with(a: &[Vec<i128>], j: usize, b: &[i128]) -> i128 {
    let m = a
        .iter()
        .zip(b)
        .map(|(row, &bi)| row.iter().enumerate().map(|(c, &v)| if c == j { bi } else { v }).collect())
        .collect();
    det(m)
}

pub(crate) fn run_bbse(case: BbseCase) -> std::result::Result<(), TestCaseError> {
    use longtail::prior::bbse_target_prior;
    let (m, t, out_of_range) = &case;
    let k = m.len();
    CALLS.fetch_add(1, Ordering::Relaxed);
    let (mut labels, mut predictions) = (Vec::new(), Vec::new());
    for (y, row) in m.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            labels.extend(std::iter::repeat_n(y, c as usize));
            predictions.extend(std::iter::repeat_n(p, c as usize));
        }
    }
    let mut target: Vec<usize> =
        t.iter().enumerate().flat_map(|(p, &c)| std::iter::repeat_n(p, c as usize)).collect();
    if *out_of_range {
        target.push(k);
    }
    let got = bbse_target_prior(&labels[..], &predictions[..], &target[..], k);
    // Ĉ_ij = M[j][i] / n and μ̂ = t / T: Ĉ w = μ̂ is Mᵀ v = t with w = v·n/T, and the prior is
    // q_j ∝ max(v_j, 0)·s_j with s_j = Σ_i M[j][i] (the scale n/T cancels).
    let a: Vec<Vec<i128>> = (0..k).map(|i| (0..k).map(|j| m[j][i] as i128).collect()).collect();
    let b: Vec<i128> = t.iter().map(|&c| c as i128).collect();
    let d = if labels.is_empty() || target.is_empty() || *out_of_range { 0 } else { det(a.clone()) };
    let support: Vec<i128> = m.iter().map(|row| row.iter().map(|&c| c as i128).sum()).collect();
    // v_j·det/|det| = det_j·sign(det)/|det|: its positive part times s_j, over |det|.
    let mass: Vec<i128> = (0..k)
        .map(|j| if d == 0 { 0 } else { (det_with(&a, j, &b) * d.signum()).max(0) * support[j] })
        .collect();
    let total: i128 = mass.iter().sum();
    // The LU solve's forward error is within a small multiple of κ_∞(Mᵀ)·ε relative to ‖v‖_∞,
    // and q_j moves by that times s_j over Σ_k max(v_k, 0)·s_k.
    let inverse_norm = (0..k)
        .map(|i| {
            let unit: Vec<i128> = (0..k).map(|j| (i == j) as i128).collect();
            (0..k).map(|j| (det_with(&a, j, &unit) as f64).abs()).collect::<Vec<f64>>()
        })
        .fold(vec![0.0; k], |acc, col| acc.iter().zip(&col).map(|(a, c)| a + c).collect());
    let inverse_norm = inverse_norm.iter().fold(0.0_f64, |m, &v| m.max(v)) / (d as f64).abs().max(1.0);
    let norm = a.iter().map(|row| row.iter().map(|&v| v as f64).sum::<f64>()).fold(0.0_f64, f64::max);
    let kappa = norm * inverse_norm;
    let v_norm = (0..k).map(|j| (det_with(&a, j, &b) as f64).abs()).fold(0.0, f64::max);
    // Documented: a system whose error bound K·κ∞·ε exceeds 1e-6 is refused (the library's κ is
    // computed from its factors: either outcome within a factor 2 of the limit).
    let bound = k as f64 * kappa * f64::EPSILON;
    let (refusable, beyond) = (d != 0 && bound > 0.5e-6, d != 0 && bound > 2e-6);
    let prior = match got {
        Err(_) if d == 0 || total == 0 || refusable => return Ok(()),
        Ok(p) if d == 0 || total == 0 => {
            return fail(
                "bbse_target_prior",
                format!("Ok({:?}) for a singular or massless system {case:?}", p.probabilities::<f64>()),
            );
        }
        Ok(p) if beyond => {
            return fail(
                "bbse_target_prior",
                format!(
                    "Ok({:?}) for an ill-conditioned system (κ {kappa:e}) {case:?}",
                    p.probabilities::<f64>()
                ),
            );
        }
        Err(e) => return fail("bbse_target_prior", format!("Err({e}) on {case:?} (det {d})")),
        Ok(p) => p.probabilities::<f64>().to_vec(),
    };
    let denominator = total as f64;
    for j in 0..k {
        let want = mass[j] as f64 / denominator;
        let bound = 8.0 * (k * k) as f64 * kappa * f64::EPSILON * v_norm * support[j] as f64 / denominator
            + 1e-15 * want;
        if !(prior[j].is_finite() && (prior[j] - want).abs() <= bound) {
            let want: Vec<f64> = mass.iter().map(|&v| v as f64 / denominator).collect();
            return fail("bbse_target_prior", format!("{prior:?}, exact {want:?} (κ {kappa:e}) on {case:?}"));
        }
    }
    Ok(())
}

#[test]
fn bbse_on_singular_and_ill_conditioned_confusion_matrices() {
    run("BBSE", CASES, bbse_case(), run_bbse);
}
