//! Configurations in burn's style: `…Config::new(..).with_…(..).init()`, returning the loss.
//!
//! Unlike burn's own configs, `init` checks the parameters and returns a `Result` instead of
//! panicking.

use longtail::{Prior, Reduction, SoftmaxLoss};

use crate::{Element, LongtailLoss, Result};

fn floats<F: Element>(values: &[f64]) -> Vec<F> {
    values.iter().map(|&v| F::from(v).expect("f64 converts to the float type")).collect()
}

/// The softmax family with every option: logit adjustment, class weights, focal `γ` and `α`,
/// label smoothing, reduction (the core's [`SoftmaxLoss`]).
///
/// Each row costs `s_i·Σ_k a_k·t'_ik·(1 − p_ik)^γ·(−log p_ik)` with `p = softmax(z + τ·log π)`,
/// `t' = (1 − ε)·t + ε/K` and `a = w·α`; see [`SoftmaxLoss`] for the reduction.
///
/// # Errors
///
/// `init` returns [`longtail::Error::InvalidParameter`] (as [`Error::Core`](crate::Error::Core))
/// for a parameter out of its domain (non-positive prior count, negative weight, `γ < 0`,
/// `ε ∉ [0, 1)`), and a shape error for class vectors of different lengths.
///
/// # Example
///
/// ```
/// use longtail_burn::SoftmaxLossConfig;
/// let loss = SoftmaxLossConfig::new()
///     .with_prior(vec![900.0, 90.0, 10.0])
///     .with_gamma(2.0)
///     .with_label_smoothing(0.1)
///     .init::<f32>()?;
/// assert_eq!(loss.inner().gamma(), 2.0);
/// assert!(SoftmaxLossConfig::new().with_gamma(-1.0).init::<f32>().is_err());
/// # Ok::<(), longtail_burn::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020 (arXiv:2007.07314), Lin et al. 2017 (arXiv:1708.02002), Szegedy et al. 2015
/// (arXiv:1512.00567); burn's `CrossEntropyLossConfig` for the style.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxLossConfig {
    /// Class counts or frequencies `π` for logit adjustment.
    pub prior: Option<Vec<f64>>,
    /// Temperature `τ` of the logit adjustment (default 1).
    pub tau: f64,
    /// Class weights `w`.
    pub class_weights: Option<Vec<f64>>,
    /// Focal `γ` (default 0: no modulation).
    pub gamma: f64,
    /// Focal `α`, per class.
    pub alpha: Option<Vec<f64>>,
    /// Label smoothing `ε` (default 0).
    pub label_smoothing: f64,
    /// Mean (default) or sum.
    pub reduction: Reduction,
}

impl Default for SoftmaxLossConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftmaxLossConfig {
    /// Plain cross-entropy, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::SoftmaxLossConfig::new().init::<f64>()?;
    /// assert_eq!(loss.inner(), &longtail::SoftmaxLoss::cross_entropy());
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn new() -> Self {
        Self {
            prior: None,
            tau: 1.0,
            class_weights: None,
            gamma: 0.0,
            alpha: None,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }

    /// Logit adjustment by the class counts or frequencies `prior`.
    ///
    /// # Example
    ///
    /// ```
    /// let config = longtail_burn::SoftmaxLossConfig::new().with_prior(vec![9.0, 1.0]);
    /// assert!(config.init::<f32>()?.inner().logit_adjustment().is_some());
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn with_prior(mut self, prior: Vec<f64>) -> Self {
        self.prior = Some(prior);
        self
    }

    /// The temperature `τ` of the logit adjustment.
    ///
    /// # Example
    ///
    /// ```
    /// let config = longtail_burn::SoftmaxLossConfig::new().with_prior(vec![9.0, 1.0]).with_tau(0.5);
    /// assert_eq!(config.tau, 0.5);
    /// ```
    pub fn with_tau(mut self, tau: f64) -> Self {
        self.tau = tau;
        self
    }

    /// Class weights `w`.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::SoftmaxLossConfig::new().with_class_weights(vec![1.0, 3.0]).init::<f32>()?;
    /// assert_eq!(loss.inner().class_weights(), Some(&[1.0, 3.0][..]));
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn with_class_weights(mut self, weights: Vec<f64>) -> Self {
        self.class_weights = Some(weights);
        self
    }

    /// Focal `γ`.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::SoftmaxLossConfig::new().with_gamma(2.0).init::<f32>()?;
    /// assert_eq!(loss.inner().gamma(), 2.0);
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn with_gamma(mut self, gamma: f64) -> Self {
        self.gamma = gamma;
        self
    }

    /// Focal `α`, per class.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::SoftmaxLossConfig::new().with_alpha(vec![0.25, 0.75]).init::<f32>()?;
    /// assert_eq!(loss.inner().alpha(), Some(&[0.25, 0.75][..]));
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn with_alpha(mut self, alpha: Vec<f64>) -> Self {
        self.alpha = Some(alpha);
        self
    }

    /// Label smoothing `ε`.
    ///
    /// # Example
    ///
    /// ```
    /// let loss = longtail_burn::SoftmaxLossConfig::new().with_label_smoothing(0.1).init::<f64>()?;
    /// assert_eq!(loss.inner().label_smoothing(), 0.1);
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn with_label_smoothing(mut self, epsilon: f64) -> Self {
        self.label_smoothing = epsilon;
        self
    }

    /// The reduction.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction};
    /// let loss = longtail_burn::SoftmaxLossConfig::new().with_reduction(Reduction::Sum).init::<f32>()?;
    /// assert_eq!(loss.inner().reduction(), Reduction::Sum);
    /// # Ok::<(), longtail_burn::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss, its parameters checked.
    ///
    /// # Errors
    ///
    /// See [`SoftmaxLossConfig`].
    ///
    /// # Example
    ///
    /// See [`SoftmaxLossConfig`].
    pub fn init<F: Element>(&self) -> Result<LongtailLoss<SoftmaxLoss<F>>> {
        let mut loss = SoftmaxLoss::cross_entropy().with_reduction(self.reduction);
        if let Some(prior) = &self.prior {
            let tau = F::from(self.tau).expect("f64 converts to the float type");
            loss = loss.with_logit_adjustment(&floats::<F>(prior), tau)?;
        }
        if let Some(w) = &self.class_weights {
            loss = loss.with_class_weights(&floats::<F>(w))?;
        }
        if self.gamma != 0.0 {
            loss = loss.with_focal(F::from(self.gamma).expect("f64 converts to the float type"))?;
        }
        if let Some(a) = &self.alpha {
            loss = loss.with_alpha(&floats::<F>(a))?;
        }
        if self.label_smoothing != 0.0 {
            loss = loss.with_label_smoothing(F::from(self.label_smoothing).expect("f64 converts"))?;
        }
        Ok(LongtailLoss::new(loss))
    }
}

/// Logit-adjusted cross-entropy (Balanced Softmax at `τ = 1`): cross-entropy on `z + τ·log π`.
///
/// # Errors
///
/// `init`: [`longtail::Error::InvalidParameter`] for a non-positive or non-finite prior entry or
/// `τ`.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use longtail_burn::{LogitAdjustedLossConfig, Targets};
///
/// let device = Device::flex().autodiff();
/// let loss = LogitAdjustedLossConfig::new(vec![900.0, 90.0, 10.0]).init::<f32>()?;
/// let logits = Tensor::<2>::from_data([[2.0_f32, 0.5, -1.0]], &device).require_grad();
/// let value = loss.try_forward(logits.clone(), &Targets::labels(Tensor::<1, Int>::from_data([2], &device)))?;
/// let grad = logits.grad(&value.backward()).expect("tracked");
/// // softmax(z + log π) − e_y sums to 0 over the classes.
/// assert!(grad.sum().into_scalar::<f32>().abs() < 1e-6);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitAdjustedLossConfig {
    /// Class counts or frequencies `π`.
    pub prior: Vec<f64>,
    /// Temperature `τ` (default 1).
    pub tau: f64,
}

impl LogitAdjustedLossConfig {
    /// Logit adjustment by the class counts or frequencies `prior`, `τ = 1`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail_burn::LogitAdjustedLossConfig::new(vec![9.0, 1.0]).tau, 1.0);
    /// ```
    pub fn new(prior: Vec<f64>) -> Self {
        Self { prior, tau: 1.0 }
    }

    /// From a [`Prior`]'s counts.
    ///
    /// # Example
    ///
    /// ```
    /// let prior = longtail::Prior::from_counts(&[9.0, 1.0])?;
    /// let config = longtail_burn::LogitAdjustedLossConfig::from_prior(&prior);
    /// assert_eq!(config.prior, vec![9.0, 1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn from_prior(prior: &Prior) -> Self {
        Self::new(prior.counts().to_vec())
    }

    /// The temperature `τ`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail_burn::LogitAdjustedLossConfig::new(vec![9.0, 1.0]).with_tau(2.0).tau, 2.0);
    /// ```
    pub fn with_tau(mut self, tau: f64) -> Self {
        self.tau = tau;
        self
    }

    /// The loss, its parameters checked.
    ///
    /// # Errors
    ///
    /// See [`LogitAdjustedLossConfig`].
    ///
    /// # Example
    ///
    /// See [`LogitAdjustedLossConfig`].
    pub fn init<F: Element>(&self) -> Result<LongtailLoss<SoftmaxLoss<F>>> {
        SoftmaxLossConfig::new().with_prior(self.prior.clone()).with_tau(self.tau).init()
    }
}

/// Focal loss `−α_y (1 − p_y)^γ log p_y`.
///
/// # Errors
///
/// `init`: [`longtail::Error::InvalidParameter`] for `γ < 0` or a negative `α`.
///
/// # Example
///
/// ```
/// let loss = longtail_burn::FocalLossConfig::new(2.0).with_alpha(vec![0.25, 0.75]).init::<f32>()?;
/// assert_eq!(loss.inner().gamma(), 2.0);
/// # Ok::<(), longtail_burn::Error>(())
/// ```
///
/// # References
///
/// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
#[derive(Debug, Clone, PartialEq)]
pub struct FocalLossConfig {
    /// Focal `γ`.
    pub gamma: f64,
    /// Focal `α`, per class.
    pub alpha: Option<Vec<f64>>,
}

impl FocalLossConfig {
    /// Focal loss with exponent `γ`, no `α`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail_burn::FocalLossConfig::new(2.0).gamma, 2.0);
    /// ```
    pub fn new(gamma: f64) -> Self {
        Self { gamma, alpha: None }
    }

    /// Per-class `α`.
    ///
    /// # Example
    ///
    /// ```
    /// let config = longtail_burn::FocalLossConfig::new(2.0).with_alpha(vec![0.5, 0.5]);
    /// assert_eq!(config.alpha, Some(vec![0.5, 0.5]));
    /// ```
    pub fn with_alpha(mut self, alpha: Vec<f64>) -> Self {
        self.alpha = Some(alpha);
        self
    }

    /// The loss, its parameters checked.
    ///
    /// # Errors
    ///
    /// See [`FocalLossConfig`].
    ///
    /// # Example
    ///
    /// See [`FocalLossConfig`].
    pub fn init<F: Element>(&self) -> Result<LongtailLoss<SoftmaxLoss<F>>> {
        let config = SoftmaxLossConfig::new().with_gamma(self.gamma);
        match &self.alpha {
            Some(alpha) => config.with_alpha(alpha.clone()),
            None => config,
        }
        .init()
    }
}
