"""Exact per-layer statistics of stacks of MLPs, every depth at once, in log space.

Why log space: N(0, 1) weights at width 512 multiply the variance by ~256 per layer, so float32
overflows near layer 16 and float64 near layer 128; Xavier halves it per layer.  ReLU (also leaky
ReLU and the identity) with zero bias is positively homogeneous, and back-propagation is linear in
the upstream gradient, so we may rescale the signal by any power of two after each layer and carry
the exponent: multiplying a float by 2^k is exact, so the rescaled computation equals the plain one
bit for bit wherever the plain one is finite.  True value = 2^E · stored value; every log10 column
is log10(stored) + E·log10(2), finite at any depth.  Non-homogeneous cases (non-zero biases, tanh)
cannot be rescaled: they run in float64 without rescaling, and overflow shows as inf with a warning.

Why every depth at once: layer l of a depth-d net built with per-layer random streams (see
``inits.layer_generator``) *is* layer l of the deepest net, so one forward pass through the
deepest net gives every shallower net's hidden forward statistics.  Each depth d has its own
readout and loss; their gradients enter the backward pass at layer d and travel down stacked
with the deeper ones, one batched matmul per layer.

Members: the leading dimension M of every weight stacks independent networks (seeds, inits) of
the same shape, computed together with batched matmuls.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from propagate.recorder import COLUMNS

LOG10_2 = math.log10(2.0)
HOMOGENEOUS = ("relu", "leaky_relu", "linear")
# Cap on one wgrad chunk's elements (its (n_out × n_in) products), to bound memory.
_CHUNK_ELEMS = 1 << 24
_FAST_BF16: dict[str, bool] = {}


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 matmuls beat float32 by 1.5× here (CPUs with AVX512-BF16/AMX); measured once."""
    if device.type != "cpu":
        return False
    if "cpu" not in _FAST_BF16:
        import time

        a = torch.randn(4, 256, 256)

        def best(x):
            torch.bmm(x, x)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                torch.bmm(x, x)
                times.append(time.perf_counter() - t)
            return min(times)

        _FAST_BF16["cpu"] = best(a.bfloat16()) * 1.5 < best(a)
    return _FAST_BF16["cpu"]


def resolve_wgrad_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``float32`` (exact to float32 rounding), ``bfloat16``, or ``auto`` (bfloat16 where it is fast).

    Only the weight-gradient *norms* use it: ||gᵀh||_F from bfloat16 copies of g and h with float32
    accumulation.  Opt-in, not the default: on the default sweep (width 512, batch 512, MNIST) it
    shifts log10 norms by 1e-5 (median) to 2e-4 (max), more at small widths and batches — below the
    seed-to-seed spread but not exact — for a 1.75× faster weight-gradient step where the CPU has
    bfloat16 units (2.4× for the bare matmul).  Everything that propagates stays in the working dtype.
    """
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else None
    raise ValueError(f"wgrad precision {precision!r}: use auto, float32 or bfloat16")


def _phi(z, activation, slope):
    if activation == "relu":
        return torch.relu(z)
    if activation == "leaky_relu":
        return torch.nn.functional.leaky_relu(z, slope)
    if activation == "tanh":
        return torch.tanh(z)
    return z


def _apply_dphi(g, h, activation, slope):
    """g · φ'(z) from the stored activation h = φ(z) (h > 0 iff z > 0 for (leaky) ReLU; tanh' = 1 − h²)."""
    if activation == "relu":
        return g.mul_(h > 0)
    if activation == "leaky_relu":
        return g.mul_(torch.where(h > 0, 1.0, slope).to(g.dtype))
    if activation == "tanh":
        return g.mul_(1 - h * h)
    return g


def _mean_sq(t: torch.Tensor, dims) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean and second moment over ``dims``, as float64."""
    n = math.prod(t.shape[d] for d in dims)
    mean = t.mean(dim=dims).double()
    sq = torch.linalg.vector_norm(t, dim=dims).double() ** 2 / n
    return mean, sq


def _pow2_exponent(sq: torch.Tensor) -> torch.Tensor:
    """k with 2^k ≈ rms (so dividing by 2^k brings the rms near 1); 0 where sq is 0 or not finite."""
    ok = torch.isfinite(sq) & (sq > 0)
    k = torch.round(0.5 * torch.log2(torch.where(ok, sq, torch.ones_like(sq))))
    return torch.where(ok, k, torch.zeros_like(k))


# Rescale only once the stored values drift this many binades from 1: float32 holds 2^±126, and
# skipping most rescales saves a full pass over the stacked gradients per layer.
_DRIFT = 20


def _rescale_(t: torch.Tensor, sq: torch.Tensor) -> torch.Tensor | None:
    """Bring stored values back near unit scale, in place, once they drift: t ← t · 2^-k (exact, a power
    of two).  ``sq`` is the per-member (or per-slot) mean square of ``t``; returns k, or None if no
    value drifted far enough to need it (the caller adds k to its exponents)."""
    k = _pow2_exponent(sq)
    if not bool((k.abs() >= _DRIFT).any()):
        return None
    t.mul_(torch.exp2(-k).to(t.dtype).reshape(k.shape + (1,) * (t.dim() - k.dim())))
    return k


def _act_summary(h: torch.Tensor):
    """Per member (dim 0): mean, second moment, zero fraction, dead fraction (units = last dim)."""
    mean, sq = _mean_sq(h, (1, 2))
    n = h.shape[1] * h.shape[2]
    zero_frac = (n - h.bool().sum(dim=(1, 2)).double()) / n  # same rounding as dead_frac
    dead_frac = (h.abs().amax(dim=1) == 0).sum(dim=1).double() / h.shape[2]
    return mean, sq, zero_frac, dead_frac


def _pair_corr(z: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between examples (0,1), (2,3), … per member (scale-free)."""
    m = z.shape[1] // 2
    if m == 0:
        return torch.full((z.shape[0],), float("nan"), dtype=torch.float64, device=z.device)
    a, b = z[:, 0:2 * m:2], z[:, 1:2 * m:2]
    den = torch.linalg.vector_norm(a, dim=2).double() * torch.linalg.vector_norm(b, dim=2).double()
    return ((a * b).sum(dim=2).double() / den).mean(dim=1)


@dataclass
class StackResult:
    """Raw results as float64 numpy arrays; ``table()`` turns them into the recorder's schema."""

    depths: list[int]
    fans: list[tuple[int, int]]          # (fan_in, fan_out) per hidden layer
    readout_fans: tuple[int, int]
    hidden: dict[str, np.ndarray]        # name -> (M, D)
    readout: dict[str, np.ndarray]       # name -> (M, nD)
    grad: dict[str, np.ndarray]          # name -> (M, nD, D + 1), NaN where layer > depth + 1

    def table(self) -> pd.DataFrame:
        """One row per (member, depth, layer), layers 1..depth hidden and depth+1 the readout."""
        M, D = self.hidden["log10_preact_var"].shape
        frames = []
        for j, d in enumerate(self.depths):
            rows = {}
            L = d + 1
            rows["member"] = np.repeat(np.arange(M), L)
            rows["depth"] = np.full(M * L, d)
            rows["layer"] = np.tile(np.arange(1, L + 1), M)
            rows["name"] = np.tile(np.array([f"linear{l}" for l in range(1, L)] + ["readout"], dtype=object), M)
            rows["fan_in"] = np.tile([f[0] for f in self.fans[:d]] + [self.readout_fans[0]], M)
            rows["fan_out"] = np.tile([f[1] for f in self.fans[:d]] + [self.readout_fans[1]], M)
            for name in self.hidden:
                h = self.hidden[name][:, :d]
                r = self.readout[name][:, j:j + 1]
                rows[name] = np.concatenate([h, r], axis=1).reshape(-1)
            for name in self.grad:
                rows[name] = self.grad[name][:, j, :L].reshape(-1)
            frames.append(pd.DataFrame(rows))
        df = pd.concat(frames, ignore_index=True)
        with np.errstate(over="ignore"):
            for col in ("preact_var", "act_var", "preact_grad_var"):
                df[col] = np.power(10.0, df[f"log10_{col}"])
            df["weight_grad_norm"] = np.power(10.0, df["log10_weight_grad_norm"])
        return df


def propagate_stack(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], readout: torch.Tensor,
                    depths: list[int], biases: list[torch.Tensor] | None = None,
                    readout_bias: torch.Tensor | None = None, activation: str = "relu",
                    negative_slope: float = 0.01, lsuv: bool = False, lsuv_tol: float = 0.1,
                    wgrad_precision: str = "float32", weight_grads: str = "all") -> StackResult:
    """Forward and backward statistics of every requested depth of a stack of M MLPs.

    ``weights[l-1]``: (M, n_l, n_{l-1}) hidden weights; ``readout``: (M, n_out, n) shared by every
    depth (so all hidden widths must be equal where a depth ends).  ``biases`` likewise, or None
    for zero biases.  The loss is the mean cross-entropy of each depth's readout on (x, y).
    Exact log-space rescaling is used when the activation is homogeneous and biases are zero;
    otherwise everything runs in float64 without rescaling.
    ``lsuv``: treat the weights as LSUV's orthogonal pre-init and rescale each layer's weight (and
    each depth's readout) so its output variance is 1 unless already within ``lsuv_tol`` of 1.
    ``wgrad_precision``: see :func:`resolve_wgrad_precision` (float64 runs ignore it).
    ``weight_grads``: ``all`` computes ||dL/dW|| for every (depth, layer); ``summary`` only for the
    first layer of every depth and every layer of the deepest net (NaN elsewhere).  Weight-gradient
    norms cost as much as the whole backward pass, so ``summary`` halves the work of a sweep.
    """
    if weight_grads not in ("all", "summary"):
        raise ValueError(f"weight_grads {weight_grads!r}: use all or summary")
    depths = sorted(set(int(d) for d in depths))
    D = depths[-1]
    if len(weights) < D:
        raise ValueError(f"need {D} hidden weights, got {len(weights)}")
    exact = activation in HOMOGENEOUS and biases is None and readout_bias is None
    if lsuv and not exact:
        raise ValueError("lsuv in the sweep needs zero biases and a homogeneous activation")
    dtype = weights[0].dtype if exact else torch.float64
    dev = weights[0].device
    M, B = weights[0].shape[0], x.shape[0]
    x = x.to(dev, dtype)
    W = [w.to(dtype) for w in weights[:D]]
    R = readout.to(dtype)
    bs = None if biases is None else [b.to(dtype) for b in biases[:D]]
    rb = None if readout_bias is None else readout_bias.to(dtype)
    onehot = torch.nn.functional.one_hot(y.to(dev), R.shape[1]).to(torch.float64)
    low = resolve_wgrad_precision(wgrad_precision, dev) if dtype == torch.float32 else None
    f64 = dict(dtype=torch.float64, device=dev)

    hidden = {k: torch.full((M, D), float("nan"), **f64) for k in
              ("preact_mean", "log10_preact_var", "preact_corr", "act_mean", "log10_act_var", "act_sq_log10",
               "zero_frac", "dead_frac", "weight_norm")}
    readout_stats = {k: torch.full((M, len(depths)), float("nan"), **f64) for k in hidden}
    grad = {k: torch.full((M, len(depths), D + 1), float("nan"), **f64) for k in
            ("log10_preact_grad_var", "log10_weight_grad_norm")}
    w_log2 = torch.zeros((M, D), **f64)              # log2 of true/stored weight scale (LSUV)
    r_log2 = torch.zeros((M, len(depths)), **f64)
    E = torch.zeros((M, D + 1), **f64)               # E[:, l]: true z^l = 2^E · stored z^l (E[:, 0] for x)
    hs: list[torch.Tensor] = []   # stored activations h^l (what backward needs: masks and wgrad inputs)
    errs: dict[int, torch.Tensor] = {}
    jof = {d: j for j, d in enumerate(depths)}

    def record(store, col, z, h, e_z, zmean, zsq):
        """Forward statistics of stored z (exponent e_z; its mean and mean square given) and h = φ(z)."""
        zvar = torch.clamp(zsq - zmean ** 2, min=0)
        store["preact_mean"][:, col] = zmean * torch.exp2(e_z)
        store["log10_preact_var"][:, col] = torch.log10(zvar) + 2 * e_z * LOG10_2
        store["preact_corr"][:, col] = _pair_corr(z)
        hmean, hsq, zf, df = _act_summary(h)
        store["act_mean"][:, col] = hmean * torch.exp2(e_z)
        store["log10_act_var"][:, col] = torch.log10(torch.clamp(hsq - hmean ** 2, min=0)) + 2 * e_z * LOG10_2
        store["act_sq_log10"][:, col] = torch.log10(hsq) + 2 * e_z * LOG10_2
        store["zero_frac"][:, col] = zf
        store["dead_frac"][:, col] = df

    def lsuv_log2(zvar, e):
        var_true_log2 = torch.log2(zvar) + 2 * e
        far = (torch.exp2(var_true_log2) - 1).abs() >= lsuv_tol
        return torch.where(far & torch.isfinite(var_true_log2), -0.5 * var_true_log2, torch.zeros_like(e))

    # ---------------- forward through the deepest net ----------------
    h = x
    for l in range(1, D + 1):
        z = torch.matmul(h, W[l - 1].transpose(1, 2))
        if bs is not None:
            z = z + bs[l - 1][:, None, :]
        e = E[:, l - 1].clone()
        zm, zsq = _mean_sq(z, (1, 2))
        if lsuv:
            w_log2[:, l - 1] = lsuv_log2(torch.clamp(zsq - zm ** 2, min=0), e)
            e = e + w_log2[:, l - 1]
        if exact and (k := _rescale_(z, zsq)) is not None:
            e, zm, zsq = e + k, zm * torch.exp2(-k), zsq * torch.exp2(-2 * k)
        E[:, l] = e
        h = _phi(z, activation, negative_slope)
        record(hidden, l - 1, z, h, e, zm, zsq)
        hidden["weight_norm"][:, l - 1] = torch.linalg.vector_norm(W[l - 1], dim=(1, 2)).double() * torch.exp2(w_log2[:, l - 1])
        hs.append(h)
        del z
        if l in jof:
            j = jof[l]
            logits = torch.matmul(h, R.transpose(1, 2))
            if rb is not None:
                logits = logits + rb[:, None, :]
            er = E[:, l].clone()
            lm, lsq = _mean_sq(logits, (1, 2))
            if lsuv:
                r_log2[:, j] = lsuv_log2(torch.clamp(lsq - lm ** 2, min=0), er)
                er = er + r_log2[:, j]
            record(readout_stats, j, logits, logits, er, lm, lsq)
            readout_stats["weight_norm"][:, j] = torch.linalg.vector_norm(R, dim=(1, 2)).double() * torch.exp2(r_log2[:, j])
            # dL/dlogits of the mean cross-entropy, from the true logits (exact limit when huge or tiny).
            true = logits.double() * torch.exp2(torch.clamp(er, max=900.0))[:, None, None]
            err = (torch.softmax(true, dim=2) - onehot) / B
            errs[l] = err.to(dtype)
            _, esq = _mean_sq(err, (1, 2))
            emean = err.mean(dim=(1, 2))
            grad["log10_preact_grad_var"][:, j, l] = torch.log10(torch.clamp(esq - emean ** 2, min=0))
            wg = torch.linalg.vector_norm(torch.matmul(err.to(dtype).transpose(1, 2), h), dim=(1, 2)).double()
            grad["log10_weight_grad_norm"][:, j, l] = torch.log10(wg) + E[:, l] * LOG10_2

    # ---------------- backward, every depth stacked ----------------
    # The stack lives in two preallocated buffers (M, depths, B, width) used in turn as matmul
    # input and output: a depth joins by writing its slot, and no stack is ever copied or
    # freshly allocated (fresh multi-MB tensors cost page faults on every layer).
    n_max = max(w.shape[1] for w in W)
    bufs = [torch.empty((M, len(depths), B, n_max), dtype=dtype, device=dev) for _ in range(2)]
    cur, K = 0, 0
    GE = torch.zeros((M, len(depths)), **f64)   # true = 2^GE · stored, per slot
    order: list[int] = []                        # depth index j of each stack slot; slot 0 = the deepest
    for l in range(D, 0, -1):
        n_l = W[l - 1].shape[1]
        if l in jof:
            j = jof[l]
            slot = bufs[cur][:, K, :, :n_l]
            torch.matmul(errs.pop(l), R, out=slot)
            _apply_dphi(slot, hs[l - 1], activation, negative_slope)
            GE[:, K] = r_log2[:, j]
            order.append(j)
            K += 1
        G = bufs[cur][:, :K, :, :n_l]
        gmean, gsq = _mean_sq(G, (2, 3))
        if exact and (k := _rescale_(G, gsq)) is not None:
            GE[:, :K] += k
            gmean, gsq = gmean * torch.exp2(-k), gsq * torch.exp2(-2 * k)
        idx = torch.tensor(order, device=dev)
        grad["log10_preact_grad_var"][:, idx, l - 1] = torch.log10(torch.clamp(gsq - gmean ** 2, min=0)) + 2 * GE[:, :K] * LOG10_2
        # Weight gradient dL/dW^l = g^T h^{l-1}, its Frobenius norm per (member, depth), in chunks.
        hin = x.expand(M, *x.shape) if l == 1 else hs[l - 2]
        if low is not None:
            hin = hin.to(low)
        kw = K if (weight_grads == "all" or l == 1) else 1
        step = max(1, _CHUNK_ELEMS // (M * n_l * hin.shape[2]))
        norms = []
        for s in range(0, kw, step):
            gk = G[:, s:min(s + step, kw)]
            gk = (gk.to(low) if low is not None else gk).transpose(-1, -2)   # (M, c, n_l, B)
            prod = torch.matmul(gk, hin[:, None])                             # (M, c, n_l, n_{l-1})
            acc = {"dtype": torch.float32} if low is not None else {}  # float32 accumulation of bf16 products
            norms.append(torch.linalg.vector_norm(prod, dim=(-2, -1), **acc).double())
        wn = torch.cat(norms, dim=1)
        grad["log10_weight_grad_norm"][:, idx[:kw], l - 1] = torch.log10(wn) + (GE[:, :kw] + E[:, l - 1:l]) * LOG10_2
        if l > 1:
            n_in = W[l - 1].shape[2]
            nxt = bufs[1 - cur][:, :K, :, :n_in]
            torch.matmul(G.view(M, K * B, n_l), W[l - 1], out=nxt.view(M, K * B, n_in))
            _apply_dphi(nxt, hs[l - 2][:, None], activation, negative_slope)
            GE[:, :K] += w_log2[:, l - 1:l]
            cur = 1 - cur
        hs[l - 1] = None  # free as we go
    del bufs

    to_np = lambda d: {k: v.cpu().numpy() for k, v in d.items()}
    hid, rd = to_np(hidden), to_np(readout_stats)
    for store in (hid, rd):
        with np.errstate(over="ignore"):
            store["act_sq"] = np.power(10.0, store.pop("act_sq_log10"))
    fans = [(w.shape[2], w.shape[1]) for w in W]
    result = StackResult(depths, fans, (R.shape[2], R.shape[1]), hid, rd, to_np(grad))
    return result


def _stats_columns(df: pd.DataFrame) -> pd.DataFrame:
    bad = [c for c in ("log10_preact_var", "log10_preact_grad_var", "log10_weight_grad_norm") if
           np.isnan(df[c].to_numpy(dtype=float)).any()]
    if bad:
        warnings.warn(f"non-finite statistics in {', '.join(bad)} (values beyond float64 in a non-homogeneous "
                      "net: non-zero biases or tanh cannot be rescaled exactly)", RuntimeWarning, stacklevel=3)
    return df


def exact_stats(model, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """The :class:`~propagate.recorder.Recorder` table of one :class:`~propagate.nets.MLP`, exact at any depth.

    Same columns and meaning as ``Recorder(model)`` around ``cross_entropy(model(x), y).backward()``,
    but computed in log space, so N(0, 1) at depth 1000 gives finite, exact log10 columns.
    """
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hidden, ro = linears[:-1], linears[-1]
    with torch.no_grad():
        W = [m.weight.detach()[None] for m in hidden]
        has_bias = any(m.bias is not None and bool(torch.any(m.bias != 0)) for m in linears)
        b = [m.bias.detach()[None] if m.bias is not None else torch.zeros(1, m.out_features) for m in hidden] if has_bias else None
        rb = (ro.bias.detach()[None] if ro.bias is not None else None) if has_bias else None
    res = propagate_stack(x, y, W, ro.weight.detach()[None], [len(hidden)], biases=b, readout_bias=rb,
                          activation=getattr(model, "activation", "relu"),
                          negative_slope=getattr(model, "negative_slope", 0.01))
    df = res.table()
    df.insert(0, "step", 0)
    return _stats_columns(df)[list(COLUMNS)]
