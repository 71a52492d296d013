"""The run folder: every command writes its tables, figures, report and manifest into one folder.

A run is built in a sibling temporary folder ``.<name>.partial-<pid>`` whose manifest says
``status: incomplete``; only when everything is written is the manifest marked ``complete`` and
the folder renamed into place.  An interrupted run never leaves a folder that looks finished:

* an exception, Ctrl-C or SIGTERM (turned into an exception by :func:`terminate_as_interrupt`)
  with checkpoints saved moves the partial folder to ``out`` with ``status: incomplete``; without
  checkpoints the partial folder is removed;
* a SIGKILL leaves the hidden ``.<name>.partial-<pid>`` folder, still marked incomplete.

``RunFolder(..., resume=True)`` adopts either kind of leftover and continues from its checkpoints.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pandas as pd

MANIFEST = "manifest.json"
PACKAGES = ("propagate", "torch", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "click")


class RunFolderError(ValueError):
    """A problem with an output folder; the message is one line naming the fix."""


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "host": socket.gethostname(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_out(out: Path, overwrite: bool = False) -> Path:
    """Refuse an ``out`` that exists and is not empty (unless overwrite) or cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} exists and is a file; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunFolderError(f"--out {out} exists and is not empty; pass --overwrite or choose another folder")
    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RunFolderError(f"--out {out} is not writable ({probe} is not a folder); choose another folder")
    try:  # a real probe: os.access says yes to root everywhere, even under /proc
        fd, name = tempfile.mkstemp(dir=probe, prefix=".propagate-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise RunFolderError(f"--out {out} is not writable ({err.strerror} in {probe}); choose another folder") from None
    return out


def find_resumable(out: Path, kind: str) -> tuple[Path, dict]:
    """The incomplete run folder to resume: ``out`` itself or a leftover ``.<out>.partial-*``."""
    out = Path(out)
    candidates = ([out] if (out / MANIFEST).is_file() else []) + sorted(
        out.parent.glob(f".{out.name}.partial-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or manifest.get("kind") != kind:
            continue
        if manifest.get("status") == "complete":
            raise RunFolderError(f"--resume {out}: that run is already complete; nothing to resume")
        return path, manifest
    raise RunFolderError(f"--resume {out}: no interrupted {kind} run there (no incomplete manifest.json); "
                         "start a new run with --out")


class RunFolder:
    """Context manager: write into a temporary folder, rename to ``out`` when complete."""

    def __init__(self, out: Path, kind: str, config: dict, overwrite: bool = False, resume: bool = False):
        self.out = Path(out)
        self.kind = kind
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self._adopt: Path | None = None
        if resume:
            self._adopt, old = find_resumable(self.out, kind)
            self.manifest = old
            self.manifest.setdefault("resumed", []).append(_dt.datetime.now().isoformat(timespec="seconds"))
        else:
            check_out(self.out, overwrite)
            self.manifest = {"kind": kind, "status": "incomplete", "config": config, "versions": versions(),
                             "machine": machine(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
                             "timings": {}}
        self._t0 = time.perf_counter()

    @property
    def path(self) -> Path:
        return self.tmp

    @property
    def checkpoints(self) -> Path:
        """Where a runner saves what ``--resume`` needs (finished cells, epoch checkpoints)."""
        p = self.tmp / "checkpoints"
        p.mkdir(exist_ok=True)
        return p

    @property
    def figures(self) -> Path:
        p = self.tmp / "figures"
        p.mkdir(exist_ok=True)
        return p

    def __enter__(self) -> "RunFolder":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        if self._adopt is not None:
            os.replace(self._adopt, self.tmp)
            for stale in ("report.pdf", "figures"):  # rebuilt at the end
                p = self.tmp / stale
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        else:
            self.tmp.mkdir(parents=True)
        self.manifest["status"] = "incomplete"
        self._write_manifest()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            ckpt = self.tmp / "checkpoints"
            if ckpt.is_dir() and any(ckpt.iterdir()):
                # Keep what --resume needs, clearly marked incomplete, with no report.
                self.manifest["status"] = "incomplete"
                self.manifest["interrupted"] = f"{exc_type.__name__}: {exc}"[:300]
                (self.tmp / "report.pdf").unlink(missing_ok=True)
                self._write_manifest()
                if self.out.exists():
                    shutil.rmtree(self.out)
                os.replace(self.tmp, self.out)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        self.manifest["status"] = "complete"
        self.manifest["wall_seconds"] = round(time.perf_counter() - self._t0, 3)
        self.manifest["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
        self._write_manifest()
        shutil.rmtree(self.tmp / "checkpoints", ignore_errors=True)
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return False

    def time(self, name: str, seconds: float) -> None:
        self.manifest["timings"][name] = round(seconds, 3)

    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        path = self.tmp / f"{name}.csv"
        df.to_csv(path, index=False, float_format="%.10g")
        return path

    def _write_manifest(self) -> None:
        tmp = self.tmp / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str))
        os.replace(tmp, self.tmp / MANIFEST)


def read_manifest(run_dir: Path) -> dict:
    """Read and validate a run folder's manifest (a malformed one is a clear error)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunFolderError(f"{run_dir} is not a run folder (no {MANIFEST}); pass a folder written by propagate")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} is not valid JSON ({err.__class__.__name__}); the run folder is damaged") from None
    if not isinstance(manifest, dict) or "kind" not in manifest or "status" not in manifest:
        raise RunFolderError(f"{path} lacks kind/status; the run folder is damaged")
    if manifest["status"] != "complete":
        raise RunFolderError(f"{run_dir} is marked {manifest['status']!r}: the run did not finish; rerun it")
    return manifest


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when the process gets SIGTERM, so cleanup runs as for Ctrl-C."""


@contextmanager
def terminate_as_interrupt():
    """While open, SIGTERM behaves like Ctrl-C (the run folder is then left marked incomplete)."""
    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. inside a test runner's worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
