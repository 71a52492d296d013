"""Hanin & Rolnick (2018): the fluctuations of a He-initialised ReLU net's activation norm grow like Σ 1/n_j.

Paper: B. Hanin and D. Rolnick (2018), "How to start training: the effect of initialization and
architecture".  Claim checked: for a ReLU net with He initialisation (Var W = 2/fan_in), the mean
squared activation norm is preserved, but its fluctuation across random nets is governed by the
sum of reciprocal widths,

    Var[log ‖h^L‖²] ≈ Σ_j log(1 + 5/n_j) ≈ 5 · Σ_j 1/n_j          (``theory.hanin_log_norm_variance``),

so deep *narrow* nets have wildly varying output scales even when the mean is right.  We fit the
constant (expected ≈ 5) with a bootstrap CI.  Finite width: the exact per-layer variance is
Var log R = E_K ψ₁(K/2) + Var_K ψ(K/2) ≈ 5/n + 18.5/n² (K ~ Bin(n, ½)), so at small widths the
fitted constant should come out a little above 5; we report it beside the exact value.

Method: many independent nets per width, stacked as members of ``propagate.propagate_stack``
(He weights drawn with the registry's variance), one fixed input; the engine's per-layer second
moment of h^l gives ‖h^l‖² = n · mean(h²) at every depth in one pass.
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
    name="hanin2018_width",
    threads=1,  # many small tensor ops: one thread is faster than a contended pool
    title="Width, depth and the fluctuations of the activation norm (Hanin & Rolnick 2018)",
    paper="Hanin & Rolnick (2018), How to start training: with He initialisation the empirical variance of "
          "log ‖h^L‖² over random nets is ≈ Σ_j log(1 + 5/n_j) ≈ 5·Σ_j 1/n_j — it grows with depth and shrinks with "
          "width, so the right architecture quantity is the sum of reciprocal widths, not depth alone.",
    question="Across random He-initialised ReLU nets, how does Var[log ‖h^L‖²] depend on depth L and width n, and is "
             "the constant in Var ≈ c · Σ 1/n_j equal to 5?",
    method="For each width n (all hidden layers n wide, input dimension n, zero biases) many nets are drawn with He "
           "normal weights, W ~ N(0, 2/fan_in) (the variance comes from the initializer registry), stacked as members "
           "and run through propagate.propagate_stack on one fixed input x ~ N(0, I). The engine's per-layer second "
           "moment of h^l gives log ‖h^l‖² for every depth l ≤ L of every net in one pass (layer l of the deepest net "
           "is the net of depth l). Var is the sample variance over nets (ddof 1). The constant c is fitted by least "
           "squares through the origin, Var = c·Σ_{j≤L} 1/n_j, over every (width, depth) cell; per width, c_n = n × "
           "slope of Var against L. 95% intervals: bootstrap over nets (resampling nets within each width, 400 "
           "resamples, percentile). 'Exact' = L·Var log R_n with Var log R_n = E_K ψ₁(K/2) + Var_K ψ(K/2), K ~ Bin(n, "
           "1/2), since ‖h^l‖² = ‖h^(l−1)‖² · R_l with independent R_l = (2/n)·χ²_K for Gaussian weights.",
)


def exact_var_log_r(n: int) -> float:
    """Var log R for R = (2/n) χ²_K, K ~ Bin(n, ½) conditioned on K ≥ 1: E_K ψ₁(K/2) + Var_K ψ(K/2)."""
    from scipy import special
    from scipy import stats as st

    k = np.arange(1, n + 1)
    pk = st.binom.pmf(k, n, 0.5)
    pk = pk / pk.sum()
    psi = special.digamma(k / 2)
    return float(np.sum(pk * special.polygamma(1, k / 2)) + np.sum(pk * psi ** 2) - np.sum(pk * psi) ** 2)


def log_norms(width: int, depth: int, nets: int, seed: int, budget: float = 1.5e8) -> tuple[np.ndarray, np.ndarray]:
    """(nets, depth) arrays of ln ‖h^l‖² and ln ‖z^l‖² for independent He nets on one fixed input."""
    he = get_init("he")
    std = math.sqrt(he.weight_var(width, width))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, width, generator=gen)
    y = torch.zeros(1, dtype=torch.long)
    chunk = max(1, int(budget // (width * width * depth)))
    h_out, z_out = [], []
    for start in range(0, nets, chunk):
        m = min(chunk, nets - start)
        W = [torch.randn(m, width, width, generator=gen) * std for _ in range(depth)]
        R = torch.randn(m, 10, width, generator=gen) * math.sqrt(he.weight_var(width, 10))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = propagate_stack(x, y, W, R, [depth])
        hsq = res.hidden["act_sq"]                                   # mean(h²) over units
        zsq = 10.0 ** res.hidden["log10_preact_var"] + res.hidden["preact_mean"] ** 2
        with np.errstate(divide="ignore"):
            h_out.append(np.log(width * hsq))
            z_out.append(np.log(width * zsq))
        del W
    return np.concatenate(h_out), np.concatenate(z_out)


def fit_c(beta: np.ndarray, var: np.ndarray) -> float:
    """Least squares through the origin: c = Σ β·Var / Σ β²."""
    return float(np.sum(beta * var) / np.sum(beta * beta))


def run(study):
    p = study.size(quick=dict(widths=[32, 64], depth=12, nets={32: 400, 64: 300}, bootstrap=100),
                   default=dict(widths=[32, 64, 128, 256], depth=64, nets={32: 6000, 64: 4000, 128: 2000, 256: 800},
                                bootstrap=400))
    depth = p["depth"]
    logs = {}
    for k, n in enumerate(p["widths"]):
        lh, lz = log_norms(n, depth, p["nets"][n], seed=2018 + k)
        finite = np.isfinite(lh).all(axis=1)   # a net born dead (probability ≈ depth·2^−n) has log 0 = −∞
        logs[n] = (lh[finite], lz[finite], int((~finite).sum()))

    rows = []
    for n, (lh, lz, dead) in logs.items():
        vh = lh.var(axis=0, ddof=1)
        vz = lz.var(axis=0, ddof=1)
        v_exact = exact_var_log_r(n)
        for L in range(1, depth + 1):
            rows.append({"width": n, "depth": L, "nets": lh.shape[0], "born_dead_dropped": dead,
                         "sum_inv_width": L / n, "mean_log_h_norm2": lh[:, L - 1].mean(), "var_log_h_norm2": vh[L - 1],
                         "var_log_z_norm2": vz[L - 1],
                         "hanin_5_sum": 5 * L / n, "hanin_log1p": theory.hanin_log_norm_variance([n] * L),
                         "exact": L * v_exact})
    cells = pd.DataFrame(rows)

    # Bootstrap over nets within each width.
    rng = np.random.default_rng(0)
    beta = cells["sum_inv_width"].to_numpy()
    c_hat = fit_c(beta, cells["var_log_h_norm2"].to_numpy())
    c_exact_pooled = fit_c(beta, cells["exact"].to_numpy())
    Ls = np.arange(1, depth + 1)
    per_width_hat = {n: n * stats.slope(Ls, cells[cells["width"] == n]["var_log_h_norm2"]) for n in logs}
    boots, boots_w = [], {n: [] for n in logs}
    for _ in range(p["bootstrap"]):
        var_all = []
        for n, (lh, _, _) in logs.items():
            idx = rng.integers(0, lh.shape[0], lh.shape[0])
            v = lh[idx].var(axis=0, ddof=1)
            var_all.append(v)
            boots_w[n].append(n * stats.slope(Ls, v))
        boots.append(fit_c(beta, np.concatenate(var_all)))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    per_width = pd.DataFrame([{
        "width": n, "nets": logs[n][0].shape[0], "c_fit": per_width_hat[n],
        "ci_low": float(np.percentile(boots_w[n], 2.5)), "ci_high": float(np.percentile(boots_w[n], 97.5)),
        "c_exact": n * exact_var_log_r(n), "c_hanin_log1p": n * math.log1p(5 / n), "5 + 18.5/n": 5 + 18.5 / n}
        for n in logs])
    study.numbers.update(c_fit=c_hat, c_ci_low=float(lo), c_ci_high=float(hi), c_exact_pooled=c_exact_pooled,
                         five_inside=bool(lo <= 5 <= hi), exact_inside=bool(lo <= c_exact_pooled <= hi))
    for r in per_width.itertuples():
        study.numbers[f"c_width_{r.width}"] = r.c_fit

    mean_drift = cells[cells["depth"] == depth][["width", "mean_log_h_norm2"]]
    study.verdict = (
        f"Fitted constant c = {c_hat:.2f} (95% bootstrap CI {lo:.2f}–{hi:.2f}) in Var[log ‖h^L‖²] ≈ c·Σ 1/n_j over "
        f"widths {', '.join(map(str, logs))} and depths 1–{depth}. Hanin & Rolnick's 5 is "
        f"{'inside' if lo <= 5 <= hi else 'outside'} the interval; the exact finite-width value for these cells "
        f"({c_exact_pooled:.2f}, from 5/n + 18.5/n² per layer) is {'inside' if lo <= c_exact_pooled <= hi else 'outside'}. "
        f"Per width: " + ", ".join(f"n = {r.width}: {r.c_fit:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] (exact {r.c_exact:.2f})"
                                   for r in per_width.itertuples())
        + ". " + ("Supported: the fluctuation is set by Σ 1/n_j with a constant within ±1 of 5"
                  if abs(c_hat - 5) < 1.0 else "Not supported: the fitted constant is more than 1 away from 5")
        + (f", and {'above' if c_hat > 5 else 'below'} 5 by {abs(c_hat - 5):.2f}, "
           + ("consistent with" if lo <= c_exact_pooled <= hi else "unlike")
           + f" the exact finite-width excess of {c_exact_pooled - 5:+.2f}."))
    study.note("Mean of log ‖h^L‖² at the deepest layer",
               "The mean stays near its input value while the spread grows: " + ", ".join(
                   f"n = {int(r.width)}: {r.mean_log_h_norm2:.2f}" for r in mean_drift.itertuples())
               + " (ln ‖x‖²-scale; a drift of ≈ −2.5·L/n is expected since E ln R ≈ −Var ln R / 2).")

    # Figure 1: Var against Σ 1/n_j.
    pal = dict(zip(logs, sns.color_palette("viridis", len(logs))))
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5))
    ax = axes[0]
    for n in logs:
        d = cells[cells["width"] == n]
        ax.plot(d["sum_inv_width"], d["var_log_h_norm2"], "o", ms=3, color=pal[n], label=f"measured, n = {n}")
        ax.plot(d["sum_inv_width"], d["exact"], "-", lw=1, color=pal[n], alpha=0.8)
    b = np.linspace(0, beta.max(), 50)
    ax.plot(b, 5 * b, "k--", lw=1.3, label="Hanin & Rolnick: 5·Σ 1/n_j")
    ax.plot(b, c_hat * b, color="C3", lw=1, ls=":", label=f"fit: {c_hat:.2f}·Σ 1/n_j")
    ax.plot([], [], "-", color="0.4", lw=1, label="exact L·Var log R_n (per width)")
    ax.set(xlabel="Σ_j 1/n_j = L/n", ylabel="Var over nets of ln ‖h^L‖²", title="Fluctuation against Σ 1/n_j")
    ax.legend(fontsize=7.5)
    ax = axes[1]
    ax.errorbar(per_width["width"], per_width["c_fit"], yerr=[per_width["c_fit"] - per_width["ci_low"],
                per_width["ci_high"] - per_width["c_fit"]], fmt="o", capsize=3, label="fitted c_n (95% bootstrap CI)")
    ws = np.unique(np.geomspace(min(logs) * 0.8, max(logs) * 1.25, 60).round().astype(int))
    ws = ws[ws % 2 == 0]  # Var log R_n alternates slightly between odd and even n
    ax.plot(ws, [n * exact_var_log_r(int(n)) for n in ws], "-", color="0.4", lw=1, label="exact n·Var log R_n (even n)")
    ax.axhline(5, color="k", ls="--", lw=1.2, label="5 (Hanin & Rolnick)")
    ax.axhspan(lo, hi, color="C3", alpha=0.12, label=f"pooled fit CI {lo:.2f}–{hi:.2f}")
    ax.set(xscale="log", xlabel="width n (log scale)", ylabel="constant c = n × d Var / d L", title="The constant per width")
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    study.figure("fluctuations", fig, "Var[log ‖h^L‖²] grows like 5·Σ 1/n_j",
                 "Left: the variance over random nets of ln ‖h^L‖² against Σ_j 1/n_j = L/n, one colour per width (points: "
                 "every depth 1…L; thin lines: exact finite-width prediction); black dashed: 5·Σ 1/n_j. If the claim "
                 "holds all widths fall on one line through the origin. Right: the constant fitted per width with 95% "
                 "bootstrap intervals, against 5 and the exact n·Var log R_n ≈ 5 + 18.5/n (log-scale width axis).")

    # Figure 2: distributions at a few depths.
    dist = []
    for n, (lh, lz, _) in logs.items():
        for L in sorted({1, depth // 4, depth // 2, depth} - {0}):
            dist.append(pd.DataFrame({"width": n, "depth": L, "ln_norm2_rel": lh[:, L - 1] - np.log(np.mean(np.exp(lh[:, 0])))}))
    dist = pd.concat(dist, ignore_index=True)
    fig, ax = plt.subplots(figsize=(11, 5))
    sns.violinplot(dist, x="depth", y="ln_norm2_rel", hue="width", palette={n: pal[n] for n in logs}, cut=0,
                   density_norm="width", inner="quartile", ax=ax, linewidth=0.7)
    ax.set(xlabel="depth L", ylabel="ln ‖h^L‖² − ln mean ‖h^1‖²  (natural log)",
           title="Distribution over random nets of the log squared activation norm")
    ax.legend(title="width n", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    study.figure("distributions", fig, "The spread of the log-norm across nets",
                 "Violins: the distribution over random He nets of ln ‖h^L‖² (relative to the mean at layer 1) at four "
                 "depths, one colour per width; lines inside mark quartiles. Look at narrow nets spreading over many "
                 "units of ln (factors of e) with depth while wide nets stay concentrated: same mean, very different "
                 "typical scale.")
    study.table("cells", cells)
    study.table("per_width", per_width, "Fitted constant per width",
                "c_fit = n × least-squares slope of Var[ln ‖h^L‖²] against L (95% bootstrap interval over nets); "
                "c_exact = n·Var log R_n; c_hanin_log1p = n·log(1 + 5/n); 5 + 18.5/n is the expansion of the exact value.")
    show = cells[cells["depth"].isin(sorted({1, 2, 4, 8, 16, 32, depth}))][
        ["width", "depth", "nets", "sum_inv_width", "var_log_h_norm2", "hanin_5_sum", "hanin_log1p", "exact", "var_log_z_norm2"]]
    study.table("cells_selected", show, "Variance of the log norm at selected depths",
                "var_log_h_norm2: measured Var over nets of ln ‖h^L‖²; hanin_5_sum = 5L/n; hanin_log1p = Σ log(1 + 5/n) "
                "(theory.hanin_log_norm_variance); exact = L·Var log R_n; var_log_z_norm2: the same for the "
                "pre-activation z^L (last factor a plain χ²_n, variance ≈ 2/n instead of 5/n).")


if __name__ == "__main__":
    main(META, run, __doc__)
