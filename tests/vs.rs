//! `VsLoss`: gradients against finite differences for every option combination, f32 against f64,
//! the formula written out, its special cases (logit adjustment at γ = 0, cross-entropy at
//! γ = τ = 0), and every error.

mod common;

use common::{Rng, mat, numeric_grad, relative, relative_error};
use longtail::{Error, Float, Loss, Prior, Reduction, SoftmaxLoss, Targets, VsLoss};
use ndarray::{Array2, array};

const BATCH: usize = 7;
const CLASSES: usize = 5;
/// `(γ, τ)`: the defaults, the paper's CIFAR settings, each term alone, a negative `τ`.
const SETTINGS: [(f64, f64); 5] = [(0.3, 1.0), (0.2, 1.5), (0.0, 1.0), (0.5, 0.0), (1.0, -0.5)];

struct Problem {
    logits: Array2<f64>,
    labels: Vec<usize>,
    counts: Vec<f64>,
    class_weights: Option<Vec<f64>>,
    sample_weights: Option<Vec<f64>>,
    reduction: Reduction,
}

impl Problem {
    fn all(rng: &mut Rng) -> Vec<Problem> {
        (0..8)
            .map(|bits| {
                let mut weights = rng.positive(BATCH, 0.2, 2.0);
                weights[0] = 0.0;
                Problem {
                    logits: rng.logits(BATCH, CLASSES, 2.0),
                    labels: rng.labels(BATCH, CLASSES),
                    counts: rng.positive(CLASSES, 1.0, 1000.0),
                    class_weights: (bits & 1 != 0).then(|| rng.positive(CLASSES, 0.2, 3.0)),
                    sample_weights: (bits & 2 != 0).then_some(weights),
                    reduction: if bits & 4 == 0 { Reduction::Mean } else { Reduction::Sum },
                }
            })
            .collect()
    }

    fn loss<F: Float>(&self, gamma: f64, tau: f64) -> VsLoss<F> {
        let loss = VsLoss::new(&cast::<F>(&self.counts))
            .unwrap()
            .with_gamma(F::from_f64(gamma))
            .unwrap()
            .with_tau(F::from_f64(tau))
            .unwrap()
            .with_reduction(self.reduction);
        match &self.class_weights {
            Some(w) => loss.with_class_weights(&cast::<F>(w)).unwrap(),
            None => loss,
        }
    }

    fn run<F: Float>(&self, z: &Array2<f64>, gamma: f64, tau: f64) -> (f64, Array2<f64>) {
        let z = z.mapv(F::from_f64);
        let weights = self.sample_weights.as_deref().map(cast::<F>);
        let targets = match &weights {
            Some(w) => Targets::labels(&self.labels).with_sample_weights(w),
            None => Targets::labels(&self.labels),
        };
        let (l, g) = self.loss::<F>(gamma, tau).loss_and_grad(&z, targets).unwrap();
        (l.as_f64(), g.mapv(F::as_f64))
    }

    /// CE on `(n_k/n_max)^γ·z_k + τ·log(n_k/Σn)`, weighted mean, written out plainly.
    fn reference(&self, z: &Array2<f64>, gamma: f64, tau: f64) -> f64 {
        let max = self.counts.iter().copied().fold(0.0, f64::max);
        let total: f64 = self.counts.iter().sum();
        let (mut sum, mut denominator) = (0.0, 0.0);
        for (i, &y) in self.labels.iter().enumerate() {
            let t: Vec<f64> = (0..CLASSES)
                .map(|k| (self.counts[k] / max).powf(gamma) * z[[i, k]] + tau * (self.counts[k] / total).ln())
                .collect();
            let c = self.sample_weights.as_ref().map_or(1.0, |s| s[i])
                * self.class_weights.as_ref().map_or(1.0, |w| w[y]);
            sum += c * (t.iter().map(|v| v.exp()).sum::<f64>().ln() - t[y]);
            denominator += c;
        }
        if self.reduction == Reduction::Mean { sum / denominator } else { sum }
    }
}

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

#[test]
fn matches_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(1401);
    for p in Problem::all(&mut rng) {
        for (gamma, tau) in SETTINGS {
            let (loss, grad) = p.run::<f64>(&p.logits, gamma, tau);
            let numeric = numeric_grad(&p.logits, |z| p.run::<f64>(z, gamma, tau).0);
            let err = relative_error(&grad, &numeric);
            assert!(err <= 1e-6, "γ {gamma}, τ {tau}: gradient relative error {err:e}");
            let reference = p.reference(&p.logits, gamma, tau);
            assert!(relative(loss, reference) <= 1e-12, "γ {gamma}, τ {tau}: {loss} vs {reference}");
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(1403);
    for p in Problem::all(&mut rng) {
        let logits = p.logits.mapv(|v| f64::from(v as f32));
        for (gamma, tau) in SETTINGS {
            let (l64, g64) = p.run::<f64>(&logits, gamma, tau);
            let (l32, g32) = p.run::<f32>(&logits, gamma, tau);
            assert!(relative(l32, l64) <= 1e-5, "γ {gamma}, τ {tau}: {l32} vs {l64}");
            assert!(
                relative_error(&g32, &g64) <= 1e-5,
                "γ {gamma}, τ {tau}: {:e}",
                relative_error(&g32, &g64)
            );
        }
    }
}

#[test]
fn gamma_zero_is_logit_adjustment_and_tau_zero_too_is_cross_entropy() {
    let mut rng = Rng::new(1405);
    let (logits, labels, counts) = (rng.logits(9, 6, 3.0), rng.labels(9, 6), rng.positive(6, 1.0, 500.0));
    for tau in [1.0, 0.5, -1.0] {
        let vs = VsLoss::new(&counts).unwrap().with_gamma(0.0).unwrap().with_tau(tau).unwrap();
        let la = SoftmaxLoss::cross_entropy().with_logit_adjustment(&counts, tau).unwrap();
        let (a, b) =
            (vs.loss_and_grad(&logits, &labels).unwrap(), la.loss_and_grad(&logits, &labels).unwrap());
        assert!(relative(a.0, b.0) <= 1e-12 && relative_error(&a.1, &b.1) <= 1e-12, "τ {tau}");
    }
    let vs = VsLoss::new(&counts).unwrap().with_gamma(0.0).unwrap().with_tau(0.0).unwrap();
    // Bit for bit: Δ = 1 and ι = 0 leave the logits as they are, and the kernel is CE's.
    assert_eq!(
        vs.loss_and_grad(&logits, &labels).unwrap(),
        SoftmaxLoss::cross_entropy().loss_and_grad(&logits, &labels).unwrap()
    );
}

#[test]
fn the_gradient_is_the_scaled_cross_entropy_gradient_of_the_transformed_logits() {
    let mut rng = Rng::new(1407);
    let (logits, labels) = (rng.logits(6, 4, 2.0), rng.labels(6, 4));
    let prior = Prior::from_counts(&[800.0, 150.0, 30.0, 4.0]).unwrap();
    let vs = VsLoss::new(&prior).unwrap();
    let mut transformed = logits.clone();
    for mut row in transformed.rows_mut() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = vs.scales()[k] * *v + vs.adjustments()[k];
        }
    }
    let (ce, ce_grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&transformed, &labels).unwrap();
    let (value, grad) = vs.loss_and_grad(&logits, &labels).unwrap();
    assert!(relative(value, ce) <= 1e-14);
    let scales = ndarray::Array1::from(vs.scales().to_vec());
    assert!(relative_error(&grad, &(ce_grad * &scales)) <= 1e-14);
    // Δ_k = (n_k/n_max)^0.3, ι_k = log π_k from the prior.
    assert!(relative(vs.scales()[3], (4.0_f64 / 800.0).powf(0.3)) <= 1e-15);
    assert!(relative(vs.adjustments()[2], (30.0_f64 / 984.0).ln()) <= 1e-15);
}

#[test]
fn per_sample_losses_sum_to_the_sum_reduction_and_into_overwrites() {
    let mut rng = Rng::new(1409);
    let p = &Problem::all(&mut rng)[7]; // class and sample weights, Sum
    let (sum, sum_grad) = p.run::<f64>(&p.logits, 0.3, 1.0);
    let weights = p.sample_weights.clone().unwrap();
    let targets = Targets::labels(&p.labels).with_sample_weights(&weights);
    let (per, per_grad) = p.loss::<f64>(0.3, 1.0).per_sample_loss_and_grad(&p.logits, &targets).unwrap();
    assert!(relative(per.sum(), sum) <= 1e-14 && per[0] == 0.0);
    assert_eq!(per_grad, sum_grad);
    let mut grad = Array2::from_elem(p.logits.raw_dim(), f64::NAN);
    let value = p.loss::<f64>(0.3, 1.0).loss_and_grad_into(&p.logits, &targets, &mut grad).unwrap();
    assert_eq!((value, grad), (sum, sum_grad));
}

#[test]
fn a_masked_class_gets_zero_gradient_and_zero_weights_give_zero() {
    let vs = VsLoss::new(&[5.0, 3.0, 1.0]).unwrap();
    let logits = array![[1.0_f64, f64::NEG_INFINITY, 0.5]];
    let (loss, grad) = vs.loss_and_grad(&logits, &[2]).unwrap();
    assert!(loss.is_finite() && grad[[0, 1]] == 0.0);
    let ignored = Targets::labels(&[1]).with_sample_weights(&[0.0]);
    assert_eq!(vs.loss_and_grad(&logits, ignored).unwrap(), (0.0, Array2::zeros((1, 3))));
}

const SENTINEL: f64 = 7.0;

/// Every call fails alike on one batch without writing the gradient; returns the error.
fn fail<F: Float>(loss: &VsLoss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets).unwrap_err(),
    ];
    // Compared as text: a NaN in an error is not equal to itself.
    assert!(errors.iter().all(|e| format!("{e:?}") == format!("{:?}", errors[0])), "{errors:?}");
    assert!(grad.iter().all(|g| g.as_f64() == SENTINEL));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let vs = VsLoss::<F>::new(&cast::<F>(&[4.0, 2.0, 1.0])).unwrap();
    let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, -1.0]]);
    assert_eq!(fail(&vs, &Array2::zeros((0, 3)), Targets::labels(&[])), Error::EmptyBatch);
    assert_eq!(fail(&vs, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
    let err = fail(&vs, &mat::<F>(&[&[0.0, 1.0]]), Targets::labels(&[0]));
    assert_eq!(err, Error::ShapeMismatch { name: "counts", expected: vec![2], found: vec![3] });
    let weighted = vs.clone().with_class_weights(&cast::<F>(&[1.0, 2.0])).unwrap();
    let err = fail(&weighted, &z, Targets::labels(&[0, 1]));
    assert_eq!(err, Error::ShapeMismatch { name: "class_weights", expected: vec![3], found: vec![2] });
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]);
    let err = fail(&vs, &z, Targets::probs(&probs));
    assert_eq!(
        err,
        Error::UnsupportedTargets { loss: "VsLoss", expected: "hard labels", found: "probability targets" }
    );
    let err = fail(&vs, &z, Targets::multi_hot(&probs));
    assert_eq!(err.to_string(), "VsLoss takes hard labels, not multi-hot targets");
    let err = fail(&vs, &z, Targets::labels(&[0]));
    assert_eq!(err, Error::ShapeMismatch { name: "labels", expected: vec![2], found: vec![1] });
    let short = cast::<F>(&[1.0]);
    let err = fail(&vs, &z, Targets::labels(&[0, 1]).with_sample_weights(&short));
    assert_eq!(err, Error::ShapeMismatch { name: "sample_weights", expected: vec![2], found: vec![1] });
    let negative = cast::<F>(&[1.0, -1.0]);
    let err = fail(&vs, &z, Targets::labels(&[0, 1]).with_sample_weights(&negative));
    assert_eq!(err, Error::InvalidSampleWeight { row: 1, value: -1.0 });
    assert_eq!(
        fail(&vs, &z, Targets::labels(&[0, 3])),
        Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }
    );
    for bad in [f64::NAN, f64::INFINITY] {
        let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, bad, -1.0]]);
        let err = fail(&vs, &z, Targets::labels(&[0, 1]));
        assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 1, .. }), "{err:?}");
    }
    // A finite logit whose z' overflows: Δ = 1 for equal counts, and −max + τ·log(1/3) with
    // τ = max/4 is below −max.
    let max = F::max_value().as_f64();
    let huge =
        VsLoss::<F>::new(&cast::<F>(&[1.0, 1.0, 1.0])).unwrap().with_tau(F::from_f64(max / 4.0)).unwrap();
    let err = fail(&huge, &mat::<F>(&[&[-max, 0.0, 0.0]]), Targets::labels(&[1]));
    let what = "scale * logit + adjustment";
    assert_eq!(err, Error::Overflow { what, row: Some(0), class: Some(0), value: Some(-max) });
    let z = mat::<F>(&[&[0.0, 1.0, f64::NEG_INFINITY]]);
    assert_eq!(fail(&vs, &z, Targets::labels(&[2])), Error::MaskedTarget { row: 0, class: 2 });
    let ignored = cast::<F>(&[0.0]);
    assert!(vs.loss(&z, Targets::labels(&[2]).with_sample_weights(&ignored)).is_ok());
}

#[test]
fn every_error_variant_names_its_culprit_and_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    for counts in [[1.0, 0.0], [1.0, -3.0], [1.0, f64::NAN]] {
        let err = VsLoss::new(&counts).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "counts", index: Some(1), .. }), "{err:?}");
    }
    let vs = VsLoss::<f64>::new(&[3.0, 1.0]).unwrap();
    for bad in [-0.1, f64::INFINITY, f64::NAN] {
        let err = vs.clone().with_gamma(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "gamma", index: None, .. }), "{err:?}");
    }
    // A scale that underflows to 0 in f32: (1e-30)^2 = 1e-60.
    let err = VsLoss::<f32>::new(&[1.0, 1e-30]).unwrap().with_gamma(2.0).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "gamma", .. }), "{err:?}");
    for bad in [f64::INFINITY, f64::NAN] {
        let err = vs.clone().with_tau(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "tau", index: None, .. }), "{err:?}");
    }
    // τ·log π overflows f32.
    let err = VsLoss::<f32>::new(&[1.0, 1e-30]).unwrap().with_tau(1e37).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", .. }), "{err:?}");
    let err = vs.clone().with_class_weights(&[f64::NAN, 1.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "class_weights", index: Some(0), .. }), "{err:?}");
    let mut kept = vs.with_class_weights(&[1.0, 2.0]).unwrap();
    assert!(kept.set_class_weights(&[1.0, -2.0]).is_err());
    assert_eq!(kept.class_weights(), Some(&[1.0, 2.0][..]));
}
