"""The depth sweep: depth × init × width × seed grid -> one tidy ``layers`` table.

Each grid cell is the net a user gets from ``initialize(MLP(depth, width), init, seed)``: per-layer
random streams make layer l of every depth the same draw, so the cells of one (init, width, seed)
are computed together by :func:`propagate.exact.propagate_stack` — one forward pass through the
deepest net, every depth's backward stacked — and the inits of one seed share the base draws of
their family (``torch.nn.init`` draws ``std * N(0, 1)`` too, so this is what separate runs with the
same seed would give).  The engine's results equal a naive per-depth loop; tests check it.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from propagate import inits as I
from propagate.exact import HOMOGENEOUS, propagate_stack
from propagate.nets import ACTIVATIONS

INPUTS = ("mnist", "gaussian")
DEFAULT_INITS = ("xavier", "he", "normal")


class SweepError(ValueError):
    """A bad sweep configuration; one line naming the option and the fix."""


@dataclass
class SweepConfig:
    depths: list[int]
    inits: list[str] = field(default_factory=lambda: list(DEFAULT_INITS))
    widths: list[int] = field(default_factory=lambda: [512])
    seeds: int = 5
    batch: int = 512
    input: str = "mnist"
    bias: str | float = "zero"
    activation: str = "relu"
    dtype: str = "float32"
    device: str = "cpu"
    in_features: int = 784
    out_features: int = 10
    memory_budget_gb: float | None = None  # None: calls of ~3 GiB; refuse nets over 80% of available memory
    wgrad_precision: str = "float32"  # weight-gradient norms: float32 (exact) | bfloat16 | auto (opt-in speed)
    weight_grads: str = "summary"  # ||dL/dW|| for: summary = layer 1 of every depth + every layer of the deepest net; all
    data_dir: str | None = None

    def validate(self) -> "SweepConfig":
        if not self.depths:
            raise SweepError("--depths: no depth given; pass e.g. --depths 1-50")
        if min(self.depths) < 1:
            raise SweepError(f"--depths: depth {min(self.depths)} < 1; depths start at 1")
        if min(self.widths) < 1:
            raise SweepError(f"--widths: width {min(self.widths)} < 1; widths must be >= 1")
        if self.seeds < 1:
            raise SweepError(f"--seeds: {self.seeds} < 1; need at least one seed")
        if self.batch < 2:
            raise SweepError(f"--batch: {self.batch} < 2; variances need a batch of at least 2")
        if self.input not in INPUTS:
            raise SweepError(f"--input: {self.input!r} is not one of {', '.join(INPUTS)}")
        if self.input == "mnist" and self.batch > 10000:
            raise SweepError(f"--batch: {self.batch} > 10000 MNIST test images; lower --batch or use --input gaussian")
        if self.activation not in ACTIVATIONS:
            raise SweepError(f"--activation: {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.weight_grads not in ("summary", "all"):
            raise SweepError(f"--weight-grads: {self.weight_grads!r}; use summary or all")
        if self.wgrad_precision not in ("auto", "float32", "bfloat16"):
            raise SweepError(f"--wgrad-precision: {self.wgrad_precision!r}; use auto, float32 or bfloat16")
        if self.dtype not in ("float32", "float64"):
            raise SweepError(f"--dtype: {self.dtype!r}; use float32 or float64")
        if not self.inits:
            raise SweepError("--inits: empty list; give names such as xavier,he,normal (see `propagate inits`)")
        try:
            self.inits = [I.get(n).name for n in expand_inits(self.inits)]
            self.bias = I.parse_bias(self.bias) if self.bias is not None else None
        except I.InitError as err:
            raise SweepError(f"--inits: {err}" if "bias" not in str(err) else f"--bias: {err}") from None
        self.inits = list(dict.fromkeys(self.inits))
        self.depths = sorted(set(int(d) for d in self.depths))
        self.widths = sorted(set(int(w) for w in self.widths))
        return self


def expand_inits(names) -> list[str]:
    """``all`` = every registered initializer; otherwise the names as given."""
    out = []
    for n in names:
        out.extend([i.name for i in I.all_inits()] if str(n).strip().lower() == "all" else [n])
    return out


def bias_for(init: I.Initializer, bias) -> str | float:
    """An explicit ``gaussian:SW2:SB2`` bias wins; otherwise the sweep's ``--bias`` (zero by default)."""
    if init.name.startswith("gaussian:") and init.default_bias not in (0, 0.0, "zero"):
        return I.parse_bias(init.default_bias)
    return I.resolve_bias(init, bias if bias is not None else "zero")


# ------------------------------------------------------------------------------------------
# Inputs
def sweep_inputs(config: SweepConfig) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The input batch shared by every net: MNIST test images (normalised) or N(0, 1) with random labels."""
    gen = torch.Generator().manual_seed(12345)
    if config.input == "gaussian":
        x = torch.randn(config.batch, config.in_features, generator=gen)
        y = torch.randint(0, config.out_features, (config.batch,), generator=gen)
        return x, y, "gaussian N(0, 1), random labels"
    from propagate.data import load_mnist, to_tensors

    data = load_mnist(config.data_dir)
    idx = torch.randperm(len(data.test_labels), generator=gen)[: config.batch].numpy()
    x, y = to_tensors(data.test_images[idx], data.test_labels[idx])
    return x, y, f"MNIST test images ({data.source})"


# ------------------------------------------------------------------------------------------
# Weights
def stacked_weights(members: list[tuple[I.Initializer, int]], sizes: list[int], out_features: int, bias_of,
                    device, dtype) -> tuple[list, torch.Tensor, list | None, torch.Tensor | None]:
    """Hidden weights (M, n_l, n_{l-1}) per layer, readout, and biases of M nets (init, seed), stacked.

    Each net equals ``initialize(MLP(...), init, seed, bias)``.  Drawn one layer at a time, so only
    one layer's float64 draws exist at once; the inits of one family and seed share one base draw.
    """
    def layer(role, index, fo, fi):
        base: dict = {}
        mats = []
        for init, seed in members:
            key = (init.family, seed)
            if key not in base:
                base[key] = I.FAMILIES[init.family]((fo, fi), I.layer_generator(seed, role, index))
            var = init.weight_var(fi, fo)
            mats.append(base[key] if math.isnan(var) else base[key] * math.sqrt(var))
        return torch.stack(mats).to(device, dtype)

    def biases(index, fi, fo):
        return torch.stack([I.sample_bias(bias_of(init), fi, fo, I.layer_generator(seed, I.BIAS, index))
                            for init, seed in members]).to(device, dtype)

    W = [layer(I.HIDDEN, l, fo, fi) for l, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:]), start=1)]
    R = layer(I.READOUT, 0, out_features, sizes[-1])
    if all(bias_of(init) == "zero" for init, _ in members):
        return W, R, None, None
    B = [biases(l, fi, fo) for l, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:]), start=1)]
    return W, R, B, biases(0, sizes[-1], out_features)


def estimate_bytes(depth: int, n_depths: int, members: int, batch: int, width: int, in_features: int,
                   itemsize: int = 4) -> int:
    """Peak memory of one engine call: stored pre-activations, the stacked gradients, weights, one wgrad chunk."""
    acts = depth * members * batch * width * itemsize
    grads = 3 * n_depths * members * batch * width * itemsize
    weights = members * (depth * width * width + width * in_features) * itemsize
    return int(acts + grads + weights + (1 << 26))


def available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info["MemTotal"])
    except (OSError, KeyError, ValueError):
        return 8 << 30


def plan_chunks(config: SweepConfig, width: int, n_members: int) -> int:
    """How many members go into one engine call.

    Calls are sized to ~3 GiB (or ``memory_budget_gb``) so peak memory stays modest; a single net
    that would not fit in 80% of the machine's available memory is refused with a clear message.
    """
    itemsize = 4 if config.dtype == "float32" else 8
    one = estimate_bytes(max(config.depths), len(config.depths), 1, config.batch, width, config.in_features, itemsize)
    avail = available_bytes()
    limit = config.memory_budget_gb * 2**30 if config.memory_budget_gb else 0.8 * avail
    if one > limit:
        raise SweepError(f"one net of depth {max(config.depths)}, width {width}, batch {config.batch} needs "
                         f"~{one / 2**30:.1f} GiB but {limit / 2**30:.1f} GiB is available; "
                         "lower --max-depth/--depths, --widths or --batch")
    target = min(limit, 3 * 2**30)
    if one >= 2**30:  # deep nets: memory is what limits, return big blocks when freed (see memory.py)
        from propagate.memory import return_freed_memory

        return_freed_memory()
    return max(1, min(n_members, int(target // one)))


# ------------------------------------------------------------------------------------------
def run_sweep(config: SweepConfig, progress: Callable[[int, int, str], None] | None = None,
              inputs: tuple | None = None, checkpoint_dir: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Run the grid; returns (layers table, info with timings, GFLOP and the input's description).

    ``progress(done, total, label)`` is called after each engine call.  With ``checkpoint_dir``,
    each finished call's rows are saved there (exact floats) and calls already saved are skipped,
    which is how ``--resume`` continues an interrupted sweep to the same result.
    """
    config.validate()
    device = torch.device(config.device)
    dtype = getattr(torch, config.dtype)
    t0 = time.perf_counter()
    x, y, source = inputs if inputs is not None else sweep_inputs(config)
    x, y = x.to(device, dtype), y.to(device)
    t_data = time.perf_counter() - t0

    inits = [I.get(n) for n in config.inits]
    # Calls: one per (width, group of inits that can share a stack, seed chunk).
    jobs = []
    for width in config.widths:
        groups: dict[tuple, list[I.Initializer]] = {}
        for init in inits:
            bias = bias_for(init, config.bias)
            exact = config.activation in HOMOGENEOUS and bias == "zero"
            groups.setdefault((init.data_dependent, exact, str(bias)), []).append(init)
        for (lsuv, exact, _), members in groups.items():
            # One seed per call: a progress step each, bounded memory; the batched matmuls are
            # already large, so bigger calls would not run faster on a CPU.
            if plan_chunks(config, width, len(members)) < len(members):
                calls = [[init] for init in members]  # even one seed's inits do not fit together
            else:
                calls = [members]
            for group in calls:
                for s in range(config.seeds):
                    jobs.append((width, group, [s], lsuv))

    frames, flops, t_engine = [], 0.0, 0.0
    D, depths = max(config.depths), config.depths
    for done, (width, members, seeds, lsuv) in enumerate(jobs, start=1):
        label = f"width {width}, {', '.join(i.name for i in members)}, seeds {seeds[0]}–{seeds[-1]}"
        ckpt = None
        if checkpoint_dir is not None:
            ckpt = Path(checkpoint_dir) / (f"w{width}-s{seeds[0]}-{seeds[-1]}-" + "+".join(
                i.name.replace(":", "_") for i in members) + ".csv")
            if ckpt.is_file():
                frames.append(pd.read_csv(ckpt, keep_default_na=True))
                if progress:
                    progress(done, len(jobs), label + " (resumed)")
                continue
        sizes = [config.in_features] + [width] * D
        keys = [(init, seed) for seed in seeds for init in members]
        W, R, B, RB = stacked_weights(keys, sizes, config.out_features, lambda i: bias_for(i, config.bias), device, dtype)
        keys = [(init.name, seed) for init, seed in keys]
        t1 = time.perf_counter()
        res = propagate_stack(x, y, W, R, depths, biases=B, readout_bias=RB, activation=config.activation,
                              lsuv=lsuv, wgrad_precision=config.wgrad_precision, weight_grads=config.weight_grads)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_engine += time.perf_counter() - t1
        flops += sweep_flops(len(keys), depths, config.batch, width, config.in_features, config.out_features,
                             config.weight_grads)
        df = res.table()
        df.insert(0, "init", [keys[m][0] for m in df["member"]])
        df.insert(1, "width", width)
        df.insert(3, "seed", [keys[m][1] for m in df["member"]])
        df = df.drop(columns="member")
        if ckpt is not None:
            # %.17g round-trips float64 exactly, so a resumed sweep writes the same CSVs.
            tmp = ckpt.with_suffix(".tmp")
            df.to_csv(tmp, index=False, float_format="%.17g")
            os.replace(tmp, ckpt)
            df = pd.read_csv(ckpt)
        frames.append(df)
        del W, R, B, RB, res  # before the next call allocates its own
        if progress:
            progress(done, len(jobs), label)
    layers = pd.concat(frames, ignore_index=True)
    order = {n: k for k, n in enumerate(config.inits)}
    layers = layers.sort_values(["init", "width", "depth", "seed", "layer"], key=lambda s: s.map(order) if s.name == "init" else s,
                                kind="stable").reset_index(drop=True)
    layers = layers[["init", "width", "depth", "seed", "layer", "name", "fan_in", "fan_out", *LAYER_STATS]]
    info = {"input": source, "seconds_data": t_data, "seconds_engine": t_engine, "gflop": flops / 1e9,
            "gflops_per_s": flops / 1e9 / t_engine if t_engine else float("nan"), "engine_calls": len(jobs)}
    return layers, info


LAYER_STATS = ("preact_mean", "preact_var", "log10_preact_var", "act_mean", "act_var", "log10_act_var", "act_sq",
               "zero_frac", "dead_frac", "preact_corr", "preact_grad_var", "log10_preact_grad_var",
               "weight_grad_norm", "log10_weight_grad_norm", "weight_norm")


def sweep_flops(members: int, depths: list[int], batch: int, width: int, in_features: int, out_features: int,
                weight_grads: str = "all") -> float:
    """Matmul FLOPs of one engine call: the deepest forward, every depth's backward and weight gradients."""
    D = max(depths)
    layer = 2.0 * batch * width * width
    first = 2.0 * batch * width * in_features
    fwd = first + (D - 1) * layer
    back = sum((d - 1) * layer for d in depths)                     # dL/dh below each layer but the first
    if weight_grads == "all":
        wgrad = sum(first + (d - 1) * layer for d in depths)       # dL/dW of every hidden layer
    else:
        wgrad = len(depths) * first + (D - 1) * layer              # layer 1 everywhere, all of the deepest
    readout = sum(3 * 2.0 * batch * width * out_features for _ in depths)
    return members * (fwd + back + wgrad + readout)


def input_pair_correlations(x: torch.Tensor) -> np.ndarray:
    """Cosine similarity of the input pairs (0,1), (2,3), …: the c map's starting point at layer 1."""
    m = x.shape[0] // 2
    a, b = x[0:2 * m:2].double(), x[1:2 * m:2].double()
    return torch.nn.functional.cosine_similarity(a, b, dim=1).cpu().numpy()


def config_from_manifest(manifest: dict) -> SweepConfig:
    """The SweepConfig a run folder's manifest records (for --resume)."""
    fields = SweepConfig.__dataclass_fields__
    return SweepConfig(**{k: v for k, v in manifest.get("config", {}).items() if k in fields}).validate()


def depth_sweep(config: SweepConfig | None, out, overwrite: bool = False, report: bool = True,
                progress: Callable[[int, int, str], None] | None = None, resume: bool = False) -> dict:
    """Run the sweep and write its run folder (layers, summary, rates, theory CSVs, figures, report, manifest).

    The folder appears at ``out`` only when complete (see :class:`propagate.runfolder.RunFolder`);
    an interrupted run leaves it marked incomplete with its finished cells, and
    ``resume=True`` (config None: the folder's own) continues it.  Returns the manifest.
    """
    from propagate.runfolder import RunFolder
    from propagate.sweep_report import write_outputs

    # Everything that can fail on bad input happens before the folder exists.
    folder = RunFolder(out, "depth-sweep", asdict(config.validate()) if config else {}, overwrite=overwrite,
                       resume=resume)
    if resume:
        config = config_from_manifest(folder.manifest)
    inputs = sweep_inputs(config)
    with folder as run:
        t0 = time.perf_counter()
        layers, info = run_sweep(config, progress=progress, inputs=inputs, checkpoint_dir=run.checkpoints)
        run.time("sweep", time.perf_counter() - t0)
        run.manifest.update(input=info["input"], engine={k: v for k, v in info.items() if k != "input"})
        x = inputs[0]
        t1 = time.perf_counter()
        bias = {i: str(bias_for(I.get(i), config.bias)) for i in config.inits}
        written = write_outputs(run.path, layers, float((x.double() ** 2).mean()), input_pair_correlations(x),
                                config.activation, bias=bias)
        run.time("tables_and_figures", time.perf_counter() - t1)
        if report:
            from propagate.sweep_report import build_report

            t2 = time.perf_counter()
            build_report(run.path, run.path / "report.pdf", manifest=run.manifest)
            run.time("report", time.perf_counter() - t2)
        run.manifest["verdicts"] = written["verdicts"]
    return dict(run.manifest, out=str(folder.out))
