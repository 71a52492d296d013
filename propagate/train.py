"""MNIST training with signal statistics recorded while the nets learn.

Several runs — every (initializer, seed) pair — train *together* as one batched model: the
parameters of all ``R`` runs are stacked (weights ``(R, out, in)``, biases ``(R, out)``) and each
layer is one ``torch.baddbmm``.  The loss is the sum over runs of each run's own mean
cross-entropy, so the gradient of a run's slice is exactly that run's gradient; Adam and SGD act
elementwise, so one optimizer over the stacked tensors is ``R`` independent optimizers.  A run
trained together with others therefore equals the same run trained alone (up to float rounding;
``tests/test_train.py`` checks it).

Data order: each run shuffles the training set afresh every epoch with a ``torch.Generator``
seeded from its *seed* (:func:`shuffle_generator`), so runs of one seed under different
initializers see the same batches, and different seeds see different orders.  Batches are index
slices of that permutation over tensors that stay on the device: no Dataset, no DataLoader, no
per-sample Python.  The last batch of an epoch may be smaller (``drop_last=False``).

Initial weights are exactly what the public API gives: ``initialize(MLP(...), init, seed, bias)``
for each run, then stacked.

Signals: at step 0, every ``record_every`` optimizer steps and at the last step, each run's
current weights are loaded into a scratch :class:`~propagate.nets.MLP` and the
:class:`~propagate.recorder.Recorder` watches one forward + backward pass of the cross-entropy on
a fixed batch of training images (the same images for every run and step).

Checkpoints (``train(..., checkpoint_dir=DIR)``): at the end of every epoch the stacked model,
the optimizer state, the shuffle generators' states and the metrics/signals rows so far are saved
to ``DIR/epoch-NNNN.pt`` (tensors and plain Python values only, read back with
``torch.load(weights_only=True)``); a later call with the same configuration and ``DIR``
continues after the last saved epoch and ends with the same tables, bit for bit (timing columns
aside), as a run that was never interrupted.

Memory: :func:`estimate_bytes` predicts a run's peak memory and :func:`check_memory` refuses a
configuration that cannot fit before anything is allocated.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from propagate import inits as _inits
from propagate.nets import MLP, hidden_widths, make_activation
from propagate.recorder import Recorder

__all__ = ["TrainError", "TrainResult", "StackedMLP", "train", "shuffle_generator", "prepare_data",
           "make_optimizer", "estimate_bytes", "check_memory", "latest_checkpoint", "MNIST_DEFAULT_BIAS",
           "COMPARE_INITS", "METRIC_COLUMNS", "SIGNAL_EXTRA", "TIMING_COLUMNS"]

MNIST_DEFAULT_BIAS = "torch_default"      # biases as nn.Linear leaves them: U(±1/√fan_in)
COMPARE_INITS = ("xavier", "he", "normal")  # what ``--init all`` compares
METRIC_COLUMNS = ("init", "seed", "epoch", "step", "train_loss", "test_loss", "test_acc", "seconds")
SIGNAL_EXTRA = ("init", "seed", "step", "epoch", "batch_loss", "batch_acc")
TIMING_COLUMNS = ("seconds",)  # the only columns that differ between identical runs
RECORD_BATCH = 512          # training images the Recorder watches
INIT_LOSS_SAMPLES = 10_000  # training images the epoch-0 training loss is measured on
EVAL_CHUNK = 2_000


class TrainError(ValueError):
    """A bad training argument; the message is one line."""


# --------------------------------------------------------------------------------------------
# The batched model
class StackedMLP(nn.Module):
    """``R`` MLPs of one architecture as stacked tensors; ``forward`` maps (R, B, in) -> (R, B, out).

    ``weights[k]`` has shape ``(R, fan_in, fan_out)``: the *transpose* of ``nn.Linear.weight``,
    so a layer is ``baddbmm(b, h, W)`` with no transposed operand (that is twice as fast as the
    transposed layout on CPU at batch 64).  ``biases[k]`` has shape ``(R, 1, fan_out)``;
    ``names[k]`` is the MLP child it stands for (``linear1`` … ``readout``).  Slice ``r`` is run
    ``r``'s MLP: :meth:`state_dict_of` gives its state dict.
    """

    def __init__(self, mlps: Sequence[MLP]):
        super().__init__()
        if not mlps:
            raise TrainError("StackedMLP needs at least one MLP")
        first = mlps[0]
        self.names = [name for name, m in first.named_children() if isinstance(m, nn.Linear)]
        self.activation = make_activation(first.activation, first.negative_slope)
        self.widths = list(first.widths)
        self.act_name, self.negative_slope = first.activation, first.negative_slope
        with torch.no_grad():
            self.weights = nn.ParameterList(
                [nn.Parameter(torch.stack([getattr(m, n).weight.detach().T for m in mlps]).contiguous())
                 for n in self.names])
            has_bias = getattr(first, self.names[0]).bias is not None
            self.biases = nn.ParameterList(
                [nn.Parameter(torch.stack([getattr(m, n).bias.detach() for m in mlps]).unsqueeze(1).contiguous())
                 for n in self.names]) if has_bias else None

    @property
    def runs(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.weights) - 1
        for k, w in enumerate(self.weights):
            h = torch.baddbmm(self.biases[k], h, w) if self.biases is not None else torch.bmm(h, w)
            if k < last:
                h = self.activation(h)
        return h

    def state_dict_of(self, r: int) -> dict[str, torch.Tensor]:
        """Run ``r``'s parameters keyed like an :class:`MLP`'s state dict (detached copies)."""
        out = {}
        for k, name in enumerate(self.names):
            out[f"{name}.weight"] = self.weights[k][r].detach().T.clone()
            if self.biases is not None:
                out[f"{name}.bias"] = self.biases[k][r, 0].detach().clone()
        return out

    @torch.no_grad()
    def load_into(self, mlp: MLP, r: int) -> MLP:
        """Copy run ``r``'s parameters into ``mlp`` (same architecture) in place."""
        for k, name in enumerate(self.names):
            lin = getattr(mlp, name)
            lin.weight.copy_(self.weights[k][r].T)
            if self.biases is not None:
                lin.bias.copy_(self.biases[k][r, 0])
        return mlp


# --------------------------------------------------------------------------------------------
# Pieces that tests and benchmarks reuse
def shuffle_generator(seed: int) -> torch.Generator:
    """The CPU generator whose successive ``randperm(n)`` calls give run ``seed``'s epoch orders.

    Seeded from ``(seed, "shuffle")`` so it is independent of the weight streams of
    :func:`propagate.inits.layer_generator`.
    """
    state = np.random.SeedSequence([int(seed), 0x5EED]).generate_state(2, np.uint64)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(state[0] >> np.uint64(1)))
    return gen


def make_optimizer(params, optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.0) -> torch.optim.Optimizer:
    """Adam (betas 0.9, 0.999, eps 1e-8) or SGD (with ``momentum``); fused kernels where torch has them.

    Both are elementwise, so one optimizer over stacked runs equals one optimizer per run.
    """
    params = list(params)
    if optimizer == "adam":
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=lr)
    if optimizer == "sgd":
        try:
            return torch.optim.SGD(params, lr=lr, momentum=momentum, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise TrainError(f"unknown optimizer {optimizer!r}; valid: adam, sgd")


@dataclass
class Tensors:
    """Training and test tensors on the device (x normalised (N, 784) float32, y int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = "tensors"


def prepare_data(data=None, train_limit: int | None = None, device="cpu") -> Tensors:
    """``data``: an :class:`~propagate.data.Mnist`, a :class:`Tensors`, a 4-tuple of tensors
    ``(x_train, y_train, x_test, y_test)``, or None (``load_mnist()``).  ``train_limit`` keeps
    the first N training images."""
    from propagate import data as _data

    if data is None:
        data = _data.load_mnist()
    if isinstance(data, _data.Mnist):
        n = len(data.train_labels) if train_limit is None else int(train_limit)
        x_tr, y_tr = _data.to_tensors(data.train_images[:n], data.train_labels[:n], device=device)
        x_te, y_te = _data.to_tensors(data.test_images, data.test_labels, device=device)
        source = data.source
    else:
        if isinstance(data, Tensors):
            x_tr, y_tr, x_te, y_te, source = data.x_train, data.y_train, data.x_test, data.y_test, data.source
        else:
            x_tr, y_tr, x_te, y_te = data
            source = "tensors"
        if train_limit is not None:
            x_tr, y_tr = x_tr[:int(train_limit)], y_tr[:int(train_limit)]
        x_tr, x_te = (t.reshape(t.shape[0], -1).to(device=device, dtype=torch.float32) for t in (x_tr, x_te))
        y_tr, y_te = (t.to(device=device, dtype=torch.int64) for t in (y_tr, y_te))
    return Tensors(x_tr, y_tr, x_te, y_te, source)


# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` returns: tidy tables, the final stacked model and how long it took."""

    metrics: pd.DataFrame
    signals: pd.DataFrame
    config: dict
    timings: dict
    source: str
    runs: list[tuple[str, int]]
    model: StackedMLP = field(repr=False)

    def index(self, init: str, seed: int) -> int:
        return self.runs.index((init, int(seed)))

    def state_dict(self, init: str, seed: int) -> dict[str, torch.Tensor]:
        """The final parameters of run (init, seed), keyed like an MLP's state dict."""
        return self.model.state_dict_of(self.index(init, seed))

    def mlp(self, init: str, seed: int) -> MLP:
        """A plain :class:`MLP` holding run (init, seed)'s final weights."""
        cfg = self.config
        net = MLP(widths=cfg["hidden"], activation=cfg["activation"], in_features=cfg["in_features"],
                  out_features=cfg["out_features"], device=self.model.weights[0].device)
        return self.model.load_into(net, self.index(init, seed))


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise TrainError(message)


def _normalise_inits(inits) -> tuple[list[str], dict[str, str]]:
    if isinstance(inits, str):
        inits = [inits]
    labels, canon = [], {}
    for name in inits:
        label = str(name).strip().lower()
        if label == "all":
            for extra in COMPARE_INITS:
                if extra not in labels:
                    labels.append(extra)
            continue
        init = _inits.get(label)  # InitError lists the valid names
        if init.name in canon.values():
            raise TrainError(f"initializer {name!r} is given twice (as {init.name}); list each once")
        labels.append(label)
        canon[label] = init.name
    for label in labels:
        canon.setdefault(label, _inits.get(label).name)
    _check(bool(labels), "no initializer given")
    return labels, canon


def _normalise_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        _check(int(seeds) >= 1, f"seeds must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    _check(bool(out), "no seed given")
    _check(len(set(out)) == len(out), "seeds must be distinct")
    return out


def _finite_positive(x, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TrainError(f"{what} must be a number, got {x!r}") from None
    _check(math.isfinite(v) and v > 0, f"{what} must be a finite number > 0, got {x!r}")
    return v


def validate(*, inits=("he",), seeds=1, epochs=10, batch_size=64, lr=1e-3, optimizer="adam", momentum=0.0,
             hidden=(512, 256), depth=None, width=None, activation="relu", bias=MNIST_DEFAULT_BIAS,
             record_every=200, train_limit=None, n_train: int | None = None) -> dict:
    """Check every argument and return the normalised configuration (raises TrainError/InitError/NetError)."""
    labels, canon = _normalise_inits(inits)
    seed_list = _normalise_seeds(seeds)
    _check(isinstance(epochs, (int, np.integer)) and epochs >= 1, f"epochs must be an integer >= 1, got {epochs}")
    _check(isinstance(batch_size, (int, np.integer)) and batch_size >= 1, f"batch size must be an integer >= 1, got {batch_size}")
    lr = _finite_positive(lr, "learning rate")
    optimizer = str(optimizer).strip().lower()
    _check(optimizer in ("adam", "sgd"), f"unknown optimizer {optimizer!r}; valid: adam, sgd")
    try:
        momentum = float(momentum)
    except (TypeError, ValueError):
        raise TrainError(f"momentum must be a number in [0, 1), got {momentum!r}") from None
    _check(math.isfinite(momentum) and 0.0 <= momentum < 1.0, f"momentum must be in [0, 1), got {momentum:g}")
    _check(isinstance(record_every, (int, np.integer)) and record_every >= 1, f"record_every must be an integer >= 1, got {record_every}")
    if depth is not None or width is not None:
        widths = hidden_widths(depth, 512 if width is None else width)
    else:
        widths = hidden_widths(widths=list(hidden))
    make_activation(activation)
    bias_spec = _inits.parse_bias(bias) if bias is not None else None
    if train_limit is not None:
        _check(isinstance(train_limit, (int, np.integer)) and train_limit >= 1, f"train limit must be an integer >= 1, got {train_limit}")
    if n_train is not None:
        if train_limit is not None:
            _check(train_limit <= n_train, f"train limit {train_limit} exceeds the {n_train} training images")
            n_train = int(train_limit)
        _check(batch_size <= n_train, f"batch size {batch_size} is larger than the training set ({n_train} images)")
    return dict(inits=labels, init_names=canon, seeds=seed_list, epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                optimizer=optimizer, momentum=momentum, hidden=widths, activation=activation,
                bias=bias_spec if bias_spec is not None else "init default", record_every=int(record_every),
                train_limit=None if train_limit is None else int(train_limit))


# --------------------------------------------------------------------------------------------
# Memory
MNIST_TRAIN, MNIST_TEST, PIXELS = 60_000, 10_000, 784


def _arch_counts(hidden=None, depth=None, width=None, in_features=PIXELS, out_features=10) -> tuple[int, int]:
    """(parameters, units summed over the layers) of one MLP, without building its widths list."""
    if depth is not None:
        d, w = int(depth), int(512 if width is None else width)
        if d == 0:
            return in_features * out_features + out_features, out_features
        params = in_features * w + (d - 1) * w * w + w * out_features + d * w + out_features
        return params, d * w + out_features
    sizes = [in_features, *[int(h) for h in hidden], out_features]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return params, sum(sizes[1:])


def estimate_bytes(runs: int, hidden=(512, 256), depth=None, width=None, batch_size: int = 64,
                   optimizer: str = "adam", momentum: float = 0.0, n_train: int = MNIST_TRAIN,
                   n_test: int = MNIST_TEST, record_batch: int = RECORD_BATCH, in_features: int = PIXELS,
                   out_features: int = 10, data: bool = True) -> dict[str, int]:
    """Peak memory of training ``runs`` stacked MLPs, by part (bytes, float32), and the ``total``.

    * ``parameters``: weights, gradients and optimizer state of every run (Adam keeps two
      moments, SGD with momentum one, plain SGD none), plus the scratch MLP the Recorder uses;
    * ``activations``: the larger of one training step (the gathered batch, and per layer the
      pre-activation, activation and their gradients of every run), one evaluation chunk, and
      the recorder's batch, plus the epoch's shuffle permutations (int64, per run);
    * ``data`` (with ``data=True``): MNIST as uint8 arrays and as float32 tensors.
    """
    R = int(runs)
    params, units = _arch_counts(hidden, depth, width, in_features, out_features)
    states = 2 if optimizer == "adam" else (1 if momentum else 0)
    parts = {"parameters": 4 * ((2 + states) * R * params + 2 * params)}
    B = int(batch_size)
    step = 4 * R * B * (in_features + 4 * units) + 8 * 3 * R * B
    evaluate = 4 * R * min(EVAL_CHUNK, n_test) * (in_features + 2 * units)
    record = 4 * record_batch * (in_features + 4 * units)
    perms = 8 * 2 * R * n_train
    parts["activations"] = max(step, evaluate, record) + perms
    images = (n_train + n_test) * in_features
    parts["data"] = (images * (1 + 4) + 9 * (n_train + n_test)) if data else 0
    parts["total"] = sum(parts.values())
    return parts


def _gib(n: float) -> str:
    return f"{n / 2**40:.1f} TiB" if n >= 2**40 else f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_memory(runs: int, available: int | None = None, **arch) -> dict[str, int]:
    """Refuse (TrainError, one line) a training run whose :func:`estimate_bytes` exceeds ``available``
    (default: the machine's available memory); returns the estimate otherwise."""
    if available is None:
        from propagate.sweep import available_bytes

        available = available_bytes()
    est = estimate_bytes(runs, **arch)
    if est["total"] <= available:
        return est
    fixes = {"parameters": "--seeds or --inits (fewer runs) or --hidden/--width/--depth (smaller nets)",
             "activations": "--batch-size, --seeds or --inits",
             "data": "nothing else: the data alone does not fit; use a machine with more memory"}
    worst = max(("parameters", "activations", "data"), key=lambda k: est[k])
    raise TrainError(f"training {runs} run(s) needs ~{_gib(est['total'])} (parameters and optimizer state "
                     f"{_gib(est['parameters'])}, activations {_gib(est['activations'])}, data {_gib(est['data'])}) "
                     f"but {_gib(available)} is available; lower {fixes[worst]}")


# --------------------------------------------------------------------------------------------
# Checkpoints
CHECKPOINT_FORMAT = 1
CHECKPOINT_PATTERN = "epoch-*.pt"


def _checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"epoch-{epoch:04d}.pt"


def latest_checkpoint(directory) -> Path | None:
    """The newest complete epoch checkpoint in ``directory`` (None when there is none)."""
    if directory is None or not Path(directory).is_dir():
        return None
    found = []
    for p in Path(directory).glob(CHECKPOINT_PATTERN):
        try:
            found.append((int(p.stem.split("-", 1)[1]), p))
        except ValueError:
            continue
    return max(found)[1] if found else None


def _fingerprint(cfg: dict) -> str:
    """What must match for a checkpoint to be continued (the configuration, as JSON)."""
    return json.dumps({k: cfg[k] for k in sorted(cfg)}, sort_keys=True, default=str)


def _frame_to_plain(df: pd.DataFrame) -> dict:
    """A DataFrame as plain Python lists (exact floats), loadable with ``weights_only=True``."""
    return {"columns": [str(c) for c in df.columns], "data": [df[c].tolist() for c in df.columns]}


def _frame_from_plain(obj: dict) -> pd.DataFrame:
    return pd.DataFrame(dict(zip(obj["columns"], obj["data"])), columns=obj["columns"])


def _save_checkpoint(directory: Path, epoch: int, state: dict) -> Path:
    """Write ``epoch-NNNN.pt`` atomically (temp file + rename), then drop older epochs."""
    path = _checkpoint_path(directory, epoch)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in Path(directory).glob(CHECKPOINT_PATTERN):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def _load_checkpoint(path: Path, fingerprint: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise TrainError(f"checkpoint {path} is unreadable ({err.__class__.__name__}); delete it to restart from "
                         "the previous one, or start a new run with --out") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"checkpoint {path} is not a propagate training checkpoint; start a new run with --out")
    if state.get("fingerprint") != fingerprint:
        raise TrainError(f"checkpoint {path} was written by a run with another configuration; resume with the "
                         "run's own configuration or start a new run with --out")
    return state


# --------------------------------------------------------------------------------------------
@torch.no_grad()
def _evaluate(model: StackedMLP, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_CHUNK):
    """Mean cross-entropy and accuracy of every run on (x, y): two float64 tensors of shape (R,)."""
    R = model.runs
    loss = torch.zeros(R, dtype=torch.float64, device=x.device)
    correct = torch.zeros(R, dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        xb, yb = x[s:s + chunk], y[s:s + chunk]
        logits = model(xb.unsqueeze(0).expand(R, -1, -1))
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.repeat(R), reduction="none").view(R, -1)
        loss += ce.sum(1, dtype=torch.float64)
        correct += (logits.argmax(-1) == yb.unsqueeze(0)).sum(1).double()
    n = x.shape[0]
    return loss / n, correct / n


def train(inits=("he",), seeds=1, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, optimizer: str = "adam",
          momentum: float = 0.0, hidden: Sequence[int] = (512, 256), depth: int | None = None, width: int | None = None,
          activation: str = "relu", bias=MNIST_DEFAULT_BIAS, record_every: int = 200, train_limit: int | None = None,
          device="cpu", data=None, progress: Callable[[str, dict], None] | None = None, progress_every: int = 25,
          record_batch: int = RECORD_BATCH, checkpoint_dir=None, check_mem: bool = True) -> TrainResult:
    """Train every (init, seed) on MNIST together; return tidy ``metrics`` and ``signals`` tables.

    inits: names (any registered initializer or alias; ``"all"`` = xavier, he, normal).
    seeds: a count n (seeds 0 … n−1) or a list of seeds.
    hidden: hidden widths, or ``depth`` + ``width``.
    bias: ``torch_default`` (the MNIST default: biases as nn.Linear leaves them, U(±1/√fan_in)),
    ``zero``, a variance, or None (the initializer's own default).
    data: :class:`~propagate.data.Mnist`, :class:`Tensors`, a 4-tuple of tensors or None (load).
    progress: called as ``progress(event, info)`` with events ``"start"``, ``"epoch_start"``,
    ``"batch"`` (every ``progress_every`` steps and at an epoch's end; ``info["loss"]`` = running
    mean training loss over the epoch, averaged over runs, and ``info["done"]`` batches done),
    ``"epoch_end"`` (``info["metrics"]``: that epoch's metrics rows) and ``"end"``.

    ``metrics``: one row per (init, seed, epoch) for epoch 0 … epochs.  ``train_loss`` is the
    mean over the epoch's batches of the batch loss (epoch 0: the loss at initialisation on the
    first min(N, 10 000) training images); ``test_loss`` / ``test_acc`` on the 10 000 test
    images; ``step`` = optimizer steps so far; ``seconds`` = wall time since training began.
    ``signals``: the Recorder's columns plus init, seed, step, epoch (fractional: step / steps
    per epoch), and the loss and accuracy on the recorded batch.

    checkpoint_dir: save a checkpoint there at the end of every epoch, and continue from the
    newest one found there (same configuration required; see the module docstring).  The
    ``"start"`` event's ``info["resumed_epoch"]`` is the epoch continued after (0: a fresh start).
    check_mem: refuse (TrainError) a configuration whose :func:`estimate_bytes` exceeds the
    machine's available memory, before the models are built.
    """
    t_start = time.perf_counter()
    device = torch.device(device)
    tensors = prepare_data(data, train_limit=None, device=device) if not isinstance(data, Tensors) else data
    n_train_full = tensors.x_train.shape[0]
    cfg = validate(inits=inits, seeds=seeds, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                   momentum=momentum, hidden=hidden, depth=depth, width=width, activation=activation, bias=bias,
                   record_every=record_every, train_limit=train_limit, n_train=n_train_full)
    if cfg["train_limit"] is not None:
        tensors = Tensors(tensors.x_train[:cfg["train_limit"]], tensors.y_train[:cfg["train_limit"]],
                          tensors.x_test, tensors.y_test, tensors.source)
    x_tr, y_tr, x_te, y_te = tensors.x_train, tensors.y_train, tensors.x_test, tensors.y_test
    N, B = x_tr.shape[0], cfg["batch_size"]
    in_features, out_features = x_tr.shape[1], int(max(int(y_tr.max()), int(y_te.max())) + 1)
    out_features = max(out_features, 10)
    cfg.update(in_features=in_features, out_features=out_features, n_train=N, n_test=x_te.shape[0],
               device=str(device), record_batch=min(record_batch, N), data_order="per seed: randperm each epoch",
               bias_used=bias if bias is not None else "init default")
    labels, seed_list = cfg["inits"], cfg["seeds"]
    runs = [(lab, s) for lab in labels for s in seed_list]
    R = len(runs)
    timings: dict[str, float] = {}
    if check_mem:
        check_memory(R, hidden=cfg["hidden"], batch_size=B, optimizer=cfg["optimizer"], momentum=cfg["momentum"],
                     n_train=N, n_test=x_te.shape[0], record_batch=cfg["record_batch"], in_features=in_features,
                     out_features=out_features, data=False)  # the data is already in memory

    # Fixed record batch: the same training images for every run and step.
    rec_idx = torch.randperm(N, generator=torch.Generator().manual_seed(20150206))[:cfg["record_batch"]].to(device)
    x_rec, y_rec = x_tr[rec_idx], y_tr[rec_idx]

    # Initial weights through the public API, then stacked.
    t0 = time.perf_counter()
    mlps = []
    arch = dict(widths=cfg["hidden"], activation=activation, in_features=in_features, out_features=out_features)
    for lab, s in runs:
        net = MLP(**arch)
        _inits.initialize(net, cfg["init_names"][lab], seed=s, bias=bias, data=x_rec.cpu())
        mlps.append(net)
    model = StackedMLP(mlps).to(device)
    del mlps, net  # R copies of the parameters: free them before the optimizer allocates its state
    scratch = MLP(**arch, device=device)
    opt = make_optimizer(model.parameters(), cfg["optimizer"], cfg["lr"], cfg["momentum"])
    timings["init"] = time.perf_counter() - t0

    steps_per_epoch = math.ceil(N / B)
    total_steps = steps_per_epoch * cfg["epochs"]
    seed_pos = {s: i for i, s in enumerate(seed_list)}
    run_seed = torch.tensor([seed_pos[s] for _, s in runs], device=device)
    gens = [shuffle_generator(s) for s in seed_list]

    signal_frames: list[pd.DataFrame] = []
    t_record = 0.0
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = _fingerprint(cfg)

    def record(step: int) -> None:
        nonlocal t_record
        t = time.perf_counter()
        for r, (lab, s) in enumerate(runs):
            model.load_into(scratch, r)
            scratch.zero_grad(set_to_none=True)
            with Recorder(scratch) as rec:
                rec.step(step)
                logits = scratch(x_rec)
                loss = F.cross_entropy(logits, y_rec)
                loss.backward()
            df = rec.table()
            df.insert(0, "init", lab)
            df.insert(1, "seed", s)
            df["epoch"] = step / steps_per_epoch
            df["batch_loss"] = float(loss.detach())
            df["batch_acc"] = float((logits.argmax(-1) == y_rec).double().mean())
            signal_frames.append(df)
        t_record += time.perf_counter() - t

    metric_rows: list[dict] = []
    t_eval = 0.0
    t_loop = 0.0
    step, start_epoch, seconds_before = 0, 1, 0.0
    resume_from = latest_checkpoint(ckpt_dir)
    if resume_from is not None:
        state = _load_checkpoint(resume_from, fingerprint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for g, g_state in zip(gens, state["generators"], strict=True):
            g.set_state(g_state)
        metric_rows = list(state["metrics"])
        signal_frames = [_frame_from_plain(state["signals"])]
        step, start_epoch = int(state["step"]), int(state["epoch"]) + 1
        seconds_before = float(state["seconds"])
        t_loop, t_record, t_eval = (float(state["timings"][k]) for k in ("train_loop", "record", "evaluate"))
        del state

    def evaluate(epoch: int, step: int, train_loss: torch.Tensor, since: float) -> list[dict]:
        nonlocal t_eval
        t = time.perf_counter()
        test_loss, test_acc = _evaluate(model, x_te, y_te)
        t_eval += time.perf_counter() - t
        seconds = seconds_before + time.perf_counter() - since
        rows = [dict(init=lab, seed=s, epoch=epoch, step=step, train_loss=float(train_loss[r]),
                     test_loss=float(test_loss[r]), test_acc=float(test_acc[r]), seconds=seconds)
                for r, (lab, s) in enumerate(runs)]
        metric_rows.extend(rows)
        return rows

    emit = progress or (lambda event, info: None)
    emit("start", dict(runs=runs, epochs=cfg["epochs"], steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                       resumed_epoch=start_epoch - 1))

    def checkpoint(epoch: int) -> None:
        if ckpt_dir is None:
            return
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        signals_so_far = pd.concat(signal_frames, ignore_index=True)
        signal_frames[:] = [signals_so_far]  # concatenate once per epoch, not all again at every save
        _save_checkpoint(ckpt_dir, epoch, dict(
            format=CHECKPOINT_FORMAT, fingerprint=fingerprint, epoch=epoch, step=step,
            model=model.state_dict(), optimizer=opt.state_dict(), generators=[g.get_state() for g in gens],
            metrics=metric_rows, signals=_frame_to_plain(signals_so_far),
            seconds=seconds_before + time.perf_counter() - t_train0,
            timings=dict(train_loop=t_loop, record=t_record, evaluate=t_eval)))

    t_train0 = time.perf_counter()
    if start_epoch == 1:
        record(0)
        init_loss, _ = _evaluate(model, x_tr[:INIT_LOSS_SAMPLES], y_tr[:INIT_LOSS_SAMPLES])
        evaluate(0, 0, init_loss, t_train0)

    for epoch in range(start_epoch, cfg["epochs"] + 1):
        perms = torch.stack([torch.randperm(N, generator=g) for g in gens]).to(device)[run_seed]  # (R, N)
        loss_sum = torch.zeros(R, dtype=torch.float64, device=device)
        emit("epoch_start", dict(epoch=epoch, steps=steps_per_epoch))
        t = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = perms[:, b * B:(b + 1) * B]
            xb, yb = x_tr[idx], y_tr[idx]
            logits = model(xb)
            per_run = F.cross_entropy(logits.reshape(-1, out_features), yb.reshape(-1), reduction="none") \
                .view(R, -1).mean(1)
            opt.zero_grad(set_to_none=True)
            per_run.sum().backward()
            opt.step()
            loss_sum += per_run.detach().double() * idx.shape[1]
            step += 1
            if step % cfg["record_every"] == 0 or step == total_steps:
                t_loop += time.perf_counter() - t
                record(step)
                t = time.perf_counter()
            if progress is not None and ((b + 1) % progress_every == 0 or b + 1 == steps_per_epoch):
                done = min((b + 1) * B, N)
                emit("batch", dict(epoch=epoch, done=b + 1, steps=steps_per_epoch,
                                   loss=float(loss_sum.sum()) / (done * R)))
        t_loop += time.perf_counter() - t
        rows = evaluate(epoch, step, loss_sum / N, t_train0)
        checkpoint(epoch)
        emit("epoch_end", dict(epoch=epoch, metrics=pd.DataFrame(rows)))
    emit("end", {})

    timings.update(train_loop=t_loop, record=t_record, evaluate=t_eval, total=time.perf_counter() - t_start)
    timings["samples_per_s"] = R * N * cfg["epochs"] / t_loop if t_loop > 0 else float("nan")
    timings["samples_per_s_per_run"] = N * cfg["epochs"] / t_loop if t_loop > 0 else float("nan")
    metrics = pd.DataFrame(metric_rows, columns=list(METRIC_COLUMNS))
    signals = pd.concat(signal_frames, ignore_index=True)
    front = ["init", "seed", "step", "epoch"]
    signals = signals[front + [c for c in signals.columns if c not in front]]
    return TrainResult(metrics=metrics, signals=signals, config=cfg, timings=timings, source=tensors.source,
                       runs=runs, model=model)
