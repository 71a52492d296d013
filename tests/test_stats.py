"""Tests for propagate.stats: hand computations, scipy cross-checks, coverage."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from propagate import stats as S

# ---------------------------------------------------------------- intervals


def test_t_interval_hand_computation():
    m, lo, hi = S.t_interval([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} * s / sqrt(n)
    assert m == 3.0
    assert lo == pytest.approx(3 - half, rel=1e-12)
    assert hi == pytest.approx(3 + half, rel=1e-12)
    assert half == pytest.approx(2.776 * 1.5811 / math.sqrt(5), rel=1e-3)  # 4-digit table values


def test_t_interval_edge_cases():
    assert S.t_interval([2.0, np.nan, 4.0])[0] == 3.0  # NaN dropped
    m, lo, hi = S.t_interval([7.0])
    assert m == 7.0 and math.isnan(lo) and math.isnan(hi)
    assert S.t_interval([1.5, 1.5, 1.5]) == (1.5, 1.5, 1.5)
    assert all(math.isnan(v) for v in S.t_interval([]))
    m, lo, hi = S.t_interval([1.0, np.inf])
    assert m == np.inf and math.isnan(lo) and math.isnan(hi)
    m, lo, hi = S.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.99)
    assert hi - lo > 2 * 2.7764 * math.sqrt(2.5 / 5)


def test_t_interval_coverage():
    """~95% of 2000 intervals from N(3, 2^2) samples of size 8 cover 3."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(2000, 8))
    m = x.mean(1)
    half = st.t.ppf(0.975, 7) * x.std(1, ddof=1) / math.sqrt(8)
    # vectorised reference for speed, plus the function itself on a subset
    for i in range(0, 2000, 97):
        _, lo, hi = S.t_interval(x[i])
        assert lo == pytest.approx(m[i] - half[i]) and hi == pytest.approx(m[i] + half[i])
    covered = [S.t_interval(row)[1] <= 3.0 <= S.t_interval(row)[2] for row in x]
    k = int(np.sum(covered))
    lo, hi = S.wilson_interval(k, 2000, confidence=0.999)
    assert lo <= 0.95 <= hi, k


def test_bootstrap_interval_deterministic_and_sane():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 1, 40)
    a = S.bootstrap_interval(x, seed=3)
    assert a == S.bootstrap_interval(x, seed=3)
    m, lo, hi = a
    assert m == pytest.approx(x.mean())
    _, tlo, thi = S.t_interval(x)
    assert lo < m < hi
    assert (hi - lo) == pytest.approx(thi - tlo, rel=0.25)
    assert S.bootstrap_interval([4.0, 4.0, 4.0]) == (4.0, 4.0, 4.0)
    assert math.isnan(S.bootstrap_interval([1.0])[1])
    p = S.bootstrap_interval(x, method="percentile", seed=3)
    assert p[1] < m < p[2]


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_tidy_and_infinite():
    df = pd.DataFrame(
        {
            "depth": [10, 10, 10, 10, 20, 20, 20, 30],
            "init": ["he"] * 8,
            "v": [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 1.0],
            "w": [1.0, np.nan, 3.0, -np.inf, 1.0, 2.0, 3.0, 2.0],
        }
    )
    out = S.mean_ci(df, ["depth", "init"], ["v", "w"])
    assert list(out.columns) == [
        "depth", "init", "v_mean", "v_ci_low", "v_ci_high", "w_mean", "w_ci_low", "w_ci_high", "n",
    ]  # fmt: skip
    assert out["n"].tolist() == [4, 3, 1]
    r = out.iloc[0]
    m, lo, hi = S.t_interval([1, 2, 3, 4])
    assert (r.v_mean, r.v_ci_low, r.v_ci_high) == pytest.approx((m, lo, hi))
    assert r.w_mean == -np.inf and math.isnan(r.w_ci_low) and math.isnan(r.w_ci_high)
    r = out.iloc[1]
    assert (r.v_mean, r.v_ci_low, r.v_ci_high) == (5.0, 5.0, 5.0)  # constant group
    assert (r.w_mean, r.w_ci_low, r.w_ci_high) == pytest.approx(S.t_interval([1, 2, 3]))
    r = out.iloc[2]
    assert r.v_mean == 1.0 and math.isnan(r.v_ci_low)  # single row
    # single string arguments and no grouping
    one = S.mean_ci(df, None, "v")
    assert one["n"].tolist() == [8]
    assert one.loc[0, "v_mean"] == pytest.approx(df.v.mean())


# ---------------------------------------------------------------- slopes & rates


def test_slope():
    x = np.arange(10.0)
    assert S.slope(x, 3 * x + 1) == pytest.approx(3.0)
    y = 3 * x + 1
    y[4] = -np.inf  # dead layer is skipped
    y[5] = np.nan
    assert S.slope(x, y) == pytest.approx(3.0)
    assert math.isnan(S.slope([1.0], [2.0]))
    assert math.isnan(S.slope([1.0, 1.0], [2.0, 3.0]))
    rng = np.random.default_rng(0)
    yy = rng.normal(size=10)
    assert S.slope(x, yy) == pytest.approx(st.linregress(x, yy).slope)


def test_rates_recover_known_slope():
    rng = np.random.default_rng(2)
    true = {"he": 0.0, "xavier": -0.30103}
    rows = []
    for init, r in true.items():
        for seed in range(8):
            off = rng.normal(0, 0.5)
            jitter = rng.normal(0, 0.01)  # per-seed slope scatter
            for layer in range(1, 21):
                rows.append(dict(init=init, seed=seed, layer=layer, y=off + (r + jitter) * layer + rng.normal(0, 0.05)))
    df = pd.DataFrame(rows)
    out = S.rates(df, "init", "layer", "y")
    assert list(out.columns) == ["init", "rate", "ci_low", "ci_high", "n"]
    for _, row in out.iterrows():
        assert row.n == 8
        assert row.ci_low <= true[row.init] <= row.ci_high
        assert row.rate == pytest.approx(true[row.init], abs=0.02)
    verdicts = {r.init: S.describe_rate(r.rate, r.ci_low, r.ci_high) for r in out.itertuples()}
    assert verdicts == {"he": "stable", "xavier": "vanishes"}
    assert S.factor(out.set_index("init").loc["xavier", "rate"]) == pytest.approx(0.5, abs=0.03)
    pooled = S.rates(df[df.init == "he"], None, "layer", "y", unit=None)
    assert pooled.loc[0, "n"] == 1 and math.isnan(pooled.loc[0, "ci_low"])


# ---------------------------------------------------------------- proportions & tests


def test_wilson_known_values():
    lo, hi = S.wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12)
    assert hi == pytest.approx(0.2775, abs=1e-4)
    z = st.norm.ppf(0.975)
    k, n = 7, 20
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert S.wilson_interval(k, n) == pytest.approx((centre - half, centre + half))
    lo, hi = S.wilson_interval(np.array([0, 10]), 10)
    assert hi[0] == pytest.approx(0.2775, abs=1e-4) and lo[1] == pytest.approx(1 - 0.2775, abs=1e-4)


def test_holm_hand_example():
    np.testing.assert_allclose(S.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(S.holm([0.5, 0.9, np.nan]), [1.0, 1.0, np.nan])
    out = S.holm([0.001, 0.2, 0.01, 0.04])
    np.testing.assert_allclose(out, [0.004, 0.2, 0.03, 0.08])


def test_pairwise_tests_against_scipy():
    rng = np.random.default_rng(4)
    df = pd.DataFrame(
        {
            "init": np.repeat(["a", "b", "c"], [6, 7, 8]),
            "rate": np.concatenate([rng.normal(0, 1, 6), rng.normal(0.2, 1, 7), rng.normal(3, 1, 8)]),
        }
    )
    out = S.pairwise_tests(df, "init", "rate")
    assert len(out) == 3
    assert list(zip(out.a, out.b)) == [("a", "b"), ("a", "c"), ("b", "c")]
    for row in out.itertuples():
        xa = df.rate[df.init == row.a].to_numpy()
        xb = df.rate[df.init == row.b].to_numpy()
        w = st.ttest_ind(xa, xb, equal_var=False)
        u = st.mannwhitneyu(xa, xb, alternative="two-sided")
        assert (row.n_a, row.n_b) == (xa.size, xb.size)
        assert row.diff == pytest.approx(xa.mean() - xb.mean())
        assert row.welch_t == pytest.approx(w.statistic)
        assert row.welch_p == pytest.approx(w.pvalue)
        assert row.mannwhitney_u == pytest.approx(u.statistic)
        assert row.mannwhitney_p == pytest.approx(u.pvalue)
        assert row.diff_ci_low < row.diff < row.diff_ci_high
    np.testing.assert_allclose(out.welch_p_holm, S.holm(out.welch_p))
    np.testing.assert_allclose(out.mannwhitney_p_holm, S.holm(out.mannwhitney_p))
    assert out.significant.tolist() == [False, True, True]


def test_describe_rate_and_factor():
    assert S.describe_rate(-0.3, -0.35, -0.25) == "vanishes"
    assert S.describe_rate(0.3, 0.25, 0.35) == "explodes"
    assert S.describe_rate(0.005, -0.1, 0.1) == "stable"
    assert S.describe_rate(0.2, -0.005, 0.4) == "stable"  # CI overlaps [-tol, tol]
    assert S.describe_rate(-0.2) == "vanishes"  # no CI: point estimate decides
    assert S.describe_rate(float("nan")) == "unknown"
    assert S.factor(math.log10(2)) == pytest.approx(2.0)
    np.testing.assert_allclose(S.factor([0.0, -1.0]), [1.0, 0.1])
