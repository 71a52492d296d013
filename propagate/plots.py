"""Seaborn figures of the depth sweep, from its tidy tables (layers, summary, theory) to PNG files.

Each function takes tidy DataFrames and returns a matplotlib Figure, like seaborn's own API; the
caller saves it.  Every axis names its quantity and scale (``log10 …`` where the data span decades).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from propagate import stats, theory
from propagate.sweep_tables import deepest

sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)


def t_band(values) -> tuple[float, float]:
    """seaborn errorbar: the 95% Student-t interval over seeds (as in the tables; a bootstrap is 20× slower)."""
    m, lo, hi = stats.t_interval(values)
    return (m, m) if np.isnan(lo) else (lo, hi)


CI = t_band


def _palette(inits) -> dict:
    return dict(zip(inits, sns.color_palette("colorblind", len(inits))))


def _inits(df) -> list:
    return list(pd.unique(df["init"]))


def _theory_lines(ax, th: pd.DataFrame, ycol: str, palette: dict, anchor: dict | None = None):
    for name, t in th.groupby("init", sort=False):
        y = t[ycol].to_numpy() + (anchor.get(name, 0.0) if anchor else 0.0)
        ax.plot(t["layer"], y, ls="--", lw=1.3, color=palette[name], alpha=0.9)
    ax.plot([], [], ls="--", color="0.3", label="mean-field theory")


def _signal_figure(layers, th, ycol, tcol, anchor_top, ylabel, xlabel, title) -> plt.Figure:
    """Measured log10 variance vs layer (CI band over seeds) with theory dashed, and below it the
    measured minus theory, where agreement can be read at a finer scale than decades."""
    deep = deepest(layers)
    widths = sorted(deep["width"].unique())
    pal = _palette(_inits(layers))
    fig, axes = plt.subplots(2, len(widths), figsize=(7.5 * len(widths) ** 0.5, 7.2), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [2.2, 1]})
    for col, w in enumerate(widths):
        ax, rax = axes[0][col], axes[1][col]
        d = deep[deep["width"] == w]
        t = th[th["width"] == w]
        sns.lineplot(d, x="layer", y=ycol, hue="init", palette=pal, errorbar=CI, ax=ax, lw=1.8)
        anchor = None
        if anchor_top:
            anchor = d[d["layer"] == d["layer"].max()].groupby("init")[ycol].mean().to_dict()
        _theory_lines(ax, t, tcol, pal, anchor=anchor)
        ax.set(xlabel="", ylabel=ylabel, title=f"{title}, width {w}")
        ax.legend(fontsize=8, loc="best")
        ref = t[["init", "layer", tcol]].copy()
        if anchor:
            ref[tcol] = ref[tcol] + ref["init"].map(anchor)
        res = d.merge(ref, on=["init", "layer"]).assign(residual=lambda r: r[ycol] - r[tcol])
        sns.lineplot(res, x="layer", y="residual", hue="init", palette=pal, errorbar=CI, ax=rax, lw=1.4, legend=False)
        rax.axhline(0, color="0.3", ls="--", lw=1)
        rax.set(xlabel=xlabel, ylabel="measured − theory\n(log10)")
    fig.tight_layout()
    return fig


def forward_variance(layers: pd.DataFrame, th: pd.DataFrame) -> plt.Figure:
    """Fig. 1: log10 pre-activation variance vs layer in the deepest net; CI band over seeds; theory dashed."""
    return _signal_figure(layers, th, "log10_preact_var", "log10_q", False,
                          "log10 Var(z^l)  (pre-activation variance)", "layer l (deepest net)", "Forward signal")


def backward_variance(layers: pd.DataFrame, th: pd.DataFrame) -> plt.Figure:
    """Fig. 2: log10 back-propagated gradient variance vs layer; theory anchored at the top hidden layer."""
    return _signal_figure(layers, th, "log10_preact_grad_var", "log10_grad_rel", True,
                          "log10 Var(dL/dz^l)  (gradient variance)",
                          "layer l (deepest net); gradients travel right to left", "Backward signal")


def _vs_depth(summary: pd.DataFrame, col: str, ylabel: str, title: str) -> plt.Figure:
    pal = _palette(_inits(summary))
    widths = sorted(summary["width"].unique())
    fig, axes = plt.subplots(1, len(widths), figsize=(7.5 * len(widths) ** 0.5, 4.8), squeeze=False, sharey=True)
    for ax, w in zip(axes[0], widths):
        s = summary[summary["width"] == w]
        for name, d in s.groupby("init", sort=False):
            ax.plot(d["depth"], d[f"{col}_mean"], color=pal[name], lw=1.8, label=name)
            ax.fill_between(d["depth"], d[f"{col}_ci_low"], d[f"{col}_ci_high"], color=pal[name], alpha=0.2, lw=0)
        ax.set(xlabel="depth (hidden layers)", ylabel=ylabel, title=f"{title}, width {w}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def output_variance(summary: pd.DataFrame) -> plt.Figure:
    """Fig. 3: log10 output (readout pre-activation) variance vs depth, mean and 95% t-CI over seeds."""
    return _vs_depth(summary, "log10_output_var", "log10 Var(output)  (readout pre-activation)", "Output variance vs depth")


def first_layer_gradient(summary: pd.DataFrame) -> plt.Figure:
    """Fig. 4: log10 first-layer weight-gradient norm vs depth."""
    return _vs_depth(summary, "log10_first_wgrad", "log10 ||dL/dW^1||_F  (first-layer weight gradient)",
                     "First-layer gradient vs depth")


def dead_units(summary: pd.DataFrame) -> plt.Figure:
    """Fig. 5: dead-ReLU fraction (mean over hidden layers and at the last one) vs depth, and vs width."""
    pal = _palette(_inits(summary))
    widths = sorted(summary["width"].unique())
    ncol = 3 if len(widths) > 1 else 2
    fig, axes = plt.subplots(1, ncol, figsize=(5.2 * ncol, 4.6), squeeze=False)
    w0 = widths[-1]
    s = summary[summary["width"] == w0]
    for ax, col, what in zip(axes[0][:2], ("dead_frac_mean", "dead_frac_last"), ("mean over hidden layers", "last hidden layer")):
        for name, d in s.groupby("init", sort=False):
            ax.plot(d["depth"], d[f"{col}_mean"], color=pal[name], lw=1.8, label=name)
            ax.fill_between(d["depth"], d[f"{col}_ci_low"].clip(0, 1), d[f"{col}_ci_high"].clip(0, 1),
                            color=pal[name], alpha=0.2, lw=0)
        ax.set(xlabel="depth (hidden layers)", ylabel="dead-unit fraction (linear scale)", title=f"Dead units, {what}, width {w0}")
        ax.legend(fontsize=8)
    if ncol == 3:
        dmax = summary["depth"].max()
        sd = summary[summary["depth"] == dmax]
        sns.lineplot(sd, x="width", y="dead_frac_mean_mean", hue="init", palette=pal, marker="o", ax=axes[0][2])
        axes[0][2].set(xscale="log", xlabel="width (log scale)", ylabel="dead-unit fraction (mean over layers)",
                       title=f"Dead units vs width, depth {dmax}")
    fig.tight_layout()
    return fig


def variance_heatmap(layers: pd.DataFrame) -> plt.Figure:
    """Fig. 6: layer × depth heatmap of log10 pre-activation variance (mean over seeds), one panel per init."""
    w0 = sorted(layers["width"].unique())[-1]
    hidden = layers[(layers["name"] != "readout") & (layers["width"] == w0)]
    names = _inits(layers)
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names) + 1, 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        grid = hidden[hidden["init"] == name].pivot_table(index="layer", columns="depth", values="log10_preact_var",
                                                          aggfunc="mean")
        span = np.nanmax(np.abs(grid.to_numpy())) or 1.0
        sns.heatmap(grid, ax=ax, cmap="vlag", center=0, vmin=-span, vmax=span,
                    cbar_kws={"label": "log10 Var(z^l)"}, xticklabels=max(1, grid.shape[1] // 6),
                    yticklabels=max(1, grid.shape[0] // 6))
        ax.invert_yaxis()
        ax.set(xlabel="depth of the net", ylabel="layer l", title=f"{name}, width {w0}")
    fig.tight_layout()
    return fig


def correlation(layers: pd.DataFrame, th: pd.DataFrame) -> plt.Figure:
    """Fig. 7: correlation of two inputs' pre-activations vs layer, against the ReLU c map and its asymptote."""
    deep = deepest(layers)
    w0 = sorted(deep["width"].unique())[-1]
    deep = deep[deep["width"] == w0]
    pal = _palette(_inits(layers))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    sns.lineplot(deep, x="layer", y="preact_corr", hue="init", palette=pal, errorbar=CI, ax=axes[0], lw=1.8)
    t = th[(th["width"] == w0)]
    if "c" in t and t["c"].notna().any():
        tc = t.groupby("layer")["c"].first()
        axes[0].plot(tc.index, tc.values, "k--", lw=1.4, label="c map (mean field)")
    axes[0].set(xlabel="layer l", ylabel="correlation c^l of two inputs (linear scale)",
                title=f"Correlation of input pairs, width {w0}")
    axes[0].legend(fontsize=8)
    d2 = deep.assign(one_minus_c=(1 - deep["preact_corr"]).clip(lower=1e-12))
    sns.lineplot(d2, x="layer", y="one_minus_c", hue="init", palette=pal, errorbar=CI, ax=axes[1], lw=1.8, legend=False)
    L = np.arange(1, deep["layer"].max() + 1)
    if "c" in t and t["c"].notna().any():
        axes[1].plot(tc.index, 1 - tc.values, "k--", lw=1.4, label="c map")
        l0 = float(theory.c_map_offset(float(tc.iloc[0])))
        axes[1].plot(L, theory.c_map_asymptote(L, l0=l0, log_correction=True, complement=True), ":", color="0.35",
                     lw=1.6, label=f"9π²/(2(l + 1.5 ln l + {l0:.2f})²)")
    axes[1].set(xscale="log", yscale="log", xlabel="layer l (log scale)", ylabel="1 − c^l (log scale)",
                title="Polynomial approach to c = 1")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURES = {
    "1_forward_variance": forward_variance,
    "2_backward_variance": backward_variance,
    "3_output_variance": output_variance,
    "4_first_layer_gradient": first_layer_gradient,
    "5_dead_units": dead_units,
    "6_variance_heatmap": variance_heatmap,
    "7_correlation": correlation,
}
