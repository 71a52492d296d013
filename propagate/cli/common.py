"""Option types and error handling shared by every subcommand (click conventions: one-line errors, exit 2)."""
from __future__ import annotations

import functools

import click
import torch


class IntList(click.ParamType):
    """A comma-separated list of integers, each >= ``minimum`` (``1,2,5`` or a range ``1-50``)."""

    name = "INTS"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        out = []
        text = str(value).strip()
        if not text:
            self.fail("empty list; give comma-separated integers such as 1,2,5 or a range 1-50", param, ctx)
        for part in text.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                    lo, hi = int(lo), int(hi)
                    if hi < lo:
                        self.fail(f"range {part!r} runs backwards; write LOW-HIGH", param, ctx)
                    out.extend(range(lo, hi + 1))
                else:
                    out.append(int(part))
            except ValueError:
                self.fail(f"{part!r} is not an integer; give comma-separated integers such as 1,2,5", param, ctx)
        bad = [v for v in out if v < self.minimum]
        if bad:
            self.fail(f"{bad[0]} is below the minimum {self.minimum}", param, ctx)
        return out


class NameList(click.ParamType):
    """A comma-separated list of names; an empty list is an error."""

    name = "NAMES"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        names = [p.strip() for p in str(value).split(",") if p.strip()]
        if not names:
            self.fail("empty list; give comma-separated names (see `propagate inits`)", param, ctx)
        return names


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda where available) with a clear error."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise click.BadParameter(f"{name!r} is not a device; use cpu, cuda, cuda:N or auto", param_hint="--device")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu", param_hint="--device")
    if dev.type not in ("cpu", "cuda"):
        raise click.BadParameter(f"unsupported device {name!r}; use cpu or cuda", param_hint="--device")
    return dev


def user_errors(*types):
    """Turn the package's own ValueError subclasses into click usage errors (one line, exit 2)."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except types as err:
                raise click.UsageError(str(err)) from None
        return wrapper
    return deco
