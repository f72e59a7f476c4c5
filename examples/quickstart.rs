//! Quickstart: train a softmax-regression classifier on long-tailed data with plain
//! cross-entropy and with the logit-adjusted loss, and compare their balanced accuracy.
//!
//! Data: four 2-D Gaussian classes with 1000, 200, 40 and 8 training samples, evaluated on a
//! balanced test set. Run with `cargo run --release --example quickstart`.

use longtail::adjust::predict;
use longtail::metrics::balanced_accuracy;
use longtail::prior::ClassWeights;
use longtail::{LossError, Prior, SoftmaxLoss};
use ndarray::{Array1, Array2, Axis};

const TRAIN_COUNTS: [usize; 4] = [1000, 200, 40, 8];
const TEST_PER_CLASS: usize = 2000;
const LEARNING_RATE: f64 = 1.0;
const STEPS: usize = 500;
const CENTRES: [[f64; 2]; 4] = [[0.0, 0.0], [1.6, 0.0], [0.0, 1.6], [1.6, 1.6]];

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

/// `counts[k]` points around centre `k`, unit variance.
fn sample(counts: &[usize], rng: &mut Rng) -> (Array2<f64>, Vec<usize>) {
    let labels: Vec<usize> = counts.iter().enumerate().flat_map(|(k, &n)| vec![k; n]).collect();
    let x = Array2::from_shape_fn((labels.len(), 2), |(i, d)| CENTRES[labels[i]][d] + rng.normal());
    (x, labels)
}

/// Full-batch gradient descent on `W·x + b`, using the loss's gradient with respect to the logits.
fn train(
    loss: &SoftmaxLoss<f64>,
    x: &Array2<f64>,
    y: &[usize],
) -> Result<(Array2<f64>, Array1<f64>), LossError> {
    let classes = TRAIN_COUNTS.len();
    let (mut w, mut b) = (Array2::zeros((2, classes)), Array1::zeros(classes));
    let mut grad = Array2::zeros((x.nrows(), classes));
    for _ in 0..STEPS {
        let logits = x.dot(&w) + &b;
        loss.loss_and_grad_into(&logits, y, &mut grad)?;
        w -= &(x.t().dot(&grad) * LEARNING_RATE);
        b -= &(grad.sum_axis(Axis(0)) * LEARNING_RATE);
    }
    Ok((w, b))
}

fn main() -> Result<(), LossError> {
    let mut rng = Rng(42);
    let (x_train, y_train) = sample(&TRAIN_COUNTS, &mut rng);
    let (x_test, y_test) = sample(&[TEST_PER_CLASS; 4], &mut rng);
    let prior = Prior::from_labels(&y_train, TRAIN_COUNTS.len())?;

    println!("train counts {TRAIN_COUNTS:?}, balanced test set of {TEST_PER_CLASS} per class");
    for (name, loss) in [
        ("cross-entropy", SoftmaxLoss::cross_entropy()),
        ("logit-adjusted (tau = 1)", SoftmaxLoss::logit_adjusted(prior.counts())?),
        ("class-weighted (1/n_k)", SoftmaxLoss::class_weighted(&ClassWeights::power(1.0)?.weights(&prior)?)?),
    ] {
        let (w, b) = train(&loss, &x_train, &y_train)?;
        let predictions = predict(&(x_test.dot(&w) + &b))?;
        let accuracy = balanced_accuracy(&y_test, &predictions, TRAIN_COUNTS.len())?;
        println!("{name:<26} balanced accuracy {accuracy:.3}");
    }
    Ok(())
}
