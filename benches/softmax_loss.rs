//! Loss + gradient of every softmax-family loss against the memory floor: a copy of the same
//! bytes (read the logits once, write the gradient once), measured in the same run.
//!
//! `cargo bench --bench softmax_loss` (add `-- --warm-up-time 1 --measurement-time 2` for a quicker
//! run, `RAYON_NUM_THREADS=1` for one thread); throughput is reported per logit element.
//! `cargo run --release --example bench_table` prints the same comparison as one table;
//! `cargo bench --bench other_losses` measures the crate's other losses the same way.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use longtail::{Float, Loss};
use ndarray::Array2;

mod common;
use common::{Batch, SHAPES, softmax_losses};

fn bench_type<F: Float>(c: &mut Criterion, type_name: &str) {
    for (rows, classes) in SHAPES {
        let batch = Batch::<F>::new(rows, classes);
        let logits = &batch.logits;
        let mut grad = Array2::<F>::zeros((rows, classes));
        let mut group = c.benchmark_group(format!("{type_name}/{rows}x{classes}"));
        group.throughput(Throughput::Elements((rows * classes) as u64));
        if rows * classes > 1 << 20 {
            group.sample_size(20).measurement_time(Duration::from_secs(3));
        }
        group.bench_function("copy_floor", |b| b.iter(|| grad.assign(black_box(logits))));
        for (name, loss, soft) in softmax_losses::<F>(classes) {
            let targets = || batch.targets(soft);
            group.bench_function(BenchmarkId::new(name, "into"), |b| {
                b.iter(|| loss.loss_and_grad_into(black_box(logits), targets(), &mut grad).unwrap())
            });
            group.bench_function(BenchmarkId::new(name, "allocating"), |b| {
                b.iter(|| loss.loss_and_grad(black_box(logits), targets()).unwrap())
            });
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_type::<f32>(c, "f32");
    bench_type::<f64>(c, "f64");
}

criterion_group!(softmax_loss, benches);
criterion_main!(softmax_loss);
