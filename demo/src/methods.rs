//! The methods compared: a loss to train with (any of the crate's), and how to turn the trained
//! model's logits into a prediction (argmax, or post-hoc logit adjustment).

use longtail::adjust::{TauCriterion, default_tau_grid, predict, predict_adjusted, tune_tau_for};
use longtail::prior::{ClassWeights, DeferredReweighting};
use longtail::{
    AsymmetricLoss, BinarySmoothF1Loss, Error, LdamLoss, Loss, PairwiseMarginLoss, Poly1Loss, Prior,
    Reduction, SigmoidLoss, SmoothF1Loss, SoftmaxLoss, VsLoss, ZlprLoss,
};
use ndarray::Array2;

use crate::model::Head;

/// A loss and what it needs besides the logits and labels.
pub enum Objective {
    /// Any of the crate's losses, as it reduces the batch.
    Loss(Box<dyn Loss<f32>>),
    /// A one-vs-rest or multi-label loss with `Sum` reduction: summed over a sample's `K`
    /// decisions and averaged over the samples here, so its step sizes compare with the softmax
    /// losses'.
    PerSample(Box<dyn Loss<f32>>),
    /// Cross-entropy with class weights that switch on at an epoch (DRW).
    DeferredCe(SoftmaxLoss<f32>, DeferredReweighting),
    /// LDAM on the cosine head, optionally with DRW weights.
    Ldam(LdamLoss<f32>, Option<DeferredReweighting>),
}

impl Objective {
    fn loss(loss: impl Loss<f32> + 'static) -> Self {
        Self::Loss(Box::new(loss))
    }

    fn per_sample(loss: impl Loss<f32> + 'static) -> Self {
        Self::PerSample(Box::new(loss))
    }

    /// LDAM is defined on normalised features and weights (the paper's `NormedLinear`).
    pub fn head(&self) -> Head {
        match self {
            Objective::Ldam(..) => Head::Cosine,
            _ => Head::Linear,
        }
    }

    /// The loss of a batch, mean over samples, and its gradient with respect to the logits in
    /// `grad`; a DRW objective takes the epoch's class weights.
    pub fn loss_and_grad_into(
        &self,
        logits: &Array2<f32>,
        labels: &[usize],
        epoch: usize,
        grad: &mut Array2<f32>,
    ) -> Result<f32, Error> {
        match self {
            Objective::Loss(loss) => loss.loss_and_grad_into(logits, labels, grad),
            Objective::PerSample(loss) => {
                let samples = labels.len() as f32;
                let value = loss.loss_and_grad_into(logits, labels, grad)?;
                *grad /= samples;
                Ok(value / samples)
            }
            // The methods are shared by the runs of every seed: the epoch's weights go into a copy.
            Objective::DeferredCe(loss, drw) => {
                let mut loss = loss.clone();
                loss.set_class_weights(drw.weights_at(epoch))?;
                loss.loss_and_grad_into(logits, labels, grad)
            }
            Objective::Ldam(loss, None) => loss.loss_and_grad_into(logits, labels, grad),
            Objective::Ldam(loss, Some(drw)) => {
                let mut loss = loss.clone();
                loss.set_class_weights(drw.weights_at(epoch))?;
                loss.loss_and_grad_into(logits, labels, grad)
            }
        }
    }
}

/// How a trained model's logits become a class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Argmax,
    /// `argmax_k (z_k − τ·log π_k)`.
    PostHoc(f32),
    /// [`Decision::PostHoc`] with the `τ` of the crate's default grid (0 to 3 in tenths) that
    /// scores best on the validation split by a criterion.
    TunedPostHoc(TauCriterion),
}

impl Decision {
    /// The predictions on `test`, and the `τ` used (if any).
    pub fn predict(
        self,
        test_logits: &Array2<f32>,
        val: (&Array2<f32>, &[usize]),
        prior: &Prior,
    ) -> Result<(Vec<usize>, Option<f32>), Error> {
        match self {
            Decision::Argmax => Ok((predict(test_logits)?, None)),
            Decision::PostHoc(tau) => Ok((predict_adjusted(test_logits, prior, tau)?, Some(tau))),
            Decision::TunedPostHoc(criterion) => {
                let tau = tune_tau_for(val.0, val.1, prior, &default_tau_grid(), criterion)?.tau;
                Ok((predict_adjusted(test_logits, prior, tau)?, Some(tau)))
            }
        }
    }
}

/// One model to train and the rows of the table it yields.
pub struct Method {
    pub objective: Objective,
    pub rows: Vec<(&'static str, Decision)>,
}

impl Method {
    fn one(name: &'static str, objective: Objective) -> Self {
        Self { objective, rows: vec![(name, Decision::Argmax)] }
    }
}

/// Every method, for a training prior: the common long-tail baselines, then the crate's other
/// losses; DRW switches its weights on at 80 % of the epochs, as LDAM-DRW does (epoch 160 of 200).
pub fn methods(prior: &Prior, epochs: usize) -> Result<Vec<Method>, Error> {
    // Class frequencies: ZLPR's label prior needs rates in (0, 1); LDAM's margins and the softmax
    // adjustments would be the same for counts.
    let pi = prior.probabilities::<f32>();
    let drw_start = epochs * 4 / 5;
    // LDAM-DRW's deferred weights: effective number with β = 0.9999 (Cao et al.).
    let drw = || DeferredReweighting::new(drw_start, ClassWeights::effective_number(0.9999)?, prior);
    let ldam = LdamLoss::new(&pi)?;
    // PyTorch's usual pos_weight for one-vs-rest: each class's negatives per positive.
    let negatives_per_positive =
        prior.counts().iter().map(|&n| ((prior.total() - n) / n) as f32).collect::<Vec<_>>();
    Ok(vec![
        Method {
            objective: Objective::loss(SoftmaxLoss::cross_entropy()),
            rows: vec![
                ("cross-entropy", Decision::Argmax),
                ("CE + post-hoc adjustment, τ = 1", Decision::PostHoc(1.0)),
                (
                    "CE + post-hoc adjustment, τ tuned on validation log-loss",
                    Decision::TunedPostHoc(TauCriterion::BalancedLogLoss),
                ),
                (
                    "CE + post-hoc adjustment, τ tuned on validation balanced accuracy",
                    Decision::TunedPostHoc(TauCriterion::BalancedAccuracy),
                ),
            ],
        },
        Method::one(
            "class-weighted CE, 1/n",
            Objective::loss(SoftmaxLoss::class_weighted(&ClassWeights::inverse_frequency().weights(prior)?)?),
        ),
        // β = 0.99: with at most a few hundred samples a class, 0.9999 gives the same weights as 1/n.
        Method::one(
            "class-weighted CE, effective number",
            Objective::loss(SoftmaxLoss::class_weighted(
                &ClassWeights::effective_number(0.99)?.weights(prior)?,
            )?),
        ),
        Method::one("focal loss, γ = 2", Objective::loss(SoftmaxLoss::focal(2.0)?)),
        Method::one("logit-adjusted loss, τ = 1", Objective::loss(SoftmaxLoss::logit_adjusted(&pi)?)),
        Method::one("LDAM-DRW", Objective::Ldam(ldam.clone(), Some(drw()?))),
        Method::one("smooth-F1-weighted CE (macro)", Objective::loss(SmoothF1Loss::macro_f1())),
        // The crate's other losses.
        Method::one("CE-DRW", Objective::DeferredCe(SoftmaxLoss::cross_entropy(), drw()?)),
        Method::one("LDAM", Objective::Ldam(ldam, None)),
        Method::one(
            "pairwise margins τ·log(π_k/π_y)",
            Objective::loss(PairwiseMarginLoss::from_prior(&pi, 1.0)?),
        ),
        Method::one("smooth-F1-weighted CE (micro)", Objective::loss(SmoothF1Loss::micro_f1())),
        Method::one(
            "one-vs-rest BCE",
            Objective::per_sample(SigmoidLoss::bce().with_reduction(Reduction::Sum)),
        ),
        Method::one(
            "one-vs-rest sigmoid focal, γ = 2",
            Objective::per_sample(SigmoidLoss::focal(2.0)?.with_alpha(0.25)?.with_reduction(Reduction::Sum)),
        ),
        Method::one(
            "one-vs-rest binary smooth-F1",
            Objective::per_sample(BinarySmoothF1Loss::new().with_reduction(Reduction::Sum)),
        ),
        Method::one("VS loss, γ = 0.3, τ = 1", Objective::loss(VsLoss::new(&pi)?)),
        Method::one("Poly-1, ε = 1", Objective::loss(Poly1Loss::new(1.0)?)),
        Method::one(
            "Poly-1 + logit adjustment, ε = 1, τ = 1",
            Objective::loss(Poly1Loss::new(1.0)?.with_logit_adjustment(&pi, 1.0)?),
        ),
        Method::one(
            "one-vs-rest BCE, pos_weight = n_neg/n_pos",
            Objective::per_sample(
                SigmoidLoss::bce().with_pos_weight(&negatives_per_positive)?.with_reduction(Reduction::Sum),
            ),
        ),
        Method::one(
            "one-vs-rest asymmetric loss (γ+ = 0, γ− = 4, m = 0.05)",
            Objective::per_sample(AsymmetricLoss::new().with_reduction(Reduction::Sum)),
        ),
        Method::one("ZLPR", Objective::per_sample(ZlprLoss::new().with_reduction(Reduction::Sum))),
        Method::one(
            "ZLPR + label prior, τ = 1",
            Objective::per_sample(ZlprLoss::new().with_label_prior(&pi, 1.0)?.with_reduction(Reduction::Sum)),
        ),
    ])
}
