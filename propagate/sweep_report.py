"""The depth sweep's run folder: write tables, figures and the PDF report; rebuild them from disk.

``write_outputs`` takes the layers table and writes everything derived from it;
``build_report`` reads only the folder's files, so ``propagate report RUN_DIR`` can rebuild it.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from propagate import plots
from propagate import sweep_tables as T
from propagate.report import Report
from propagate.runfolder import RunFolderError

QUESTION = ("Under each initializer, how do activation variance, gradient size and dead ReLUs change with depth, "
            "and does the mean-field theory predict it?")
METHOD = ("Every net of every depth is the one initialize(MLP(depth, width), init, seed) builds; per-layer random "
          "streams make layer l of every depth the same draw, so all depths of one seed are computed in one forward "
          "pass through the deepest net and one stacked backward pass (tested equal to building each depth on its "
          "own). Loss: mean cross-entropy of the readout on the batch. Variance = variance over all entries "
          "(batch × units). Statistics are exact in log space at any depth: ReLU with zero bias is positively "
          "homogeneous, so the signal is rescaled by powers of two after each layer and the exponent carried. "
          "Across seeds: means of log10 values (variances averaged in log space) with 95% Student-t intervals; rates "
          "are least-squares slopes of log10 variance per layer fitted per seed over the hidden layers of the "
          "deepest net, then t-intervals across seeds. Figures' bands: the same 95% t-intervals over seeds. "
          "Verdict 'stable' when the rate's CI overlaps ±0.01 log10/layer.")

CAPTIONS = {
    "1_forward_variance": "Forward pass. Each solid line is the mean over seeds of log10 Var(z^l) in the deepest net, "
                          "with a 95% band; dashed lines are the mean-field q map computed from each initializer's "
                          "weight variance and the actual fans. A flat line means the signal keeps its size; a "
                          "slope of s means ×10^s per layer. Look for solid and dashed lines lying on each other; the lower "
                          "panel shows measured minus theory in log10 units (0 = exact agreement; finite width "
                          "makes individual nets wander around it).",
    "2_backward_variance": "Backward pass. log10 variance of the loss gradient with respect to each layer's "
                           "pre-activations in the deepest net; gradients start at the readout (right) and travel "
                           "left. Dashed: the theory's per-layer factor fan_out·Var(W)/2, anchored at the measured "
                           "top hidden layer. A line falling to the left means gradients vanish before reaching "
                           "the first layers. Lower panel: measured minus theory (log10).",
    "3_output_variance": "Network output (readout pre-activation) variance against depth, mean and 95% t-interval "
                         "over seeds. The slope against depth is the forward rate; the intercept reflects the "
                         "input layer (fan_in 784).",
    "4_first_layer_gradient": "Frobenius norm of the first layer's weight gradient against depth: how strongly the "
                              "first layer learns as the net gets deeper. Vanishing (falling) or exploding (rising) "
                              "lines mean the first layer's step size depends on depth exponentially.",
    "5_dead_units": "Fraction of dead ReLUs (zero for every example of the batch) against depth, mean and 95% "
                    "t-interval over seeds. A unit dies when its pre-activation is negative on every example; that "
                    "becomes likely as depth drives the inputs' correlation towards 1 (figure 7), whatever the "
                    "weight scale. With zero biases, initializers of one family (N(0, σ²) for any σ) differ only by "
                    "a per-layer scale, and ReLU's sign pattern ignores scale: with the same seeds their dead "
                    "fractions are identical, so their lines lie on top of each other.",
    "6_variance_heatmap": "log10 Var(z^l) for every (depth, layer) cell, mean over seeds (white = 1, blue = smaller, "
                          "red = larger). Each column is one net. The colour should depend on the layer, not on "
                          "the depth of the net, since layer l of every depth is the same draw.",
    "7_correlation": "Correlation between the pre-activations of pairs of inputs, against the mean-field c map "
                     "c' = (1/π)(√(1−c²) + (π − arccos c)c) started from the inputs' own correlations (dashed). "
                     "Right: 1 − c on log–log axes; ReLU nets approach c = 1 only polynomially, 1 − c ≈ 9π²/(2ℓ²) "
                     "with ℓ = l + 1.5 ln l + l₀ (dotted; l₀ from the starting correlation — the bare 9π²/(2l²) "
                     "overstates 1 − c by 41% at l = 50), so deep ReLU nets slowly forget how inputs differ.",
}


def write_outputs(folder: Path, layers: pd.DataFrame, x_second_moment: float, input_corr: np.ndarray,
                  activation: str = "relu", bias: dict | None = None) -> dict:
    """Write layers/summary/rates/theory CSVs and the figures into ``folder`` (the report is built from them)."""
    folder = Path(folder)
    theory_df = T.theory_table(layers, x_second_moment, activation, input_corr=input_corr, bias=bias)
    summary_df = T.summary(layers)
    rates_df = T.rates(layers, theory_df)
    for name, df in (("layers", layers), ("summary", summary_df), ("rates", rates_df), ("theory", theory_df)):
        df.to_csv(folder / f"{name}.csv", index=False, float_format="%.10g")
    make_figures(folder)
    return {"verdicts": T.verdicts(rates_df), "rates": rates_df}


def _read(folder: Path, name: str) -> pd.DataFrame:
    path = Path(folder) / f"{name}.csv"
    if not path.is_file():
        raise RunFolderError(f"{folder} lacks {name}.csv; it is not a complete depth-sweep folder")
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} is not a readable CSV ({err.__class__.__name__}); the run folder is damaged") from None


LAYER_COLUMNS = {"init", "width", "depth", "seed", "layer", "name", "log10_preact_var", "log10_preact_grad_var",
                 "dead_frac", "preact_corr"}


def load_tables(folder: Path) -> dict[str, pd.DataFrame]:
    tables = {n: _read(folder, n) for n in ("layers", "summary", "rates", "theory")}
    missing = LAYER_COLUMNS - set(tables["layers"].columns)
    if missing:
        raise RunFolderError(f"{folder}/layers.csv lacks columns {sorted(missing)}; the run folder is damaged")
    return tables


def make_figures(folder: Path) -> list[Path]:
    t = load_tables(folder)
    figdir = Path(folder) / "figures"
    figdir.mkdir(exist_ok=True)
    args = {"1_forward_variance": (t["layers"], t["theory"]), "2_backward_variance": (t["layers"], t["theory"]),
            "3_output_variance": (t["summary"],), "4_first_layer_gradient": (t["summary"],),
            "5_dead_units": (t["summary"],), "6_variance_heatmap": (t["layers"],),
            "7_correlation": (t["layers"], t["theory"])}
    paths = []
    for name, fn in plots.FIGURES.items():
        fig = fn(*args[name])
        path = figdir / f"{name}.png"
        fig.savefig(path, dpi=130)
        plt.close(fig)
        paths.append(path)
    return paths


def _config_text(manifest: dict | None) -> str:
    if not manifest:
        return ""
    c = manifest.get("config", {})
    depths = c.get("depths", [])
    dtext = f"{min(depths)}–{max(depths)} ({len(depths)} depths)" if depths else "?"
    return (f"inits: {', '.join(c.get('inits', []))}; widths: {c.get('widths')}; depths: {dtext}; seeds: {c.get('seeds')}; "
            f"batch: {c.get('batch')}; input: {manifest.get('input', c.get('input'))}; bias: {c.get('bias')}; "
            f"activation: {c.get('activation')}; dtype: {c.get('dtype')}; device: {c.get('device')}.")


def build_report(folder: Path, out: Path, manifest: dict | None = None) -> Path:
    """Assemble report.pdf from the folder's CSVs and figures (no recomputation)."""
    with Report(out, "propagate depth sweep") as rep:
        add_pages(rep, folder, manifest)
    return out


def add_pages(rep: Report, folder: Path, manifest: dict | None = None) -> None:
    """Every page of a depth sweep's report, appended to ``rep`` (also used by combined reports)."""
    folder = Path(folder)
    t = load_tables(folder)
    if manifest is None and (folder / "manifest.json").exists():
        import json

        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except ValueError:
            raise RunFolderError(f"{folder}/manifest.json is not valid JSON; the run folder is damaged") from None
    figdir = folder / "figures"
    if not all((figdir / f"{n}.png").is_file() for n in plots.FIGURES):
        make_figures(folder)
    rates_df = t["rates"]
    verdicts = T.verdicts(rates_df, "forward")
    back = T.verdicts(rates_df, "backward")
    timing = ""
    if manifest and manifest.get("timings", {}).get("sweep"):
        timing = f" Sweep computed in {manifest['timings']['sweep']:.1f} s."
    rep.text_page("Depth sweep: signal propagation at initialisation", [
        ("Question", QUESTION),
        ("Configuration", _config_text(manifest) + timing),
        ("Verdicts, forward (activation variance per layer)", "\n".join(f"• {v}" for v in verdicts)),
        ("Verdicts, backward (gradient variance per layer, as it travels down)", "\n".join(f"• {v}" for v in back)),
        ("Method", METHOD),
    ])
    for name in plots.FIGURES:
        title = name.split("_", 1)[1].replace("_", " ").capitalize()
        rep.figure_page(title, figdir / f"{name}.png", CAPTIONS[name])
    r = rates_df[["init", "width", "direction", "rate", "ci_low", "ci_high", "n", "theory_rate", "factor", "verdict"]]
    rep.table_page("Rates: log10 variance per layer (rates.csv)", r,
                   "rate = mean over seeds of the per-seed least-squares slope; 95% t-interval; theory_rate = the "
                   "same fit of the mean-field curve; factor = 10^rate per layer.")
    s = t["summary"]
    depths = sorted(s["depth"].unique())
    pick = sorted(set([depths[0], depths[len(depths) // 4], depths[len(depths) // 2], depths[-1]]))
    cols = ["init", "width", "depth", "log10_output_var_mean", "log10_output_var_ci_low", "log10_output_var_ci_high",
            "log10_first_wgrad_mean", "dead_frac_mean_mean", "born_dead_frac"]
    view = s[s["depth"].isin(pick)][cols].rename(columns={
        "log10_output_var_mean": "log10 out var", "log10_output_var_ci_low": "CI low", "log10_output_var_ci_high": "CI high",
        "log10_first_wgrad_mean": "log10 |dW1|", "dead_frac_mean_mean": "dead frac", "born_dead_frac": "born dead"})
    rep.table_page("Summary at selected depths (summary.csv)", view,
                   f"Means over seeds at depths {', '.join(map(str, pick))}; the full table has every depth.")
