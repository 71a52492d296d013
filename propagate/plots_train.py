"""Figures, tables and the PDF report of an MNIST run, built from the run folder's files only.

:func:`build_mnist_report` reads ``metrics.csv``, ``signals.csv`` and ``manifest.json`` and writes
``figures/*.png`` and ``report.pdf`` into the same folder, so ``propagate report`` can rebuild a
report later from disk.  The verdict sentences are computed from the numbers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from propagate import stats
from propagate.report import Report

__all__ = ["build_mnist_report", "load_run", "final_accuracy", "time_to_threshold", "he_verdict",
           "learning_curves_figure", "signals_figure", "batch_curves_figure"]

THRESHOLD = 0.95
LAYER_ORDER_KEY = "layer"


class MnistReportError(ValueError):
    """The folder is not an MNIST run folder (one line)."""


# --------------------------------------------------------------------------------------------
def load_run(run_dir) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(metrics, signals, manifest) of an MNIST run folder (complete or being written)."""
    run_dir = Path(run_dir)
    need = [run_dir / "metrics.csv", run_dir / "signals.csv", run_dir / "manifest.json"]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        raise MnistReportError(f"{run_dir} is not an MNIST run folder: missing {', '.join(missing)}")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except ValueError:
        raise MnistReportError(f"{run_dir / 'manifest.json'} is not valid JSON; the run folder is damaged") from None
    from propagate.train import METRIC_COLUMNS

    metrics = _read_checked(run_dir / "metrics.csv", METRIC_COLUMNS, [c for c in METRIC_COLUMNS if c != "init"])
    signals = _read_checked(run_dir / "signals.csv", SIGNAL_NEEDS, [c for c in SIGNAL_NEEDS if c not in ("init", "name")])
    for df in (metrics, signals):
        df["init"] = df["init"].astype(str)
    return metrics, signals, manifest


SIGNAL_NEEDS = ("init", "seed", "step", "epoch", "layer", "name", "log10_preact_var", "log10_weight_grad_norm", "dead_frac")


def _read_checked(path: Path, need, numeric) -> pd.DataFrame:
    """A run folder's CSV, validated: readable, the columns the report needs, numeric keys without gaps."""
    try:
        df = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MnistReportError(f"{path} is not a readable CSV ({err.__class__.__name__}); the run folder is damaged") from None
    missing = [c for c in need if c not in df.columns]
    bad = [c for c in numeric if c in df.columns and not pd.api.types.is_numeric_dtype(df[c])]
    keys = [c for c in ("epoch", "seed", "step") if c in df]
    if missing or bad or df.empty or df[keys].isna().any().any():
        raise MnistReportError(f"{path} is damaged (missing columns {missing}, non-numeric {bad}, or empty/NaN keys); "
                               "rerun the run")
    return df


def _init_order(metrics: pd.DataFrame, manifest: dict) -> list[str]:
    order = list(manifest.get("config", {}).get("inits", []))
    present = list(dict.fromkeys(metrics["init"]))
    return [i for i in order if i in present] + [i for i in present if i not in order]


def _n_seeds(metrics: pd.DataFrame) -> int:
    return int(metrics.groupby("init")["seed"].nunique().min())


def _errorbar(metrics: pd.DataFrame):
    return ("ci", 95) if _n_seeds(metrics) >= 2 else None


# --------------------------------------------------------------------------------------------
# Numbers
def final_accuracy(metrics: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per init: final test accuracy mean with a t-interval over seeds, peak accuracy, final losses (in %)."""
    last = metrics[metrics["epoch"] == metrics["epoch"].max()]
    peak = metrics[metrics["epoch"] >= 1].groupby(["init", "seed"], as_index=False)["test_acc"].max() \
        .rename(columns={"test_acc": "peak_acc"})
    df = last.merge(peak, on=["init", "seed"])
    ci = stats.mean_ci(df, "init", ["test_acc", "peak_acc", "train_loss", "test_loss"])
    out = pd.DataFrame({
        "init": ci["init"],
        "n": ci["n"].astype(int),
        "final acc %": 100 * ci["test_acc_mean"],
        "95% CI low": 100 * ci["test_acc_ci_low"],
        "95% CI high": 100 * ci["test_acc_ci_high"],
        "peak acc %": 100 * ci["peak_acc_mean"],
        "train loss": ci["train_loss_mean"],
        "test loss": ci["test_loss_mean"],
    })
    if order:
        out = out.set_index("init").loc[[i for i in order if i in set(out["init"])]].reset_index()
    return out


def time_to_threshold(metrics: pd.DataFrame, signals: pd.DataFrame, threshold: float = THRESHOLD,
                      order: list[str] | None = None) -> pd.DataFrame:
    """Per init: first epoch (and its step) at which the seed-mean test accuracy reaches ``threshold``,
    how many seeds reach it, and the first recorded step at which the seed-mean accuracy on the
    recorded training batch reaches it (finer than epochs)."""
    rows = []
    inits = order or list(dict.fromkeys(metrics["init"]))
    for init in inits:
        m = metrics[(metrics["init"] == init) & (metrics["epoch"] >= 1)]
        curve = m.groupby("epoch").agg(acc=("test_acc", "mean"), step=("step", "first")).sort_index()
        hit = curve[curve["acc"] >= threshold]
        per_seed = m[m["test_acc"] >= threshold].groupby("seed")["epoch"].min()
        n = m["seed"].nunique()
        s = signals[signals["init"] == init].drop_duplicates(["seed", "step"])
        bcurve = s.groupby("step")["batch_acc"].mean().sort_index()
        bhit = bcurve[bcurve >= threshold]
        rows.append({
            "init": init,
            "first epoch (mean curve)": int(hit.index[0]) if len(hit) else "never",
            "its step": int(hit["step"].iloc[0]) if len(hit) else "never",
            "seeds reaching": f"{len(per_seed)}/{n}",
            "epoch range over seeds": (f"{int(per_seed.min())}–{int(per_seed.max())}" if len(per_seed) else "never"),
            "first step, train batch": int(bhit.index[0]) if len(bhit) else "never",
        })
    return pd.DataFrame(rows)


def _step_key(v) -> float:
    return math.inf if isinstance(v, str) else float(v)


def he_verdict(metrics: pd.DataFrame, signals: pd.DataFrame, tests: pd.DataFrame | None) -> str:
    """A sentence supporting or refuting "He converges fastest and reaches the best accuracy"."""
    inits = list(dict.fromkeys(metrics["init"]))
    he = next((i for i in inits if i in ("he", "kaiming", "kaiming_normal", "he_normal")), None)
    if he is None or len(inits) < 2:
        return ("The claim \"He converges fastest and reaches the best accuracy\" needs He and at least one other "
                "initializer in the run; not tested here.")
    fin = final_accuracy(metrics)
    fin = fin.set_index("init")
    best = fin["final acc %"].idxmax()
    ttt = time_to_threshold(metrics, signals).set_index("init")
    key = {i: (_step_key(ttt.loc[i, "its step"]), _step_key(ttt.loc[i, "first step, train batch"])) for i in inits}
    fastest = min(inits, key=lambda i: key[i])
    fastest_tied = [i for i in inits if key[i] == key[fastest]]
    he_fastest = he in fastest_tied and math.isfinite(key[fastest][1])
    he_best = best == he
    parts = []
    if not math.isfinite(key[fastest][1]):
        parts.append(f"no initializer reaches {THRESHOLD:.0%} accuracy in this run, so speed to {THRESHOLD:.0%} "
                     "cannot be compared")
    elif he_fastest:
        parts.append(f"He is {'among the fastest' if len(fastest_tied) > 1 else 'the fastest'} to {THRESHOLD:.0%} "
                     f"(test: step {ttt.loc[he, 'its step']}; training batch: step {ttt.loc[he, 'first step, train batch']})")
    else:
        parts.append(f"{fastest} is faster to {THRESHOLD:.0%} than He (test: step {ttt.loc[fastest, 'its step']} vs "
                     f"{ttt.loc[he, 'its step']}; training batch: step {ttt.loc[fastest, 'first step, train batch']} vs "
                     f"{ttt.loc[he, 'first step, train batch']})")
    acc = f"{fin.loc[he, 'final acc %']:.2f}%"
    if he_best:
        parts.append(f"He has the highest mean final test accuracy ({acc})")
    else:
        parts.append(f"{best} has a higher mean final test accuracy ({fin.loc[best, 'final acc %']:.2f}%) than He ({acc})")
    significant_note = ""
    if tests is not None and len(tests):
        vs = tests[(tests["a"] == he) | (tests["b"] == he)]
        better = [(r.b if r.a == he else r.a) for r in vs.itertuples()
                  if r.significant and ((r.a == he and r.diff > 0) or (r.b == he and r.diff < 0))]
        worse = [(r.b if r.a == he else r.a) for r in vs.itertuples()
                 if r.significant and ((r.a == he and r.diff < 0) or (r.b == he and r.diff > 0))]
        others = [i for i in inits if i != he]
        tied = [i for i in others if i not in better and i not in worse]
        bits = []
        if better:
            bits.append("significantly better than " + ", ".join(better))
        if worse:
            bits.append("significantly worse than " + ", ".join(worse))
        if tied:
            bits.append("not significantly different from " + ", ".join(tied))
        significant_note = " In final accuracy He is " + "; ".join(bits) + " (Welch t, Holm-corrected, 5% level)."
        strong = he_fastest and he_best and not worse and not tied
    else:
        significant_note = " With one seed per initializer no test is possible; these are point estimates."
        strong = False
    if he_fastest and he_best:
        verdict = "Supported" if strong else "Supported by the point estimates only"
        if tests is not None and len(tests) and not strong:
            verdict = "Partly supported (the accuracy lead is not significant against every other initializer)"
    elif he_fastest or he_best:
        verdict = "Partly supported"
    else:
        verdict = "Refuted"
    return f"{verdict}: " + "; ".join(parts) + "." + significant_note


# --------------------------------------------------------------------------------------------
# Figures
def _style():
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def learning_curves_figure(metrics: pd.DataFrame, order: list[str], path: Path) -> Path:
    _style()
    eb = _errorbar(metrics)
    df = metrics.copy()
    df["test accuracy (%)"] = 100 * df["test_acc"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2))
    kw = dict(hue="init", hue_order=order, errorbar=eb, marker="o", markersize=4)
    sns.lineplot(df, x="epoch", y="test accuracy (%)", ax=axes[0, 0], **kw)
    axes[0, 0].set(title="Test accuracy, all epochs", xlabel="epoch (0 = at initialisation)",
                   ylabel="test accuracy (%)")
    late = df[df["epoch"] >= 1]
    sns.lineplot(late, x="epoch", y="test accuracy (%)", ax=axes[0, 1], **kw)
    lo = np.nanpercentile(late["test accuracy (%)"], 5) if len(late) else 0
    axes[0, 1].set_ylim(max(0, min(lo, 95) - 1), 100)
    axes[0, 1].axhline(100 * THRESHOLD, color="0.4", ls="--", lw=1, label=f"{THRESHOLD:.0%}")
    axes[0, 1].set(title="Test accuracy, zoomed (epoch ≥ 1)", xlabel="epoch", ylabel="test accuracy (%)")
    for ax, col, name in ((axes[1, 0], "train_loss", "training loss"), (axes[1, 1], "test_loss", "test loss")):
        d = df[np.isfinite(df[col]) & (df[col] > 0)]
        sns.lineplot(d, x="epoch", y=col, ax=ax, **kw)
        ax.set_yscale("log")
        ax.set(title=f"{name.capitalize()} (cross-entropy)", xlabel="epoch (0 = at initialisation)",
               ylabel=f"{name} (log10 scale)")
    for ax in axes.flat:
        ax.legend(title="init", fontsize=8, title_fontsize=8)
    n = _n_seeds(metrics)
    fig.suptitle("Learning curves per initializer" + (f" (mean over {n} seeds, 95% CI bands)" if n >= 2 else " (one seed)"),
                 fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


SIGNAL_PANELS = {
    "log10_preact_var": ("log10 pre-activation variance", "Pre-activation variance per layer during training"),
    "log10_weight_grad_norm": ("log10 weight-gradient norm", "Weight-gradient norm per layer during training"),
    "dead_frac": ("dead fraction of units", "Dead units per hidden layer during training"),
}


def signals_figure(signals: pd.DataFrame, column: str, order: list[str], path: Path) -> Path:
    _style()
    ylabel, title = SIGNAL_PANELS[column]
    df = signals.copy()
    if column == "dead_frac":
        last_layer = df["layer"].max()
        df = df[df["layer"] < last_layer]  # the readout has no ReLU
    df[column] = df[column].replace([np.inf, -np.inf], np.nan)
    names = df.drop_duplicates("layer").sort_values("layer")["name"].tolist()
    eb = ("ci", 95) if df.groupby("init")["seed"].nunique().min() >= 2 else None
    g = sns.relplot(df, x="step", y=column, hue="name", hue_order=names, col="init", col_order=order,
                    col_wrap=1 if len(order) <= 3 else 2, kind="line", errorbar=eb, marker="o", markersize=3,
                    height=2.9 if len(order) <= 3 else 2.4, aspect=2.6 if len(order) <= 3 else 1.5,
                    facet_kws=dict(sharey=True, sharex=True))
    g.set_axis_labels("optimizer step", ylabel)
    g.set_titles("init = {col_name}")
    if g.legend is not None:
        g.legend.set_title("layer")
    g.figure.suptitle(title + (" (mean over seeds, 95% CI)" if eb else ""), fontsize=12)
    for ax in g.axes.flat:
        ax.tick_params(labelbottom=True)
    g.figure.tight_layout()
    g.figure.subplots_adjust(right=0.84, top=1 - 0.65 / g.figure.get_figheight())
    g.figure.savefig(path, dpi=130)
    plt.close(g.figure)
    return path


def batch_curves_figure(signals: pd.DataFrame, order: list[str], path: Path) -> Path:
    _style()
    df = signals.drop_duplicates(["init", "seed", "step"]).copy()
    df["batch accuracy (%)"] = 100 * df["batch_acc"]
    eb = ("ci", 95) if df.groupby("init")["seed"].nunique().min() >= 2 else None
    fig, axes = plt.subplots(2, 1, figsize=(9, 8))
    kw = dict(hue="init", hue_order=order, errorbar=eb, marker="o", markersize=3)
    d = df[np.isfinite(df["batch_loss"]) & (df["batch_loss"] > 0)]
    sns.lineplot(d, x="step", y="batch_loss", ax=axes[0], **kw)
    axes[0].set_yscale("log")
    axes[0].set(title="Loss on the recorded training batch", xlabel="optimizer step",
                ylabel="cross-entropy (log10 scale)")
    sns.lineplot(df, x="step", y="batch accuracy (%)", ax=axes[1], **kw)
    axes[1].axhline(100 * THRESHOLD, color="0.4", ls="--", lw=1)
    axes[1].set(title="Accuracy on the recorded training batch", xlabel="optimizer step", ylabel="accuracy (%)")
    for ax in axes:
        ax.legend(title="init", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
def _config_text(manifest: dict, metrics: pd.DataFrame) -> str:
    c = manifest.get("config", {})
    lines = [
        f"initializers: {', '.join(c.get('inits', sorted(metrics['init'].unique())))}; "
        f"seeds: {', '.join(str(s) for s in c.get('seeds', sorted(metrics['seed'].unique())))}",
        f"net: 784 → {' → '.join(str(w) for w in c.get('hidden', []))} → 10, activation {c.get('activation', '?')}, "
        f"biases: {c.get('bias', '?')}",
        f"training: {c.get('epochs', '?')} epochs, batch {c.get('batch_size', '?')}, {c.get('optimizer', '?')} "
        f"lr {c.get('lr', '?')}" + (f" momentum {c.get('momentum')}" if c.get("optimizer") == "sgd" else "")
        + f", {c.get('n_train', '?')} training images, {c.get('n_test', '?')} test images",
        f"signals recorded every {c.get('record_every', '?')} steps on {c.get('record_batch', '?')} fixed training images",
        f"data: {c.get('data_source', manifest.get('data_source', '?'))}; device: {c.get('device', '?')}",
    ]
    wall = metrics["seconds"].max()
    if np.isfinite(wall):
        lines.append(f"training wall time: {wall:.1f} s (all runs together)")
    return "\n".join(lines)


def _verdicts(metrics, signals, tests, order) -> str:
    fin = final_accuracy(metrics, order)
    lines = []
    best = fin.loc[fin["final acc %"].idxmax()]
    for _, r in fin.iterrows():
        lo, hi = r["95% CI low"], r["95% CI high"]
        ci = f" (95% CI {lo:.2f}–{hi:.2f}%, n = {r['n']})" if np.isfinite(lo) else f" (n = {r['n']})"
        lines.append(f"• {r['init']}: final test accuracy {r['final acc %']:.2f}%{ci}, peak {r['peak acc %']:.2f}%.")
    lines.append(f"• Best final accuracy: {best['init']} ({best['final acc %']:.2f}%).")
    ttt = time_to_threshold(metrics, signals, order=order)
    for r in ttt.itertuples(index=False):
        e = r[1]
        lines.append(f"• {r.init} reaches {THRESHOLD:.0%} test accuracy "
                     + (f"at epoch {e} (step {r[2]})" if e != "never" else "never in this run")
                     + f"; seeds reaching it: {r[3]}.")
    init0 = metrics[metrics["epoch"] == 0].groupby("init")["train_loss"].mean()
    lines.append("• Training loss at initialisation (log 10 = 2.30 is a uniform guess): "
                 + ", ".join(f"{i} {init0[i]:.3g}" for i in order if i in init0) + ".")
    s0 = signals[signals["step"] == 0]
    if len(s0):
        top = s0[s0["layer"] == s0["layer"].max()].groupby("init")["log10_preact_var"].mean()
        lines.append("• log10 variance of the logits at initialisation: "
                     + ", ".join(f"{i} {top[i]:.2f}" for i in order if i in top) + ".")
    lines.append("• " + he_verdict(metrics, signals, tests))
    return "\n".join(lines)


def build_mnist_report(run_dir, pdf: Path | None = None, figures: bool = True) -> Path:
    """Write ``figures/*.png`` and ``report.pdf`` of an MNIST run folder from its files; return the PDF path."""
    run_dir = Path(run_dir)
    pdf = Path(pdf) if pdf is not None else run_dir / "report.pdf"
    with Report(pdf, "propagate mnist — does the initializer change how the net trains?") as rep:
        add_mnist_pages(rep, run_dir, redraw=figures)
    return pdf


def add_mnist_pages(rep: Report, run_dir: Path, redraw: bool = False) -> None:
    """Every page of an MNIST run's report, appended to ``rep`` (also used by combined reports).

    Figures are drawn into ``run_dir/figures`` when missing (or when ``redraw``), else reused.
    """
    run_dir = Path(run_dir)
    metrics, signals, manifest = load_run(run_dir)
    order = _init_order(metrics, manifest)
    figdir = run_dir / "figures"
    n_seeds = _n_seeds(metrics)
    tests = None
    if n_seeds >= 2 and len(order) >= 2:
        last = metrics[metrics["epoch"] == metrics["epoch"].max()]
        tests = stats.pairwise_tests(last, "init", "test_acc")
    makers = {
        "learning": (lambda p: learning_curves_figure(metrics, order, p), "learning_curves.png"),
        "batch": (lambda p: batch_curves_figure(signals, order, p), "batch_curves.png"),
        "variance": (lambda p: signals_figure(signals, "log10_preact_var", order, p), "signals_variance.png"),
        "gradnorm": (lambda p: signals_figure(signals, "log10_weight_grad_norm", order, p), "signals_gradnorm.png"),
        "dead": (lambda p: signals_figure(signals, "dead_frac", order, p), "signals_dead.png"),
    }
    paths = {}
    for key, (make, name) in makers.items():
        path = figdir / name
        if redraw or not path.is_file():
            figdir.mkdir(exist_ok=True)
            make(path)
        paths[key] = path
    band = "shaded bands are 95% confidence intervals over seeds" if n_seeds >= 2 else "one seed, so no bands"
    rep.text_page("Does the initializer change how the net trains?", [
        ("Question", "We train the same MNIST classifier from different weight initializations and record, "
                     "while it learns, the statistics of the signal in every layer. Does the initializer change "
                     "how fast the net learns, how well it ends up, and what its layers look like on the way?"),
        ("Configuration", _config_text(manifest, metrics)),
        ("Verdicts (computed from the numbers)", _verdicts(metrics, signals, tests, order)),
    ])
    rep.figure_page("Learning curves", paths["learning"],
                    f"Test accuracy (top) and training/test cross-entropy (bottom, log10 scale) per epoch; {band}. "
                    "Epoch 0 is the untrained net. Look at how high each initializer starts its loss, how quickly "
                    f"its accuracy passes the dashed {THRESHOLD:.0%} line, and where the curves level off.")
    rep.figure_page("Within the first epochs: the recorded batch", paths["batch"],
                    "Loss (log10 scale) and accuracy on the fixed batch of training images used for the signal "
                    "statistics, at every recording step — a finer time axis than epochs. Look at which curve "
                    f"crosses {THRESHOLD:.0%} first.")
    rep.table_page("Final test accuracy per initializer", final_accuracy(metrics, order),
                   "Mean over seeds of the last epoch's test accuracy with a Student-t 95% interval (NaN with one "
                   "seed), the peak accuracy over epochs, and the last epoch's losses.")
    rep.table_page(f"When does each initializer reach {THRESHOLD:.0%}?", time_to_threshold(metrics, signals, order=order),
                   f"First epoch at which the mean test accuracy over seeds reaches {THRESHOLD:.0%} and the optimizer "
                   "step at that epoch's end; how many seeds ever reach it (and at which epochs); and the first "
                   "recording step at which the mean accuracy on the recorded training batch reaches it.")
    if tests is not None:
        show = tests[["a", "b", "mean_a", "mean_b", "diff", "diff_ci_low", "diff_ci_high", "welch_p_holm",
                      "mannwhitney_p_holm", "significant"]].copy()
        for c in ("mean_a", "mean_b", "diff", "diff_ci_low", "diff_ci_high"):
            show[c] = 100 * show[c]
        show = show.rename(columns={"mean_a": "acc a %", "mean_b": "acc b %", "diff": "a − b (pp)",
                                    "diff_ci_low": "CI low", "diff_ci_high": "CI high",
                                    "welch_p_holm": "Welch p (Holm)", "mannwhitney_p_holm": "MW p (Holm)"})
        rep.table_page("Pairwise tests of final test accuracy", show,
                       "Welch t-test and Mann–Whitney U on the final test accuracy of each pair of initializers, "
                       "p-values Holm-corrected across pairs; 'significant' = Holm-corrected Welch p < 0.05. "
                       "The difference is in percentage points with its Welch 95% interval. "
                       + he_verdict(metrics, signals, tests))
    rep.figure_page("Signal size during training", paths["variance"],
                    "log10 of the variance of each layer's pre-activations on the recorded batch, per initializer "
                    "(one panel each), a line per layer. Look at the start: He keeps the layers at similar size, "
                    "N(0, 1) weights blow each layer up by about log10(fan_in/2); and at whether training pulls "
                    "the sizes together.")
    rep.figure_page("Gradients during training", paths["gradnorm"],
                    "log10 of the norm of each layer's weight gradient (cross-entropy on the recorded batch). "
                    "Look at the spread between layers and at how the gradients shrink as the loss falls.")
    rep.figure_page("Dead units during training", paths["dead"],
                    "Fraction of each hidden layer's units that are zero on every image of the recorded batch. "
                    "Look for initializers or layers where many units die and whether they recover.")


