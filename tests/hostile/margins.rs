//! The hard-label margin losses VS and Poly-1: cross-entropy on the transformed logits as the
//! library rounds them.

use super::*;

/// The outputs `(reduced, per-sample)`, each with its bound.
pub(crate) type Outputs = (Vec<(X, X)>, Vec<(X, X)>);

/// One row's `ℓ_i` and its bound, `∂ℓ_i/∂z` and its bounds.
pub(crate) type Row = (X, X, Vec<X>, Vec<X>);

/// The outputs of a batch from its rows and the mean's divisor `Σ_i c_i`.
pub(crate) fn batch_outputs(rows: &[Row], coefficients: &[X], sum: bool) -> Outputs {
    let total = rows.iter().fold(X::ZERO, |t, r| t.add(r.0));
    let total_bound = rows.iter().fold(X::ZERO, |t, r| t.add(r.1));
    note_sum(total);
    let divisor = if sum { X::new(1.0) } else { coefficients.iter().fold(X::ZERO, |t, &c| t.add(c)) };
    let mut reduced = Vec::new();
    if divisor.is_zero() {
        reduced.push((X::ZERO, X::ZERO));
        reduced.extend(rows.iter().flat_map(|r| r.2.iter().map(|_| (X::ZERO, X::ZERO))));
    } else {
        reduced.push((total.div(divisor), total_bound.div(divisor)));
        for (_, _, g, bd) in rows {
            reduced.extend(g.iter().zip(bd).map(|(&g, &bd)| (g.div(divisor), bd.div(divisor))));
        }
    }
    let mut per_sample: Vec<(X, X)> = rows.iter().map(|r| (r.0, r.1)).collect();
    for (_, _, g, bd) in rows {
        per_sample.extend(g.iter().copied().zip(bd.iter().copied()));
    }
    (reduced, per_sample)
}

/// `p_j` of `softmax(z)` for every class (`z` finite or `-inf`, at least one finite), and
/// `1 − p_y` without cancellation.
pub(crate) fn probs(z: &[f64], y: usize) -> (Vec<X>, X) {
    let argmax = (0..z.len()).fold(y, |a, k| if z[k] > z[a] { k } else { a });
    let d: Vec<X> = z.iter().map(|&v| diff(v, z[argmax])).collect();
    let others: Vec<X> = (0..z.len()).filter(|&j| j != argmax).map(|j| d[j]).collect();
    let log_r = lse_x(&others);
    let ln_total = ln_1p(log_r.map_or(0.0, |l| l.exp().f64()));
    let p: Vec<X> = d
        .iter()
        .map(|&d| if d.m == f64::NEG_INFINITY { X::ZERO } else { d.sub(X::new(ln_total)).exp() })
        .collect();
    let q = if y == argmax {
        log_r.map_or(X::ZERO, |l| l.sub(X::new(ln_total)).exp())
    } else {
        X::new(1.0 - p[y].f64())
    };
    (p, q)
}

/// A hard-label case: logits, labels, sample and class weights.
#[derive(Debug, Clone)]
pub(crate) struct LabelledCase<F> {
    pub(crate) logits: Array2<F>,
    pub(crate) labels: Vec<usize>,
    pub(crate) weights: Option<Vec<F>>,
    pub(crate) class_weights: Option<Vec<F>>,
    pub(crate) sum: bool,
}

pub(crate) fn labelled_case<F: Hostile>() -> impl Strategy<Value = LabelledCase<F>> {
    (1usize..4, 1usize..5).prop_flat_map(|(b, k)| {
        (
            proptest::collection::vec(F::values(), b * k),
            proptest::collection::vec(0..k, b),
            proptest::option::weighted(0.4, weights::<F>(b)),
            proptest::option::weighted(0.3, weights::<F>(k)),
            any::<bool>(),
        )
            .prop_map(move |(z, labels, weights, class_weights, sum)| LabelledCase {
                logits: Array2::from_shape_vec((b, k), z).unwrap(),
                labels,
                weights,
                class_weights,
                sum,
            })
    })
}

impl<F: Hostile> LabelledCase<F> {
    pub(crate) fn targets(&self) -> Targets<'_, F> {
        let t = Targets::labels(&self.labels);
        match &self.weights {
            Some(w) => t.with_sample_weights(&w[..]),
            None => t,
        }
    }

    /// The reference of CE on `z'_k = transform(y, k, z_k)` (`y` the row's label; rounded in `F`, a finite logit pushed
    /// out of range invalid) plus `ε·(1 − p_y)`, the gradient times `∂z'_k/∂z_k = slope[k]`.
    pub(crate) fn reference(
        &self,
        transform: impl Fn(usize, usize, F) -> F,
        slope: &[F],
        epsilon: f64,
    ) -> Expect<Outputs> {
        let k = self.logits.ncols();
        let row = |y: usize, z: &[F]| (Some((0..k).map(|j| transform(y, j, z[j])).collect()), X::ZERO);
        self.reference_rows(row, slope, epsilon)
    }

    /// [`reference`](Self::reference) with a transform of the whole row (`y`, the row's logits)
    /// into `z'` (`None`: the row's input is invalid) and a slack: the error of `z'` that the
    /// library's rounding of row statistics leaves, added to the loss's and gradient's bounds.
    pub(crate) fn reference_rows(
        &self,
        transform: impl Fn(usize, &[F]) -> (Option<Vec<F>>, X),
        slope: &[F],
        epsilon: f64,
    ) -> Expect<Outputs> {
        let (b, k) = self.logits.dim();
        let f = |v: F| v.as_f64();
        if self.logits.iter().any(|&v| v.is_nan() || v == F::infinity()) {
            return Expect::Invalid;
        }
        let mut rows = Vec::new();
        let mut coefficients = Vec::new();
        for i in 0..b {
            let (y, s) = (self.labels[i], self.weights.as_ref().map_or(1.0, |w| f(w[i])));
            if !(s.is_finite() && s >= 0.0) {
                return Expect::Invalid;
            }
            let w = self.class_weights.as_ref().map_or(1.0, |w| f(w[y]));
            let c = X::new(s).mul(X::new(w));
            let row: Vec<F> = self.logits.row(i).to_vec();
            if c.is_zero() && row.iter().all(|&v| v == F::neg_infinity()) {
                // A fully masked row that does not count: ignored, as any row of weight 0.
                rows.push((X::ZERO, X::ZERO, vec![X::ZERO; k], vec![X::ZERO; k]));
                coefficients.push(c);
                continue;
            }
            let (Some(transformed), slack) = transform(y, &row) else { return Expect::Invalid };
            let mut z = Vec::with_capacity(k);
            for (&v, &t) in row.iter().zip(&transformed) {
                if v.is_finite() && !t.is_finite() {
                    return Expect::Invalid;
                }
                z.push(f(t));
            }
            let slack = c.mul(slack).div(X::new(F::RTOL));
            let mut mass = vec![X::ZERO; k];
            mass[y] = c;
            let Some((l, g, bd)) = softmax_row(&z, &mass, 0.0) else { return Expect::Invalid };
            let (l, lb, g, bd) = if epsilon == 0.0 || c.is_zero() {
                (l, l, g, bd)
            } else {
                // ε(1 − p_y) adds `c·ε·p_y·(p_j − δ_jy)` to the gradient: CE's times `1 + ε·p_y`.
                let (p, q) = probs(&z, y);
                let factor = X::new(1.0).add(X::new(epsilon).mul(p[y]));
                let poly = c.mul(X::new(epsilon)).mul(q);
                let bound_factor = X::new(1.0).add(X::new(epsilon.abs()).mul(p[y]));
                (
                    l.add(poly),
                    l.add(poly.abs()),
                    g.iter().map(|g| g.mul(factor)).collect(),
                    bd.iter().map(|b| b.mul(bound_factor)).collect(),
                )
            };
            let d = |j: usize| X::new(f(slope[j]));
            let g = g.iter().enumerate().map(|(j, g)| g.mul(d(j))).collect();
            let bd = bd.iter().enumerate().map(|(j, b)| b.add(slack).mul(d(j))).collect();
            rows.push((l, lb.add(slack), g, bd));
            coefficients.push(c);
        }
        Expect::Value(batch_outputs(&rows, &coefficients, self.sum))
    }

    /// Judges `loss` on the case (`case`: the whole generated case, printed on failure; `coef`:
    /// the factor of the exponentials' flush beyond the weights').
    pub(crate) fn judge_loss(
        &self,
        (name, case, coef): ((&'static str, &'static str), &dyn std::fmt::Debug, X),
        loss: &impl Loss<F>,
        expect: Expect<Outputs>,
    ) -> std::result::Result<(), TestCaseError> {
        let (reduced, per_sample) = match expect {
            Expect::Invalid => (Expect::Invalid, Expect::Invalid),
            Expect::Value((r, p)) => (Expect::Value(r), Expect::Value(p)),
        };
        let coef = weight_coef(&[self.weights.as_ref(), self.class_weights.as_ref()]).mul(coef);
        let got = loss.loss_and_grad(&self.logits, self.targets()).map(|(l, g)| {
            let mut v = vec![l];
            v.extend(g.iter().copied());
            v
        });
        judge::<F>(name.0, case, &got, &reduced, coef)?;
        let got = loss.per_sample_loss_and_grad(&self.logits, self.targets()).map(|(l, g)| {
            let mut v = l.to_vec();
            v.extend(g.iter().copied());
            v
        });
        judge::<F>(name.1, case, &got, &per_sample, coef)
    }

    pub(crate) fn reduction(&self) -> Reduction {
        if self.sum { Reduction::Sum } else { Reduction::Mean }
    }
}

pub(crate) fn run_vs<F: Hostile>(
    all: (LabelledCase<F>, Vec<F>, F, F),
) -> std::result::Result<(), TestCaseError> {
    let (case, counts, gamma, tau) = &all;
    let (gamma, tau) = (*gamma, *tau);
    SUM_BEYOND_F64.with(|s| s.set(false));
    let mut built = VsLoss::new(&counts[..]).and_then(|l| l.with_gamma(gamma)).and_then(|l| l.with_tau(tau));
    if let Some(w) = &case.class_weights {
        built = built.and_then(|l| l.with_class_weights(w));
    }
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(case.reduction());
    let (scales, shifts) = (loss.scales(), loss.adjustments());
    let expect = case.reference(|_, j, z| scales[j] * z + shifts[j], scales, 0.0);
    let names = ("VsLoss::loss_and_grad", "VsLoss::per_sample_loss_and_grad");
    case.judge_loss((names, &all, X::new(1.0)), &loss, expect)
}

pub(crate) fn vs_case<F: Hostile>() -> impl Strategy<Value = (LabelledCase<F>, Vec<F>, F, F)> {
    let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
    let param =
        move || prop_oneof![2 => Just(F::from_f64(0.3)), 1 => Just(F::one()), 2 => pos(), 1 => F::values()];
    labelled_case::<F>().prop_flat_map(move |case| {
        let k = case.logits.ncols();
        (Just(case), proptest::collection::vec(pos(), k), param(), param())
    })
}

pub(crate) fn run_poly1<F: Hostile>(all: Poly1Case<F>) -> std::result::Result<(), TestCaseError> {
    let (case, epsilon, prior) = &all;
    let epsilon = *epsilon;
    SUM_BEYOND_F64.with(|s| s.set(false));
    let mut built = Poly1Loss::new(epsilon);
    if let Some((p, tau)) = &prior {
        built = built.and_then(|l| l.with_logit_adjustment(p, *tau));
    }
    if let Some(w) = &case.class_weights {
        built = built.and_then(|l| l.with_class_weights(w));
    }
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(case.reduction());
    let adjust = loss.logit_adjustment();
    let ones = vec![F::one(); case.logits.ncols()];
    let expect = case.reference(|_, j, z| adjust.map_or(z, |a| z + a[j]), &ones, epsilon.as_f64());
    let names = ("Poly1Loss::loss_and_grad", "Poly1Loss::per_sample_loss_and_grad");
    // ε multiplies the exponentials' flush in `ε·(1 − p_y)`.
    case.judge_loss((names, &all, X::new(1.0 + epsilon.as_f64().abs())), &loss, expect)
}

/// A Poly-1 case: the batch, `ε`, and a prior with `τ` for the logit adjustment.
pub(crate) type Poly1Case<F> = (LabelledCase<F>, F, Option<(Vec<F>, F)>);

pub(crate) fn poly1_case<F: Hostile>() -> impl Strategy<Value = Poly1Case<F>> {
    let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
    let epsilon = prop_oneof![2 => Just(F::one()), 1 => Just(F::from_f64(-1.0)), 1 => (-1.0f64..4.0).prop_map(F::from_f64), 2 => F::values()];
    labelled_case::<F>().prop_flat_map(move |case| {
        let k = case.logits.ncols();
        (
            Just(case),
            epsilon.clone(),
            proptest::option::weighted(0.4, (proptest::collection::vec(pos(), k), F::values())),
        )
    })
}

/// A pairwise-margin case: the batch and the `K×K` margins `Δ` (any bit pattern, or drawn from a
/// prior with `τ` through [`PairwiseMarginLoss::from_prior`]).
pub(crate) type PairwiseCase<F> = (LabelledCase<F>, Vec<F>, Option<(Vec<F>, F)>);

pub(crate) fn pairwise_case<F: Hostile>() -> impl Strategy<Value = PairwiseCase<F>> {
    let pos = || F::values().prop_map(|v| F::from_f64(v.as_f64().abs()));
    let margin =
        || prop_oneof![2 => (-3.0f64..3.0).prop_map(F::from_f64), 1 => Just(F::zero()), 2 => F::values()];
    labelled_case::<F>().prop_flat_map(move |case| {
        let k = case.logits.ncols();
        (
            Just(case),
            proptest::collection::vec(margin(), k * k),
            proptest::option::weighted(0.3, (proptest::collection::vec(pos(), k), F::values())),
        )
    })
}

pub(crate) fn run_pairwise<F: Hostile>(all: PairwiseCase<F>) -> std::result::Result<(), TestCaseError> {
    let (case, margins, prior) = &all;
    SUM_BEYOND_F64.with(|s| s.set(false));
    let k = case.logits.ncols();
    let mut built = match prior {
        Some((p, tau)) => PairwiseMarginLoss::from_prior(&p[..], *tau),
        None => PairwiseMarginLoss::new(&Array2::from_shape_vec((k, k), margins.clone()).unwrap()),
    };
    if let Some(w) = &case.class_weights {
        built = built.and_then(|l| l.with_class_weights(w));
    }
    let Ok(loss) = built else {
        CALLS.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let loss = loss.with_reduction(case.reduction());
    // The margins as the loss stores them: the off-diagonal entries as given (finite, else the
    // builder refused them), the diagonal 0; from a prior, `τ·(ln π_k − ln π_y)` rounded once.
    let delta = loss.margins();
    let ones = vec![F::one(); k];
    let expect = case.reference(|y, j, z| z + delta[[y, j]], &ones, 0.0);
    let names = ("PairwiseMarginLoss::loss_and_grad", "PairwiseMarginLoss::per_sample_loss_and_grad");
    case.judge_loss((names, &all, X::new(1.0)), &loss, expect)
}

#[test]
fn vs_loss_on_arbitrary_bits() {
    run("vs f32", CASES / 3, vs_case::<f32>(), run_vs::<f32>);
    run("vs f64", CASES / 3, vs_case::<f64>(), run_vs::<f64>);
}

#[test]
fn poly1_loss_on_arbitrary_bits() {
    run("poly1 f32", CASES / 3, poly1_case::<f32>(), run_poly1::<f32>);
    run("poly1 f64", CASES / 3, poly1_case::<f64>(), run_poly1::<f64>);
}

#[test]
fn pairwise_margin_loss_on_arbitrary_bits() {
    run("pairwise f32", CASES / 3, pairwise_case::<f32>(), run_pairwise::<f32>);
    run("pairwise f64", CASES / 3, pairwise_case::<f64>(), run_pairwise::<f64>);
}
