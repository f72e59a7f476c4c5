//! Loss + gradient of the softmax family against the memory floor: a copy of the same bytes
//! (read the logits once, write the gradient once), measured in the same run.
//!
//! `cargo bench --bench softmax_loss`; throughput is reported per logit element.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use longtail::{Float, SoftmaxLoss, Targets};
use ndarray::Array2;
use std::hint::black_box;

const SHAPES: [(usize, usize); 3] = [(64, 10), (1024, 1000), (256, 32000)];

/// Deterministic logits in about [-4, 4] and labels, without a random-number crate.
fn batch<F: Float>(rows: usize, classes: usize) -> (Array2<F>, Vec<usize>, Array2<F>) {
    let logits = Array2::from_shape_fn((rows, classes), |(i, k)| {
        F::from_f64(((i * 7919 + k * 104_729) % 8192) as f64 / 1024.0 - 4.0)
    });
    let labels = (0..rows).map(|i| (i * 31) % classes).collect();
    let probs = Array2::from_elem((rows, classes), F::from_f64(1.0 / classes as f64));
    (logits, labels, probs)
}

fn losses<F: Float>(classes: usize) -> Vec<(&'static str, SoftmaxLoss<F>)> {
    let prior: Vec<F> = (0..classes).map(|k| F::from_f64(1000.0 / (1.0 + k as f64))).collect();
    vec![
        ("cross_entropy", SoftmaxLoss::cross_entropy()),
        ("logit_adjusted", SoftmaxLoss::logit_adjusted(&prior).unwrap()),
        ("class_weighted", SoftmaxLoss::class_weighted(&prior).unwrap()),
        ("focal_2", SoftmaxLoss::focal(F::from_f64(2.0)).unwrap()),
        ("label_smoothing_0.1", SoftmaxLoss::cross_entropy().with_label_smoothing(F::from_f64(0.1)).unwrap()),
    ]
}

fn bench_type<F: Float>(c: &mut Criterion, type_name: &str) {
    for (rows, classes) in SHAPES {
        let (logits, labels, probs) = batch::<F>(rows, classes);
        let mut grad = Array2::<F>::zeros((rows, classes));
        let mut group = c.benchmark_group(format!("{type_name}/{rows}x{classes}"));
        group.throughput(Throughput::Elements((rows * classes) as u64));
        group.bench_function("copy_floor", |b| b.iter(|| grad.assign(black_box(&logits))));
        for (name, loss) in losses::<F>(classes) {
            group.bench_function(BenchmarkId::new(name, "into"), |b| {
                b.iter(|| loss.loss_and_grad_into(black_box(&logits), &labels, &mut grad).unwrap())
            });
        }
        let ce = SoftmaxLoss::<F>::cross_entropy();
        group.bench_function(BenchmarkId::new("cross_entropy", "allocating"), |b| {
            b.iter(|| ce.loss_and_grad(black_box(&logits), &labels).unwrap())
        });
        group.bench_function(BenchmarkId::new("soft_targets", "into"), |b| {
            b.iter(|| ce.loss_and_grad_into(black_box(&logits), Targets::probs(&probs), &mut grad).unwrap())
        });
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_type::<f32>(c, "f32");
    bench_type::<f64>(c, "f64");
}

criterion_group!(softmax_loss, benches);
criterion_main!(softmax_loss);
