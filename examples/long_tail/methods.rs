//! The methods compared: a loss to train with (any of the crate's), and how to turn the trained
//! model's logits into a prediction (argmax, or post-hoc logit adjustment).

use longtail::adjust::{predict, predict_adjusted, tune_tau};
use longtail::prior::{ClassWeights, DeferredReweighting};
use longtail::{
    BinarySmoothF1Loss, Error, LdamLoss, Loss, PairwiseMarginLoss, Prior, Reduction, SigmoidLoss,
    SmoothF1Loss, SoftmaxLoss, ZlprLoss,
};
use ndarray::Array2;

use crate::model::Head;

/// A loss and what it needs besides the logits and labels.
pub enum Objective {
    Softmax(SoftmaxLoss<f32>),
    /// Cross-entropy with class weights that switch on at an epoch (DRW).
    DeferredCe(DeferredReweighting),
    /// LDAM on the cosine head, optionally with DRW weights.
    Ldam(LdamLoss<f32>, Option<DeferredReweighting>),
    SmoothF1(SmoothF1Loss<f32>),
    Pairwise(PairwiseMarginLoss<f32>),
    /// One-vs-rest binary losses over the `B·K` logits with one-hot targets.
    Sigmoid(SigmoidLoss<f32>),
    BinarySmoothF1(BinarySmoothF1Loss<f32>),
    /// Multi-label ZLPR with one-hot targets.
    Zlpr(ZlprLoss<f32>),
}

impl Objective {
    /// LDAM is defined on normalised features and weights (the paper's `NormedLinear`).
    pub fn head(&self) -> Head {
        match self {
            Objective::Ldam(..) => Head::Cosine,
            _ => Head::Linear,
        }
    }

    /// The loss of a batch, mean over samples, and its gradient with respect to the logits in `grad`.
    pub fn loss_and_grad_into(
        &self,
        logits: &Array2<f32>,
        labels: &[usize],
        epoch: usize,
        grad: &mut Array2<f32>,
    ) -> Result<f32, Error> {
        let value = match self {
            Objective::Softmax(loss) => loss.loss_and_grad_into(logits, labels, grad)?,
            Objective::DeferredCe(drw) => SoftmaxLoss::class_weighted(drw.weights_at(epoch))?
                .loss_and_grad_into(logits, labels, grad)?,
            Objective::Ldam(loss, drw) => match drw {
                Some(drw) => loss
                    .clone()
                    .with_class_weights(drw.weights_at(epoch))?
                    .loss_and_grad_into(logits, labels, grad)?,
                None => loss.loss_and_grad_into(logits, labels, grad)?,
            },
            Objective::SmoothF1(loss) => loss.loss_and_grad_into(logits, labels, grad)?,
            Objective::Pairwise(loss) => loss.loss_and_grad_into(logits, labels, grad)?,
            // The binary and multi-label losses sum over the K decisions of a sample and average
            // over samples (`Sum`, then `/B`), so their step sizes compare with the softmax losses'.
            Objective::Sigmoid(loss) => loss.loss_and_grad_into(logits, labels, grad)?,
            Objective::BinarySmoothF1(loss) => loss.loss_and_grad_into(logits, labels, grad)?,
            Objective::Zlpr(loss) => loss.loss_and_grad_into(logits, labels, grad)?,
        };
        if matches!(self, Objective::Sigmoid(_) | Objective::BinarySmoothF1(_) | Objective::Zlpr(_)) {
            let samples = labels.len() as f32;
            *grad /= samples;
            return Ok(value / samples);
        }
        Ok(value)
    }
}

/// How a trained model's logits become a class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Argmax,
    /// `argmax_k (z_k − τ·log π_k)`.
    PostHoc(f32),
    /// [`Decision::PostHoc`] with the `τ` of highest balanced accuracy on the validation split.
    TunedPostHoc,
}

/// The `τ` grid searched on the validation split: 0 to 3 in steps of 0.25.
const TAU_GRID: [f32; 13] = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0];

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
            Decision::TunedPostHoc => {
                let tau = tune_tau(val.0, val.1, prior, &TAU_GRID)?.tau;
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

/// The rows of the methods the picture shows: the first ones, in [`methods`]' order.
pub const PLOTTED_ROWS: usize = 9;

/// Every method, for a training prior: first the nine plotted, then the crate's other losses; DRW switches its weights on at 80 % of the epochs, as
/// LDAM-DRW does (epoch 160 of 200).
pub fn methods(prior: &Prior, epochs: usize) -> Result<Vec<Method>, Error> {
    // Class frequencies: ZLPR's label prior needs rates in (0, 1); LDAM's margins and the softmax
    // adjustments would be the same for counts.
    let pi = prior.probabilities::<f32>();
    let drw_start = epochs * 4 / 5;
    // LDAM-DRW's deferred weights: effective number with β = 0.9999 (Cao et al.).
    let drw = || DeferredReweighting::new(drw_start, ClassWeights::effective_number(0.9999)?, prior);
    let ldam = LdamLoss::new(&pi)?;
    Ok(vec![
        Method {
            objective: Objective::Softmax(SoftmaxLoss::cross_entropy()),
            rows: vec![
                ("cross-entropy", Decision::Argmax),
                ("CE + post-hoc adjustment, τ = 1", Decision::PostHoc(1.0)),
                ("CE + post-hoc adjustment, τ tuned", Decision::TunedPostHoc),
            ],
        },
        Method::one(
            "class-weighted CE, 1/n",
            Objective::Softmax(SoftmaxLoss::class_weighted(
                &ClassWeights::inverse_frequency().weights(prior)?,
            )?),
        ),
        // β = 0.99: with at most a few hundred samples a class, 0.9999 gives the same weights as 1/n.
        Method::one(
            "class-weighted CE, effective number",
            Objective::Softmax(SoftmaxLoss::class_weighted(
                &ClassWeights::effective_number(0.99)?.weights(prior)?,
            )?),
        ),
        Method::one("focal loss, γ = 2", Objective::Softmax(SoftmaxLoss::focal(2.0)?)),
        Method::one("logit-adjusted loss, τ = 1", Objective::Softmax(SoftmaxLoss::logit_adjusted(&pi)?)),
        Method::one("LDAM-DRW", Objective::Ldam(ldam.clone(), Some(drw()?))),
        Method::one("smooth-F1-weighted CE (macro)", Objective::SmoothF1(SmoothF1Loss::macro_f1())),
        // The crate's other losses.
        Method::one("CE-DRW", Objective::DeferredCe(drw()?)),
        Method::one("LDAM", Objective::Ldam(ldam, None)),
        Method::one(
            "pairwise margins τ·log(π_k/π_y)",
            Objective::Pairwise(PairwiseMarginLoss::from_prior(&pi, 1.0)?),
        ),
        Method::one("smooth-F1-weighted CE (micro)", Objective::SmoothF1(SmoothF1Loss::micro_f1())),
        Method::one("one-vs-rest BCE", Objective::Sigmoid(SigmoidLoss::bce().with_reduction(Reduction::Sum))),
        Method::one(
            "one-vs-rest sigmoid focal, γ = 2",
            Objective::Sigmoid(
                SigmoidLoss::focal(2.0).unwrap().with_alpha(0.25).unwrap().with_reduction(Reduction::Sum),
            ),
        ),
        Method::one(
            "one-vs-rest binary smooth-F1",
            Objective::BinarySmoothF1(BinarySmoothF1Loss::new().with_reduction(Reduction::Sum)),
        ),
        Method::one("ZLPR", Objective::Zlpr(ZlprLoss::new().with_reduction(Reduction::Sum))),
        Method::one(
            "ZLPR + label prior, τ = 1",
            Objective::Zlpr(ZlprLoss::new().with_label_prior(&pi, 1.0)?.with_reduction(Reduction::Sum)),
        ),
    ])
}
