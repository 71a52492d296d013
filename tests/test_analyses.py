"""Every analysis in analyses/ runs at its --quick size and writes a PDF, CSVs and a verdict that agrees with its numbers."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from propagate.analysis_support import ANALYSES_DIR, available, execute
from propagate.cli import main

EXPECTED = {"seed_baseline", "he2015_deep", "glorot2010_histograms", "hanin2018_width", "born_dead", "phase_diagram",
            "jacobian_spectrum"}


def pdf_pages(path) -> int:
    data = path.read_bytes()
    return data.count(b"/Type /Page") - data.count(b"/Type /Pages")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Run each analysis once (lazily) at --quick size into one temporary reports folder."""
    out = tmp_path_factory.mktemp("reports")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = execute(name, quick=True, out=out)
        return cache[name]

    get.out = out
    return get


def check_outputs(result, out, name, tables):
    assert (out / f"{name}.pdf").is_file() and pdf_pages(out / f"{name}.pdf") >= 3
    for t in tables:
        assert (out / name / f"{t}.csv").is_file(), t
    assert list((out / name / "figures").glob("*.png"))
    saved = json.loads((out / name / "result.json").read_text())
    assert saved["verdict"] == result["verdict"] and saved["size"] == "quick"
    assert len(result["verdict"]) > 40


def test_all_analyses_present():
    assert EXPECTED <= set(available())
    for name in EXPECTED:
        doc = (ANALYSES_DIR / f"{name}.py").read_text()
        assert '"""' in doc.split("\n", 1)[0] and "Paper" in doc[:1500]


def test_born_dead(quick):
    r = quick("born_dead")
    check_outputs(r, quick.out, "born_dead", ["cells"])
    cells = pd.read_csv(quick.out / "born_dead" / "cells.csv")
    inside = (cells["theory"] >= cells["wilson_low"]) & (cells["theory"] <= cells["wilson_high"])
    assert inside.mean() >= 0.8
    assert r["numbers"]["inside_fraction"] == pytest.approx(inside.mean())
    assert r["verdict"].startswith("Supported")
    assert f"{inside.sum()} of {len(cells)}" in r["verdict"]


def test_phase_diagram(quick):
    r = quick("phase_diagram")
    check_outputs(r, quick.out, "phase_diagram", ["layers", "rates", "theory"])
    rates = pd.read_csv(quick.out / "phase_diagram" / "rates.csv").sort_values("sigma_w2")
    assert (rates[rates["sigma_w2"] <= 1.8]["rate"] < 0).all()
    assert (rates[rates["sigma_w2"] >= 2.2]["rate"] > 0).all()
    assert abs(r["numbers"]["crossing"] - 2.0) < 0.15
    assert f"{r['numbers']['crossing']:.3f}" in r["verdict"]


def test_hanin(quick):
    r = quick("hanin2018_width")
    check_outputs(r, quick.out, "hanin2018_width", ["cells", "per_width"])
    n = r["numbers"]
    assert 3.0 < n["c_fit"] < 8.0
    assert n["c_ci_low"] < n["c_fit"] < n["c_ci_high"]
    assert f"c = {n['c_fit']:.2f}" in r["verdict"]


def test_jacobian_spectrum(quick):
    r = quick("jacobian_spectrum")
    check_outputs(r, quick.out, "jacobian_spectrum", ["jacobians", "summary", "growth"])
    n = r["numbers"]
    assert n["jacrev_max_abs_error"] < 1e-10
    assert n["he_spread_slope"] > 0 and n["he_spread_last"] > n["he_spread_first"]
    summ = pd.read_csv(quick.out / "jacobian_spectrum" / "summary.csv")
    he = summ[summ["init"] == "he"].sort_values("depth")["std_log10_sv_mean"].to_numpy()
    assert he[-1] > he[0]
    assert f"{n['he_spread_last']:.2f} at depth" in r["verdict"]


def test_glorot(quick):
    r = quick("glorot2010_histograms")
    check_outputs(r, quick.out, "glorot2010_histograms", ["quantiles", "ratios"])
    n = r["numbers"]
    # tanh: the standard init shrinks activations across 5 layers more than Xavier; He keeps ReLU's scale.
    assert n["ratio_tanh_torch_default_activation"] < n["ratio_tanh_xavier_uniform_activation"]
    assert 0.6 < n["ratio_relu_kaiming_normal_activation"] < 1.6
    assert f"{n['ratio_tanh_torch_default_activation']:.2f}" in r["verdict"]


def test_he2015(quick):
    r = quick("he2015_deep")
    check_outputs(r, quick.out, "he2015_deep", ["metrics", "signals", "summary"])
    n = r["numbers"]
    # at initialisation Xavier's gradient loses many decades between layer 30 and layer 1; He's does not
    assert n["xavier_grad_attenuation_init"] < -5 < n["he_grad_attenuation_init"]
    assert ("Xavier stalls" in r["verdict"]) == n["xavier_stalls"]


def test_seed_baseline(quick):
    r = quick("seed_baseline")
    check_outputs(r, quick.out, "seed_baseline", ["metrics", "final_accuracy", "tests_final", "tests_epoch1"])
    n = r["numbers"]
    assert n["normal_final_acc"] < max(n["he_final_acc"], n["xavier_final_acc"])
    best = n["final_best"]
    assert (n["he_final_claim"] in ("best", "tied-best")) == (best == "he")
    tests = pd.read_csv(quick.out / "seed_baseline" / "tests_final.csv")
    he_behind = tests[((tests["a"] == "he") & (tests["diff"] < 0)) | ((tests["b"] == "he") & (tests["diff"] > 0))]
    assert (n["he_final_claim"] == "worse") == bool(he_behind["significant"].any())
    assert f"{100 * n[best + '_final_acc']:.2f}%" in r["verdict"]


def test_cli_runs_an_analysis(tmp_path):
    res = CliRunner().invoke(main, ["analysis", "born_dead", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "born_dead:" in res.output and (tmp_path / "born_dead.pdf").is_file()


def test_cli_unknown_analysis():
    res = CliRunner().invoke(main, ["analysis", "nope"])
    assert res.exit_code == 2
    assert "unknown analysis 'nope'" in res.output and "born_dead" in res.output
    assert "Traceback" not in res.output


def test_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, str(ANALYSES_DIR / "born_dead.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "born_dead.pdf").is_file() and (tmp_path / "born_dead" / "cells.csv").is_file()
