"""From the sweep's ``layers`` table to its summaries: ``summary``, ``rates`` and ``theory`` (pure pandas).

Statistics across seeds: t-intervals (:mod:`propagate.stats`); variances are averaged in log space
(the mean of log10 values), so one exploded seed cannot dominate and intervals stay meaningful
across decades.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from propagate import inits as I
from propagate import stats, theory

def deepest(layers: pd.DataFrame) -> pd.DataFrame:
    """Rows of the deepest net of each (init, width), hidden layers only."""
    dmax = layers.groupby(["init", "width"])["depth"].transform("max")
    return layers[(layers["depth"] == dmax) & (layers["name"] != "readout")]


def summary(layers: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (init, width, depth): across seeds, means and CIs of the key quantities.

    * ``log10_output_var``: log10 pre-activation variance of the network output (the readout);
    * ``log10_first_wgrad``: log10 Frobenius norm of the first layer's weight gradient;
    * ``dead_frac_mean`` (mean over hidden layers) and ``dead_frac_last`` (last hidden layer);
    * ``born_dead``: fraction of seeds with some hidden layer dead for the whole batch, Wilson CI.
    """
    keys = ["init", "width", "depth", "seed"]
    hidden = layers[layers["name"] != "readout"]
    per_seed = layers[layers["name"] == "readout"][keys + ["log10_preact_var"]].rename(
        columns={"log10_preact_var": "log10_output_var"})
    first = layers[layers["layer"] == 1][keys + ["log10_weight_grad_norm"]].rename(
        columns={"log10_weight_grad_norm": "log10_first_wgrad"})
    per_seed = per_seed.merge(first, on=keys)
    g = hidden.groupby(keys, sort=False)
    dead = pd.DataFrame({
        "dead_frac_mean": g["dead_frac"].mean(),
        "dead_frac_last": g.apply(lambda d: d.loc[d["layer"].idxmax(), "dead_frac"], include_groups=False),
        "born_dead": g["dead_frac"].max() >= 1.0,
    }).reset_index()
    per_seed = per_seed.merge(dead, on=keys)
    out = stats.mean_ci(per_seed, ["init", "width", "depth"],
                        ["log10_output_var", "log10_first_wgrad", "dead_frac_mean", "dead_frac_last"], confidence)
    born = per_seed.groupby(["init", "width", "depth"], sort=False)["born_dead"].agg(["sum", "count"]).reset_index()
    lo, hi = zip(*[stats.wilson_interval(int(k), int(n), confidence) for k, n in zip(born["sum"], born["count"])])
    born["born_dead_frac"] = born["sum"] / born["count"]
    born["born_dead_ci_low"], born["born_dead_ci_high"] = lo, hi
    out = out.merge(born.drop(columns=["sum", "count"]), on=["init", "width", "depth"])
    return _order(out, layers)


def _order(df: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    order = {n: k for k, n in enumerate(pd.unique(layers["init"]))}
    return df.sort_values([c for c in ("init", "width", "depth", "direction", "layer") if c in df],
                          key=lambda s: s.map(order) if s.name == "init" else s, kind="stable").reset_index(drop=True)


def theory_table(layers: pd.DataFrame, x_second_moment: float, activation: str = "relu",
                 negative_slope: float = 0.01, input_corr: np.ndarray | None = None,
                 bias: dict | None = None) -> pd.DataFrame:
    """The mean-field prediction per (init, width, layer) of the deepest net, hidden layers 1..D.

    Columns: ``sigma_w2`` (fan_in·Var(W) from the initializer's formula and the layer's fans, or the
    realised weights for data-dependent schemes), ``sigma_b2``, ``log10_q`` (q map with the actual
    fans and bias variance, from the input's second moment), ``chi`` (forward factor per layer,
    σ_w²·E[φ(z)²]/q: σ_w²/2 for ReLU), ``back_factor`` (fan_out·Var(W) of the weight above, times
    E[φ'²]), ``log10_grad_rel`` (predicted log10 gradient variance relative to the top hidden
    layer) and ``c`` (the c map iterated from the inputs' pair correlations, averaged over pairs).
    """
    deep = deepest(layers)
    frames = []
    for (name, width), d in deep.groupby(["init", "width"], sort=False):
        init = I.get(name)
        per_layer = d.groupby("layer").agg(fan_in=("fan_in", "first"), fan_out=("fan_out", "first"),
                                           weight_norm=("weight_norm", "mean")).reset_index()
        D = len(per_layer)
        fi, fo = per_layer["fan_in"].to_numpy(), per_layer["fan_out"].to_numpy()
        var = np.array([init.weight_var(a, b) for a, b in zip(fi, fo)])
        if np.isnan(var).any():  # data-dependent (LSUV): use the realised weights
            var = per_layer["weight_norm"].to_numpy() ** 2 / (fi * fo)
        readout = layers[(layers["init"] == name) & (layers["width"] == width) & (layers["name"] == "readout")]
        r_fi, r_fo = int(readout["fan_in"].iloc[0]), int(readout["fan_out"].iloc[0])
        r_var = init.weight_var(r_fi, r_fo)
        if math.isnan(r_var):
            r_var = float((readout["weight_norm"] ** 2).mean()) / (r_fi * r_fo)
        sw2 = fi * var
        spec = (bias or {}).get(name, "zero")   # the bias spec of each init ({init: spec}); zero if absent
        sb2 = np.array([I.bias_var(spec, a) for a in fi])
        if init.data_dependent:
            log10_q = np.zeros(D)  # LSUV makes every layer's output variance 1 by construction
        else:
            log10_q = theory.log10_q_map(sw2, math.log10(x_second_moment), sb2, activation, negative_slope)
        gain = np.array([theory.second_moment_gain(activation, 10.0 ** q if abs(q) < 300 else 1.0, negative_slope)
                         for q in log10_q])
        dgain = np.array([theory.derivative_gain(activation, 10.0 ** q if abs(q) < 300 else 1.0, negative_slope)
                          for q in log10_q])
        back = np.append(fo[1:] * var[1:], r_fo * r_var)  # fan_out·Var of the weight above layer l
        log10_grad = theory.log10_grad_map(back, 0.0, activation, log10_q, negative_slope)
        frame = pd.DataFrame({"init": name, "width": width, "layer": per_layer["layer"], "fan_in": fi, "fan_out": fo,
                              "sigma_w2": sw2, "sigma_b2": sb2, "log10_q": log10_q, "chi": sw2 * gain,
                              "back_factor": back * dgain, "log10_grad_rel": log10_grad})
        if input_corr is not None and len(input_corr):
            if np.all(sb2 == 0):
                c = theory.iterate_c_map(np.asarray(input_corr), D)
                frame["c"] = np.mean(c, axis=1) if c.ndim > 1 else c
        frames.append(frame)
    return _order(pd.concat(frames, ignore_index=True), layers)


def rates(layers: pd.DataFrame, theory_df: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (init, width, direction): the per-layer rate of log10 variance in the deepest net.

    forward: slope of log10 pre-activation variance vs layer; backward: slope of log10
    pre-activation gradient variance as the layer index falls.  Fitted per seed over the hidden
    layers, t-interval across seeds; ``theory_rate`` is the same fit of the mean-field curve.
    """
    deep = deepest(layers).assign(neg_layer=lambda d: -d["layer"])
    fwd = stats.rates(deep, ["init", "width"], "layer", "log10_preact_var", "seed", confidence).assign(direction="forward")
    bwd = stats.rates(deep, ["init", "width"], "neg_layer", "log10_preact_grad_var", "seed", confidence).assign(direction="backward")
    out = pd.concat([fwd, bwd], ignore_index=True)
    th = []
    for (name, width), t in theory_df.groupby(["init", "width"], sort=False):
        th.append({"init": name, "width": width, "direction": "forward",
                   "theory_rate": theory.rate_theory(t["log10_q"].to_numpy(), "forward")})
        th.append({"init": name, "width": width, "direction": "backward",
                   "theory_rate": theory.rate_theory(t["log10_grad_rel"].to_numpy(), "backward")})
    out = out.merge(pd.DataFrame(th), on=["init", "width", "direction"], how="left")
    out["factor"] = 10.0 ** out["rate"]
    out["theory_factor"] = 10.0 ** out["theory_rate"]
    out["verdict"] = [stats.describe_rate(r, lo, hi) for r, lo, hi in zip(out["rate"], out["ci_low"], out["ci_high"])]
    cols = ["init", "width", "direction", "rate", "ci_low", "ci_high", "n", "theory_rate", "factor", "theory_factor", "verdict"]
    return _order(out[cols], layers)


def verdicts(rates_df: pd.DataFrame, direction: str = "forward") -> list[str]:
    """One sentence per (init, width), computed from rates.csv, e.g.
    "kaiming_normal: stable, +0.001 [−0.002, 0.004] log10/layer, theory 0.000"."""
    out = []
    for row in rates_df[rates_df["direction"] == direction].itertuples():
        ci = f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]" if np.isfinite(row.ci_low) else "(one seed: no CI)"
        what = row.verdict if row.verdict == "stable" else f"{row.verdict}, ×{row.factor:.3g} per layer"
        out.append(f"{row.init} (width {row.width}): {what}; {row.rate:+.3f} {ci} log10/layer, "
                   f"theory {row.theory_rate:+.3f} (×{row.theory_factor:.3g})")
    return out
