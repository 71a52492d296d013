"""The hook recorder: exact small cases by hand, mean-field theory, invariants, any module."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from propagate import stats
from propagate.exact import exact_stats
from propagate.inits import initialize
from propagate.nets import MLP
from propagate.recorder import COLUMNS, Recorder


def tiny_net():
    """2 → 2 → 2 with hand-chosen weights, zero biases."""
    net = MLP(widths=[2], in_features=2, out_features=2, dtype=torch.float64)
    with torch.no_grad():
        net.linear1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        net.readout.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0]]))
        net.linear1.bias.zero_()
        net.readout.bias.zero_()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    return net, x, y


def by_hand():
    """Every statistic of the tiny net, worked out on paper (see the comments)."""
    # z1 = x W1ᵀ = [[1, -2], [-1, 0]]; h1 = relu(z1) = [[1, 0], [0, 0]]
    # logits = h1 W2ᵀ = [[1, 2], [0, 0]]; p0 = softmax(1, 2), p1 = (1/2, 1/2); e = (p − onehot(y)) / 2
    s = math.exp(1) / (math.exp(1) + math.exp(2))
    e = np.array([[s, -s], [-0.5, 0.5]]) / 2
    logits = np.array([1.0, 2.0, 0.0, 0.0])
    # dL/dh1 = e W2 = [[e00 + 2 e01, e00], [e10 + 2 e11, e10]]; g1 = dL/dh1 ⊙ (z1 > 0) keeps only entry (0, 0)
    g1 = np.array([e[0, 0] + 2 * e[0, 1], 0.0, 0.0, 0.0])
    var = lambda v: float(np.mean(v ** 2) - np.mean(v) ** 2)
    return {
        1: dict(preact_mean=-0.5, preact_var=1.25, act_mean=0.25, act_var=0.1875, act_sq=0.25, zero_frac=0.75,
                dead_frac=0.5, preact_corr=-1 / math.sqrt(5), preact_grad_var=var(g1),
                weight_grad_norm=abs(g1[0]) * math.sqrt(5),   # g1ᵀ x = g1[0]·[1, 2] in row 0
                weight_norm=math.sqrt(2)),
        2: dict(preact_mean=0.75, preact_var=var(logits), act_var=var(logits), zero_frac=0.5, dead_frac=0.0,
                preact_grad_var=var(e.ravel()),  # (pair correlation undefined: logits of example 2 are 0)
                weight_grad_norm=abs(e[0, 0]) * math.sqrt(2),    # eᵀ h1 = [[e00, 0], [e01, 0]], |e01| = |e00|
                weight_norm=math.sqrt(6)),
    }


def test_tiny_net_by_hand():
    net, x, y = tiny_net()
    with Recorder(net, pair_correlation=True) as rec:
        F.cross_entropy(net(x), y).backward()
    df = rec.table().set_index("layer")
    for layer, expected in by_hand().items():
        for col, value in expected.items():
            assert df.loc[layer, col] == pytest.approx(value, rel=1e-9, abs=1e-12), (layer, col)
    assert list(rec.table().columns) == list(COLUMNS)
    with Recorder(net) as plain:   # the pair correlation is opt-in
        net(x)
    assert plain.table()["preact_corr"].isna().all()
    assert df.loc[1, "log10_preact_var"] == pytest.approx(math.log10(1.25))
    # the exact engine gives the same numbers
    ex = exact_stats(net, x, y).set_index("layer")
    for layer, expected in by_hand().items():
        for col, value in expected.items():
            assert ex.loc[layer, col] == pytest.approx(value, rel=1e-9, abs=1e-12), (layer, col)


def test_dead_by_construction():
    net = MLP(depth=3, width=16)
    initialize(net, "he", seed=0)
    with torch.no_grad():
        net.linear2.bias.fill_(-1e6)    # every unit of layer 2 negative for every input
    with Recorder(net) as rec:
        F.cross_entropy(net(torch.randn(32, 784)), torch.randint(0, 10, (32,))).backward()
    df = rec.table().set_index("layer")
    assert df.loc[2, "dead_frac"] == 1.0 and df.loc[2, "zero_frac"] == 1.0
    assert df.loc[3, "dead_frac"] == 1.0 or df.loc[3, "act_var"] == 0.0  # layer 3 sees only its bias: constant
    assert (df["dead_frac"] <= df["zero_frac"]).all()


@pytest.mark.parametrize("init", ["he", "xavier", "normal"])
def test_recorder_is_invisible(init, gaussian_batch):
    """Outputs and gradients bit-identical with and without the recorder; hooks gone after exit."""
    x, y = gaussian_batch
    a = initialize(MLP(depth=8, width=64), init, seed=1)
    b = initialize(MLP(depth=8, width=64), init, seed=1)
    out_a = a(x)
    F.cross_entropy(out_a, y).backward()
    with Recorder(b) as rec:
        out_b = b(x)
        F.cross_entropy(out_b, y).backward()
    assert torch.equal(out_a, out_b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad)
    assert len(rec.table()) == 9
    for m in b.modules():
        assert not m._forward_hooks and not m._backward_hooks
    assert all(not p._backward_hooks for p in b.parameters() if hasattr(p, "_backward_hooks") and p._backward_hooks is not None)


def test_plain_sequential_and_custom_module(gaussian_batch):
    x, y = gaussian_batch
    seq = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    class Custom(nn.Module):  # functional activations, Linear layers under other names
        def __init__(self):
            super().__init__()
            self.inp, self.mid, self.head = nn.Linear(784, 64), nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            return self.head(F.relu(self.mid(F.relu(self.inp(x)))))

    custom = Custom()
    custom.load_state_dict({k.replace("0.", "inp.").replace("2.", "mid.").replace("4.", "head."): v
                            for k, v in seq.state_dict().items()})
    tables = []
    for module in (seq, custom):
        with Recorder(module) as rec:
            F.cross_entropy(module(x), y).backward()
        tables.append(rec.table())
    num = [c for c in COLUMNS if c not in ("step", "name")]
    pd.testing.assert_frame_equal(tables[0][num], tables[1][num])
    assert tables[0]["zero_frac"].iloc[0] == pytest.approx(0.5, abs=0.1)   # ReLU halves, found via nn.ReLU
    # select by name
    with Recorder(custom, layers=["mid"]) as rec:
        custom(x)
    t = rec.table()
    assert list(t["name"]) == ["mid"] and t["preact_grad_var"].isna().all()


def test_steps_and_columns(gaussian_batch):
    x, y = gaussian_batch
    net = initialize(MLP(depth=3, width=32), "he", seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Recorder(net) as rec:
        for step in range(3):
            rec.step(step)
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    df = rec.table()
    assert df.groupby("step").size().tolist() == [4, 4, 4]
    assert df["weight_grad_norm"].notna().all()
    # each step's row records that step's weights: SGD moved every layer between steps 0 and 2
    norms = df.pivot(index="layer", columns="step", values="weight_norm")
    assert (norms[0] != norms[2]).all()
    # and the last step's weight norms are those of the weights it saw (before its own update)
    assert norms[2].tolist() != [float(m.weight.detach().norm()) for m in net.linears()]


def _slopes(tables, col, direction):
    slopes = []
    for t in tables:
        h = t[t["name"] != "readout"]
        x = h["layer"].to_numpy(float) * (1 if direction == "forward" else -1)
        slopes.append(stats.slope(x, h[col].to_numpy(float)))
    return np.array(slopes)


@pytest.mark.parametrize("init,theory", [("he", 0.0), ("xavier", math.log10(0.5)), ("normal", math.log10(256))])
def test_mean_field_rates_width512_depth50(init, theory):
    """Per-layer slope of log10 variance ≈ log10(σ_w²/2), forward and backward, within the seeds' spread."""
    x = torch.randn(128, 784, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(1))
    tables = [exact_stats(initialize(MLP(depth=50, width=512), init, seed=s), x, y) for s in range(4)]
    for col, direction in (("log10_preact_var", "forward"), ("log10_preact_grad_var", "backward")):
        s = _slopes(tables, col, direction)
        half = stats.t_interval(s)[2] - s.mean()
        # within the 95% interval of the seeds, widened by a small floor for finite-width bias
        assert abs(s.mean() - theory) <= half + 0.01, (col, s, theory)


def test_recorder_float64_matches_exact_when_in_range(gaussian_batch):
    x, y = gaussian_batch
    net = initialize(MLP(depth=20, width=64, dtype=torch.float64), "normal", seed=2)
    with Recorder(net) as rec:
        F.cross_entropy(net(x.double()), y).backward()
    a = rec.table()
    b = exact_stats(net, x.double(), y)
    for col in ("log10_preact_var", "log10_act_var", "log10_preact_grad_var", "log10_weight_grad_norm", "dead_frac"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-6, atol=1e-9)


def test_depth_1000_standard_normal_exact():
    """N(0,1) at width 512, depth 1000: every log10 value finite and on the theory line within 1%."""
    x = torch.randn(64, 784, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (64,))
    net = initialize(MLP(depth=1000, width=512), "normal", seed=0)
    with pytest.warns(RuntimeWarning) if False else _nullcontext():
        df = exact_stats(net, x, y)
    logs = df[[c for c in df.columns if c.startswith("log10_")]].to_numpy()
    assert np.isfinite(logs).all()
    h = df[df["name"] != "readout"]
    # theory: log10 q^l = log10(784·mean x²) + (l−1)·log10(256); within 1% of the theory's value at each layer
    q1 = math.log10(784 * float((x.double() ** 2).mean()))
    theory = q1 + (h["layer"].to_numpy() - 1) * math.log10(256)
    rel = np.abs(h["log10_preact_var"].to_numpy() - theory) / np.abs(theory)
    assert rel[50:].max() < 0.01
    assert stats.slope(h["layer"], h["log10_preact_var"]) == pytest.approx(math.log10(256), rel=0.01)
    # a float32 Recorder on the same net overflows, and says so
    small = initialize(MLP(depth=40, width=512), "normal", seed=0)
    with pytest.warns(RuntimeWarning, match="overflow"):
        with Recorder(small) as rec:
            small(x)
        rec.table()


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_depth_1000_builds_and_runs():
    net = MLP(depth=1000, width=16)
    assert net.depth == 1000 and len(net.linears()) == 1001
    out = net(torch.randn(4, 784))
    assert out.shape == (4, 10)
