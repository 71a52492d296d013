"""Property tests (hypothesis): the Recorder's table on random MLPs — any depth, width, initializer,
bias and activation — obeys the invariants its readers rely on.

Decided precisely:
* a log10 column is never NaN; it is −inf exactly where its plain column is exactly 0 (a variance
  of 0: a fully dead layer, a constant layer) and log10 of the plain column everywhere else;
* variances and norms are finite and ≥ 0; 0 ≤ dead_frac ≤ zero_frac ≤ 1;
* a ReLU layer that is dead for the whole batch has act_var = 0 and zero_frac = 1, and every
  gradient at or below it is exactly 0 (so its log10 gradient columns are −inf);
* hooks only read: outputs and gradients are bit-identical with and without the Recorder;
* :func:`propagate.exact.exact_stats` agrees with a float64 Recorder (log10 columns within 1e-4)
  wherever the Recorder's own value is not rounding noise.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from propagate import inits as I
from propagate.exact import exact_stats
from propagate.nets import ACTIVATIONS, MLP
from propagate.recorder import LOG10_OF, Recorder

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
NAMED = [i.name for i in I.all_inits()]


@st.composite
def nets(draw, dtype=torch.float32):
    depth = draw(st.integers(1, 12))
    width = draw(st.integers(1, 48))
    init = draw(st.one_of(st.sampled_from(NAMED),
                          st.builds(lambda sw, sb: f"gaussian:{sw:g}:{sb:g}",
                                    st.floats(0.25, 4.0), st.sampled_from([0.0, 0.01, 0.5]))))
    bias = draw(st.one_of(st.sampled_from(["zero", "torch_default", None]), st.floats(0.001, 1.0)))
    activation = draw(st.sampled_from(ACTIVATIONS))
    seed = draw(st.integers(0, 2**16))
    batch = draw(st.integers(2, 24))
    in_features = draw(st.integers(1, 20))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_features, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (batch,), generator=g)
    net = MLP(depth=depth, width=width, in_features=in_features, activation=activation, dtype=dtype)
    I.initialize(net, init, seed=seed, bias=bias, data=x)
    return net, x, y


def recorded(net, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an overflow is allowed to warn; checked below
        with Recorder(net) as rec:
            out = net(x)
            F.cross_entropy(out, y).backward()
        return rec.table(), out


@SETTINGS
@given(nets())
def test_recorder_table_invariants(case):
    net, x, y = case
    df, _ = recorded(net, x, y)
    assert len(df) == net.depth + 1
    for col, src in LOG10_OF.items():
        v, s = df[col].to_numpy(float), df[src].to_numpy(float)
        assert not np.isnan(v).any(), (col, df[[src, col]])
        assert (s >= 0).all() and not np.isnan(s).any(), (src, s)
        assert ((v == -np.inf) == (s == 0)).all(), (col, v, s)
        pos = (s > 0) & np.isfinite(s)
        assert np.array_equal(v[pos], np.log10(s[pos])), col
    for col in ("preact_var", "act_var", "act_sq", "weight_norm"):
        assert (df[col] >= 0).all(), col
    dead, zero = df["dead_frac"].to_numpy(), df["zero_frac"].to_numpy()
    assert ((0 <= dead) & (dead <= zero) & (zero <= 1)).all(), df[["dead_frac", "zero_frac"]]
    if net.activation == "relu":
        hidden = df[df["layer"] <= net.depth]
        fully_dead = hidden.index[hidden["dead_frac"] == 1]
        if len(fully_dead):
            top = hidden.loc[fully_dead, "layer"].max()
            assert (hidden.loc[fully_dead, "act_var"] == 0).all() and (hidden.loc[fully_dead, "zero_frac"] == 1).all()
            below = df[df["layer"] <= top]
            assert (below["preact_grad_var"] == 0).all() and (below["log10_preact_grad_var"] == -np.inf).all()
            assert (below["weight_grad_norm"] == 0).all() and (below["log10_weight_grad_norm"] == -np.inf).all()


@SETTINGS
@given(nets())
def test_the_recorder_changes_nothing(case):
    net, x, y = case
    twin = copy.deepcopy(net)
    out_plain = twin(x)
    F.cross_entropy(out_plain, y).backward()
    _, out_rec = recorded(net, x, y)
    assert torch.equal(out_plain, out_rec)
    for (name, p), (_, q) in zip(twin.named_parameters(), net.named_parameters()):
        assert torch.equal(p.grad, q.grad), name


@SETTINGS
@given(nets(dtype=torch.float64))
def test_exact_stats_agrees_with_a_float64_recorder(case):
    net, x, y = case
    rec, _ = recorded(net, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ex = exact_stats(net, x, y)
    assert list(ex["layer"]) == list(rec["layer"])
    for col, src in LOG10_OF.items():
        r, e = rec[col].to_numpy(float), ex[col].to_numpy(float)
        assert not np.isnan(e).any(), (col, e)
        assert ((r == -np.inf) == (e == -np.inf)).all() or _noise(rec, src).any(), (col, r, e)
        ok = np.isfinite(r) & np.isfinite(e) & ~_noise(rec, src)
        assert np.allclose(r[ok], e[ok], rtol=0, atol=1e-4), (col, r[ok], e[ok])
    for col in ("zero_frac", "dead_frac"):
        assert np.array_equal(rec[col].to_numpy(float), ex[col].to_numpy(float)), col


def _noise(df, src):
    """Variances computed as E[z²] − E[z]² that are below float64 rounding of E[z²] (a near-constant layer)."""
    if src == "preact_var":
        second = df["preact_var"] + df["preact_mean"] ** 2
    elif src == "act_var":
        second = df["act_sq"]
    else:
        return np.zeros(len(df), bool)
    return (df[src] <= 1e-9 * second).to_numpy()


def test_zero_frac_is_at_least_dead_frac_exactly():
    """Found by hypothesis: depth 1, 17 units, batch 2, 5 units dead on both examples and nothing else zero."""
    h = torch.ones(2, 17)
    h[:, :5] = 0
    from propagate.recorder import act_stats

    st = act_stats(h)
    zero_frac, dead_frac = st["zero_frac"], st["dead_frac"]
    assert dead_frac == 5 / 17 and zero_frac >= dead_frac
