"""The depth sweep: the batched engine against a naive per-depth reference, theory, tables, report, CLI."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from propagate import inits as I
from propagate.cli import main
from propagate.nets import MLP
from propagate.recorder import Recorder
from propagate.sweep import SweepConfig, bias_for, depth_sweep, run_sweep, sweep_inputs

GRID = dict(depths=[1, 2, 3, 5], widths=[16], seeds=2, batch=8, input="gaussian")


def naive(config, x, y):
    """A fresh float64 MLP per (init, seed, depth), initialised by the public API, recorded by hooks."""
    rows = []
    for name in config.inits:
        init = I.get(name)
        for seed in range(config.seeds):
            for depth in config.depths:
                for width in config.widths:
                    net = MLP(depth=depth, width=width, dtype=torch.float64, activation=config.activation)
                    I.initialize(net, init, seed=seed, bias=bias_for(init, config.bias), data=x.double())
                    with Recorder(net, pair_correlation=True) as rec:
                        F.cross_entropy(net(x.double()), y).backward()
                    t = rec.table().assign(init=init.name, width=width, depth=depth, seed=seed)
                    rows.append(t)
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("inits,bias,activation", [
    (["xavier", "he", "normal", "lecun_normal"], "zero", "relu"),
    (["xavier_uniform", "kaiming_uniform", "torch_default", "orthogonal", "lsuv"], "zero", "relu"),
    (["he", "gaussian:2.0:0.1"], "torch_default", "relu"),
    (["he"], "zero", "tanh"),
    (["xavier"], "zero", "leaky_relu"),
])
def test_engine_equals_naive_per_depth_reference(inits, bias, activation):
    config = SweepConfig(inits=inits, bias=bias, activation=activation, weight_grads="all", **GRID)
    x, y, _ = sweep_inputs(config)
    fast, _ = run_sweep(config, inputs=(x, y, "test"))
    ref = naive(config.validate(), x, y)
    key = ["init", "width", "depth", "seed", "layer"]
    merged = fast.merge(ref, on=key, suffixes=("", "_ref"))
    assert len(merged) == len(fast) == len(ref)
    for col in ("log10_preact_var", "log10_act_var", "log10_preact_grad_var", "log10_weight_grad_norm", "weight_norm",
                "preact_mean", "act_mean"):
        np.testing.assert_allclose(merged[col], merged[col + "_ref"], rtol=2e-4, atol=2e-5, err_msg=col)
    for col in ("zero_frac", "dead_frac", "preact_corr"):
        np.testing.assert_allclose(merged[col], merged[col + "_ref"], atol=1e-4, err_msg=col)


def test_summary_weight_grads_are_the_same_numbers_where_computed():
    """The default 'summary' scope computes ||dL/dW|| for layer 1 of every depth and all of the deepest net."""
    config = dict(GRID, inits=["he", "normal"])
    full, _ = run_sweep(SweepConfig(weight_grads="all", **config))
    part, _ = run_sweep(SweepConfig(weight_grads="summary", **config))
    have = part["log10_weight_grad_norm"].notna()
    expected = (part["layer"] == 1) | (part["depth"] == part["depth"].max()) | (part["name"] == "readout")
    assert (have == expected).all()
    np.testing.assert_array_equal(part.loc[have, "log10_weight_grad_norm"], full.loc[have, "log10_weight_grad_norm"])
    other = [c for c in part.columns if c not in ("log10_weight_grad_norm", "weight_grad_norm")]
    pd.testing.assert_frame_equal(part[other], full[other])


def test_theory_rates_default_inits():
    """Width 512, depth 30, 3 seeds: measured rates within their CI (+0.01) of log10(σ_w²/2)."""
    from propagate import sweep_tables as T

    config = SweepConfig(depths=[30], widths=[512], seeds=3, batch=128, input="gaussian")
    x, y, _ = sweep_inputs(config)
    layers, info = run_sweep(config, inputs=(x, y, "gaussian"))
    th = T.theory_table(layers, float((x ** 2).mean()))
    rates = T.rates(layers, th)
    expect = {"xavier_normal": math.log10(0.5), "kaiming_normal": 0.0, "normal": math.log10(256)}
    for row in rates.itertuples():
        assert row.theory_rate == pytest.approx(expect[row.init], abs=1e-9)
        assert row.ci_low - 0.01 <= row.theory_rate <= row.ci_high + 0.01, row
    verdict = dict(zip(rates[rates.direction == "forward"]["init"], rates[rates.direction == "forward"]["verdict"]))
    assert verdict == {"xavier_normal": "vanishes", "kaiming_normal": "stable", "normal": "explodes"}
    assert info["gflop"] > 0


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    config = SweepConfig(depths=list(range(1, 9)), widths=[32, 64], seeds=3, batch=64, input="mnist")
    manifest = depth_sweep(config, out)
    return out, manifest


def test_run_folder_contract(sweep_folder):
    out, manifest = sweep_folder
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "layers.csv", "summary.csv", "rates.csv", "theory.csv", "report.pdf", "figures"} <= names
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["config"]["seeds"] == 3 and "torch" in m["versions"]
    assert m["wall_seconds"] > 0 and "MNIST" in m["input"]
    assert not list(out.parent.glob(".run.partial*"))
    assert len(list((out / "figures").glob("*.png"))) == 7


def test_csv_schemas(sweep_folder):
    out, _ = sweep_folder
    layers = pd.read_csv(out / "layers.csv")
    # one row per (init, width, depth, seed, layer): depth d has d hidden layers + the readout
    assert len(layers) == 3 * 2 * 3 * sum(d + 1 for d in range(1, 9))
    assert not layers.duplicated(["init", "width", "depth", "seed", "layer"]).any()
    for col in ("log10_preact_var", "log10_act_var", "zero_frac", "dead_frac", "preact_grad_var",
                "log10_preact_grad_var", "weight_grad_norm", "log10_weight_grad_norm", "weight_norm", "fan_in", "fan_out"):
        assert col in layers
    assert (layers["dead_frac"] <= layers["zero_frac"] + 1e-12).all()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3 * 2 * 8
    for col in ("log10_output_var_mean", "log10_output_var_ci_low", "log10_output_var_ci_high", "log10_first_wgrad_mean",
                "dead_frac_mean_mean", "dead_frac_last_mean", "born_dead_frac"):
        assert col in summary
    assert (summary["log10_output_var_ci_low"] <= summary["log10_output_var_mean"]).all()
    rates = pd.read_csv(out / "rates.csv")
    assert len(rates) == 3 * 2 * 2 and set(rates["direction"]) == {"forward", "backward"}
    assert {"rate", "ci_low", "ci_high", "theory_rate", "verdict"} <= set(rates.columns)
    theory = pd.read_csv(out / "theory.csv")
    assert len(theory) == 3 * 2 * 8 and {"log10_q", "chi", "c"} <= set(theory.columns)
    he = theory[theory["init"] == "kaiming_normal"]
    assert np.allclose(he[he["layer"] > 1]["chi"], 1.0)   # σ_w²/2 = 1 at criticality
    # the summary's output variance is the mean over seeds of the readout rows of layers.csv
    ro = layers[(layers["name"] == "readout") & (layers["init"] == "normal") & (layers["width"] == 64) & (layers["depth"] == 8)]
    s = summary[(summary["init"] == "normal") & (summary["width"] == 64) & (summary["depth"] == 8)]
    assert float(s["log10_output_var_mean"].iloc[0]) == pytest.approx(ro["log10_preact_var"].mean())


def test_report_pages(sweep_folder):
    """Title page, the 7 figures, the rates table and the summary table: 10 pages, each figure embedded."""
    import re

    out, _ = sweep_folder
    data = (out / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) == 10
    assert len(re.findall(rb"/Subtype\s*/Image", data)) >= 7


def test_same_command_same_csvs(tmp_path):
    config = dict(depths=[1, 3, 4], widths=[16], seeds=2, batch=16, input="gaussian")
    depth_sweep(SweepConfig(**config), tmp_path / "a", report=False)
    depth_sweep(SweepConfig(**config), tmp_path / "b", report=False)
    for name in ("layers", "summary", "rates", "theory"):
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()


@pytest.mark.parametrize("args,fragment", [
    (["--max-depth", "0"], "--max-depth"),
    (["--depths", "-3"], "--depths"),
    (["--depths", "1,x"], "--depths"),
    (["--widths", "512,abc"], "--widths"),
    (["--widths", "0"], "--widths"),
    (["--inits", "nope"], "unknown initializer"),
    (["--inits", ""], "--inits"),
    (["--inits", ","], "--inits"),
    (["--seeds", "0"], "--seeds"),
    (["--batch", "1"], "--batch"),
    (["--min-depth", "9", "--max-depth", "3"], "--min-depth"),
    (["--input", "cifar"], "--input"),
    (["--bias", "minus"], "bias"),
    (["--device", "tpu"], "--device"),
    (["--dtype", "float16"], "--dtype"),
])
def test_cli_errors(args, fragment, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["depth-sweep", "--out", str(out), "--quiet", *args])
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and fragment in text
    assert text.splitlines()[-1].startswith("Error:") and len(text.splitlines()[-1]) < 600
    assert not out.exists()


def test_cli_out_not_empty_and_unwritable(tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("keep me")
    r = CliRunner().invoke(main, ["depth-sweep", "--out", str(out), "--quiet", "--depths", "1", "--seeds", "1"])
    assert r.exit_code == 2 and "--overwrite" in r.output and (out / "x").read_text() == "keep me"
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = CliRunner().invoke(main, ["depth-sweep", "--out", str(blocker / "sub"), "--quiet", "--depths", "1"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_cli_runs_and_prints_verdicts(tmp_path):
    out = tmp_path / "ok"
    r = CliRunner().invoke(main, ["depth-sweep", "--depths", "1-6", "--widths", "64", "--seeds", "2", "--batch", "32",
                                  "--input", "gaussian", "--out", str(out), "--quiet", "--no-report"])
    assert r.exit_code == 0, r.output
    assert "kaiming_normal" in r.output and "explodes" in r.output
    assert not (out / "report.pdf").exists() and (out / "rates.csv").exists()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_interrupted_sweep_resumes_to_the_same_result(tmp_path, sig, wait_for):
    """Kill a real sweep after its first finished cell; --resume completes it; CSVs equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys

    args = ["--depths", "1-40", "--widths", "96", "--seeds", "6", "--batch", "192", "--input", "gaussian",
            "--quiet", "--no-report"]
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "propagate", "depth-sweep", *args, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpts = lambda: list(tmp_path.glob(".run.partial-*/checkpoints/*.csv"))
    assert wait_for(lambda: len(ckpts()) >= 1 or proc.poll() is not None)
    assert proc.poll() is None, "the sweep finished before it could be interrupted; make the grid bigger"
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=60)
    assert proc.returncode != 0
    leftover = out if sig == "SIGTERM" else next(tmp_path.glob(".run.partial-*"))
    manifest = json.loads((leftover / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert not (leftover / "report.pdf").exists() and not (leftover / "layers.csv").exists()
    if sig == "SIGTERM":
        assert "interrupted" in manifest and "--resume" in proc.stderr.read().decode()
    r = CliRunner().invoke(main, ["depth-sweep", "--resume", str(out), "--quiet", "--no-report"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert not (out / "checkpoints").exists() and not list(tmp_path.glob(".run.partial-*"))
    ref = tmp_path / "ref"
    r = CliRunner().invoke(main, ["depth-sweep", *args, "--out", str(ref)])
    assert r.exit_code == 0, r.output
    for name in ("layers", "summary", "rates", "theory"):
        assert (out / f"{name}.csv").read_bytes() == (ref / f"{name}.csv").read_bytes(), name


def test_resume_errors(tmp_path):
    r = CliRunner().invoke(main, ["depth-sweep", "--resume", str(tmp_path / "nothing"), "--quiet"])
    assert r.exit_code == 2 and "no interrupted depth-sweep run" in r.output
