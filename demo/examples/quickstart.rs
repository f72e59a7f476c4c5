//! Quickstart: the shortest useful program. Estimate the class prior from the labels, train with
//! the logit-adjusted loss (or train with cross-entropy and adjust its predictions after
//! training), and measure balanced accuracy.
//!
//! Data: four 2-D Gaussian classes with 1000, 200, 40 and 8 training samples; the model is softmax
//! regression, trained by full-batch gradient descent on the loss's gradient with respect to the
//! logits. Run with `cargo run --release -p longtail-demo --example quickstart`.

use longtail::adjust::{predict, predict_adjusted};
use longtail::metrics::balanced_accuracy;
use longtail::{Error, Loss, Prior, SoftmaxLoss};
use ndarray::{Array1, Array2, Axis};

const CLASSES: usize = 4;
const CENTRES: [[f64; 2]; CLASSES] = [[0.0, 0.0], [1.6, 0.0], [0.0, 1.6], [1.6, 1.6]];

fn main() -> Result<(), Error> {
    let mut rng = Rng(42);
    let (x, y) = sample(&[1000, 200, 40, 8], &mut rng);
    let (x_test, y_test) = sample(&[2000; CLASSES], &mut rng);

    // 1. The class prior, from the training labels.
    let prior = Prior::from_labels(&y, CLASSES)?;

    // 2. Train with the logit-adjusted loss: it adds τ·log π to the logits, so the rare classes
    //    need a larger margin (Menon et al. 2020). And, for comparison, with plain cross-entropy.
    let adjusted = train(&SoftmaxLoss::logit_adjusted(&prior)?, &x, &y)?;
    let plain = train(&SoftmaxLoss::cross_entropy(), &x, &y)?;

    // 3. Predict on a balanced test set: the logit-adjusted model by plain argmax; the
    //    cross-entropy model as it is and with the post-hoc adjustment `argmax z − τ·log π`.
    let score = |predictions: Vec<usize>| balanced_accuracy(&y_test, &predictions, CLASSES);
    println!("balanced accuracy on a balanced test set of 4 × 2000 (training counts 1000/200/40/8)");
    println!("  cross-entropy                     {:.3}", score(predict(&plain.logits(&x_test))?)?);
    println!(
        "  cross-entropy + post-hoc, τ = 1   {:.3}",
        score(predict_adjusted(&plain.logits(&x_test), &prior, 1.0)?)?
    );
    println!("  logit-adjusted loss, τ = 1        {:.3}", score(predict(&adjusted.logits(&x_test))?)?);
    Ok(())
}

/// Softmax regression: logits `x·W + b`.
struct Model {
    w: Array2<f64>,
    b: Array1<f64>,
}

impl Model {
    fn logits(&self, x: &Array2<f64>) -> Array2<f64> {
        x.dot(&self.w) + &self.b
    }
}

/// 500 steps of full-batch gradient descent: the loss gives `∂L/∂z`, the chain rule the rest.
fn train(loss: &SoftmaxLoss<f64>, x: &Array2<f64>, y: &[usize]) -> Result<Model, Error> {
    let mut model = Model { w: Array2::zeros((2, CLASSES)), b: Array1::zeros(CLASSES) };
    let mut grad = Array2::zeros((x.nrows(), CLASSES));
    for _ in 0..500 {
        loss.loss_and_grad_into(&model.logits(x), y, &mut grad)?;
        model.w -= &x.t().dot(&grad);
        model.b -= &grad.sum_axis(Axis(0));
    }
    Ok(model)
}

/// `counts[k]` points around centre `k` with unit variance.
fn sample(counts: &[usize], rng: &mut Rng) -> (Array2<f64>, Vec<usize>) {
    let labels: Vec<usize> = counts.iter().enumerate().flat_map(|(k, &n)| vec![k; n]).collect();
    let x = Array2::from_shape_fn((labels.len(), 2), |(i, d)| CENTRES[labels[i]][d] + rng.normal());
    (x, labels)
}

/// SplitMix64 and Box–Muller: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}
