"""Initializers: a registry from name to weight sampler and its variance formula.

Every initializer draws ``W = scale(fan_in, fan_out) * base`` where ``base`` comes from one of
a few *families* (standard normal, U(-1, 1), semi-orthogonal).  Two consequences we rely on:

* each initializer knows its weight variance as a function of (fan_in, fan_out), so the
  mean-field theory can be computed from it (``Initializer.weight_var``);
* with the same seed, initializers of one family give weights that are exact scalar multiples of
  each other, the way ``torch.nn.init.normal_(w, 0, std)`` draws ``std * N(0, 1)``.

Random streams are derived per layer from ``(seed, role, index)`` (see :func:`layer_generator`), so
layer ``l`` of a depth-``d`` net equals layer ``l`` of any deeper net built with the same seed.
This is what lets the depth sweep share one deep net across all depths and still reproduce a net
built on its own, value for value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

RELU_GAIN = math.sqrt(2.0)

# Roles of a random stream: hidden weight, readout weight, bias.
HIDDEN, READOUT, BIAS = 0, 1, 2


class InitError(ValueError):
    """A bad initializer or bias specification; the message is one line."""


def layer_generator(seed: int, role: int, index: int) -> torch.Generator:
    """A CPU generator for one layer's draws, independent across (seed, role, index)."""
    state = np.random.SeedSequence([int(seed), int(role), int(index)]).generate_state(2, np.uint64)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(state[0] >> np.uint64(1)))
    return gen


# --------------------------------------------------------------------------------------------
# Base draws of each family (CPU, float64 then cast, so values do not depend on the target dtype
# beyond one rounding).
def _normal_base(shape, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _uniform_base(shape, gen):
    # U(-√3, √3): unit variance, so scale = std for every uniform initializer.
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * math.sqrt(3.0)


def _orthogonal_base(shape, gen):
    # Semi-orthogonal with orthonormal rows or columns (Saxe et al. 2014), as torch.nn.init does:
    # QR of a Gaussian matrix with the signs of R's diagonal fixed so Q is Haar distributed.
    rows, cols = shape
    flat = torch.randn((max(rows, cols), min(rows, cols)), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    q = q if rows >= cols else q.T
    # Rescale to unit entry variance: entries of a semi-orthogonal matrix have variance 1/max(fans).
    return q * math.sqrt(max(rows, cols))


FAMILIES: dict[str, Callable] = {
    "normal": _normal_base,
    "uniform": _uniform_base,
    "orthogonal": _orthogonal_base,
}


@dataclass(frozen=True)
class Initializer:
    """A weight initializer: ``W = sqrt(weight_var(fan_in, fan_out)) * base`` with base of unit variance."""

    name: str
    formula: str
    family: str
    variance: Callable[[int, int], float] = field(repr=False)
    default_bias: str | float = "zero"
    data_dependent: bool = False
    aliases: tuple[str, ...] = ()
    doc: str = ""

    def weight_var(self, fan_in: int, fan_out: int) -> float:
        """Var(W) for a layer with these fans (NaN for data-dependent schemes before they run)."""
        return float(self.variance(fan_in, fan_out))

    def sample(self, fan_out: int, fan_in: int, gen: torch.Generator) -> torch.Tensor:
        """A (fan_out, fan_in) float64 weight matrix drawn from this initializer."""
        base = FAMILIES[self.family]((fan_out, fan_in), gen)
        var = self.weight_var(fan_in, fan_out)
        return base if math.isnan(var) else base * math.sqrt(var)


# --------------------------------------------------------------------------------------------
# The registry: one small function per initializer, the formula in its docstring.
_REGISTRY: dict[str, Initializer] = {}
_ALIASES: dict[str, str] = {}


def register(init: Initializer) -> Initializer:
    _REGISTRY[init.name] = init
    for alias in init.aliases:
        _ALIASES[alias] = init.name
    return init


def xavier_var(fan_in, fan_out, gain=1.0):
    """Glorot & Bengio (2010): Var(W) = gain² · 2 / (fan_in + fan_out)."""
    return gain**2 * 2.0 / (fan_in + fan_out)


def kaiming_var(fan_in, fan_out, mode="fan_in"):
    """He et al. (2015): Var(W) = 2 / fan, fan = fan_in (forward) or fan_out (backward)."""
    return 2.0 / (fan_in if mode == "fan_in" else fan_out)


def lecun_var(fan_in, fan_out):
    """LeCun et al. (1998): Var(W) = 1 / fan_in."""
    return 1.0 / fan_in


def orthogonal_var(fan_in, fan_out, gain=RELU_GAIN):
    """Saxe et al. (2014): W = gain · Q, entries of variance gain² / max(fan_in, fan_out)."""
    return gain**2 / max(fan_in, fan_out)


def torch_default_var(fan_in, fan_out):
    """nn.Linear's own reset: U(±1/√fan_in), Var(W) = 1 / (3 · fan_in)."""
    return 1.0 / (3.0 * fan_in)


register(Initializer("xavier_normal", "N(0, 2/(fan_in+fan_out))", "normal", xavier_var,
                     aliases=("xavier", "glorot", "glorot_normal"), doc=xavier_var.__doc__))
register(Initializer("xavier_uniform", "U(±√(6/(fan_in+fan_out)))", "uniform", xavier_var,
                     aliases=("glorot_uniform",), doc=xavier_var.__doc__))
register(Initializer("kaiming_normal", "N(0, 2/fan_in)", "normal", kaiming_var,
                     aliases=("he", "kaiming", "he_normal"), doc=kaiming_var.__doc__))
register(Initializer("kaiming_uniform", "U(±√(6/fan_in))", "uniform", kaiming_var,
                     aliases=("he_uniform",), doc=kaiming_var.__doc__))
register(Initializer("kaiming_normal_fan_out", "N(0, 2/fan_out)", "normal",
                     lambda fi, fo: kaiming_var(fi, fo, "fan_out"),
                     aliases=("he_fan_out",), doc="He et al. (2015), backward-preserving: Var(W) = 2 / fan_out."))
register(Initializer("normal", "N(0, 1)", "normal", lambda fi, fo: 1.0,
                     aliases=("standard_normal", "n01"), doc="Var(W) = 1 whatever the fan (the common tutorial's randn)."))
register(Initializer("lecun_normal", "N(0, 1/fan_in)", "normal", lecun_var, aliases=("lecun",), doc=lecun_var.__doc__))
register(Initializer("orthogonal", "√2 · Q (semi-orthogonal)", "orthogonal", orthogonal_var, doc=orthogonal_var.__doc__))
register(Initializer("torch_default", "U(±1/√fan_in), bias U(±1/√fan_in)", "uniform", torch_default_var,
                     default_bias="torch_default", aliases=("default", "pytorch"), doc=torch_default_var.__doc__))
register(Initializer("lsuv", "orthogonal, then rescaled per layer to unit output variance", "orthogonal",
                     lambda fi, fo: float("nan"), data_dependent=True,
                     doc="Mishkin & Matas (2015): orthogonal pre-init, then each layer in order is rescaled "
                         "until Var(z) is within 0.1 of 1 (at most 10 iterations) on a given batch."))


def _gaussian(spec: str) -> Initializer:
    """``gaussian:SW2[:SB2]``: W ~ N(0, SW2/fan_in), b ~ N(0, SB2) — the mean-field parameterisation."""
    parts = spec.split(":")[1:]
    try:
        if not 1 <= len(parts) <= 2:
            raise ValueError
        sw2 = float(parts[0])
        sb2 = float(parts[1]) if len(parts) == 2 else 0.0
    except ValueError:
        raise InitError(f"bad initializer {spec!r}: write gaussian:SW2 or gaussian:SW2:SB2 with numbers, e.g. gaussian:2.0:0.05") from None
    if not (math.isfinite(sw2) and sw2 > 0 and math.isfinite(sb2) and sb2 >= 0):
        raise InitError(f"bad initializer {spec!r}: need SW2 > 0 and SB2 >= 0")
    name = f"gaussian:{sw2:g}" + (f":{sb2:g}" if sb2 else "")
    return Initializer(name, f"N(0, {sw2:g}/fan_in), bias N(0, {sb2:g})", "normal",
                       lambda fi, fo: sw2 / fi, default_bias=sb2, doc=_gaussian.__doc__)


def available() -> list[str]:
    """Every registered name (aliases excluded), plus the parametric ``gaussian:SW2[:SB2]``."""
    return list(_REGISTRY) + ["gaussian:SW2[:SB2]"]


def get(name: str | Initializer) -> Initializer:
    """Look an initializer up by name or alias; a clear one-line error lists the valid names."""
    if isinstance(name, Initializer):
        return name
    key = str(name).strip().lower()
    if key.startswith("gaussian:"):
        return _gaussian(key)
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        valid = ", ".join(available())
        raise InitError(f"unknown initializer {name!r}; valid: {valid} (aliases: {', '.join(sorted(_ALIASES))})")
    return _REGISTRY[key]


def all_inits() -> list[Initializer]:
    return list(_REGISTRY.values())


# --------------------------------------------------------------------------------------------
# Biases
def parse_bias(bias) -> str | float:
    """``zero`` | ``torch_default`` | a variance (float >= 0) -> normalised bias spec."""
    if bias is None:
        return None
    if isinstance(bias, (int, float)):
        value = float(bias)
    else:
        text = str(bias).strip().lower()
        if text in ("zero", "zeros", "0"):
            return "zero"
        if text in ("torch_default", "default", "torch"):
            return "torch_default"
        try:
            value = float(text)
        except ValueError:
            raise InitError(f"bad bias {bias!r}: use zero, torch_default or a variance such as 0.05") from None
    if not (math.isfinite(value) and value >= 0):
        raise InitError(f"bad bias {bias!r}: a bias variance must be a finite number >= 0")
    return "zero" if value == 0 else value


def resolve_bias(init: Initializer, bias=None) -> str | float:
    """The bias spec in force: the explicit one if given, else the initializer's own default."""
    spec = parse_bias(bias)
    return parse_bias(init.default_bias) if spec is None else spec


def bias_var(spec, fan_in: int) -> float:
    """Var(b) of a bias spec (torch_default: U(±1/√fan_in) has variance 1/(3·fan_in))."""
    if spec == "zero":
        return 0.0
    if spec == "torch_default":
        return 1.0 / (3.0 * fan_in)
    return float(spec)


def sample_bias(spec, fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    if spec == "zero":
        return torch.zeros(fan_out, dtype=torch.float64)
    if spec == "torch_default":
        return (torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
    return torch.randn(fan_out, generator=gen, dtype=torch.float64) * math.sqrt(float(spec))


# --------------------------------------------------------------------------------------------
# Applying an initializer to a module
def linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The module's nn.Linear layers in registration order, with their qualified names."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def initialize(module: nn.Module, init="kaiming_normal", seed: int = 0, bias=None, data: torch.Tensor | None = None,
               lsuv_tol: float = 0.1, lsuv_max_iter: int = 10) -> nn.Module:
    """Initialise every nn.Linear of ``module`` in place and return it.

    Layer k draws from :func:`layer_generator` ``(seed, HIDDEN, k)``; the last Linear is the
    readout and draws from ``(seed, READOUT, 0)``, so hidden layers do not depend on depth.
    ``bias``: ``zero`` | ``torch_default`` | a variance | None (the initializer's default).
    ``lsuv`` needs ``data``, a batch of inputs.
    """
    init = get(init)
    spec = resolve_bias(init, bias)
    layers = linear_layers(module)
    for k, (_, lin) in enumerate(layers, start=1):
        last = k == len(layers)
        gen = layer_generator(seed, READOUT if last else HIDDEN, 0 if last else k)
        lin.weight.copy_(init.sample(lin.out_features, lin.in_features, gen))
        if lin.bias is not None:
            bgen = layer_generator(seed, BIAS, 0 if last else k)
            lin.bias.copy_(sample_bias(spec, lin.in_features, lin.out_features, bgen))
    if init.data_dependent:
        if data is None:
            raise InitError(f"{init.name} is data-dependent: pass a batch of inputs (data=...)")
        lsuv_(module, data, tol=lsuv_tol, max_iter=lsuv_max_iter)
    return module


@torch.no_grad()
def lsuv_(module: nn.Module, data: torch.Tensor, tol: float = 0.1, max_iter: int = 10) -> list[float]:
    """Layer-sequential unit variance (Mishkin & Matas 2015) on an already orthogonal-initialised module.

    Each Linear in order: run the batch, divide W by √Var(z) until |Var(z) − 1| < tol or
    ``max_iter`` rescalings.  Returns the final output variance of each layer.
    """
    result = []
    for _, lin in linear_layers(module):
        captured = {}
        handle = lin.register_forward_hook(lambda m, i, o: captured.__setitem__("z", o))
        try:
            for _ in range(max_iter):
                module(data)
                var = float(captured["z"].double().var(correction=0))
                if abs(var - 1.0) < tol or not math.isfinite(var) or var == 0:
                    break
                lin.weight.div_(math.sqrt(var))
            else:
                module(data)
                var = float(captured["z"].double().var(correction=0))
        finally:
            handle.remove()
        result.append(var)
    return result
