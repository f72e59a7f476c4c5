//! `Poly1Loss`: gradients against finite differences for every option combination (logit
//! adjustment, class and sample weights, reductions), f32 against f64, the formula written out,
//! ε = 0 as the matching `SoftmaxLoss`, and every error.

mod common;

use common::{Rng, mat, numeric_grad, relative, relative_error};
use longtail::{Error, Float, Loss, Poly1Loss, Prior, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array2, array};

const BATCH: usize = 7;
const CLASSES: usize = 5;
const EPSILONS: [f64; 4] = [-1.0, 0.5, 1.0, 2.0];
const TAU: f64 = 1.3;

struct Problem {
    logits: Array2<f64>,
    labels: Vec<usize>,
    prior: Option<Vec<f64>>,
    class_weights: Option<Vec<f64>>,
    sample_weights: Option<Vec<f64>>,
    reduction: Reduction,
}

impl Problem {
    fn all(rng: &mut Rng) -> Vec<Problem> {
        (0..16)
            .map(|bits| {
                let mut weights = rng.positive(BATCH, 0.2, 2.0);
                weights[0] = 0.0;
                let mut logits = rng.logits(BATCH, CLASSES, 2.0);
                let labels = rng.labels(BATCH, CLASSES);
                logits[[1, labels[1]]] = 9.0; // a confident row, p_y near 1
                Problem {
                    logits,
                    labels,
                    prior: (bits & 8 != 0).then(|| rng.positive(CLASSES, 1.0, 1000.0)),
                    class_weights: (bits & 1 != 0).then(|| rng.positive(CLASSES, 0.2, 3.0)),
                    sample_weights: (bits & 2 != 0).then_some(weights),
                    reduction: if bits & 4 == 0 { Reduction::Mean } else { Reduction::Sum },
                }
            })
            .collect()
    }

    fn loss<F: Float>(&self, epsilon: f64) -> Poly1Loss<F> {
        let mut loss = Poly1Loss::new(F::from_f64(epsilon)).unwrap().with_reduction(self.reduction);
        if let Some(prior) = &self.prior {
            loss = loss.with_logit_adjustment(&cast::<F>(prior), F::from_f64(TAU)).unwrap();
        }
        if let Some(w) = &self.class_weights {
            loss = loss.with_class_weights(&cast::<F>(w)).unwrap();
        }
        loss
    }

    /// The `SoftmaxLoss` with the same logit adjustment, class weights and reduction.
    fn softmax<F: Float>(&self) -> SoftmaxLoss<F> {
        let mut loss = SoftmaxLoss::cross_entropy().with_reduction(self.reduction);
        if let Some(prior) = &self.prior {
            loss = loss.with_logit_adjustment(&cast::<F>(prior), F::from_f64(TAU)).unwrap();
        }
        if let Some(w) = &self.class_weights {
            loss = loss.with_class_weights(&cast::<F>(w)).unwrap();
        }
        loss
    }

    fn with_targets<F: Float, R>(&self, f: impl FnOnce(Targets<'_, F>) -> R) -> R {
        let weights = self.sample_weights.as_deref().map(cast::<F>);
        match &weights {
            Some(w) => f(Targets::labels(&self.labels).with_sample_weights(w)),
            None => f(Targets::labels(&self.labels)),
        }
    }

    fn run<F: Float>(&self, z: &Array2<f64>, epsilon: f64) -> (f64, Array2<f64>) {
        let z = z.mapv(F::from_f64);
        let (l, g) = self.with_targets(|t| self.loss::<F>(epsilon).loss_and_grad(&z, t)).unwrap();
        (l.as_f64(), g.mapv(F::as_f64))
    }

    /// `w_y·(−log p_y + ε(1 − p_y))`, `p = softmax(z + τ log(π/Σπ))`, weighted mean, plainly.
    fn reference(&self, z: &Array2<f64>, epsilon: f64) -> f64 {
        let (mut sum, mut denominator) = (0.0, 0.0);
        for (i, &y) in self.labels.iter().enumerate() {
            let t: Vec<f64> = (0..CLASSES)
                .map(|k| {
                    let shift =
                        self.prior.as_ref().map_or(0.0, |p| TAU * (p[k] / p.iter().sum::<f64>()).ln());
                    z[[i, k]] + shift
                })
                .collect();
            let lse = t.iter().map(|v| v.exp()).sum::<f64>().ln();
            let p_y = (t[y] - lse).exp();
            let c = self.sample_weights.as_ref().map_or(1.0, |s| s[i])
                * self.class_weights.as_ref().map_or(1.0, |w| w[y]);
            sum += c * ((lse - t[y]) + epsilon * (1.0 - p_y));
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
    let mut rng = Rng::new(1421);
    for p in Problem::all(&mut rng) {
        for epsilon in EPSILONS {
            let (loss, grad) = p.run::<f64>(&p.logits, epsilon);
            let numeric = numeric_grad(&p.logits, |z| p.run::<f64>(z, epsilon).0);
            let err = relative_error(&grad, &numeric);
            assert!(err <= 1e-6, "ε {epsilon}: gradient relative error {err:e}");
            let reference = p.reference(&p.logits, epsilon);
            assert!(relative(loss, reference) <= 1e-12, "ε {epsilon}: {loss} vs {reference}");
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(1423);
    for p in Problem::all(&mut rng) {
        let logits = p.logits.mapv(|v| f64::from(v as f32));
        for epsilon in EPSILONS {
            let (l64, g64) = p.run::<f64>(&logits, epsilon);
            let (l32, g32) = p.run::<f32>(&logits, epsilon);
            assert!(relative(l32, l64) <= 1e-5, "ε {epsilon}: {l32} vs {l64}");
            assert!(relative_error(&g32, &g64) <= 1e-5, "ε {epsilon}: {:e}", relative_error(&g32, &g64));
        }
    }
}

#[test]
fn epsilon_zero_is_the_matching_softmax_loss() {
    let mut rng = Rng::new(1425);
    for p in Problem::all(&mut rng) {
        let poly = p.with_targets(|t| p.loss::<f64>(0.0).loss_and_grad(&p.logits, t)).unwrap();
        let softmax = p.with_targets(|t| p.softmax::<f64>().loss_and_grad(&p.logits, t)).unwrap();
        assert!(relative(poly.0, softmax.0) <= 1e-15, "{} vs {}", poly.0, softmax.0);
        assert!(relative_error(&poly.1, &softmax.1) <= 1e-15);
    }
}

#[test]
fn the_gradient_is_the_cross_entropy_gradient_scaled_by_one_plus_epsilon_p_y() {
    let logits = array![[2.0_f64, 0.0, -1.0], [0.5, 0.5, 3.0]];
    let labels = [0, 1];
    let prior = Prior::from_counts(&[90.0, 9.0, 1.0]).unwrap();
    let poly = Poly1Loss::new(2.0).unwrap().with_logit_adjustment(&prior, 1.0).unwrap();
    let ce = SoftmaxLoss::logit_adjusted(&prior).unwrap();
    let (_, ce_grad) = ce.loss_and_grad(&logits, &labels).unwrap();
    let (_, grad) = poly.loss_and_grad(&logits, &labels).unwrap();
    for (i, &y) in labels.iter().enumerate() {
        // p_y from the CE gradient: ∂CE/∂z_y = (p_y − 1)/B.
        let p_y = 1.0 + 2.0 * ce_grad[[i, y]];
        for k in 0..3 {
            assert!(relative(grad[[i, k]], (1.0 + 2.0 * p_y) * ce_grad[[i, k]]) <= 1e-14);
        }
    }
}

#[test]
fn per_sample_losses_sum_to_the_sum_reduction_and_into_overwrites() {
    let mut rng = Rng::new(1427);
    let p = &Problem::all(&mut rng)[15]; // everything on, Sum
    let (sum, sum_grad) = p.run::<f64>(&p.logits, 2.0);
    let (per, per_grad) =
        p.with_targets(|t| p.loss::<f64>(2.0).per_sample_loss_and_grad(&p.logits, t)).unwrap();
    assert!(relative(per.sum(), sum) <= 1e-14 && per[0] == 0.0);
    assert_eq!(per_grad, sum_grad);
    let mut grad = Array2::from_elem(p.logits.raw_dim(), f64::NAN);
    let value = p.with_targets(|t| p.loss::<f64>(2.0).loss_and_grad_into(&p.logits, t, &mut grad)).unwrap();
    assert_eq!((value, grad), (sum, sum_grad));
}

#[test]
fn confident_masked_and_ignored_rows() {
    let poly = Poly1Loss::new(1.0).unwrap();
    // p_y = 1 in f64: the polynomial term is 0 exactly, not a cancellation residue.
    let (loss, grad) = poly.loss_and_grad(&array![[800.0_f64, 0.0, f64::NEG_INFINITY]], &[0]).unwrap();
    assert_eq!((loss, grad.row(0).to_vec()), (0.0, vec![0.0, 0.0, 0.0]));
    let (loss, grad) = poly.loss_and_grad(&array![[1.0_f64, f64::NEG_INFINITY, 0.5]], &[2]).unwrap();
    assert!(loss.is_finite() && grad[[0, 1]] == 0.0);
    let ignored = Targets::labels(&[1]).with_sample_weights(&[0.0]);
    let logits = array![[1.0_f64, f64::NEG_INFINITY, 0.5]];
    assert_eq!(poly.loss_and_grad(&logits, ignored).unwrap(), (0.0, Array2::zeros((1, 3))));
}

const SENTINEL: f64 = 7.0;

fn fail<F: Float>(loss: &Poly1Loss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
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
    let poly = Poly1Loss::<F>::new(F::one()).unwrap();
    let adjusted = poly.clone().with_logit_adjustment(&cast::<F>(&[4.0, 2.0, 1.0]), F::one()).unwrap();
    let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, -1.0]]);
    assert_eq!(fail(&poly, &Array2::zeros((0, 3)), Targets::labels(&[])), Error::EmptyBatch);
    assert_eq!(fail(&poly, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
    let err = fail(&adjusted, &mat::<F>(&[&[0.0, 1.0]]), Targets::labels(&[0]));
    assert_eq!(err, Error::ShapeMismatch { name: "prior", expected: vec![2], found: vec![3] });
    let weighted = poly.clone().with_class_weights(&cast::<F>(&[1.0, 2.0])).unwrap();
    let err = fail(&weighted, &z, Targets::labels(&[0, 1]));
    assert_eq!(err, Error::ShapeMismatch { name: "class_weights", expected: vec![3], found: vec![2] });
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]);
    let err = fail(&poly, &z, Targets::probs(&probs));
    assert_eq!(
        err,
        Error::UnsupportedTargets {
            loss: "Poly1Loss",
            expected: "hard labels",
            found: "probability targets"
        }
    );
    let err = fail(&poly, &z, Targets::labels(&[0]));
    assert_eq!(err, Error::ShapeMismatch { name: "labels", expected: vec![2], found: vec![1] });
    let short = cast::<F>(&[1.0]);
    let err = fail(&poly, &z, Targets::labels(&[0, 1]).with_sample_weights(&short));
    assert_eq!(err, Error::ShapeMismatch { name: "sample_weights", expected: vec![2], found: vec![1] });
    let negative = cast::<F>(&[1.0, -1.0]);
    let err = fail(&poly, &z, Targets::labels(&[0, 1]).with_sample_weights(&negative));
    assert_eq!(err, Error::InvalidSampleWeight { row: 1, value: -1.0 });
    assert_eq!(
        fail(&poly, &z, Targets::labels(&[0, 3])),
        Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }
    );
    for bad in [f64::NAN, f64::INFINITY] {
        let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, bad, -1.0]]);
        let err = fail(&adjusted, &z, Targets::labels(&[0, 1]));
        assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 1, .. }), "{err:?}");
    }
    // The largest finite logit overflows once its class's positive adjustment is added.
    let max = F::max_value().as_f64();
    let huge = poly.clone().with_logit_adjustment(&cast::<F>(&[1.0, 1.0]), F::from_f64(-max / 2.0)).unwrap();
    let err = fail(&huge, &mat::<F>(&[&[max, 0.0]]), Targets::labels(&[1]));
    let what = "logit + adjustment";
    assert_eq!(err, Error::Overflow { what, row: Some(0), class: Some(0), value: Some(max) });
    let z = mat::<F>(&[&[0.0, 1.0, f64::NEG_INFINITY]]);
    assert_eq!(fail(&adjusted, &z, Targets::labels(&[2])), Error::MaskedTarget { row: 0, class: 2 });
}

#[test]
fn every_error_variant_names_its_culprit_and_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    // Above 1/eps the cross-entropy is below the rounding of ε(1 − p_y).
    for bad in [-1.5, f64::NAN, f64::INFINITY, 1e16] {
        let err = Poly1Loss::new(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "epsilon", index: None, .. }), "{err:?}");
    }
    assert_eq!(
        Poly1Loss::<f64>::new(-1.5).unwrap_err().to_string(),
        "epsilon is -1.5; expected in [-1, 1/eps] (8.4e6 in f32, 4.5e15 in f64)"
    );
    assert!(Poly1Loss::<f32>::new(1e7).is_err() && Poly1Loss::<f32>::new(8e6).is_ok());
    let poly = Poly1Loss::<f64>::new(1.0).unwrap();
    let err = poly.clone().with_logit_adjustment(&[1.0, 0.0], 1.0).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "prior", index: Some(1), .. }), "{err:?}");
    let err = poly.clone().with_logit_adjustment(&[1.0, 2.0], f64::NAN).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", .. }), "{err:?}");
    let err = poly.clone().with_class_weights(&[1.0, -1.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "class_weights", index: Some(1), .. }), "{err:?}");
    let mut kept = poly.with_class_weights(&[1.0, 2.0]).unwrap();
    assert!(kept.set_class_weights(&[f64::NAN, 2.0]).is_err());
    assert_eq!(kept.class_weights(), Some(&[1.0, 2.0][..]));
}
