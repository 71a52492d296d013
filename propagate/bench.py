"""Benchmarks (not timed tests): recorder overhead, and the sweep's GFLOP/s against the machine's GEMM rate.

    python -m propagate.bench            # both
    python -m propagate.bench recorder   # forward+backward of a depth-50, width-512 MLP, batch 512
    python -m propagate.bench sweep      # default sweep grid vs float32 GEMM at the same shapes
    python -m propagate.bench training   # MNIST loop: ours vs a tutorial DataLoader loop

Everything is measured in one run on the same machine; report the printed lines.
"""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F


def _best(fn, repeat: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_recorder(depth: int = 50, width: int = 512, batch: int = 512, repeat: int = 21) -> dict:
    """Forward+backward with and without the Recorder; overhead = ratio of the medians − 1.

    The two are interleaved, so drifts in machine load hit both alike; the median resists outliers.
    """
    from propagate import MLP, Recorder, initialize

    net = initialize(MLP(depth=depth, width=width), "he", seed=0)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 784, generator=gen), torch.randint(0, 10, (batch,), generator=gen)

    def plain():
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()

    def recorded():
        net.zero_grad(set_to_none=True)
        with Recorder(net) as rec:
            F.cross_entropy(net(x), y).backward()
        rec.table()

    t_plain, t_rec = [], []
    for _ in range(repeat):
        t_plain.append(_best(plain, 1, 1))
        t_rec.append(_best(recorded, 1, 1))
    import statistics

    a, b = statistics.median(t_plain), statistics.median(t_rec)
    out = {"plain_s": a, "recorded_s": b, "overhead": b / a - 1}
    print(f"recorder: depth {depth}, width {width}, batch {batch}: forward+backward {a * 1e3:.1f} ms, "
          f"with Recorder {b * 1e3:.1f} ms (table included), medians of {repeat}: overhead {100 * out['overhead']:+.1f}%")
    return out


def gemm_rate(shapes: list[tuple[int, int, int, int, float]], repeat: int = 3) -> float:
    """float32 GFLOP/s of batched matmuls ``(batch, m, k, n, count)``: total FLOP / total time, each shape
    timed once (best of ``repeat``) and counted ``count`` times."""
    flops, secs = 0.0, 0.0
    for b, m, k, n, count in shapes:
        # Into a preallocated output, as the engine does: fresh multi-MB outputs cost page faults.
        a, w, o = torch.randn(b, m, k), torch.randn(b, k, n), torch.empty(b, m, n)
        t = _best(lambda: torch.bmm(a, w, out=o), repeat)
        flops += 2.0 * b * m * k * n * count
        secs += t * count
    return flops / secs / 1e9


def bench_sweep(max_depth: int = 50, seeds: int = 5, width: int = 512, batch: int = 512) -> dict:
    """The default depth sweep's engine time and GFLOP/s beside float32 GEMM at the same shapes."""
    from propagate.sweep import SweepConfig, run_sweep, sweep_inputs

    config = SweepConfig(depths=list(range(1, max_depth + 1)), seeds=seeds, widths=[width], batch=batch,
                         input="gaussian")
    inputs = sweep_inputs(config)
    t = time.perf_counter()
    layers, info = run_sweep(config, inputs=inputs)
    wall = time.perf_counter() - t
    M = len(config.inits)
    # The engine's matmuls per seed: the stacked backward (M, K·B, n) @ (M, n, n) with K = D … 1 active
    # depths (sampled every 7th K, each standing for its neighbours), the forward and the weight gradients.
    ks = list(range(max_depth, 0, -7))
    shapes = [(M, k * batch, width, width, 7 * seeds) for k in ks]
    shapes += [(M, batch, width, width, 2 * max_depth * seeds)]
    rate = gemm_rate(shapes)
    out = {"wall_s": wall, "engine_s": info["seconds_engine"], "gflop": info["gflop"],
           "gflops": info["gflops_per_s"], "gemm_gflops": rate, "fraction": info["gflops_per_s"] / rate}
    print(f"sweep: {len(config.inits)} inits × {seeds} seeds × depths 1–{max_depth}, width {width}, batch {batch}: "
          f"{wall:.1f} s ({info['seconds_engine']:.1f} s engine), {info['gflop']:.0f} GFLOP at "
          f"{info['gflops_per_s']:.0f} GFLOP/s; float32 GEMM at the same shapes {rate:.0f} GFLOP/s "
          f"-> {100 * out['fraction']:.0f}% of GEMM")
    return out


def main(argv=None) -> None:
    which = (argv if argv is not None else sys.argv[1:]) or ["recorder", "sweep"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in which:
        if name == "recorder":
            bench_recorder()
        elif name == "sweep":
            bench_sweep()
        elif name == "training":
            from propagate.bench_train import benchmark_training

            benchmark_training()
        else:
            raise SystemExit(f"unknown benchmark {name!r}; choose recorder, sweep or training")


if __name__ == "__main__":
    main()
