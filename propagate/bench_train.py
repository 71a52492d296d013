"""Samples per second of our trainer against the tutorial-style loop, same model, same batch size.

The tutorial loop is what most MNIST examples do: a ``Dataset`` whose ``__getitem__`` converts one
sample with ``torch.tensor``, a shuffling ``DataLoader``, a plain ``nn.Sequential`` and Adam.
Ours is :func:`propagate.train.train`: tensors stay on the device, batches are index slices, the
runs are stacked.  Both train the 784-512-256-10 ReLU net at batch 64 on the same number of
samples; warm-up steps are not timed.

    python -m propagate.bench_train [--samples 20000] [--runs 1,15] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from propagate.data import MNIST_MEAN, MNIST_STD, load_mnist

__all__ = ["TutorialDataset", "tutorial_loop", "benchmark_training"]


class TutorialDataset(Dataset):
    """One sample at a time, converted with ``torch.tensor`` (the common tutorial pattern)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.tensor(self.images[i], dtype=torch.float32).reshape(-1) / 255.0
        x = (x - MNIST_MEAN) / MNIST_STD
        return x, torch.tensor(int(self.labels[i]), dtype=torch.long)


def tutorial_loop(images, labels, samples: int, batch_size: int = 64, lr: float = 1e-3, warmup: int = 10,
                  seed: int = 0) -> float:
    """Train the tutorial way on ``samples`` samples (after ``warmup`` untimed batches); return samples/s."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TutorialDataset(images, labels), batch_size=batch_size, shuffle=True)
    seen, t0, batches = 0, None, 0
    while True:
        for x, y in loader:
            if batches == warmup:
                t0 = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            batches += 1
            if t0 is not None:
                seen += x.shape[0]
                if seen >= samples:
                    return seen / (time.perf_counter() - t0)


def ours(mnist, samples: int, batch_size: int = 64, runs: int = 1) -> float:
    """Our trainer on ``samples`` samples per run with ``runs`` stacked runs; return samples/s (all runs)."""
    from propagate.train import train

    inits = ["he"] if runs == 1 else ["he", "xavier", "normal"]
    seeds = max(1, runs // len(inits))
    # warm-up (allocations, first kernels), then the timed run; recording is outside the timed loop
    train(inits, seeds=seeds, epochs=1, batch_size=batch_size, train_limit=batch_size * 10, data=mnist,
          record_every=10**9)
    res = train(inits, seeds=seeds, epochs=1, batch_size=batch_size, train_limit=samples, data=mnist,
                record_every=10**9)
    return res.timings["samples_per_s"]


def benchmark_training(samples: int = 20_000, batch_size: int = 64, runs=(1,), threads: int | None = None,
                       mnist=None, echo: bool = True) -> dict:
    """Samples/s of the tutorial loop and of ours (for each stacked-run count in ``runs``), and their ratio.

    Returns ``{"tutorial": s/s, "ours": s/s (1 run), "ratio": ours / tutorial, "ours_R<k>": s/s, …,
    "threads": n, "samples": samples}``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    mnist = mnist if mnist is not None else load_mnist()
    images, labels = mnist.train_images, mnist.train_labels
    out = {"threads": torch.get_num_threads(), "samples": samples, "batch_size": batch_size}
    out["tutorial"] = tutorial_loop(images, labels, samples, batch_size)
    for r in runs:
        out[f"ours_R{r}"] = ours(mnist, samples, batch_size, runs=r)
    out["ours"] = out.get("ours_R1", out[f"ours_R{runs[0]}"])
    out["ratio"] = out["ours"] / out["tutorial"]
    if echo:
        print(f"threads {out['threads']}, batch {batch_size}, {samples} samples per measurement")
        print(f"tutorial loop (Dataset + DataLoader + nn.Sequential + Adam): {out['tutorial']:9.0f} samples/s")
        for r in runs:
            print(f"ours, {r:2d} run(s) stacked:                             {out[f'ours_R{r}']:9.0f} samples/s"
                  + (f"  ({out[f'ours_R{r}'] / out['tutorial']:.2f}x)" if r else ""))
        print(f"ratio ours / tutorial (1 run): {out['ratio']:.2f}x")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--runs", default="1", help="comma list of stacked-run counts, e.g. 1,15")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    return benchmark_training(a.samples, a.batch_size, tuple(int(r) for r in a.runs.split(",")), a.threads)


if __name__ == "__main__":
    main()
