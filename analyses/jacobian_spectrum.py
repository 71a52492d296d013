"""Pennington, Schoenholz & Ganguli (2017): ReLU nets cannot reach dynamical isometry.

Paper: J. Pennington, S. Schoenholz and S. Ganguli (2017), "Resurrecting the sigmoid in deep
learning through dynamical isometry: theory and practice".  Claim checked: at the critical
initialisation the *mean* squared singular value of the input–output Jacobian is 1 at any depth,
but for ReLU nets the *spread* of the singular values grows with depth both for Gaussian weights
and for orthogonal weights — orthogonality, which gives perfect isometry in linear nets, does not
rescue ReLU, because the diagonal 0/1 derivative matrices D_l are themselves far from orthogonal.

Method: nets built with ``initialize(MLP(...), "he" | "orthogonal", seed, bias="zero")``; the
Jacobian J = D_L W_L ⋯ D_1 W_1 of the last hidden activations with respect to the input is
accumulated layer by layer in float64 (checked against ``torch.func.jacrev``), and its singular
values are taken at every depth of the list from one pass through the deepest net.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from propagate import MLP, initialize, stats
from propagate.analysis_support import main

META = dict(
    name="jacobian_spectrum",
    threads=1,  # many small tensor ops: one thread is faster than a contended pool
    title="Singular values of the input–output Jacobian: Gaussian He vs orthogonal",
    paper="Pennington, Schoenholz & Ganguli (2017), Resurrecting the sigmoid: for ReLU nets at criticality the mean "
          "squared singular value of the input–output Jacobian is 1, but the spectrum broadens with depth for "
          "Gaussian and for orthogonal weights alike — ReLU nets cannot achieve dynamical isometry.",
    question="How does the spread of the Jacobian's singular values grow with depth under Gaussian He and under "
             "(scaled) orthogonal initialisation of a ReLU net, and does orthogonality prevent the growth?",
    method="Square ReLU nets (input dimension = width n, zero biases) from initialize(MLP(widths=[n]*L, in_features=n), "
           "init, seed): 'he' (W ~ N(0, 2/n)) and 'orthogonal' (W = √2·Q, Q Haar orthogonal). For a fixed input "
           "x ~ N(0, I) the Jacobian of h^L with respect to x is J_L = D_L W_L J_(L−1), D_l = diag(1[z^l > 0]), built in "
           "float64 layer by layer (per-layer random streams make layer l of the deepest net layer l of every shallower "
           "net, so one pass gives every depth; one net per depth is checked against torch.func.jacrev). J_L has rank "
           "r = min_l (active units of layer l) ≈ n/2: the other singular values are exactly 0 (switched-off units), "
           "so spread statistics use the r non-zero ones: std of log10 σ, and log10(σ_max/σ_r). Over all n singular "
           "values: mean σ² (= ‖J‖²_F/n), the quantity criticality preserves, and Pennington et al.'s normalised "
           "spectral variance Var(σ²)/E(σ²)², which their theory says grows linearly with depth for ReLU. Growth "
           "rates = least-squares slopes per seed (std of log10 σ against log2 depth, spectral variance against "
           "depth), 95% t-interval over seeds (stats.rates), using only spectra whose non-zero part spans ≤ 12 "
           "decades (float64 cannot resolve smaller singular values of the product).",
)


PRECISION = 12.0  # decades of σ_max/σ_min that float64 resolves reliably


def jacobians(net: MLP, x: torch.Tensor, depths: list[int]) -> dict[int, tuple[torch.Tensor, list[int]]]:
    """{depth: (J, active units per layer ≤ depth)} for the hidden activations, float64."""
    lins = net.linears()[:-1]
    h = x.double()
    J = torch.eye(x.shape[0], dtype=torch.float64)
    active, out = [], {}
    for l, lin in enumerate(lins, start=1):
        W = lin.weight.detach().double()
        z = W @ h
        mask = (z > 0).double()
        h = torch.relu(z)
        J = mask[:, None] * (W @ J)
        active.append(int(mask.sum()))
        if l in depths:
            out[l] = (J.clone(), list(active))
    return out


def check_jacrev(net: MLP, x: torch.Tensor, depth: int, J: torch.Tensor) -> float:
    """Max |J − jacrev| for the first ``depth`` hidden layers (float64 copy of the net)."""
    from torch.func import jacrev

    layers = [m.double() for m in list(net.children())[: 2 * depth]]
    f = torch.nn.Sequential(*[type(m)() if isinstance(m, torch.nn.ReLU) else m for m in layers])
    Jr = jacrev(f)(x.double()).detach()
    net.float()
    return float((Jr - J).abs().max())


def run(study):
    p = study.size(quick=dict(width=32, depths=[1, 2, 4, 8, 16], seeds=4, inits=["he", "orthogonal"]),
                   default=dict(width=128, depths=[1, 2, 4, 8, 12, 16, 24, 32, 48], seeds=10, inits=["he", "orthogonal"]))
    n, depths, D = p["width"], p["depths"], max(p["depths"])
    rows, svs = [], []
    max_err = 0.0
    for init in p["inits"]:
        for seed in range(p["seeds"]):
            net = initialize(MLP(widths=[n] * D, in_features=n, out_features=n), init, seed=seed, bias="zero")
            x = torch.randn(n, generator=torch.Generator().manual_seed(10_000 + seed))
            Js = jacobians(net, x, depths)
            if seed == 0:
                d0 = min(depths[-1], 8)
                max_err = max(max_err, check_jacrev(net, x, d0, jacobians(net, x, [d0])[d0][0]))
            for L, (J, active) in Js.items():
                s = torch.linalg.svdvals(J).numpy()
                r = min(active)
                top = s[:r]
                logs = np.log10(top[top > 0])
                rows.append({"init": init, "seed": seed, "depth": L, "rank": r, "numerical_rank": int((s > s[0] * 1e-12).sum()),
                             "mean_sq_sv": float(np.mean(s ** 2)), "log10_max_sv": float(np.log10(s[0])),
                             "log10_min_nonzero_sv": float(np.log10(top[-1])) if top[-1] > 0 else -math.inf,
                             "std_log10_sv": float(np.std(logs)), "log10_condition": float(np.log10(s[0] / top[-1])),
                             "spectral_variance": float(np.var(s ** 2) / np.mean(s ** 2) ** 2)})
                svs.append(pd.DataFrame({"init": init, "seed": seed, "depth": L, "index": np.arange(r), "log10_sv": logs}))
    df = pd.DataFrame(rows)
    df["log2_depth"] = np.log2(df["depth"])
    # float64 resolves singular values only down to ~1e-16 of the largest: a spectrum whose non-zero part spans more
    # than PRECISION decades is limited by rounding, so it is kept in the tables but left out of the fits.
    df["precision_limited"] = df["log10_condition"] > PRECISION
    study.numbers["precision_limited_nets"] = int(df["precision_limited"].sum())
    fit = df[~df["precision_limited"]]
    sv = pd.concat(svs, ignore_index=True)
    study.numbers["jacrev_max_abs_error"] = max_err
    summary = stats.mean_ci(df, ["init", "depth"], ["std_log10_sv", "log10_condition", "mean_sq_sv", "spectral_variance",
                                                    "rank"])
    growth = stats.rates(fit, "init", "log2_depth", "std_log10_sv", "seed")
    growth_v = stats.rates(fit, "init", "depth", "spectral_variance", "seed")
    growth = growth.merge(growth_v.rename(columns={"rate": "specvar_rate", "ci_low": "specvar_ci_low",
                                                   "ci_high": "specvar_ci_high"})
                          [["init", "specvar_rate", "specvar_ci_low", "specvar_ci_high"]], on="init")
    for r in growth.itertuples():
        study.numbers[f"{r.init}_spread_slope"] = r.rate
        study.numbers[f"{r.init}_spread_slope_ci_low"] = r.ci_low
        study.numbers[f"{r.init}_specvar_slope"] = r.specvar_rate
    first = summary[summary["depth"] == min(depths)].set_index("init")
    # "last" = the deepest depth at which no net of that init is precision-limited
    clean = df.groupby(["init", "depth"])["precision_limited"].any().reset_index()
    deepest_ok = clean[~clean["precision_limited"]].groupby("init")["depth"].max()
    last = pd.concat([summary[(summary["init"] == i) & (summary["depth"] == deepest_ok[i])] for i in p["inits"]]).set_index("init")
    for init in p["inits"]:
        study.numbers[f"{init}_spread_first"] = float(first.loc[init, "std_log10_sv_mean"])
        study.numbers[f"{init}_spread_last"] = float(last.loc[init, "std_log10_sv_mean"])
        study.numbers[f"{init}_mean_sq_sv_last"] = float(last.loc[init, "mean_sq_sv_mean"])
    g = growth.set_index("init")
    grows = {i: bool(g.loc[i, "ci_low"] > 0 or g.loc[i, "specvar_ci_low"] > 0) for i in p["inits"]}
    he_, orth = "he", "orthogonal"
    parts = [f"{i}: std of log10 σ {first.loc[i, 'std_log10_sv_mean']:.2f} at depth {min(depths)} → "
             f"{last.loc[i, 'std_log10_sv_mean']:.2f} at depth {int(deepest_ok[i])} ({g.loc[i, 'rate']:+.3f} "
             f"[{g.loc[i, 'ci_low']:+.3f}, {g.loc[i, 'ci_high']:+.3f}] per doubling of depth); normalised spectral "
             f"variance Var(σ²)/E(σ²)² grows by {g.loc[i, 'specvar_rate']:+.3f} [{g.loc[i, 'specvar_ci_low']:+.3f}, "
             f"{g.loc[i, 'specvar_ci_high']:+.3f}] per layer; log10 σ_max/σ_min of the non-zero part at depth {int(deepest_ok[i])} "
             f"{last.loc[i, 'log10_condition_mean']:.1f}; mean σ² {last.loc[i, 'mean_sq_sv_mean']:.2f}" for i in p["inits"]]
    both = all(grows.values())
    study.verdict = (
        ("Supported: " if both else "Not supported: ")
        + "the spread of the non-zero singular values grows with depth for "
        + (" and ".join(i for i in p["inits"] if grows[i]) or "neither initializer")
        + (" — orthogonal weights do not give dynamical isometry in a ReLU net" if grows.get(orth) else "")
        + f" (a 95% interval of either growth rate above 0). {'; '.join(parts)}. Orthogonal's spread grows "
        + ("more slowly than" if g.loc[orth, "rate"] < g.loc[he_, "rate"] else "at least as fast as")
        + f" Gaussian He's; about half the singular values are exactly 0 at every depth (rank ≈ n/2 from the switched-off "
          f"units). Jacobian checked against torch.func.jacrev: max |difference| {max_err:.1e}. "
        + (f"{int(df['precision_limited'].sum())} of {len(df)} (net, depth) spectra span more than {PRECISION:g} decades, "
           f"beyond float64's resolution, and are left out of the growth fits."
           if df["precision_limited"].any() else "Every spectrum is within float64's resolution."))

    # Figure 1: spread against depth.
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    pal = dict(zip(p["inits"], sns.color_palette("colorblind", len(p["inits"]))))
    for ax, col, label in ((axes[0], "std_log10_sv", "std of log10 σ (non-zero σ)"),
                           (axes[1], "log10_condition", "log10(σ_max / σ_min), non-zero σ"),
                           (axes[2], "spectral_variance", "Var(σ²) / E(σ²)² over all n")):
        sns.lineplot(fit, x="depth", y=col, hue="init", palette=pal, errorbar=("ci", 95), marker="o", ax=ax)
        ax.set(xscale="log", xlabel="depth L (log scale)", ylabel=label)
        ax.legend(title="init", fontsize=8, title_fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("Var(σ²) / E(σ²)² over all n (log scale)")
    axes[0].set_title("Spread of the spectrum")
    axes[1].set_title("Condition number (non-zero part)")
    axes[2].set_title("Normalised spectral variance")
    fig.tight_layout()
    study.figure("spread", fig, "The spectrum broadens with depth",
                 "Left: standard deviation of log10 of the non-zero singular values of J; middle: log10 of the ratio of "
                 "the largest to the smallest non-zero singular value; right: Pennington et al.'s normalised variance of "
                 "the squared singular values (all n, log scale; 1 at depth 1 from the zeros alone). Mean over seeds with "
                 "95% bands; depth on a log scale; spectra beyond float64's resolution (> 12 decades) are left out. Dynamical isometry would keep all three flat; look for both "
                 "initializers broadening with depth, orthogonal starting from a perfectly flat spectrum.")

    # Figure 2: the distributions.
    ok_depths = [d for d in depths if d <= deepest_ok.min()]
    pick = sorted({ok_depths[0], ok_depths[len(ok_depths) // 2], ok_depths[-1]})
    d = sv[sv["depth"].isin(pick)]
    fig, ax = plt.subplots(figsize=(11, 5))
    sns.violinplot(d, x="depth", y="log10_sv", hue="init", palette=pal, split=True, inner="quartile", cut=0,
                   density_norm="width", ax=ax, linewidth=0.7)
    ax.set(xlabel="depth L", ylabel="log10 singular value σ (non-zero part)",
           title=f"Distribution of the Jacobian's non-zero singular values (width {n}, all seeds)")
    ax.axhline(0, color="0.4", ls="--", lw=1)
    ax.legend(title="init", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    study.figure("distribution", fig, "Singular value distributions",
                 "Split violins of log10 σ over the non-zero singular values of all seeds at three depths (left half He, "
                 "right half orthogonal; lines mark quartiles; dashed: σ = 1, perfect isometry). Look at both halves "
                 "widening with depth: orthogonal weights start narrower but the ReLU masks broaden them too.")
    study.table("jacobians", df)
    study.table("singular_values", sv)
    study.table("summary", summary, "Spectrum statistics per init and depth",
                "Means over seeds with 95% t-intervals: std of log10 σ and log10 condition number of the non-zero part, "
                "mean σ² and Var(σ²)/E(σ²)² over all singular values, and the rank (min active units over layers).",
                show=summary[["init", "depth", "n", "rank_mean", "std_log10_sv_mean", "std_log10_sv_ci_low",
                              "std_log10_sv_ci_high", "log10_condition_mean", "mean_sq_sv_mean", "spectral_variance_mean"]])
    study.table("growth", growth, "Growth of the spread with depth",
                "rate: least-squares slope of the spread (std of log10 σ, non-zero part) against log2 depth; specvar_rate: "
                "slope of Var(σ²)/E(σ²)² against depth; per seed, 95% t-intervals over seeds.")


if __name__ == "__main__":
    main(META, run, __doc__)
