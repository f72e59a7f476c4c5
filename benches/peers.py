#!/usr/bin/env python3
"""The peers of `examples/bench_table.rs`: JAX (`jit(value_and_grad)` of optax's losses) and
PyTorch (forward + backward), loss + gradient with respect to the logits, mean reduction, in ns
per logit element, on the same batches (the same deterministic logits, labels and targets) and
shapes as the crate's table. Each peer writes `target/peers/<peer>.tsv`, which `bench_table`
prints beside the crate's rows; no test reads it.

    pip install numpy torch "jax[cpu]" optax
    python3 benches/peers.py            # both peers, f32 and f64, on CPU 0 only
    python3 benches/peers.py --quick    # median of 7 instead of 31

The process pins itself to one core before it imports a framework (XLA starts a thread per core
and ignores its own thread settings; the affinity mask confines them all), and it reports each
peer's CPU time over wall time, which must be close to 1.
"""
import os
import sys
import time

CORE = 0
os.sched_setaffinity(0, {CORE})
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np  # noqa: E402

SHAPES = [(64, 10), (1024, 1000), (256, 32000), (32, 262144)]
SHORT_SHAPES = [(b, k) for b in (4096, 64) for k in (2, 3, 5, 10, 16)]
POSITIVES = 3
REPS = 7 if "--quick" in sys.argv else 31
MIN_SAMPLE = 2e-3
CELL_BUDGET = 1.0
# The float types by the names `bench_table` gives them.
TYPE_NAMES = {"float32": "f32", "float64": "f64"}


def batch(b, k, dtype):
    """`benches/common/mod.rs`'s `Batch::new`: the same logits, labels and targets."""
    i, j = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
    logits = (((i * 7919 + j * 104_729) % 8192) / 1024.0 - 4.0).astype(dtype)
    labels = (np.arange(b) * 31) % k
    probs = np.full((b, k), 1.0 / k, dtype=dtype)
    multi_hot = np.zeros((b, k), dtype=dtype)
    for p in range(POSITIVES):
        multi_hot[np.arange(b), (np.arange(b) * 31 + p * 97) % k] = 1.0
    prior = (1000.0 / (1.0 + np.arange(k))).astype(dtype)
    return logits, labels, probs, multi_hot, prior


def median_ns(f, elems):
    """The median time per call over `REPS` samples of at least `MIN_SAMPLE` each, per element."""
    f()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < MIN_SAMPLE:
        f()
        calls += 1
    reps = min(REPS, max(7, int(CELL_BUDGET / (time.perf_counter() - start))))
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        samples.append((time.perf_counter() - t) / calls)
    samples.sort()
    return samples[reps // 2] * 1e9 / elems


def jax_cells():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    def losses(prior, weights):
        log_prior = jnp.log(prior / prior.sum())

        def weighted(z, y):
            w = weights[y]
            return (w * optax.softmax_cross_entropy_with_integer_labels(z, y)).sum() / w.sum()

        def smoothed(z, y):
            k = z.shape[1]
            t = optax.smooth_labels(jax.nn.one_hot(y, k, dtype=z.dtype), 0.1)
            return optax.softmax_cross_entropy(z, t).mean()

        return {
            "cross_entropy": (lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean(), "labels"),
            "logit_adjusted": (
                lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z + log_prior, y).mean(),
                "labels",
            ),
            "class_weighted": (weighted, "labels"),
            "label_smoothing_0.1": (smoothed, "labels"),
            "soft_targets": (lambda z, t: optax.softmax_cross_entropy(z, t).mean(), "probs"),
            "sigmoid_bce": (lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).mean(), "multi_hot"),
        }

    version = f"jax {jax.__version__}, optax {optax.__version__}"
    for dtype in (np.float32, np.float64):
        for b, k in SHAPES + SHORT_SHAPES:
            logits, labels, probs, multi_hot, prior = batch(b, k, dtype)
            targets = {"labels": jnp.asarray(labels), "probs": jnp.asarray(probs), "multi_hot": jnp.asarray(multi_hot)}
            z = jnp.asarray(logits)
            for name, (loss, kind) in losses(jnp.asarray(prior), jnp.asarray(prior)).items():
                step = jax.jit(jax.value_and_grad(loss))
                t = targets[kind]
                yield version, dtype, b, k, name, median_ns(lambda: jax.block_until_ready(step(z, t)), b * k)


def torch_cells():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    version = f"torch {torch.__version__}"
    for dtype in (np.float32, np.float64):
        for b, k in SHAPES + SHORT_SHAPES:
            logits, labels, probs, multi_hot, prior = (torch.from_numpy(a) for a in batch(b, k, dtype))
            log_prior = torch.log(prior / prior.sum())
            z = logits.clone().requires_grad_(True)
            losses = {
                "cross_entropy": lambda: F.cross_entropy(z, labels),
                "logit_adjusted": lambda: F.cross_entropy(z + log_prior, labels),
                "class_weighted": lambda: F.cross_entropy(z, labels, weight=prior),
                "label_smoothing_0.1": lambda: F.cross_entropy(z, labels, label_smoothing=0.1),
                "soft_targets": lambda: F.cross_entropy(z, probs),
                "sigmoid_bce": lambda: F.binary_cross_entropy_with_logits(z, multi_hot),
            }
            for name, loss in losses.items():

                def step(loss=loss):
                    z.grad = None
                    loss().backward()

                yield version, dtype, b, k, name, median_ns(step, b * k)


def run(peer, cells):
    os.makedirs("target/peers", exist_ok=True)
    path = f"target/peers/{peer}.tsv"
    wall, cpu = time.perf_counter(), time.process_time()
    rows = []
    for version, dtype, b, k, name, ns in cells:
        rows.append(f"{peer}\t{TYPE_NAMES[np.dtype(dtype).name]}\t{b}\t{k}\t{name}\t{ns:.4f}\n")
        print(f"{version}  {np.dtype(dtype).name} {b}x{k} {name}: {ns:.2f} ns/elem", flush=True)
    ratio = (time.process_time() - cpu) / (time.perf_counter() - wall)
    with open(path, "w") as out:
        out.write(f"# {version}; pinned to CPU {CORE}; CPU time / wall time {ratio:.2f}\n")
        out.writelines(rows)
    print(f"{peer}: CPU time / wall time {ratio:.2f} (1 = one core busy); wrote {path}")


if __name__ == "__main__":
    run("jax", jax_cells())
    run("torch", torch_cells())
