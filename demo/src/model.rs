//! The classifiers: softmax regression or a one-hidden-layer ReLU network, with a linear head
//! (`z = h·W + b`) or the cosine head LDAM is defined on (`z_k = cos(h, w_k)`), trained by SGD
//! with momentum and weight decay on the loss's gradient with respect to the logits.

use ndarray::{Array1, Array2, Axis, Zip};

use crate::rng::Rng;

/// Which network computes the features `h` that the head maps to logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `h = x`: softmax regression.
    Linear,
    /// `h = relu(x·W₁ + b₁)` with this many hidden units.
    Mlp(usize),
}

/// How features become logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// `z = h·W + b`.
    Linear,
    /// `z_k = ĥ·ŵ_k` with unit-norm features and class weights (no bias): logits in `[−1, 1]`,
    /// as in LDAM-DRW's `NormedLinear`. The loss scales them.
    Cosine,
}

/// SGD with heavy-ball momentum and decoupled-from-bias weight decay, as `torch.optim.SGD`.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    pub momentum: f32,
    pub weight_decay: f32,
}

/// One trainable array with its gradient and momentum buffer.
struct Param {
    value: Array2<f32>,
    grad: Array2<f32>,
    velocity: Array2<f32>,
    /// Weight decay applies to weights, not to biases.
    decays: bool,
}

impl Param {
    fn new(value: Array2<f32>, decays: bool) -> Self {
        let zeros = Array2::zeros(value.raw_dim());
        Self { grad: zeros.clone(), velocity: zeros, value, decays }
    }

    /// `v ← μ·v + g + λ·w`, `w ← w − lr·v`.
    fn step(&mut self, lr: f32, sgd: Sgd) {
        let decay = if self.decays { sgd.weight_decay } else { 0.0 };
        Zip::from(&mut self.value).and(&mut self.velocity).and(&self.grad).for_each(|w, v, &g| {
            *v = sgd.momentum * *v + g + decay * *w;
            *w -= lr * *v;
        });
    }
}

/// A classifier with its optimizer state.
pub struct Model {
    /// `W₁ [d, H]`, `b₁ [1, H]` of the hidden layer, if any.
    hidden: Option<(Param, Param)>,
    /// `W [h, K]`, `b [1, K]` of the head (`b` stays zero for the cosine head).
    weights: Param,
    bias: Param,
    head: Head,
}

/// What the backward pass needs from the forward pass.
pub struct Trace {
    pub logits: Array2<f32>,
    input: Array2<f32>,
    /// The hidden layer's pre-activations and activations, if any.
    hidden: Option<(Array2<f32>, Array2<f32>)>,
    normalized: Option<Normalized>,
}

impl Trace {
    /// Features `h`: the hidden activations, or the input itself.
    fn features(&self) -> &Array2<f32> {
        self.hidden.as_ref().map_or(&self.input, |(_, h)| h)
    }
}

/// The cosine head's unit vectors and the norms they were divided by.
struct Normalized {
    /// `‖h_i‖` and `ĥ` (`[B, h]`).
    h_norm: Array1<f32>,
    h_unit: Array2<f32>,
    /// `‖w_k‖` and `Ŵ` (`[h, K]`, unit columns).
    w_norm: Array1<f32>,
    w_unit: Array2<f32>,
}

impl Model {
    /// He-initialised weights (`N(0, 2/fan_in)` for the hidden layer, `N(0, 1/fan_in)` for the
    /// head), zero biases; the same seed gives the same initial model for every loss.
    pub fn new(inputs: usize, classes: usize, architecture: Architecture, head: Head, seed: u64) -> Self {
        let mut rng = Rng::stream(seed, 4);
        let mut gaussian = |rows: usize, cols: usize, variance: f64| {
            Array2::from_shape_simple_fn((rows, cols), || (variance.sqrt() * rng.normal()) as f32)
        };
        let (hidden, features) = match architecture {
            Architecture::Linear => (None, inputs),
            Architecture::Mlp(units) => {
                let w1 = gaussian(inputs, units, 2.0 / inputs as f64);
                (Some((Param::new(w1, true), Param::new(Array2::zeros((1, units)), false))), units)
            }
        };
        let weights = Param::new(gaussian(features, classes, 1.0 / features as f64), true);
        Self { hidden, weights, bias: Param::new(Array2::zeros((1, classes)), false), head }
    }

    /// The logits of a batch `x [B, d]`.
    pub fn logits(&self, x: &Array2<f32>) -> Array2<f32> {
        self.forward(x.clone()).logits
    }

    /// The logits of a batch, and what [`backward`](Self::backward) needs; takes the batch so that
    /// the trace keeps it without a copy.
    pub fn forward(&self, x: Array2<f32>) -> Trace {
        let hidden = self.hidden.as_ref().map(|(w1, b1)| {
            let pre = x.dot(&w1.value) + &b1.value;
            let h = pre.mapv(|v| v.max(0.0));
            (pre, h)
        });
        let mut trace = Trace { logits: Array2::zeros((0, 0)), input: x, hidden, normalized: None };
        let features = trace.features();
        trace.logits = match self.head {
            Head::Linear => features.dot(&self.weights.value) + &self.bias.value,
            Head::Cosine => {
                let (h_norm, h_unit) = normalize(features, ROWS);
                let (w_norm, w_unit) = normalize(&self.weights.value, COLUMNS);
                let logits = h_unit.dot(&w_unit);
                trace.normalized = Some(Normalized { h_norm, h_unit, w_norm, w_unit });
                logits
            }
        };
        trace
    }

    /// Backpropagates `∂L/∂z` (`grad_logits`, `[B, K]`) into the parameters' gradients.
    pub fn backward(&mut self, trace: &Trace, grad_logits: &Array2<f32>) {
        let grad_features = match &trace.normalized {
            None => {
                self.weights.grad = trace.features().t().dot(grad_logits);
                self.bias.grad = grad_logits.sum_axis(Axis(0)).insert_axis(Axis(0));
                grad_logits.dot(&self.weights.value.t())
            }
            Some(Normalized { h_norm, h_unit, w_norm, w_unit }) => {
                // z = ĥ·Ŵ; through x̂ = x/‖x‖ the gradient is (g − (g·x̂)·x̂)/‖x‖.
                self.weights.grad = through_normalize(&h_unit.t().dot(grad_logits), w_unit, w_norm, COLUMNS);
                self.bias.grad.fill(0.0);
                through_normalize(&grad_logits.dot(&w_unit.t()), h_unit, h_norm, ROWS)
            }
        };
        if let (Some((w1, b1)), Some((pre, _))) = (&mut self.hidden, &trace.hidden) {
            let grad_pre =
                Zip::from(&grad_features).and(pre).map_collect(|&g, &p| if p > 0.0 { g } else { 0.0 });
            w1.grad = trace.input.t().dot(&grad_pre);
            b1.grad = grad_pre.sum_axis(Axis(0)).insert_axis(Axis(0));
        }
    }

    /// One optimizer step with the gradients of the last [`backward`](Self::backward).
    pub fn step(&mut self, lr: f32, sgd: Sgd) {
        if let Some((w1, b1)) = &mut self.hidden {
            w1.step(lr, sgd);
            b1.step(lr, sgd);
        }
        self.weights.step(lr, sgd);
        if self.head == Head::Linear {
            self.bias.step(lr, sgd);
        }
    }
}

/// Feature vectors are rows, class weight vectors columns: the axis their norms are taken along.
const ROWS: Axis = Axis(1);
const COLUMNS: Axis = Axis(0);

/// The norms of the vectors along `axis` (floored, so that a zero vector has a zero direction, not
/// NaN) and the unit vectors.
fn normalize(a: &Array2<f32>, axis: Axis) -> (Array1<f32>, Array2<f32>) {
    let norms = a.map_axis(axis, |v| v.dot(&v).sqrt().max(1e-12));
    let unit = a / &norms.view().insert_axis(axis);
    (norms, unit)
}

/// The gradient through `u = x/‖x‖` for vectors along `axis`: `(g − (g·u)·u)/‖x‖`.
fn through_normalize(g: &Array2<f32>, unit: &Array2<f32>, norms: &Array1<f32>, axis: Axis) -> Array2<f32> {
    let along = (g * unit).sum_axis(axis).insert_axis(axis);
    (g - &(unit * &along)) / norms.view().insert_axis(axis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `L = Σ c ⊙ z` has `∂L/∂z = c`; the backward pass must give `∂L/∂θ` equal to central
    /// differences of `L` in f64 (the model is f32, so the tolerance is f32's).
    fn check_gradients(architecture: Architecture, head: Head) {
        let (batch, inputs, classes) = (5, 4, 3);
        let mut rng = Rng::stream(11, 0);
        let x = Array2::from_shape_simple_fn((batch, inputs), || rng.normal() as f32);
        let c = Array2::from_shape_simple_fn((batch, classes), || rng.normal() as f32);
        let mut model = Model::new(inputs, classes, architecture, head, 3);
        if let Some((_, b1)) = &mut model.hidden {
            b1.value.fill(0.3); // keep every unit away from the ReLU kink at this x
        }
        let loss = |m: &Model| f64::from((m.logits(&x) * &c).sum());
        let trace = model.forward(x.clone());
        model.backward(&trace, &c);
        let eps = 1e-2_f32;
        let mut params: Vec<fn(&mut Model) -> &mut Param> = vec![|m| &mut m.weights, |m| &mut m.bias];
        if model.hidden.is_some() {
            params.push(|m| &mut m.hidden.as_mut().unwrap().0);
            params.push(|m| &mut m.hidden.as_mut().unwrap().1);
        }
        for param in params {
            let analytic = param(&mut model).grad.clone();
            for (index, &g) in analytic.indexed_iter() {
                let original = param(&mut model).value[index];
                param(&mut model).value[index] = original + eps;
                let up = loss(&model);
                param(&mut model).value[index] = original - eps;
                let down = loss(&model);
                param(&mut model).value[index] = original;
                let numeric = (up - down) / (2.0 * f64::from(eps));
                assert!(
                    (f64::from(g) - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                    "{index:?}: {g} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn linear_head_gradients() {
        check_gradients(Architecture::Linear, Head::Linear);
        check_gradients(Architecture::Mlp(6), Head::Linear);
    }

    #[test]
    fn cosine_head_gradients() {
        check_gradients(Architecture::Linear, Head::Cosine);
        check_gradients(Architecture::Mlp(6), Head::Cosine);
    }
}
