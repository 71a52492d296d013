"""Initializers: the registry, and each one's empirical weight variance against its formula."""
import math

import pytest
import torch

from propagate import inits as I
from propagate.nets import MLP


@pytest.mark.parametrize("name", [i.name for i in I.all_inits() if not i.data_dependent] + ["gaussian:3.0"])
@pytest.mark.parametrize("fans", [(784, 512), (512, 512), (256, 1000)])
def test_empirical_variance_matches_formula(name, fans):
    fan_in, fan_out = fans
    init = I.get(name)
    w = init.sample(fan_out, fan_in, I.layer_generator(0, I.HIDDEN, 1))
    n = w.numel()
    expected = init.weight_var(fan_in, fan_out)
    # Var of the sample variance of n draws: 2σ⁴/n (normal), 0.8σ⁴/n (uniform); 5 standard errors.
    assert float(w.var()) == pytest.approx(expected, rel=5 * math.sqrt(2.0 / n))
    assert abs(float(w.mean())) < 5 * math.sqrt(expected / n)


def test_formulas_by_hand():
    assert I.get("xavier").weight_var(784, 512) == 2 / (784 + 512)
    assert I.get("glorot").name == "xavier_normal"
    assert I.get("he").weight_var(784, 512) == 2 / 784
    assert I.get("kaiming_normal_fan_out").weight_var(784, 512) == 2 / 512
    assert I.get("normal").weight_var(10, 10000) == 1.0
    assert I.get("lecun_normal").weight_var(400, 3) == 1 / 400
    assert I.get("orthogonal").weight_var(512, 256) == pytest.approx(2 / 512)
    assert I.get("torch_default").weight_var(300, 7) == pytest.approx(1 / 900)
    g = I.get("gaussian:1.5:0.05")
    assert g.weight_var(100, 3) == 0.015 and I.parse_bias(g.default_bias) == 0.05
    assert math.isnan(I.get("lsuv").weight_var(3, 3))


def test_orthogonal_is_orthogonal_with_relu_gain():
    w = I.get("orthogonal").sample(256, 512, I.layer_generator(1, I.HIDDEN, 1))
    # rows orthonormal up to the gain √2
    assert torch.allclose(w @ w.T, 2 * torch.eye(256, dtype=w.dtype), atol=1e-10)


def test_same_seed_same_family_are_scalar_multiples():
    gen = lambda: I.layer_generator(3, I.HIDDEN, 2)
    he = I.get("he").sample(64, 64, gen())
    xav = I.get("xavier").sample(64, 64, gen())
    assert torch.allclose(he / xav, torch.full_like(he, math.sqrt(2)))


def test_layers_do_not_depend_on_depth():
    shallow = I.initialize(MLP(depth=2, width=32), "he", seed=5)
    deep = I.initialize(MLP(depth=7, width=32), "he", seed=5)
    assert torch.equal(shallow.linear2.weight, deep.linear2.weight)
    assert torch.equal(shallow.readout.weight, deep.readout.weight)
    other = I.initialize(MLP(depth=2, width=32), "he", seed=6)
    assert not torch.equal(shallow.linear1.weight, other.linear1.weight)


def test_bias_modes():
    net = I.initialize(MLP(depth=2, width=400), "he", seed=0, bias="zero")
    assert torch.count_nonzero(net.linear1.bias) == 0
    net = I.initialize(MLP(depth=2, width=400), "he", seed=0, bias="torch_default")
    b = net.linear2.bias.detach()
    assert float(b.abs().max()) <= 1 / math.sqrt(400) and float(b.var()) == pytest.approx(1 / 1200, rel=0.3)
    net = I.initialize(MLP(depth=2, width=4000), "he", seed=0, bias=0.25)
    assert float(net.linear1.bias.detach().var()) == pytest.approx(0.25, rel=0.1)
    net = I.initialize(MLP(depth=1, width=4000), "torch_default", seed=0)   # its own default bias
    assert torch.count_nonzero(net.linear1.bias) > 0


def test_lsuv_gives_unit_output_variance(gaussian_batch):
    x, _ = gaussian_batch
    net = I.initialize(MLP(depth=6, width=128), "lsuv", seed=0, data=x)
    h = x
    for lin in net.linears()[:-1]:
        z = lin(h)
        assert abs(float(z.detach().var(correction=0)) - 1) < 0.1
        h = torch.relu(z)


@pytest.mark.parametrize("bad", ["nope", "", "gaussian:", "gaussian:x", "gaussian:-1", "gaussian:2:-1"])
def test_bad_names_are_clear(bad):
    with pytest.raises(I.InitError) as err:
        I.get(bad)
    assert "\n" not in str(err.value)


def test_unknown_lists_valid_names():
    with pytest.raises(I.InitError, match="kaiming_normal"):
        I.get("kaimin")
    with pytest.raises(I.InitError):
        I.initialize(MLP(depth=1, width=8), "lsuv")   # needs data
