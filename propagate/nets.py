"""MLPs of any depth: ``depth`` hidden layers of ``width`` units, or an explicit list of widths."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "linear")


class NetError(ValueError):
    """A bad network specification; the message is one line."""


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "tanh":
        return nn.Tanh()
    if name == "linear":
        return nn.Identity()
    raise NetError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def hidden_widths(depth: int | None = None, width: int | None = 512, widths: Sequence[int] | None = None) -> list[int]:
    """The hidden widths of an MLP given either (depth, width) or an explicit list."""
    if widths is not None:
        widths = [int(w) for w in widths]
    else:
        if depth is None:
            raise NetError("give depth (with width) or an explicit list of widths")
        if int(depth) < 0:
            raise NetError(f"depth must be >= 0, got {depth}")
        widths = [int(width)] * int(depth)
    bad = [w for w in widths if w < 1]
    if bad:
        raise NetError(f"every width must be >= 1, got {bad[0]}")
    return widths


class MLP(nn.Sequential):
    """``in_features → widths[0] → … → widths[-1] → out_features`` with an activation after each hidden layer.

    Children are named ``linear1, act1, …, linearL, actL, readout``: layer ``l`` of the words in
    DESIGN (``z^l = W^l h^{l-1} + b^l``) is ``linear{l}``, and the readout is layer ``L + 1``.
    Being an ``nn.Sequential``, it is an ordinary module for hooks, ``torch.func`` and users.
    """

    def __init__(self, depth: int | None = None, width: int = 512, *, widths: Sequence[int] | None = None,
                 in_features: int = 784, out_features: int = 10, activation: str = "relu",
                 negative_slope: float = 0.01, bias: bool = True, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        widths = hidden_widths(depth, width, widths)
        if in_features < 1 or out_features < 1:
            raise NetError("in_features and out_features must be >= 1")
        make_activation(activation)  # validate before building anything
        sizes = [in_features, *widths]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        factory = dict(dtype=dtype, device=device)
        for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            layers[f"linear{l}"] = nn.Linear(fan_in, fan_out, bias=bias, **factory)
            layers[f"act{l}"] = make_activation(activation, negative_slope)
        layers["readout"] = nn.Linear(sizes[-1], out_features, bias=bias, **factory)
        super().__init__(layers)
        self.widths = widths
        self.activation = activation
        self.negative_slope = negative_slope
        self.in_features = in_features
        self.out_features = out_features

    @property
    def depth(self) -> int:
        return len(self.widths)

    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, activation={self.activation}"
