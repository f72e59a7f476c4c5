//! Shared test helpers: a seeded generator, option combinations, a plain reference implementation
//! of the softmax loss family, and central finite differences.
#![allow(dead_code)]

use longtail::{Float, Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array2, ArrayView2};

/// SplitMix64: a tiny seeded generator, so the tests need no extra crate and are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize
    }
    pub fn logits(&mut self, batch: usize, classes: usize, scale: f64) -> Array2<f64> {
        Array2::from_shape_simple_fn((batch, classes), || scale * self.normal())
    }
    pub fn labels(&mut self, batch: usize, classes: usize) -> Vec<usize> {
        (0..batch).map(|_| self.below(classes)).collect()
    }
    /// Rows drawn from a softmax of normals: strictly positive, summing to 1.
    pub fn probs(&mut self, batch: usize, classes: usize) -> Array2<f64> {
        let mut t = Array2::from_shape_simple_fn((batch, classes), || self.normal().exp());
        for mut row in t.rows_mut() {
            let s = row.sum();
            row /= s;
        }
        t
    }
    /// Positive values in `[lo, hi)`.
    pub fn positive(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.uniform()).collect()
    }
}

/// One combination of the loss's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub adjust: bool,
    pub class_weights: bool,
    pub alpha: bool,
    pub gamma: f64,
    pub smoothing: f64,
    pub probs: bool,
    pub sample_weights: bool,
    pub reduction: Reduction,
}

impl Options {
    /// Every combination of the options, each on or off (focal γ ∈ {0, 0.5, 2}).
    pub fn all() -> Vec<Options> {
        let mut all = Vec::new();
        for bits in 0..64u32 {
            for gamma in [0.0, 0.5, 2.0] {
                let on = |i: u32| bits & (1 << i) != 0;
                all.push(Options {
                    adjust: on(0),
                    class_weights: on(1),
                    alpha: on(2),
                    gamma,
                    smoothing: if on(3) { 0.1 } else { 0.0 },
                    probs: on(4),
                    sample_weights: on(5),
                    reduction: Reduction::Mean,
                });
            }
        }
        let sums: Vec<Options> = all.iter().map(|o| Options { reduction: Reduction::Sum, ..*o }).collect();
        all.extend(sums);
        all
    }
}

/// The inputs of one loss call, in f64; [`Problem::loss`] builds the loss in any float type.
#[derive(Debug, Clone)]
pub struct Problem {
    pub options: Options,
    pub logits: Array2<f64>,
    pub labels: Vec<usize>,
    pub probs: Array2<f64>,
    pub prior: Vec<f64>,
    pub tau: f64,
    pub class_weights: Vec<f64>,
    pub alpha: Vec<f64>,
    pub sample_weights: Vec<f64>,
}

impl Problem {
    pub fn random(options: Options, batch: usize, classes: usize, rng: &mut Rng) -> Self {
        let mut sample_weights = rng.positive(batch, 0.2, 2.0);
        sample_weights[0] = 0.0; // one ignored row
        Self {
            options,
            logits: rng.logits(batch, classes, 2.0),
            labels: rng.labels(batch, classes),
            probs: rng.probs(batch, classes),
            prior: rng.positive(classes, 1.0, 1000.0),
            tau: 1.3,
            class_weights: rng.positive(classes, 0.2, 3.0),
            alpha: rng.positive(classes, 0.1, 1.0),
            sample_weights,
        }
    }

    pub fn loss<F: Float>(&self) -> SoftmaxLoss<F> {
        let o = self.options;
        let cast = |v: &[f64]| v.iter().map(|&x| F::from_f64(x)).collect::<Vec<F>>();
        let mut loss = SoftmaxLoss::<F>::cross_entropy().with_reduction(o.reduction);
        if o.adjust {
            loss = loss.with_logit_adjustment(&cast(&self.prior), F::from_f64(self.tau)).unwrap();
        }
        if o.class_weights {
            loss = loss.with_class_weights(&cast(&self.class_weights)).unwrap();
        }
        if o.alpha {
            loss = loss.with_alpha(&cast(&self.alpha)).unwrap();
        }
        loss.with_focal(F::from_f64(o.gamma)).unwrap().with_label_smoothing(F::from_f64(o.smoothing)).unwrap()
    }

    /// Runs `f` with this problem's targets in float type `F`.
    pub fn with_targets<F: Float, R>(&self, f: impl FnOnce(Targets<'_, F>) -> R) -> R {
        let probs = self.probs.mapv(F::from_f64);
        let weights: Vec<F> = self.sample_weights.iter().map(|&x| F::from_f64(x)).collect();
        let mut targets =
            if self.options.probs { Targets::probs(&probs) } else { Targets::labels(&self.labels) };
        if self.options.sample_weights {
            targets = targets.with_sample_weights(&weights);
        }
        f(targets)
    }

    /// The reduced loss and gradient computed by the crate in float type `F`, widened to f64.
    pub fn loss_and_grad<F: Float>(&self, logits: &Array2<f64>) -> (f64, Array2<f64>) {
        let z = logits.mapv(F::from_f64);
        let (l, g) = self.with_targets(|t| self.loss::<F>().loss_and_grad(&z, t)).unwrap();
        (l.as_f64(), g.mapv(F::as_f64))
    }

    /// The f64 gradient against central differences (1e-6 relative) and the loss against
    /// [`reference_loss`](Self::reference_loss) (1e-12 relative).
    pub fn assert_matches_finite_differences_and_reference(&self) {
        let (loss, grad) = self.loss_and_grad::<f64>(&self.logits);
        let numeric = numeric_grad(&self.logits, |z| self.loss_and_grad::<f64>(z).0);
        let err = relative_error(&grad, &numeric);
        let options = self.options;
        assert!(err <= 1e-6, "{options:?}: gradient relative error {err:e}");
        let reference = self.reference_loss(self.logits.view());
        assert!(relative(loss, reference) <= 1e-12, "{options:?}: loss {loss} vs reference {reference}");
    }

    /// The reference loss: the formula written out plainly, in f64.
    pub fn reference_loss(&self, logits: ArrayView2<f64>) -> f64 {
        let o = self.options;
        let (batch, classes) = logits.dim();
        let k = classes as f64;
        let prior_sum: f64 = self.prior.iter().sum();
        let mut total = 0.0;
        let mut denominator = 0.0;
        for i in 0..batch {
            let z: Vec<f64> = (0..classes)
                .map(|c| {
                    logits[[i, c]] + if o.adjust { self.tau * (self.prior[c] / prior_sum).ln() } else { 0.0 }
                })
                .collect();
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            let s = if o.sample_weights { self.sample_weights[i] } else { 1.0 };
            let w = |c: usize| {
                if o.class_weights { self.class_weights[c] } else { 1.0 }
            };
            let a = |c: usize| w(c) * if o.alpha { self.alpha[c] } else { 1.0 };
            let t = |c: usize| {
                let raw = if o.probs { self.probs[[i, c]] } else { f64::from(u8::from(self.labels[i] == c)) };
                (1.0 - o.smoothing) * raw + o.smoothing / k
            };
            for (c, zc) in z.iter().enumerate() {
                let lp = zc - lse;
                total += s * a(c) * t(c) * (1.0 - lp.exp()).powf(o.gamma) * -lp;
            }
            denominator += if o.probs { s } else { s * w(self.labels[i]) };
        }
        match o.reduction {
            Reduction::Mean => total / denominator,
            Reduction::Sum => total,
        }
    }
}

/// Central finite differences of `f` at `x`, step `ε^(1/3)·max(1, |x_ij|)`.
pub fn numeric_grad(x: &Array2<f64>, f: impl Fn(&Array2<f64>) -> f64) -> Array2<f64> {
    let step = f64::EPSILON.cbrt();
    let mut grad = Array2::zeros(x.raw_dim());
    let mut probe = x.clone();
    for (idx, g) in grad.indexed_iter_mut() {
        let h = step * x[idx].abs().max(1.0);
        probe[idx] = x[idx] + h;
        let up = f(&probe);
        probe[idx] = x[idx] - h;
        let down = f(&probe);
        probe[idx] = x[idx];
        *g = (up - down) / (2.0 * h);
    }
    grad
}

/// `max |a − b| / max |b|`: the gradient's error relative to its size.
pub fn relative_error(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let scale = b.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let err = (a - b).iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if scale == 0.0 { err } else { err / scale }
}

/// `|a − b| / |b|` (absolute when `b = 0`).
pub fn relative(a: f64, b: f64) -> f64 {
    if b == 0.0 { (a - b).abs() } else { ((a - b) / b).abs() }
}

/// A `[B, K]` array of `F` from rows written in `f64`.
pub fn mat<F: Float>(rows: &[&[f64]]) -> Array2<F> {
    let k = rows.first().map_or(0, |r| r.len());
    assert!(rows.iter().all(|r| r.len() == k));
    Array2::from_shape_fn((rows.len(), k), |(i, j)| F::from_f64(rows[i][j]))
}
