"""Hooks that record per-layer signal statistics of any ``nn.Module`` into a tidy DataFrame.

Usage::

    with Recorder(model) as rec:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    df = rec.table()          # one row per recorded layer (and per step)

Statistics are computed as float64 tensors inside the hooks and gathered to the host once, in
:meth:`Recorder.table`; nothing on the hot path calls ``.item()``.  The hooks only read: the
module's outputs and gradients are bit-identical with and without the recorder.

Pairing a layer with its activation: the recorded layer ``l`` is a Linear (by default) whose
output is the pre-activation ``z^l``.  Its activation ``h^l`` is the output of the first
activation module (ReLU, Tanh, …) called after it; in modules that apply the nonlinearity
functionally, it is the input of the next recorded layer.  A layer followed by neither (the
readout) has no nonlinearity: its activation is its pre-activation.

Statistics that overflow the module's dtype (N(0, 1) weights at width 512 overflow float32 near
layer 16) come out as inf with a warning; :func:`propagate.exact.exact_stats` computes the same
table exactly in log space at any depth.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.Sigmoid,
                    nn.Softplus, nn.Identity, nn.PReLU, nn.ReLU6, nn.Hardtanh, nn.Mish)

# What the hooks store per call: raw reductions only (one small tensor each); means, variances
# and fractions are computed once for all layers, vectorised, in Recorder.table().
RAW_FWD = ("z_sum", "z_norm", "preact_corr", "weight_norm")
RAW_ACT = ("h_sum", "h_norm", "h_nonzero", "h_dead")
RAW_GRAD = ("g_sum", "g_norm")

COLUMNS = ("step", "layer", "name", "fan_in", "fan_out",
           "preact_mean", "preact_var", "log10_preact_var",
           "act_mean", "act_var", "log10_act_var", "act_sq", "zero_frac", "dead_frac",
           "preact_corr", "preact_grad_var", "log10_preact_grad_var",
           "weight_grad_norm", "log10_weight_grad_norm", "weight_norm")
LOG10_OF = {"log10_preact_var": "preact_var", "log10_act_var": "act_var",
            "log10_preact_grad_var": "preact_grad_var", "log10_weight_grad_norm": "weight_grad_norm"}


# ------------------------------------------------------------------------------------------
# Statistics of one tensor, as float64 tensors (units are the last dimension; batch is the rest).
def _units(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1, t.shape[-1])


def _pair_corr(z2: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of example pairs (0,1), (2,3), … (NaN with one example)."""
    m = z2.shape[0] // 2
    if not m:
        return torch.full((), float("nan"), dtype=z2.dtype, device=z2.device)
    a, b = z2[0:2 * m:2], z2[1:2 * m:2]
    den = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    return ((a * b).sum(dim=1) / den).mean()


def raw_preact(z: torch.Tensor, corr: bool = True) -> torch.Tensor:
    z2 = _units(z)
    c = _pair_corr(z2) if corr else torch.full((), float("nan"), dtype=z2.dtype, device=z2.device)
    return torch.stack([z2.sum(), torch.linalg.vector_norm(z2), c])


def raw_act(h: torch.Tensor) -> torch.Tensor:
    # One bool pass serves both counts, reduced as uint8 (sign(), count_nonzero and bool any() are
    # ~10× slower on CPU).  Counts go to float64 (exact beyond float32's 2^24).
    h2 = _units(h)
    nz = h2.bool().view(torch.uint8)
    nonzero = nz.sum(dtype=torch.int64).double()
    dead = (nz.amax(dim=0) == 0).sum().double()
    return torch.stack([h2.sum().double(), torch.linalg.vector_norm(h2).double(), nonzero, dead])


def raw_grad(g: torch.Tensor) -> torch.Tensor:
    g2 = _units(g)
    return torch.stack([g2.sum(), torch.linalg.vector_norm(g2)])


def _moments(total, norm_, n):
    """(mean, variance) from a sum and a Euclidean norm of n entries, in float64: E[x²] − E[x]²."""
    mean = total / n
    return mean, np.maximum(norm_ ** 2 / n - mean * mean, 0.0)


def finish(raw_fwd: np.ndarray, raw_act_: np.ndarray, raw_grad_: np.ndarray, numel: np.ndarray,
           units: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of the table from the raw reductions (arrays over calls, float64)."""
    out = {}
    out["preact_mean"], out["preact_var"] = _moments(raw_fwd[:, 0], raw_fwd[:, 1], numel)
    out["preact_corr"], out["weight_norm"] = raw_fwd[:, 2], raw_fwd[:, 3]
    out["act_mean"], out["act_var"] = _moments(raw_act_[:, 0], raw_act_[:, 1], numel)
    out["act_sq"] = raw_act_[:, 1] ** 2 / numel
    # (n − nonzero)/n, not 1 − nonzero/n: the same rounding as dead_frac, so dead_frac ≤ zero_frac exactly.
    out["zero_frac"] = (numel - raw_act_[:, 2]) / numel
    out["dead_frac"] = raw_act_[:, 3] / units
    out["preact_grad_var"] = _moments(raw_grad_[:, 0], raw_grad_[:, 1], numel)[1]
    return out


def act_stats(h: torch.Tensor) -> dict[str, float]:
    """Activation statistics of one tensor: mean, variance, second moment, zero and dead fractions."""
    r = raw_act(h).double().cpu().numpy()
    n = h.numel()
    mean, var = _moments(r[0], r[1], n)
    return {"act_mean": mean, "act_var": var, "act_sq": r[1] ** 2 / n, "zero_frac": (n - r[2]) / n,
            "dead_frac": r[3] / h.shape[-1]}


def norm(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t.detach()).reshape(1)


@dataclass
class _Slot:
    """One recorded call of one layer: its statistics as tensors, filled in by the hooks."""

    step: object
    layer: int
    name: str
    fan_in: int
    fan_out: int
    numel: int
    fwd: torch.Tensor
    act: torch.Tensor | None = None
    grad: torch.Tensor | None = None
    wgrad: torch.Tensor | None = None
    z: torch.Tensor | None = field(default=None, repr=False)  # kept until the activation is seen


def _fans(module: nn.Module, out: torch.Tensor) -> tuple[int, int]:
    w = getattr(module, "weight", None)
    if isinstance(w, torch.Tensor) and w.dim() >= 2:
        return int(w[0].numel()), int(w.shape[0])
    return -1, int(out.shape[-1])


class Recorder:
    """Record per-layer forward and backward statistics of ``module`` while the context is open.

    ``layers`` selects what is recorded: a module type or tuple of types (default ``nn.Linear``),
    an iterable of qualified names, or a predicate ``f(name, module) -> bool``.
    ``activations``: ``"auto"`` pairs each layer with the next activation module it finds
    (:data:`ACTIVATION_TYPES`); ``None`` uses the input of the next recorded layer instead.
    ``pair_correlation``: also record ``preact_corr``, the mean cosine similarity of example pairs
    (0,1), (2,3), … — off by default since it costs ~5% of a forward/backward pass (NaN when off).
    """

    def __init__(self, module: nn.Module, layers=nn.Linear, activations="auto", backward: bool = True,
                 pair_correlation: bool = False):
        self.module = module
        self.pair_correlation = pair_correlation
        self.backward = backward
        self._select = self._selector(layers)
        self._activations = activations
        self._handles: list = []
        self._slots: list[_Slot] = []
        self._order: dict[str, int] = {}
        self._step: object = 0
        self._pending: _Slot | None = None  # last layer whose activation has not been seen
        self._wgrad_wait: dict[str, list[_Slot]] = {}
        self._use_act_modules = False

    @staticmethod
    def _selector(layers) -> Callable[[str, nn.Module], bool]:
        if isinstance(layers, type) or (isinstance(layers, tuple) and all(isinstance(t, type) for t in layers)):
            return lambda name, m: isinstance(m, layers)
        if callable(layers):
            return layers
        names = set(layers)
        return lambda name, m: name in names

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> "Recorder":
        chosen = [(n, m) for n, m in self.module.named_modules() if self._select(n, m)]
        if not chosen:
            raise ValueError("Recorder: no layer of the module matches the selection")
        for name, m in chosen:
            self._handles.append(m.register_forward_hook(self._forward_hook(name)))
            w = getattr(m, "weight", None)
            if self.backward and isinstance(w, torch.Tensor) and w.requires_grad:
                self._handles.append(w.register_hook(self._weight_hook(name)))
        if self._activations == "auto":
            chosen_ids = {id(m) for _, m in chosen}
            acts = [m for m in self.module.modules() if isinstance(m, ACTIVATION_TYPES) and id(m) not in chosen_ids]
            self._use_act_modules = bool(acts)
            for m in acts:
                self._handles.append(m.register_forward_hook(self._activation_hook))
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def step(self, step) -> None:
        """Label the records that follow with ``step`` (for recording across training)."""
        self._close_pending()
        self._step = step

    def clear(self) -> None:
        self._slots.clear()
        self._pending = None
        self._wgrad_wait.clear()

    # -- hooks -----------------------------------------------------------------------------
    def _close_pending(self, nxt_input: torch.Tensor | None = None) -> None:
        slot = self._pending
        if slot is not None and slot.act is None and nxt_input is not None and not self._use_act_modules \
                and nxt_input.shape[-1] == slot.fan_out:
            slot.act, slot.z = raw_act(nxt_input), None
        self._pending = None

    def _forward_hook(self, name: str):
        def hook(module, args, out):
            if not isinstance(out, torch.Tensor):
                return
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            self._close_pending(x)
            layer = self._order.setdefault(name, len(self._order) + 1)
            fan_in, fan_out = _fans(module, out)
            w = getattr(module, "weight", None)
            wn = norm(w).to(out.dtype) if isinstance(w, torch.Tensor) else torch.full((1,), float("nan"), dtype=out.dtype,
                                                                                      device=out.device)
            slot = _Slot(self._step, layer, name, fan_in, fan_out, out.numel(), torch.cat([raw_preact(out, self.pair_correlation), wn]),
                         z=out.detach())
            self._slots.append(slot)
            self._pending = slot
            if self.backward and out.requires_grad:
                out.register_hook(self._grad_hook(slot))
                if isinstance(w, torch.Tensor) and w.requires_grad:
                    self._wgrad_wait.setdefault(name, []).append(slot)
        return hook

    def _activation_hook(self, module, args, out):
        slot = self._pending
        if slot is not None and slot.act is None and isinstance(out, torch.Tensor) and out.shape == slot.z.shape:
            slot.act, slot.z = raw_act(out), None
            self._pending = None

    @staticmethod
    def _grad_hook(slot: _Slot):
        def hook(g):
            slot.grad = raw_grad(g)
        return hook

    def _weight_hook(self, name: str):
        def hook(g):
            waiting = self._wgrad_wait.get(name)
            if waiting:
                waiting.pop(0).wgrad = norm(g)
        return hook

    # -- output ----------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """The tidy table: one row per (step, recorded layer call), columns :data:`COLUMNS`."""
        self._close_pending()
        if not self._slots:
            return pd.DataFrame(columns=list(COLUMNS))
        nan = lambda n, like: torch.full((n,), float("nan"), dtype=like.dtype, device=like.device)
        rows = []
        for s in self._slots:
            if s.act is None:  # no nonlinearity follows (the readout): activation = pre-activation
                s.act, s.z = raw_act(s.z) if s.z is not None else nan(len(RAW_ACT), s.fwd), None
            grad = s.grad if s.grad is not None else nan(len(RAW_GRAD), s.fwd)
            wgrad = s.wgrad.to(s.fwd.dtype) if s.wgrad is not None else nan(1, s.fwd)
            rows.append(torch.cat([s.fwd.double(), s.act.double(), grad.double(), wgrad.double()]))
        raw = torch.stack(rows).double().cpu().numpy()   # the one transfer to the host
        nf, na, ng = len(RAW_FWD), len(RAW_ACT), len(RAW_GRAD)
        numel = np.array([s.numel for s in self._slots], dtype=float)
        units = np.array([s.fan_out for s in self._slots], dtype=float)
        with np.errstate(invalid="ignore", over="ignore"):
            stats = finish(raw[:, :nf], raw[:, nf:nf + na], raw[:, nf + na:nf + na + ng], numel, units)
        df = pd.DataFrame(stats)
        df["weight_grad_norm"] = raw[:, -1]
        df.insert(0, "step", [s.step for s in self._slots])
        df.insert(1, "layer", [s.layer for s in self._slots])
        df.insert(2, "name", [s.name for s in self._slots])
        df.insert(3, "fan_in", [s.fan_in for s in self._slots])
        df.insert(4, "fan_out", [s.fan_out for s in self._slots])
        add_log10(df)
        warn_nonfinite(df)
        return df[list(COLUMNS)]


def add_log10(df: pd.DataFrame) -> pd.DataFrame:
    """Add the log10 columns (in place) from the plain ones; log10 0 = -inf, never NaN from 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        for col, src in LOG10_OF.items():
            if col not in df or df[col].isna().all():
                df[col] = np.log10(df[src].to_numpy(dtype=float))
    return df


def warn_nonfinite(df: pd.DataFrame) -> None:
    cols = [c for c in ("preact_var", "act_var", "preact_grad_var", "weight_grad_norm") if c in df]
    bad = ~np.isfinite(df[cols].to_numpy(dtype=float)) & ~df[cols].isna().to_numpy()
    if bad.any():
        first = df["name"].iloc[int(np.argmax(bad.any(axis=1)))]
        warnings.warn(f"statistics overflowed the module's dtype from layer {first!r} on; their log10 columns are "
                      "not exact there. propagate.exact_stats computes them exactly in log space.", RuntimeWarning,
                      stacklevel=3)
