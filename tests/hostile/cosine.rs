//! The cosine classifier head: `z_ik = ĥ_i·ŵ_k` and its backward pass `(g − v̂(v̂·g))/|v|` on
//! features, class weights and logit gradients of any bit pattern.

use super::*;
use longtail::CosineHead;

#[derive(Debug, Clone)]
pub(crate) struct CosineCase<F> {
    pub(crate) features: Array2<F>,
    pub(crate) weights: Array2<F>,
    pub(crate) grad: Array2<F>,
}

pub(crate) fn cosine_case<F: Hostile>() -> impl Strategy<Value = CosineCase<F>> {
    (1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(b, d, k)| {
        let v = move |n: usize| proptest::collection::vec(F::values(), n);
        (v(b * d), v(d * k), v(b * k)).prop_map(move |(f, w, g)| CosineCase {
            features: Array2::from_shape_vec((b, d), f).unwrap(),
            weights: Array2::from_shape_vec((d, k), w).unwrap(),
            grad: Array2::from_shape_vec((b, k), g).unwrap(),
        })
    })
}

/// A vector's exact norm (in `X`, from the largest entry down) floored at `1e-12`, and its unit
/// vector `v/max(|v|, 1e-12)` in `f64`.
fn unit_ref(v: &[f64]) -> (X, Vec<f64>) {
    let m = v.iter().fold(0.0_f64, |m, &x| m.max(x.abs()));
    let norm = if m == 0.0 {
        X::ZERO
    } else {
        X::new(m).mul(X::new(v.iter().map(|&x| (x / m) * (x / m)).sum::<f64>().sqrt()))
    };
    let floor = X::new(1e-12);
    let norm = if norm.gt(floor) { norm } else { floor };
    (norm, v.iter().map(|&x| X::new(x).div(norm).f64()).collect())
}

#[allow(clippy::needless_range_loop)] // rows and unit vectors indexed together
pub(crate) fn run_cosine<F: Hostile>(case: CosineCase<F>) -> std::result::Result<(), TestCaseError> {
    let (b, d) = case.features.dim();
    let k = case.weights.ncols();
    let finite = |a: &Array2<F>| a.iter().all(|v| v.is_finite());
    let head = CosineHead::forward(&case.features, &case.weights);
    if !(finite(&case.features) && finite(&case.weights)) {
        let got = head.map(|h| h.logits().iter().copied().collect());
        return judge::<F>("CosineHead::forward", &case, &got, &Expect::Invalid, X::new(1.0));
    }
    let rows: Vec<(X, Vec<f64>)> = (0..b)
        .map(|i| unit_ref(&case.features.row(i).iter().map(|v| v.as_f64()).collect::<Vec<_>>()))
        .collect();
    let cols: Vec<(X, Vec<f64>)> = (0..k)
        .map(|j| unit_ref(&case.weights.column(j).iter().map(|v| v.as_f64()).collect::<Vec<_>>()))
        .collect();
    let mut want = Vec::new();
    for (_, h) in &rows {
        for (_, w) in &cols {
            let z: f64 = h.iter().zip(w).map(|(a, b)| a * b).sum();
            let bound: f64 = h.iter().zip(w).map(|(a, b)| (a * b).abs()).sum();
            want.push((X::new(z), X::new(bound.max(1e-300))));
        }
    }
    let got = head.as_ref().map(|h| h.logits().iter().copied().collect()).map_err(Clone::clone);
    judge::<F>("CosineHead::forward", &case, &got, &Expect::Value(want), X::new(1.0))?;
    let Ok(head) = head else { return Ok(()) };
    let got = head.backward(&case.grad);
    if !finite(&case.grad) {
        let got = got.map(|(f, w)| f.iter().chain(w.iter()).copied().collect());
        return judge::<F>("CosineHead::backward", &case, &got, &Expect::Invalid, X::new(1.0));
    }
    let g = |i: usize, j: usize| X::new(case.grad[[i, j]].as_f64());
    // Through v̂ = v/|v|: (u − v̂(v̂·u))/|v| with u the gradient with respect to v̂; bound by
    // (|u| + |v̂||v̂·u|-terms)/|v|.
    let through = |u: Vec<(X, X)>, unit: &[f64], norm: X| -> Vec<(X, X)> {
        let along = u.iter().zip(unit).fold(X::ZERO, |s, (&(x, _), &e)| s.add(x.mul(X::new(e))));
        let along_b = u.iter().zip(unit).fold(X::ZERO, |s, (&(_, b), &e)| s.add(b.mul(X::new(e.abs()))));
        u.iter()
            .zip(unit)
            .map(|(&(x, b), &e)| {
                let v = x.sub(X::new(e).mul(along)).div(norm);
                let bound = b.add(X::new(e.abs()).mul(along_b)).div(norm);
                (v, bound)
            })
            .collect()
    };
    let mut want = Vec::new();
    for i in 0..b {
        let u: Vec<(X, X)> = (0..d)
            .map(|t| {
                (0..k).fold((X::ZERO, X::ZERO), |(s, a), j| {
                    let p = g(i, j).mul(X::new(cols[j].1[t]));
                    (s.add(p), a.add(p.abs()))
                })
            })
            .collect();
        want.extend(through(u, &rows[i].1, rows[i].0));
    }
    let mut wcols = vec![Vec::new(); k];
    for (j, col) in wcols.iter_mut().enumerate() {
        let u: Vec<(X, X)> = (0..d)
            .map(|t| {
                (0..b).fold((X::ZERO, X::ZERO), |(s, a), i| {
                    let p = g(i, j).mul(X::new(rows[i].1[t]));
                    (s.add(p), a.add(p.abs()))
                })
            })
            .collect();
        *col = through(u, &cols[j].1, cols[j].0);
    }
    // The weights' gradient is [D, K], row-major.
    for t in 0..d {
        for col in &wcols {
            want.push(col[t]);
        }
    }
    let got = got.map(|(f, w)| f.iter().chain(w.iter()).copied().collect());
    // The unit vectors are held in `F`: an entry below the smallest normal number loses its
    // digits, an error of `min_normal` per unit entry, which the gradient multiplies by up to
    // `max|G|·K·B / |v|` (a known limit).
    let top = case.grad.iter().fold(0.0_f64, |m, v| m.max(v.as_f64().abs()));
    let smallest = rows.iter().chain(&cols).fold(X::new(f64::MAX), |m, (n, _)| if m.gt(*n) { *n } else { m });
    let coef = X::new(top * (b * k) as f64).div(smallest);
    judge::<F>("CosineHead::backward", &case, &got, &Expect::Value(want), coef)
}

#[test]
fn cosine_head_on_arbitrary_bits() {
    run("cosine f32", CASES, cosine_case::<f32>(), run_cosine::<f32>);
    run("cosine f64", CASES, cosine_case::<f64>(), run_cosine::<f64>);
}
