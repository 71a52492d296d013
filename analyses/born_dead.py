"""Born dead: how often is a narrow ReLU net dead at initialisation?

Paper: Lu, Shin, Su & Karniadakis (2019), "Dying ReLU and initialization: theory and numerical
examples".  Claim checked: a zero-bias ReLU net of width N and depth L, with symmetric weights,
is *born dead* for an input x ≠ 0 (some hidden layer is zero, so the output is constant) with
probability P = 1 − (1 − 2⁻ᴺ)ᴸ — each layer independently has all N pre-activations ≤ 0 with
probability 2⁻ᴺ given a non-zero input, and a dead layer kills every later one.  So narrow deep
nets die with probability → 1 as depth grows, whatever the weight variance.

Method: thousands of tiny He-initialised nets per width are stacked as members of one batched
engine call (``propagate.propagate_stack``); one pass through the deepest net gives every depth,
since a net of depth L is born dead iff one of its first L layers is all zero.  Empirical
frequencies get Wilson 95% intervals (``stats.wilson_interval``) and are set beside
``theory.born_dead_probability``.
"""
from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from propagate import get_init, propagate_stack, stats, theory
from propagate.analysis_support import main

META = dict(
    name="born_dead",
    threads=1,  # many small tensor ops: one thread is faster than a contended pool
    title="Born dead: narrow ReLU nets at initialisation",
    paper="Lu et al. (2019), Dying ReLU and initialization: a zero-bias ReLU net of width N and depth L is born dead "
          "for a single non-zero input with probability P = 1 − (1 − 2^−N)^L, which tends to 1 with depth for any "
          "fixed width.",
    question="How often is a narrow ReLU net dead at initialisation (some hidden layer zero, so the output does not "
             "depend on the input), as a function of width and depth, and does P = 1 − (1 − 2^−N)^L predict it?",
    method="For each width N, many independent nets (members) of the deepest depth are drawn with He-normal weights "
           "(W ~ N(0, 2/fan_in), zero bias) and run on one fixed input x ~ N(0, I) of dimension 16 in a single batched "
           "call of propagate.propagate_stack. Layer l of the deepest net is layer l of every shallower net, so the "
           "net of depth L is born dead iff some layer l ≤ L has every unit zero. Each (width, depth) cell's frequency "
           "gets a 95% Wilson interval; the theory is inside the interval in about 95% of the cells if it is right. "
           "An exact two-sided binomial test per cell and a chi-square goodness-of-fit over all cells summarise it.",
)


def dead_layers(width: int, depth: int, members: int, seed: int, in_features: int = 16, chunk: int = 2000) -> np.ndarray:
    """(members, depth) booleans: layer l of net m is entirely zero on the input."""
    he = get_init("he")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, in_features, generator=gen)
    y = torch.zeros(1, dtype=torch.long)
    out = []
    for start in range(0, members, chunk):
        m = min(chunk, members - start)
        sizes = [in_features] + [width] * depth
        W = [torch.randn(m, fo, fi, generator=gen) * math.sqrt(he.weight_var(fi, fo)) for fi, fo in zip(sizes[:-1], sizes[1:])]
        R = torch.randn(m, 10, width, generator=gen) * math.sqrt(he.weight_var(width, 10))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = propagate_stack(x, y, W, R, [depth])
        out.append(res.hidden["dead_frac"] >= 1.0)
    return np.concatenate(out)


def run(study):
    p = study.size(quick=dict(widths=[1, 2, 3, 4], depths=[1, 2, 4, 8, 16], nets_per_width=400),
                   default=dict(widths=[1, 2, 3, 4, 5, 6, 8, 10], depths=[1, 2, 3, 5, 10, 20, 50, 100, 200],
                                nets_per_width=10000))
    rows = []
    D = max(p["depths"])
    for k, n in enumerate(p["widths"]):
        dead = dead_layers(n, D, p["nets_per_width"], seed=1000 + k)
        born = np.logical_or.accumulate(dead, axis=1)  # dead by layer l
        for L in p["depths"]:
            rows.append({"width": n, "depth": L, "nets": dead.shape[0], "dead": int(born[:, L - 1].sum())})
    df = pd.DataFrame(rows)
    df["frequency"] = df["dead"] / df["nets"]
    df["wilson_low"], df["wilson_high"] = stats.wilson_interval(df["dead"].to_numpy(), df["nets"].to_numpy())
    df["theory"] = theory.born_dead_probability(df["width"].to_numpy(), df["depth"].to_numpy())
    df["theory_inside"] = (df["theory"] >= df["wilson_low"]) & (df["theory"] <= df["wilson_high"])
    from scipy import stats as st

    df["binom_p"] = [st.binomtest(int(k), int(m), float(min(max(t, 1e-300), 1 - 1e-16))).pvalue
                     for k, m, t in zip(df["dead"], df["nets"], df["theory"])]
    # chi-square over cells with enough expected counts on both sides
    e1, e0 = df["nets"] * df["theory"], df["nets"] * (1 - df["theory"])
    ok = (e1 >= 5) & (e0 >= 5)
    chi2 = float((((df["dead"] - e1) ** 2 / e1) + (((df["nets"] - df["dead"]) - e0) ** 2 / e0))[ok].sum())
    dof = int(ok.sum())
    chi_p = float(st.chi2.sf(chi2, dof)) if dof else math.nan

    inside = float(df["theory_inside"].mean())
    worst = df.loc[(df["frequency"] - df["theory"]).abs().idxmax()]
    study.numbers.update(cells=len(df), inside_fraction=inside, chi2=chi2, chi2_dof=dof, chi2_p=chi_p,
                         max_abs_diff=float((df["frequency"] - df["theory"]).abs().max()))
    wide = df[df["depth"] == D]
    supported = inside >= 0.85 and (math.isnan(chi_p) or chi_p > 0.001)
    study.verdict = (
        f"{'Supported' if supported else 'Not supported'}: the theory lies inside the 95% Wilson interval of the measured "
        f"frequency in {df['theory_inside'].sum()} of {len(df)} (width, depth) cells ({100 * inside:.0f}%; ≈95% expected "
        f"if exact); chi-square over the {dof} cells with ≥5 expected nets each side = {chi2:.1f} (p = {chi_p:.2g}). "
        f"Largest gap: width {int(worst.width)}, depth {int(worst.depth)}: {worst.frequency:.3f} measured vs "
        f"{worst.theory:.3f} theory. At depth {D}, "
        + ", ".join(f"width {int(r.width)}: {100 * r.frequency:.1f}% dead" for r in wide.itertuples())
        + " — narrow deep nets are mostly born dead.")

    # Figure 1: frequency vs depth per width, with Wilson bars and theory curves.
    pal = dict(zip(p["widths"], sns.color_palette("viridis", len(p["widths"]))))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    ax = axes[0]
    Ls = np.unique(np.geomspace(1, D, 200).round().astype(int))
    for n in p["widths"]:
        d = df[df["width"] == n]
        ax.errorbar(d["depth"], d["frequency"], yerr=[d["frequency"] - d["wilson_low"], d["wilson_high"] - d["frequency"]],
                    fmt="o", ms=4, color=pal[n], capsize=2, label=f"N = {n}")
        ax.plot(Ls, theory.born_dead_probability(n, Ls), color=pal[n], lw=1, ls="--")
    ax.plot([], [], "k--", lw=1, label="theory 1 − (1 − 2^−N)^L")
    ax.set(xscale="log", xlabel="depth L (log scale)", ylabel="P(born dead)", ylim=(-0.03, 1.03),
           title="Fraction of nets born dead")
    ax.legend(fontsize=8, title="width", title_fontsize=8, ncol=2)
    ax = axes[1]
    ax.errorbar(df["theory"], df["frequency"], yerr=[df["frequency"] - df["wilson_low"], df["wilson_high"] - df["frequency"]],
                fmt="o", ms=3, color="C0", ecolor="0.6", capsize=0)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="measured = theory")
    ax.set(xlabel="theory P = 1 − (1 − 2^−N)^L", ylabel="measured frequency (95% Wilson interval)",
           title="Every (width, depth) cell", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    study.figure("born_dead", fig, "Born-dead probability against depth and width",
                 "Left: points are the measured fraction of nets born dead (95% Wilson intervals), dashed curves the "
                 "theory 1 − (1 − 2^−N)^L, one colour per width N, depth on a log scale. Right: the same cells, measured "
                 "against theory; points on the diagonal mean the formula is exact. Look for the curves running through "
                 "the points at every width, and for narrow nets (N ≤ 4) dying almost surely by depth 100.")

    # Figure 2: heatmap of measured minus theory in units of its binomial standard error.
    se = np.sqrt(np.maximum(df["theory"] * (1 - df["theory"]), 1e-12) / df["nets"])
    z = df.assign(z=(df["frequency"] - df["theory"]) / se).pivot(index="width", columns="depth", values="z")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    sns.heatmap(z, center=0, cmap="RdBu_r", vmin=-4, vmax=4, annot=True, fmt=".1f", ax=ax,
                cbar_kws={"label": "(measured − theory) / binomial s.e."})
    ax.set(xlabel="depth L", ylabel="width N", title="Deviation from theory in standard errors")
    fig.tight_layout()
    study.figure("deviation", fig, "Deviation from the theory, in standard errors",
                 "Each cell: (measured − theory) divided by the binomial standard error √(P(1−P)/nets). If the theory "
                 "is exact these are roughly standard normal: most |values| < 2, no pattern across cells. Cells where the "
                 "theory is 0 or 1 to machine precision show 0.")
    show = df[["width", "depth", "nets", "dead", "frequency", "wilson_low", "wilson_high", "theory", "theory_inside", "binom_p"]]
    study.table("cells", df, "Born dead per (width, depth)",
                "dead = nets with some all-zero hidden layer; Wilson 95% interval; theory = 1 − (1 − 2^−N)^L; binom_p = "
                "exact two-sided binomial test of the theory.", show=show)


if __name__ == "__main__":
    main(META, run, __doc__)
