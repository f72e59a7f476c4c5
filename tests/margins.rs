//! The margin losses, `PairwiseMarginLoss` and `LdamLoss`: gradients against finite differences for
//! every option combination, f32/f64 agreement, their reductions to logit adjustment and
//! cross-entropy (proptest), and every error.

mod common;

use common::{Rng, mat, numeric_grad, relative, relative_error};
use longtail::{Error, Float, LdamLoss, Loss, PairwiseMarginLoss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array1, Array2, array};
use proptest::prelude::*;

const BATCH: usize = 6;
const CLASSES: usize = 5;

/// One random problem and the options in play.
struct Problem {
    logits: Array2<f64>,
    labels: Vec<usize>,
    counts: Vec<f64>,
    margins: Array2<f64>,
    class_weights: Option<Vec<f64>>,
    sample_weights: Option<Vec<f64>>,
    reduction: Reduction,
}

impl Problem {
    fn random(rng: &mut Rng, class_weights: bool, sample_weights: bool, reduction: Reduction) -> Self {
        let mut weights = rng.positive(BATCH, 0.2, 2.0);
        weights[0] = 0.0;
        Self {
            logits: rng.logits(BATCH, CLASSES, 2.0),
            labels: rng.labels(BATCH, CLASSES),
            counts: rng.positive(CLASSES, 1.0, 1000.0),
            margins: rng.logits(CLASSES, CLASSES, 1.0),
            class_weights: class_weights.then(|| rng.positive(CLASSES, 0.2, 3.0)),
            sample_weights: sample_weights.then_some(weights),
            reduction,
        }
    }

    /// Every combination of class weights, sample weights and reduction.
    fn all(rng: &mut Rng) -> Vec<Problem> {
        let mut all = Vec::new();
        for bits in 0..8 {
            let reduction = if bits & 4 == 0 { Reduction::Mean } else { Reduction::Sum };
            all.push(Self::random(rng, bits & 1 != 0, bits & 2 != 0, reduction));
        }
        all
    }

    fn pairwise<F: Float>(&self) -> PairwiseMarginLoss<F> {
        let loss =
            PairwiseMarginLoss::new(&self.margins.mapv(F::from_f64)).unwrap().with_reduction(self.reduction);
        match &self.class_weights {
            Some(w) => loss.with_class_weights(&cast::<F>(w)).unwrap(),
            None => loss,
        }
    }

    fn ldam<F: Float>(&self, max_margin: f64, scale: f64) -> LdamLoss<F> {
        let loss = LdamLoss::new(&cast::<F>(&self.counts))
            .unwrap()
            .with_max_margin(F::from_f64(max_margin))
            .unwrap()
            .with_scale(F::from_f64(scale))
            .unwrap()
            .with_reduction(self.reduction);
        match &self.class_weights {
            Some(w) => loss.with_class_weights(&cast::<F>(w)).unwrap(),
            None => loss,
        }
    }

    fn with_targets<F: Float, R>(&self, f: impl FnOnce(Targets<'_, F>) -> R) -> R {
        let weights = self.sample_weights.as_deref().map(cast::<F>);
        let targets = Targets::labels(&self.labels);
        match &weights {
            Some(w) => f(targets.with_sample_weights(w)),
            None => f(targets),
        }
    }

    /// `Σ_i c_i ℓ_i` over `Σ_i c_i` (or 1 for sum), with `ℓ_i` from `row(i, y)`.
    fn reduce(&self, row: impl Fn(usize, usize) -> f64) -> f64 {
        let (mut total, mut denominator) = (0.0, 0.0);
        for (i, &y) in self.labels.iter().enumerate() {
            let c = self.sample_weights.as_ref().map_or(1.0, |s| s[i])
                * self.class_weights.as_ref().map_or(1.0, |w| w[y]);
            total += c * row(i, y);
            denominator += c;
        }
        if self.reduction == Reduction::Mean { total / denominator } else { total }
    }

    /// `log[1 + Σ_{k≠y} e^{Δ_yk + z_k − z_y}]`, plainly.
    fn pairwise_reference(&self, z: &Array2<f64>) -> f64 {
        self.reduce(|i, y| {
            let sum: f64 = (0..CLASSES)
                .filter(|&k| k != y)
                .map(|k| (self.margins[[y, k]] + z[[i, k]] - z[[i, y]]).exp())
                .sum();
            sum.ln_1p()
        })
    }

    /// CE on `s·(z − m_y e_y)`, `m_k = max_margin·n_k^{−1/4} / max_j n_j^{−1/4}`, plainly.
    fn ldam_reference(&self, z: &Array2<f64>, max_margin: f64, scale: f64) -> f64 {
        let m: Vec<f64> = self.counts.iter().map(|n| n.powf(-0.25)).collect();
        let top = m.iter().copied().fold(0.0, f64::max);
        self.reduce(|i, y| {
            let zs: Vec<f64> = (0..CLASSES)
                .map(|k| scale * (z[[i, k]] - if k == y { max_margin * m[y] / top } else { 0.0 }))
                .collect();
            zs.iter().map(|v| v.exp()).sum::<f64>().ln() - zs[y]
        })
    }
}

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

fn pairwise_run<F: Float>(p: &Problem, z: &Array2<f64>) -> (f64, Array2<f64>) {
    let z = z.mapv(F::from_f64);
    let (l, g) = p.with_targets(|t| p.pairwise::<F>().loss_and_grad(&z, t)).unwrap();
    (l.as_f64(), g.mapv(F::as_f64))
}

fn ldam_run<F: Float>(p: &Problem, z: &Array2<f64>, max_margin: f64, scale: f64) -> (f64, Array2<f64>) {
    let z = z.mapv(F::from_f64);
    let (l, g) = p.with_targets(|t| p.ldam::<F>(max_margin, scale).loss_and_grad(&z, t)).unwrap();
    (l.as_f64(), g.mapv(F::as_f64))
}

const LDAM_SETTINGS: [(f64, f64); 4] = [(0.5, 30.0), (0.5, 1.0), (0.0, 1.0), (1.5, 4.0)];

#[test]
fn pairwise_matches_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(101);
    for p in Problem::all(&mut rng) {
        let (loss, grad) = pairwise_run::<f64>(&p, &p.logits);
        let numeric = numeric_grad(&p.logits, |z| pairwise_run::<f64>(&p, z).0);
        assert!(relative_error(&grad, &numeric) <= 1e-6, "{:e}", relative_error(&grad, &numeric));
        let reference = p.pairwise_reference(&p.logits);
        assert!(relative(loss, reference) <= 1e-12, "{loss} vs {reference}");
    }
}

#[test]
fn ldam_matches_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(103);
    for p in Problem::all(&mut rng) {
        for (max_margin, scale) in LDAM_SETTINGS {
            // Logits of order 1/s, as a trained LDAM model has (normalised features).
            let logits = &p.logits / scale.sqrt();
            let (loss, grad) = ldam_run::<f64>(&p, &logits, max_margin, scale);
            let numeric = numeric_grad(&logits, |z| ldam_run::<f64>(&p, z, max_margin, scale).0);
            let err = relative_error(&grad, &numeric);
            assert!(err <= 1e-6, "m {max_margin}, s {scale}: gradient relative error {err:e}");
            let reference = p.ldam_reference(&logits, max_margin, scale);
            assert!(relative(loss, reference) <= 1e-12, "m {max_margin}, s {scale}: {loss} vs {reference}");
        }
    }
}

#[test]
fn both_agree_between_f32_and_f64() {
    let mut rng = Rng::new(107);
    for p in Problem::all(&mut rng) {
        let logits = p.logits.mapv(|v| f64::from(v as f32));
        let (l64, g64) = pairwise_run::<f64>(&p, &logits);
        let (l32, g32) = pairwise_run::<f32>(&p, &logits);
        assert!(relative(l32, l64) <= 1e-5 && relative_error(&g32, &g64) <= 1e-5, "pairwise {l32} vs {l64}");
        for (max_margin, scale) in LDAM_SETTINGS {
            let (l64, g64) = ldam_run::<f64>(&p, &logits, max_margin, scale);
            let (l32, g32) = ldam_run::<f32>(&p, &logits, max_margin, scale);
            // Scaling by s multiplies f32's rounding of the logits by s.
            let tol = 1e-5 * scale;
            assert!(
                relative(l32, l64) <= tol && relative_error(&g32, &g64) <= tol,
                "ldam s {scale}: {l32} vs {l64}"
            );
        }
    }
}

#[test]
fn per_sample_losses_sum_to_the_sum_reduction() {
    let mut rng = Rng::new(109);
    let p = Problem::random(&mut rng, true, true, Reduction::Sum);
    let pairwise = p.with_targets(|t| p.pairwise::<f64>().per_sample_loss(&p.logits, t)).unwrap();
    assert!(relative(pairwise.sum(), pairwise_run::<f64>(&p, &p.logits).0) <= 1e-14);
    let ldam = p.with_targets(|t| p.ldam::<f64>(0.5, 30.0).per_sample_loss(&p.logits, t)).unwrap();
    assert!(relative(ldam.sum(), ldam_run::<f64>(&p, &p.logits, 0.5, 30.0).0) <= 1e-14);
    assert_eq!((pairwise[0], ldam[0]), (0.0, 0.0)); // row 0 has sample weight 0
}

#[test]
fn into_overwrites_and_equals_the_allocating_call() {
    let mut rng = Rng::new(113);
    let p = Problem::random(&mut rng, true, false, Reduction::Mean);
    let mut grad = Array2::from_elem(p.logits.raw_dim(), f64::NAN);
    let value = p.pairwise::<f64>().loss_and_grad_into(&p.logits, &p.labels, &mut grad).unwrap();
    assert_eq!((value, grad.clone()), p.pairwise::<f64>().loss_and_grad(&p.logits, &p.labels).unwrap());
    grad.fill(f64::NAN);
    let value = p.ldam::<f64>(0.5, 30.0).loss_and_grad_into(&p.logits, &p.labels, &mut grad).unwrap();
    assert_eq!((value, grad), p.ldam::<f64>(0.5, 30.0).loss_and_grad(&p.logits, &p.labels).unwrap());
}

#[test]
fn a_batch_whose_weights_are_all_zero_has_loss_and_gradient_zero() {
    let logits = array![[1.0_f32, 2.0], [0.0, 3.0]];
    let targets = || Targets::labels(&[0, 1]).with_sample_weights(&[0.0, 0.0]);
    let (l, g) =
        PairwiseMarginLoss::from_prior(&[1.0, 2.0], 1.0).unwrap().loss_and_grad(&logits, targets()).unwrap();
    assert_eq!((l, g.sum()), (0.0, 0.0));
    let (l, g) = LdamLoss::new(&[1.0, 2.0]).unwrap().loss_and_grad(&logits, targets()).unwrap();
    assert_eq!((l, g.sum()), (0.0, 0.0));
}

#[test]
fn masked_classes_get_zero_probability_and_zero_gradient() {
    let logits = array![[1.0_f64, f64::NEG_INFINITY, 0.5]];
    let reference =
        SoftmaxLoss::logit_adjusted(&[5.0, 3.0, 1.0]).unwrap().loss_and_grad(&logits, &[2]).unwrap();
    let (loss, grad) =
        PairwiseMarginLoss::from_prior(&[5.0, 3.0, 1.0], 1.0).unwrap().loss_and_grad(&logits, &[2]).unwrap();
    assert!(relative(loss, reference.0) <= 1e-15 && grad[[0, 1]] == 0.0);
    let (_, grad) = LdamLoss::new(&[5.0, 3.0, 1.0]).unwrap().loss_and_grad(&logits, &[2]).unwrap();
    assert_eq!(grad[[0, 1]], 0.0);
}

const SENTINEL: f64 = 7.0;

/// Every call of both losses fails alike on one batch without writing; returns the two errors.
fn fail<F: Float>(
    pairwise: &PairwiseMarginLoss<F>,
    ldam: &LdamLoss<F>,
    logits: &Array2<F>,
    targets: Targets<'_, F>,
) -> (Error, Error) {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let p = [
        pairwise.loss(logits, targets.clone()).unwrap_err(),
        pairwise.loss_and_grad(logits, targets.clone()).unwrap_err(),
        pairwise.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        pairwise.per_sample_loss(logits, targets.clone()).unwrap_err(),
    ];
    let l = [
        ldam.loss(logits, targets.clone()).unwrap_err(),
        ldam.loss_and_grad(logits, targets.clone()).unwrap_err(),
        ldam.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        ldam.per_sample_loss(logits, targets).unwrap_err(),
    ];
    for errors in [&p, &l] {
        assert!(errors.iter().all(|e| format!("{e:?}") == format!("{:?}", errors[0])), "{errors:?}");
    }
    assert!(grad.iter().all(|g| g.as_f64() == SENTINEL));
    (p[0].clone(), l[0].clone())
}

fn errors_for<F: Float>() {
    let pairwise = PairwiseMarginLoss::<F>::from_prior(&cast::<F>(&[4.0, 2.0, 1.0]), F::one()).unwrap();
    let ldam = LdamLoss::<F>::new(&cast::<F>(&[4.0, 2.0, 1.0])).unwrap();
    let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, 0.0, -1.0]]);
    let same = |e: Error| (e.clone(), e);

    assert_eq!(fail(&pairwise, &ldam, &Array2::zeros((0, 3)), Targets::labels(&[])), same(Error::EmptyBatch));
    assert_eq!(
        fail(&pairwise, &ldam, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])),
        same(Error::NoClasses)
    );
    let (p, l) = fail(&pairwise, &ldam, &mat::<F>(&[&[0.0, 1.0]]), Targets::labels(&[0]));
    assert_eq!(p, Error::ShapeMismatch { name: "margins", expected: vec![2, 2], found: vec![3, 3] });
    assert_eq!(l, Error::ShapeMismatch { name: "counts", expected: vec![2], found: vec![3] });
    let weighted = (
        pairwise.clone().with_class_weights(&cast::<F>(&[1.0, 2.0])).unwrap(),
        ldam.clone().with_class_weights(&cast::<F>(&[1.0, 2.0])).unwrap(),
    );
    let err = fail(&weighted.0, &weighted.1, &z, Targets::labels(&[0, 1]));
    assert_eq!(err, same(Error::ShapeMismatch { name: "class_weights", expected: vec![3], found: vec![2] }));
    let probs = mat::<F>(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]);
    let (p, l) = fail(&pairwise, &ldam, &z, Targets::probs(&probs));
    assert_eq!(
        p,
        Error::UnsupportedTargets {
            loss: "PairwiseMarginLoss",
            expected: "hard labels",
            found: "probability targets"
        }
    );
    assert_eq!(
        l,
        Error::UnsupportedTargets { loss: "LdamLoss", expected: "hard labels", found: "probability targets" }
    );
    assert_eq!(l.to_string(), "LdamLoss takes hard labels, not probability targets");
    let err = fail(&pairwise, &ldam, &z, Targets::labels(&[0]));
    assert_eq!(err, same(Error::ShapeMismatch { name: "labels", expected: vec![2], found: vec![1] }));
    let short = cast::<F>(&[1.0]);
    let err = fail(&pairwise, &ldam, &z, Targets::labels(&[0, 1]).with_sample_weights(&short));
    assert_eq!(err, same(Error::ShapeMismatch { name: "sample_weights", expected: vec![2], found: vec![1] }));
    let negative = cast::<F>(&[1.0, -1.0]);
    let err = fail(&pairwise, &ldam, &z, Targets::labels(&[0, 1]).with_sample_weights(&negative));
    assert_eq!(err, same(Error::InvalidSampleWeight { row: 1, value: -1.0 }));
    let err = fail(&pairwise, &ldam, &z, Targets::labels(&[0, 3]));
    assert_eq!(err, same(Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }));
    for bad in [f64::NAN, f64::INFINITY] {
        let z = mat::<F>(&[&[0.0, 1.0, 2.0], &[1.0, bad, -1.0]]);
        let (p, l) = fail(&pairwise, &ldam, &z, Targets::labels(&[0, 1]));
        assert!(matches!(p, Error::NonFiniteLogit { row: 1, class: 1, .. }), "{p:?}");
        assert!(matches!(l, Error::NonFiniteLogit { row: 1, class: 1, .. }), "{l:?}");
    }
    // A finite logit that overflows once the margin is added, or once scaled.
    let max = F::max_value().as_f64();
    let z = mat::<F>(&[&[0.0, max, 0.0]]);
    let huge = PairwiseMarginLoss::new(&mat::<F>(&[&[0.0; 3], &[0.0; 3], &[0.0, max, 0.0]])).unwrap();
    let (p, l) = fail(&huge, &ldam, &z, Targets::labels(&[2]));
    let overflow = |what| Error::Overflow { what, row: Some(0), class: Some(1), value: Some(max) };
    assert_eq!(p, overflow("logit + margin"));
    assert_eq!(l, overflow("scale * (logit - margin)"));
    let z = mat::<F>(&[&[0.0, 1.0, f64::NEG_INFINITY]]);
    let err = fail(&pairwise, &ldam, &z, Targets::labels(&[2]));
    assert_eq!(err, same(Error::MaskedTarget { row: 0, class: 2 }));
    // A masked label in an ignored row is fine.
    let ignored = cast::<F>(&[0.0]);
    assert!(pairwise.loss(&z, Targets::labels(&[2]).with_sample_weights(&ignored)).is_ok());
    assert!(ldam.loss(&z, Targets::labels(&[2]).with_sample_weights(&ignored)).is_ok());
}

#[test]
fn every_error_variant_and_trigger_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    let err = PairwiseMarginLoss::<f64>::new(&Array2::zeros((2, 3))).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "margins", expected: vec![2, 2], found: vec![2, 3] });
    let err = PairwiseMarginLoss::new(&array![[0.0, 1.0], [f64::INFINITY, f64::NAN]]).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "margins", index: Some(2), .. }), "{err:?}");
    assert_eq!(err.to_string(), "margins[2] is inf; expected finite off the diagonal");
    let err = PairwiseMarginLoss::from_prior(&[1.0, 0.0], 1.0).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "prior", index: Some(1), .. }), "{err:?}");
    let err = PairwiseMarginLoss::from_prior(&[1.0, 2.0], f64::NAN).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", index: None, .. }), "{err:?}");
    let err = PairwiseMarginLoss::<f32>::from_prior(&[1e-30, 1e30], 1e37).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", index: None, .. }), "{err:?}");
    let err = PairwiseMarginLoss::from_prior(&[1.0, 2.0], 1.0)
        .unwrap()
        .with_class_weights(&[1.0, -1.0])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "class_weights", index: Some(1), .. }), "{err:?}");

    for counts in [[1.0, 0.0], [1.0, -3.0], [1.0, f64::NAN]] {
        let err = LdamLoss::new(&counts).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "counts", index: Some(1), .. }), "{err:?}");
    }
    let ldam = LdamLoss::<f64>::new(&[3.0, 1.0]).unwrap();
    for bad in [-0.1, f64::INFINITY] {
        let err = ldam.clone().with_max_margin(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "max_margin", index: None, .. }), "{err:?}");
    }
    for bad in [0.0, -1.0, f64::NAN] {
        let err = ldam.clone().with_scale(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "scale", index: None, .. }), "{err:?}");
    }
    let err = ldam.with_class_weights(&[f64::NAN, 1.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "class_weights", index: Some(0), .. }), "{err:?}");
}

fn labelled_batch() -> impl Strategy<Value = (Array2<f64>, Vec<usize>, Vec<f64>)> {
    (1..7usize, 1..9usize, any::<u64>()).prop_map(|(batch, classes, seed)| {
        let mut rng = Rng::new(seed);
        (rng.logits(batch, classes, 3.0), rng.labels(batch, classes), rng.positive(classes, 1.0, 1000.0))
    })
}

fn close(a: &(f64, Array2<f64>), b: &(f64, Array2<f64>), tol: f64) -> bool {
    relative(a.0, b.0) <= tol && (&a.1 - &b.1).iter().all(|d| d.abs() <= tol)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn pairwise_from_a_prior_equals_logit_adjustment((logits, labels, prior) in labelled_batch(), tau in -3.0..3.0f64) {
        let pairwise = PairwiseMarginLoss::from_prior(&prior, tau).unwrap().loss_and_grad(&logits, &labels).unwrap();
        let adjusted = SoftmaxLoss::cross_entropy().with_logit_adjustment(&prior, tau).unwrap().loss_and_grad(&logits, &labels).unwrap();
        prop_assert!(close(&pairwise, &adjusted, 1e-12), "{:?} vs {:?}", pairwise, adjusted);
    }

    #[test]
    fn ldam_with_zero_margins_and_scale_one_is_cross_entropy((logits, labels, counts) in labelled_batch()) {
        let ldam = LdamLoss::new(&counts).unwrap().with_max_margin(0.0).unwrap().with_scale(1.0).unwrap();
        let plain = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, &labels).unwrap();
        // The same row kernel, but two-class cross-entropy takes its closed form.
        let ldam = ldam.loss_and_grad(&logits, &labels).unwrap();
        prop_assert!(close(&ldam, &plain, 1e-14), "{:?} vs {:?}", ldam, plain);
    }

    #[test]
    fn ldam_is_cross_entropy_on_the_scaled_margin_shifted_logits((logits, labels, counts) in labelled_batch(), scale in 0.5..40.0f64) {
        let ldam = LdamLoss::new(&counts).unwrap().with_scale(scale).unwrap();
        let mut shifted = logits.clone();
        for (i, &y) in labels.iter().enumerate() {
            shifted[[i, y]] -= ldam.margins()[y];
        }
        let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&(&shifted * scale), &labels).unwrap();
        let ldam = ldam.loss_and_grad(&logits, &labels).unwrap();
        prop_assert!(close(&ldam, &(loss, grad * scale), 1e-12));
    }

    #[test]
    fn losses_are_non_negative((logits, labels, counts) in labelled_batch(), seed: u64) {
        let k = logits.ncols();
        let margins = Rng::new(seed).logits(k, k, 2.0);
        let per_pairwise: Array1<f64> = PairwiseMarginLoss::new(&margins).unwrap().per_sample_loss(&logits, &labels).unwrap();
        let per_ldam = LdamLoss::new(&counts).unwrap().per_sample_loss(&logits, &labels).unwrap();
        prop_assert!(per_pairwise.iter().chain(&per_ldam).all(|&l| l >= 0.0));
    }
}
