"""Phase diagram: the critical line σ_w² = 2 of deep ReLU nets.

Papers: Poole et al. (2016) and Schoenholz et al. (2017), "Deep information propagation"; for ReLU
the order–chaos picture degenerates to the single critical point of He et al. (2015).  Claim
checked: with W ~ N(0, σ_w²/fan_in) and zero bias, the pre-activation variance of a ReLU net is
multiplied by σ_w²/2 per layer, so it vanishes for σ_w² < 2, explodes for σ_w² > 2, and is
preserved exactly at the critical line σ_w² = 2 (the mean-field q map, ``theory.log10_q_map``).

Method: ``run_sweep`` with ``inits=[f"gaussian:{s}" for s in grid]`` — one deep net per seed and
σ_w², exact in log space — then the per-layer rate (least-squares slope of log10 variance per
layer, t-interval over seeds) against the theory's rate log10(σ_w²/2).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from propagate import SweepConfig, run_sweep, stats, theory
from propagate.analysis_support import main

META = dict(
    name="phase_diagram",
    threads=1,  # many small tensor ops: one thread is faster than a contended pool
    title="Phase diagram of deep ReLU nets: σ_w² against depth",
    paper="Poole et al. (2016); Schoenholz et al. (2017), Deep information propagation; He et al. (2015). For ReLU "
          "with zero bias the mean-field variance map is q^l = (σ_w²/2)·q^(l−1): signals vanish for σ_w² < 2, explode "
          "for σ_w² > 2, and σ_w² = 2 (He initialisation) is the critical line.",
    question="Where does the pre-activation variance of a deep ReLU net switch from vanishing to exploding as the "
             "weight variance σ_w² grows, and does the mean-field theory put the switch at σ_w² = 2?",
    method="propagate.run_sweep with inits gaussian:σ_w² for a grid of σ_w² (W ~ N(0, σ_w²/fan_in), zero biases), "
           "one net of the deepest depth per seed (layer l of that net is layer l of every shallower net), computed "
           "exactly in log space. The heatmap shows log10 Var(z^l) (variance over batch × units, mean over seeds) per "
           "(σ_w², layer); beside it the mean-field log10 q^l from theory.log10_q_map with the same input second "
           "moment. Rate = least-squares slope of log10 variance per layer over hidden layers 2…L (layer 1 carries "
           "the input's fan_in), fitted per seed, 95% t-interval over seeds (stats.rates); theory rate = log10(σ_w²/2). "
           "'stable' when the rate's interval overlaps ±0.01 log10/layer (stats.describe_rate). Seed s draws the same "
           "standard-normal base matrices for every σ_w² (they differ only by the scalar √σ_w²), so the rates of "
           "different σ_w² share their random-walk noise: the differences between rows are sharper than each row's "
           "own interval.",
)


def log_drift(n: int) -> float:
    """E[ln R] per layer at σ_w² = 2, R = (2/n)·χ²_K, K ~ Bin(n, 1/2): the finite-width pull on the log variance.

    E ln χ²_K = ψ(K/2) + ln 2, so E ln R = ln(4/n) + E_K ψ(K/2) ≈ −2.5/n (K = 0, probability 2^−n, dropped).
    The measured log variance therefore crosses zero slope at σ_w² = 2·exp(−E ln R), slightly above 2.
    """
    from scipy import special
    from scipy import stats as st

    k = np.arange(1, n + 1)
    pk = st.binom.pmf(k, n, 0.5)
    return float(np.log(4.0 / n) + np.sum(pk / pk.sum() * special.digamma(k / 2)))


def run(study):
    p = study.size(quick=dict(sigma_w2=[1.0, 1.5, 1.8, 2.0, 2.2, 2.5, 3.0], depth=30, width=128, seeds=4, batch=8),
                   default=dict(sigma_w2=[1.0, 1.25, 1.5, 1.75, 1.85, 1.95, 2.0, 2.05, 2.15, 2.25, 2.5, 3.0, 3.5, 4.0],
                                depth=100, width=256, seeds=8, batch=128))
    grid = p["sigma_w2"]
    inits = [f"gaussian:{s:g}" for s in grid]
    cfg = SweepConfig(depths=[p["depth"]], inits=inits, widths=[p["width"]], seeds=p["seeds"], batch=p["batch"],
                      input="gaussian")
    layers, info = run_sweep(cfg)
    study.config["input"] = info["input"]
    sw2 = {n: float(n.split(":")[1]) for n in layers["init"].unique()}
    layers["sigma_w2"] = layers["init"].map(sw2)
    hidden = layers[layers["layer"] <= p["depth"]].copy()
    study.table("layers", layers)

    # Theory: q^0 = mean(x²) of the N(0, 1) inputs (≈ 1); layer 1 has fan_in 784, all later ones fan_in = width.
    x_sq = 1.0  # the sweep's gaussian inputs are N(0, 1)
    th = []
    for s in grid:
        lq = theory.log10_q_map(np.full(p["depth"], s), math.log10(x_sq))
        th.append(pd.DataFrame({"sigma_w2": s, "layer": np.arange(1, p["depth"] + 1), "log10_q": lq}))
    th = pd.concat(th, ignore_index=True)
    study.table("theory", th)

    fit = hidden[hidden["layer"] >= 2]
    rates = stats.rates(fit, "sigma_w2", "layer", "log10_preact_var", "seed")
    back = stats.rates(fit.assign(neg_layer=-fit["layer"]), "sigma_w2", "neg_layer", "log10_preact_grad_var", "seed")
    rates["theory_rate"] = np.log10(rates["sigma_w2"] / 2.0)
    rates["verdict"] = [stats.describe_rate(r, lo, hi) for r, lo, hi in zip(rates["rate"], rates["ci_low"], rates["ci_high"])]
    rates["backward_rate"] = back["rate"].to_numpy()
    rates["backward_ci_low"], rates["backward_ci_high"] = back["ci_low"].to_numpy(), back["ci_high"].to_numpy()
    study.table("rates", rates, "Per-layer rates of log10 variance against σ_w²",
                "rate: forward slope of log10 Var(z^l) per layer, mean over seeds with 95% t-interval; theory_rate = "
                "log10(σ_w²/2); backward_rate: slope of log10 Var(∂L/∂z^l) per layer as the gradient travels down "
                "(same theory for square layers).",
                show=rates[["sigma_w2", "rate", "ci_low", "ci_high", "n", "theory_rate", "verdict", "backward_rate"]])

    # Points clearly on one side: theory rate at least 0.02 log10/layer from 0 (σ_w² ≤ 1.91 or ≥ 2.09).
    below = rates[rates["theory_rate"] <= -0.02]
    above = rates[rates["theory_rate"] >= 0.02]
    at = rates[np.isclose(rates["sigma_w2"], 2.0)]
    predicted = 2.0 * math.exp(-log_drift(p["width"]))
    below_ok = bool((below["rate"] < 0).all())
    above_ok = bool((above["rate"] > 0).all())
    n_ci = int((below["ci_high"] < 0).sum() + (above["ci_low"] > 0).sum())
    neg = rates[rates["rate"] < 0]["sigma_w2"]
    pos = rates[rates["rate"] > 0]["sigma_w2"]
    # Where the measured rate crosses zero: linear interpolation between the last negative and first positive σ_w².
    crossing = math.nan
    r = rates.sort_values("sigma_w2")
    sgn = np.sign(r["rate"].to_numpy())
    idx = np.flatnonzero(np.diff(sgn) > 0)
    if len(idx):
        i = idx[-1]
        x0, x1 = r["sigma_w2"].iloc[i], r["sigma_w2"].iloc[i + 1]
        y0, y1 = r["rate"].iloc[i], r["rate"].iloc[i + 1]
        crossing = float(x0 - y0 * (x1 - x0) / (y1 - y0))
    err = float((rates["rate"] - rates["theory_rate"]).abs().max())
    study.numbers.update(ci_excluding_zero=n_ci, clear_cells=len(below) + len(above), below_all_vanish=below_ok, above_all_explode=above_ok, crossing=crossing,
                         finite_width_crossing=predicted,
                         max_abs_rate_error=err,
                         rate_at_2=float(at["rate"].iloc[0]) if len(at) else math.nan,
                         largest_negative_sw2=float(neg.max()) if len(neg) else math.nan,
                         smallest_positive_sw2=float(pos.min()) if len(pos) else math.nan)
    at_text = ""
    if len(at):
        a = at.iloc[0]
        at_text = (f" At σ_w² = 2 the rate is {a.rate:+.4f} [{a.ci_low:+.4f}, {a.ci_high:+.4f}] log10/layer "
                   f"({a.verdict}).")
    supported = below_ok and above_ok and abs(crossing - 2.0) < 0.15
    study.verdict = (
        f"{'Supported' if supported else 'Not supported'}: the measured rate is negative (variance vanishes) for "
        f"{'every' if below_ok else 'not every'} σ_w² ≤ {below['sigma_w2'].max():g} and positive (explodes) for "
        f"{'every' if above_ok else 'not every'} σ_w² ≥ {above['sigma_w2'].min():g}, the 95% interval excluding 0 in "
        f"{n_ci} of these {len(below) + len(above)} cells; by interpolation it crosses "
        f"zero at σ_w² ≈ {crossing:.3f} (mean field: 2; with the finite-width drift E ln R ≈ −2.5/n of width "
        f"{p['width']}: {predicted:.3f})." + at_text
        + f" Largest |measured − mean-field| rate over the grid: {err:.4f} log10/layer.")

    # Figure 1: heatmaps, measured and theory, same colour scale.
    mean = hidden.groupby(["sigma_w2", "layer"])["log10_preact_var"].mean().reset_index()
    M = mean.pivot(index="sigma_w2", columns="layer", values="log10_preact_var").sort_index(ascending=False)
    T = th.pivot(index="sigma_w2", columns="layer", values="log10_q").sort_index(ascending=False)
    lim = float(np.nanmax(np.abs(np.r_[M.to_numpy().ravel(), T.to_numpy().ravel()])))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, data, title in ((axes[0], M, "measured log10 Var(z^l)"), (axes[1], T, "mean-field log10 q^l")):
        sns.heatmap(data, ax=ax, cmap="RdBu_r", center=0, vmin=-lim, vmax=lim,
                    cbar_kws={"label": "log10 variance (0 = preserved)"},
                    xticklabels=max(1, p["depth"] // 10), yticklabels=[f"{v:g}" for v in data.index])
        ax.set(xlabel="layer l (depth)", ylabel="σ_w² = fan_in · Var(W)", title=title)
        rows = list(data.index)
        if 2.0 in rows:
            y = rows.index(2.0) + 0.5
            ax.axhline(y, color="k", lw=1.5, ls="--")
            ax.text(data.shape[1] * 0.98, y - 0.15, "σ_w² = 2", ha="right", va="bottom", fontsize=9)
    fig.tight_layout()
    study.figure("heatmap", fig, "Variance against σ_w² and depth",
                 "Colour: log10 of the pre-activation variance at layer l (x) for weight variance σ_w² (y); left "
                 "measured (mean over seeds), right the mean-field prediction on the same scale. Blue = the signal has "
                 "shrunk, red = grown, white = kept its size. Look for the white row at the dashed line σ_w² = 2 "
                 "separating the blue (vanishing) half from the red (exploding) half, and for the two panels to match.")

    # Figure 2: rate against σ_w² with theory.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    ax = axes[0]
    ax.errorbar(rates["sigma_w2"], rates["rate"], yerr=[rates["rate"] - rates["ci_low"], rates["ci_high"] - rates["rate"]],
                fmt="o", ms=5, capsize=3, label="measured forward rate (95% CI)")
    xs = np.linspace(min(grid), max(grid), 200)
    ax.plot(xs, np.log10(xs / 2), "k--", lw=1.2, label="theory log10(σ_w²/2)")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(2, color="0.5", lw=0.8, ls=":")
    ax.set(xlabel="σ_w² = fan_in · Var(W)", ylabel="rate (log10 variance per layer)", title="Forward rate")
    ax.legend(fontsize=8)
    ax = axes[1]
    sel = [s for s in grid if s in (min(grid), 2.0, max(grid))] + [s for s in grid if 1.9 <= s <= 2.1 and s != 2.0]
    d = hidden[hidden["sigma_w2"].isin(sel)]
    pal = dict(zip(sorted(set(sel)), sns.color_palette("coolwarm", len(set(sel)))))
    sns.lineplot(d, x="layer", y="log10_preact_var", hue="sigma_w2", palette=pal, errorbar=("ci", 95), ax=ax)
    for s in sorted(set(sel)):
        t = th[th["sigma_w2"] == s]
        ax.plot(t["layer"], t["log10_q"], ls="--", lw=1, color=pal[s])
    ax.plot([], [], "k--", lw=1, label="theory")
    ax.set(xlabel="layer l", ylabel="log10 Var(z^l)", title="Selected σ_w²: variance against layer")
    ax.legend(title="σ_w²", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    study.figure("rates", fig, "The rate changes sign at σ_w² = 2",
                 "Left: per-layer rate of log10 variance (slope over layers 2…L, mean over seeds, 95% interval) against "
                 "σ_w², with the theory log10(σ_w²/2) dashed; the rate crosses 0 at the dotted line σ_w² = 2. Right: the "
                 "variance against layer for the extreme and near-critical σ_w² (solid: measured with 95% bands over "
                 "seeds; dashed: theory). Look for the near-critical lines fanning out slowly on both sides of flat.")


if __name__ == "__main__":
    main(META, run, __doc__)
