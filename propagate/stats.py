r"""Confidence intervals, per-layer rates and group comparisons.

scipy does the statistics; only what scipy lacks (Holm's step-down
adjustment, tidy group-wise tables) is written here.  Pure numpy / scipy /
pandas (no torch), so it works on result tables read back from disk.

A "rate" is the least-squares slope of log10 variance per layer; the
per-layer multiplicative factor is ``10**rate``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = [
    "t_interval",
    "bootstrap_interval",
    "mean_ci",
    "slope",
    "rates",
    "wilson_interval",
    "holm",
    "pairwise_tests",
    "describe_rate",
    "factor",
]


def _as_list(by) -> list:
    if by is None:
        return []
    if isinstance(by, str) or not isinstance(by, Sequence):
        return [by]
    return list(by)


def _clean(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).reshape(-1)
    return x[~np.isnan(x)]


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    r"""Student-t interval for the mean: :math:`\bar x \pm t_{(1+\gamma)/2,\,n-1}\, s/\sqrt n`.

    NaNs are dropped.  Returns ``(mean, low, high)``:

    * n = 0 -> all NaN; n = 1 -> ``(x, nan, nan)``;
    * all values equal -> ``(m, m, m)`` (zero spread, scipy would give NaN);
    * any +-inf -> ``(mean, nan, nan)`` with mean = +-inf (NaN if both signs).
    """
    x = _clean(values)
    n = x.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    with np.errstate(invalid="ignore"):
        m = float(np.mean(x))
    if n < 2 or not np.all(np.isfinite(x)):
        return (m, math.nan, math.nan)
    if np.all(x == x[0]):
        return (m, m, m)
    sem = float(np.std(x, ddof=1)) / math.sqrt(n)
    low, high = _st.t.interval(confidence, df=n - 1, loc=m, scale=sem)
    return (m, float(low), float(high))


def bootstrap_interval(
    values,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: str = "BCa",
) -> tuple[float, float, float]:
    """Bootstrap interval for the mean via :func:`scipy.stats.bootstrap`; returns ``(mean, low, high)``.

    Deterministic for a given ``seed``.  ``method`` is ``"BCa"`` (default),
    ``"percentile"`` or ``"basic"``; if BCa is degenerate (tiny or
    near-constant samples give NaN) the percentile interval is used instead.
    Same edge cases as :func:`t_interval` (NaNs dropped, n < 2 / inf -> NaN
    bounds, constant -> ``(m, m, m)``).
    """
    x = _clean(values)
    n = x.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    with np.errstate(invalid="ignore"):
        m = float(np.mean(x))
    if n < 2 or not np.all(np.isfinite(x)):
        return (m, math.nan, math.nan)
    if np.all(x == x[0]):
        return (m, m, m)

    def run(meth):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _st.bootstrap(
                (x,),
                np.mean,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=meth,
                rng=np.random.default_rng(seed),
            )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    low, high = run(method)
    if not (np.isfinite(low) and np.isfinite(high)) and method != "percentile":
        low, high = run("percentile")
    return (m, low, high)


def mean_ci(df: pd.DataFrame, by, values, confidence: float = 0.95) -> pd.DataFrame:
    r"""Tidy group means with t-intervals.

    One row per group of ``by`` (NaN keys kept as their own group), with for
    each column ``v`` of ``values``: ``v_mean``, ``v_ci_low``, ``v_ci_high``
    (:math:`\bar x \pm t_{(1+\gamma)/2, k-1}\, s/\sqrt k`, k = number of
    non-NaN values of ``v`` in the group), plus ``n`` = rows per group.

    Infinite values are kept: the mean becomes +-inf (NaN if both signs occur)
    and the interval NaN, never an exception.  Constant groups get a
    zero-width interval; groups with k < 2 get NaN bounds.
    """
    by = _as_list(by)
    values = _as_list(values)
    work = df[by + values].copy()
    for v in values:
        work[v] = pd.to_numeric(work[v], errors="coerce").astype(float)

    if by:
        g = work.groupby(by, sort=True, dropna=False, observed=True)
        size = g.size()
        mean = g[values].mean()
        std = g[values].std(ddof=1)
        count = g[values].count()
        ninf = g[values].agg(lambda s: int(np.isinf(s.to_numpy()).sum()))
    else:
        size = pd.Series([len(work)])
        mean = work[values].mean().to_frame().T
        std = work[values].std(ddof=1).to_frame().T
        count = work[values].count().to_frame().T
        ninf = np.isinf(work[values]).sum().to_frame().T

    out = pd.DataFrame(index=mean.index)
    for v in values:
        k = count[v].to_numpy(dtype=float)
        s = std[v].to_numpy(dtype=float)
        mu = mean[v].to_numpy(dtype=float)
        has_inf = ninf[v].to_numpy() > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            tq = _st.t.ppf(0.5 + confidence / 2.0, np.where(k >= 2, k - 1, np.nan))
            half = tq * s / np.sqrt(k)
        half = np.where(s == 0, 0.0, half)  # constant group: (m, m, m)
        half = np.where(has_inf | (k < 2), np.nan, half)
        out[f"{v}_mean"] = mu
        out[f"{v}_ci_low"] = mu - half
        out[f"{v}_ci_high"] = mu + half
    out["n"] = size.to_numpy()
    out = out.reset_index(drop=not by)
    return out


def slope(x, y) -> float:
    r"""Least-squares slope :math:`\sum (x-\bar x)(y-\bar y) / \sum (x-\bar x)^2`.

    Only points where both x and y are finite are used (so a layer whose
    variance underflowed to 0, log10 = -inf, is skipped); NaN if fewer than 2
    such points or x is constant.
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return math.nan
    dx = x - x.mean()
    sxx = float(np.dot(dx, dx))
    if sxx == 0.0:
        return math.nan
    return float(np.dot(dx, y - y.mean()) / sxx)


def rates(df: pd.DataFrame, by, x: str, y: str, unit: str | None = "seed", confidence: float = 0.95) -> pd.DataFrame:
    """Per-layer rates with a t-interval across independent units (seeds).

    The slope of ``y`` vs ``x`` (:func:`slope`) is fitted separately for each
    ``unit`` within each ``by`` group; the units' slopes are then summarised
    with :func:`t_interval`.  Columns: ``by...``, ``rate`` (mean slope),
    ``ci_low``, ``ci_high``, ``n`` (units with a finite slope).
    ``unit=None`` fits all rows of a group as one line (n = 1, NaN interval).
    """
    by = _as_list(by)
    keys = by + ([unit] if unit is not None else [])
    if keys:
        per_unit = (
            df.groupby(keys, sort=True, dropna=False, observed=True)
            .apply(lambda d: slope(d[x], d[y]), include_groups=False)
            .rename("slope")
            .reset_index()
        )
    else:
        per_unit = pd.DataFrame({"slope": [slope(df[x], df[y])]})

    def summarise(s: pd.Series) -> pd.Series:
        vals = s.to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        m, lo, hi = t_interval(vals, confidence)
        return pd.Series({"rate": m, "ci_low": lo, "ci_high": hi, "n": int(vals.size)})

    if by:
        out = (
            per_unit.groupby(by, sort=True, dropna=False, observed=True)["slope"]
            .apply(summarise)
            .unstack()
            .reset_index()
        )
    else:
        out = summarise(per_unit["slope"]).to_frame().T
    out["n"] = out["n"].astype(int)
    for col in ("rate", "ci_low", "ci_high"):
        out[col] = out[col].astype(float)
    return out[by + ["rate", "ci_low", "ci_high", "n"]]


def wilson_interval(k, n, confidence: float = 0.95):
    r"""Wilson score interval for a binomial proportion k/n.

    .. math::
        \frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}

    via ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
    Scalars give ``(low, high)``; array inputs give two arrays.  n = 0 -> NaN.
    """

    def one(kk, nn):
        kk, nn = int(kk), int(nn)
        if nn <= 0:
            return (math.nan, math.nan)
        ci = _st.binomtest(kk, nn).proportion_ci(confidence_level=confidence, method="wilson")
        return (float(ci.low), float(ci.high))

    if np.ndim(k) == 0 and np.ndim(n) == 0:
        return one(k, n)
    kb, nb = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    pairs = [one(a, b) for a, b in zip(kb.ravel(), nb.ravel())]
    low = np.array([p[0] for p in pairs]).reshape(kb.shape)
    high = np.array([p[1] for p in pairs]).reshape(kb.shape)
    return low, high


def holm(pvalues) -> np.ndarray:
    r"""Holm-Bonferroni step-down adjusted p-values.

    With sorted :math:`p_{(1)} \le \dots \le p_{(m)}`:
    :math:`\tilde p_{(i)} = \max_{j \le i} \min(1, (m - j + 1)\, p_{(j)})`,
    returned in the original order.  NaNs stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, dtype=float)
    flat = p.reshape(-1)
    out = np.full_like(flat, np.nan)
    ok = np.flatnonzero(~np.isnan(flat))
    m = ok.size
    if m:
        order = ok[np.argsort(flat[ok], kind="stable")]
        scaled = (m - np.arange(m)) * flat[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out.reshape(p.shape)


def pairwise_tests(df: pd.DataFrame, group: str, value: str, confidence: float = 0.95) -> pd.DataFrame:
    """Welch t-test and Mann-Whitney U for every pair of groups, Holm-corrected.

    Columns: ``a``, ``b`` (the two group labels, sorted order), ``n_a``,
    ``n_b``, ``mean_a``, ``mean_b``, ``diff`` (= mean_a - mean_b),
    ``diff_ci_low``/``diff_ci_high`` (Welch interval at ``confidence``),
    ``welch_t``, ``welch_p`` (``ttest_ind(equal_var=False)``),
    ``mannwhitney_u``, ``mannwhitney_p`` (two-sided), ``welch_p_holm``,
    ``mannwhitney_p_holm`` (Holm across the pairs), ``significant``
    (``welch_p_holm < 1 - confidence``, i.e. 0.05 by default).
    NaN values are dropped; groups with < 2 values give NaN Welch results.
    """
    clean = df[[group, value]].dropna(subset=[value])
    groups = {k: d[value].to_numpy(dtype=float) for k, d in clean.groupby(group, sort=True, observed=True)}
    rows = []
    for a, b in itertools.combinations(groups, 2):
        xa, xb = groups[a], groups[b]
        row = {
            "a": a,
            "b": b,
            "n_a": xa.size,
            "n_b": xb.size,
            "mean_a": float(np.mean(xa)),
            "mean_b": float(np.mean(xb)),
        }
        row["diff"] = row["mean_a"] - row["mean_b"]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if xa.size >= 2 and xb.size >= 2:
                tt = _st.ttest_ind(xa, xb, equal_var=False)
                ci = tt.confidence_interval(confidence)
                row.update(
                    welch_t=float(tt.statistic),
                    welch_p=float(tt.pvalue),
                    diff_ci_low=float(ci.low),
                    diff_ci_high=float(ci.high),
                )
            else:
                row.update(welch_t=math.nan, welch_p=math.nan, diff_ci_low=math.nan, diff_ci_high=math.nan)
            mw = _st.mannwhitneyu(xa, xb, alternative="two-sided")
            row.update(mannwhitney_u=float(mw.statistic), mannwhitney_p=float(mw.pvalue))
        rows.append(row)

    cols = [
        "a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff", "diff_ci_low", "diff_ci_high",
        "welch_t", "welch_p", "mannwhitney_u", "mannwhitney_p",
    ]  # fmt: skip
    out = pd.DataFrame(rows, columns=cols)
    out["welch_p_holm"] = holm(out["welch_p"].to_numpy(dtype=float))
    out["mannwhitney_p_holm"] = holm(out["mannwhitney_p"].to_numpy(dtype=float))
    out["significant"] = (out["welch_p_holm"] < 1.0 - confidence).astype(bool)
    return out


def describe_rate(rate: float, ci_low: float = math.nan, ci_high: float = math.nan, tol: float = 0.01) -> str:
    """Verdict for a log10-per-layer rate: ``"stable"``, ``"vanishes"``, ``"explodes"`` (or ``"unknown"``).

    "stable" if ``|rate| < tol`` or the interval [ci_low, ci_high] overlaps
    [-tol, tol]; otherwise the sign decides.  A NaN interval is ignored (only
    the point estimate is used); a NaN rate gives "unknown".  ``tol = 0.01``
    is a 2.3% change per layer.
    """
    rate = float(rate)
    if math.isnan(rate):
        return "unknown"
    if abs(rate) < tol:
        return "stable"
    if not (math.isnan(ci_low) or math.isnan(ci_high)) and ci_low <= tol and ci_high >= -tol:
        return "stable"
    return "vanishes" if rate < 0 else "explodes"


def factor(rate):
    """Per-layer multiplicative factor ``10**rate`` (vectorised)."""
    out = np.power(10.0, np.asarray(rate, dtype=float))
    return float(out) if out.ndim == 0 else out
