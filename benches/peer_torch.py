#!/usr/bin/env python3
"""PyTorch on CPU, one thread: mean softmax cross-entropy forward + backward w.r.t. the logits, in
ns per logit element, beside a copy of the same bytes (torch's own), for the shapes of
`examples/bench_table.rs`. A peer for the Performance section; not used by any test.

    pip install numpy torch && python3 benches/peer_torch.py
"""
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
SHAPES = [(64, 10), (1024, 1000), (256, 32000), (32, 262144)]


def median_ns(f, elems, reps=31, min_sample=2e-3):
    f()
    calls = 1
    while True:
        t = time.perf_counter()
        for _ in range(calls):
            f()
        if time.perf_counter() - t >= min_sample:
            break
        calls *= 2
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        samples.append((time.perf_counter() - t) / calls)
    samples.sort()
    return samples[reps // 2] * 1e9 / elems


print(f"torch {torch.__version__}, 1 thread; ns per logit element (x copy floor)")
print("| dtype | shape | copy floor | cross_entropy fwd+bwd |")
print("|---|---|---:|---:|")
for dtype in (torch.float32, torch.float64):
    for b, k in SHAPES:
        g = torch.Generator().manual_seed(0)
        z = (torch.rand(b, k, generator=g, dtype=dtype) * 8 - 4).requires_grad_(True)
        y = torch.randint(0, k, (b,), generator=g)
        dst = torch.empty_like(z)

        def copy():
            dst.copy_(z.detach())

        def ce():
            z.grad = None
            F.cross_entropy(z, y).backward()

        floor = median_ns(copy, b * k)
        loss = median_ns(ce, b * k)
        print(f"| {str(dtype)[6:]} | {b}x{k} | {floor:.2f} | {loss:.2f} ({loss / floor:.1f}x) |")
