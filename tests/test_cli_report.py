"""``propagate report``: rebuild a run's report from its folder; combine several; clear errors on bad folders."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from propagate import SweepConfig, depth_sweep
from propagate.cli import main


def pdf_pages(path) -> int:
    data = path.read_bytes()
    return data.count(b"/Type /Page") - data.count(b"/Type /Pages")


def pdf_text(path) -> str | None:
    if shutil.which("pdftotext") is None:
        return None
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sweep"
    depth_sweep(SweepConfig(depths=[1, 2, 3, 4], inits=["xavier", "he"], widths=[16], seeds=2, batch=16,
                            input="gaussian"), out)
    return out


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mnist"
    res = CliRunner().invoke(main, ["mnist", "--inits", "he,xavier", "--seeds", "2", "--epochs", "1", "--hidden", "16",
                                    "--train-limit", "256", "--record-every", "2", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def same_content(a, b):
    assert pdf_pages(a) == pdf_pages(b)
    ta, tb = pdf_text(a), pdf_text(b)
    if ta is not None:
        assert ta == tb


def test_rebuild_sweep_report_identical(sweep_dir, tmp_path):
    out = tmp_path / "again.pdf"
    res = CliRunner().invoke(main, ["report", str(sweep_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    same_content(sweep_dir / "report.pdf", out)


def test_rebuild_mnist_report_identical(mnist_dir, tmp_path):
    out = tmp_path / "again.pdf"
    res = CliRunner().invoke(main, ["report", str(mnist_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    same_content(mnist_dir / "report.pdf", out)


def test_combined_report(sweep_dir, mnist_dir, tmp_path):
    out = tmp_path / "combined.pdf"
    res = CliRunner().invoke(main, ["report", str(sweep_dir), str(mnist_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert pdf_pages(out) > 3
    text = pdf_text(out)
    if text is not None:
        assert "the signal at initialisation" in text.lower() and "what it does to training" in text.lower()
        # verdicts come from the folders' CSVs
        import pandas as pd

        m = pd.read_csv(mnist_dir / "metrics.csv")
        acc = 100 * m[m["epoch"] == m["epoch"].max()].groupby("init")["test_acc"].mean()
        for init, a in acc.items():
            assert f"{init}: final test accuracy {a:.2f}%" in text
        assert "kaiming_normal (width 16)" in text


@pytest.mark.parametrize("damage", ["missing", "no_manifest", "bad_json", "incomplete", "no_kind", "missing_csv"])
def test_bad_folders_are_one_line_errors(sweep_dir, tmp_path, damage):
    bad = tmp_path / "bad"
    if damage != "missing":
        shutil.copytree(sweep_dir, bad)
        manifest = bad / "manifest.json"
        if damage == "no_manifest":
            manifest.unlink()
        elif damage == "bad_json":
            manifest.write_text("{not json")
        elif damage in ("incomplete", "no_kind"):
            d = json.loads(manifest.read_text())
            if damage == "incomplete":
                d["status"] = "incomplete"
            else:
                del d["kind"]
            manifest.write_text(json.dumps(d))
        elif damage == "missing_csv":
            (bad / "rates.csv").unlink()
    res = CliRunner().invoke(main, ["report", str(bad), "--out", str(tmp_path / "x.pdf")])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    err = [l for l in res.output.splitlines() if l.startswith("Error:")]
    assert len(err) == 1 and str(bad) in err[0]
    assert not (tmp_path / "x.pdf").exists()
