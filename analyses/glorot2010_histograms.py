"""Glorot & Bengio (2010), figures 6 and 7: activations and back-propagated gradients per layer at initialisation.

Paper: X. Glorot and Y. Bengio (2010), "Understanding the difficulty of training deep feedforward
neural networks".  Claim checked: with the "standard" initialisation W ~ U(±1/√n) (Var W =
1/(3n)), the distributions of activations shrink towards 0 from layer to layer and the
back-propagated gradients change size across layers, whereas the "normalized" initialisation
(Xavier, Var W = 2/(n_in + n_out)) keeps both distributions about the same at every layer
(their figures 6 and 7 use tanh; we add ReLU, for which Xavier itself halves the variance per
layer and He's factor 2 is needed).

Method: a 5-hidden-layer MLP (tanh, and ReLU), built with ``initialize(MLP(...), init, seed)``,
on a batch of MNIST test images; forward hooks keep every hidden layer's raw activations and
``retain_grad`` keeps the raw gradients ∂L/∂z of the cross-entropy with respect to every
pre-activation (this is a study script, so it captures raw values; the package's Recorder keeps
statistics only).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F

from propagate import MLP, initialize
from propagate.analysis_support import main
from propagate.data import load_mnist, to_tensors

META = dict(
    name="glorot2010_histograms",
    title="Activations and gradients per layer at initialisation (Glorot & Bengio 2010, figs. 6–7)",
    paper="Glorot & Bengio (2010), Understanding the difficulty of training deep feedforward neural networks: with "
          "the standard init U(±1/√n) activation distributions shrink from layer to layer and back-propagated "
          "gradients vary across layers; the normalized (Xavier) init keeps them about the same at every layer.",
    question="At initialisation, how do the distributions of each layer's activations and back-propagated gradients "
             "change with depth under the standard init U(±1/√n) and under Xavier, for tanh and ReLU nets?",
    method="5 hidden layers of equal width, tanh or ReLU, zero biases, weights from initialize(MLP(...), init, seed): "
           "'torch_default' (W ~ U(±1/√fan_in), the 'standard' init of the paper) and 'xavier_uniform' "
           "(U(±√(6/(fan_in + fan_out)))); He ('kaiming_normal') is added for ReLU. Inputs: a batch of normalised "
           "MNIST test images. Forward hooks store every hidden activation h^l; z^l.retain_grad() stores every raw "
           "back-propagated gradient ∂L/∂z^l of the mean cross-entropy. Violins show the pooled values of all seeds "
           "(a random subsample per cell for plotting); the tables give exact quantiles and standard deviations over "
           "all values. The summary ratio std(layer 5)/std(layer 1) says how much a distribution shrank (< 1) or grew "
           "(> 1) across the net; the paper's claim is ≈ 1 for Xavier (tanh) and well below 1 for the standard init.",
)


def capture(net: MLP, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Raw hidden activations h^l and gradients ∂L/∂z^l (l = 1..L) of one forward/backward pass."""
    acts, pre = [], []
    lins = net.linears()[:-1]
    def keep(module, inputs, out):
        out.retain_grad()
        pre.append(out)

    hooks = [lin.register_forward_hook(keep) for lin in lins]
    act_modules = [m for name, m in net.named_children() if name.startswith("act")]
    hooks += [m.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for m in act_modules]
    try:
        loss = F.cross_entropy(net(x), y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    return acts, [z.grad.detach() for z in pre]


def run(study):
    p = study.size(quick=dict(width=64, batch=64, seeds=2, plot_sample=800),
                   default=dict(width=1000, batch=1000, seeds=5, plot_sample=20000))
    data = load_mnist()
    gen = torch.Generator().manual_seed(2010)
    idx = torch.randperm(len(data.test_labels), generator=gen)[: p["batch"]].numpy()
    x, y = to_tensors(data.test_images[idx], data.test_labels[idx])
    study.config["input"] = f"MNIST test images ({data.source})"
    cases = [("tanh", "torch_default"), ("tanh", "xavier_uniform"),
             ("relu", "torch_default"), ("relu", "xavier_uniform"), ("relu", "kaiming_normal")]
    label = {"torch_default": "standard U(±1/√n)", "xavier_uniform": "Xavier (normalized)", "kaiming_normal": "He"}
    rng = np.random.default_rng(0)
    rows, samples = [], []
    for act, init in cases:
        per_layer = {}
        for seed in range(p["seeds"]):
            net = initialize(MLP(widths=[p["width"]] * 5, activation=act), init, seed=seed, bias="zero")
            acts, grads = capture(net, x, y)
            for l, (h, g) in enumerate(zip(acts, grads), start=1):
                per_layer.setdefault(("activation", l), []).append(h.flatten().numpy())
                per_layer.setdefault(("gradient", l), []).append(g.flatten().numpy())
        for (quantity, l), parts in per_layer.items():
            v = np.concatenate(parts).astype(np.float64)
            q = np.quantile(v, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
            rows.append({"activation": act, "init": init, "init_label": label[init], "quantity": quantity, "layer": l,
                         "values": v.size, "mean": v.mean(), "std": v.std(), "q01": q[0], "q05": q[1], "q25": q[2],
                         "median": q[3], "q75": q[4], "q95": q[5], "q99": q[6],
                         "frac_saturated": float(np.mean(np.abs(v) > 0.9)) if quantity == "activation" and act == "tanh" else np.nan,
                         "frac_zero": float(np.mean(v == 0))})
            pick = rng.choice(v.size, size=min(p["plot_sample"], v.size), replace=False)
            samples.append(pd.DataFrame({"activation": act, "init": label[init], "quantity": quantity, "layer": l,
                                         "value": v[pick]}))
    table = pd.DataFrame(rows)
    sample = pd.concat(samples, ignore_index=True)

    # Ratios std(layer 5)/std(layer 1) per case and quantity.
    ratio = (table.pivot_table(index=["activation", "init", "quantity"], columns="layer", values="std")
             .pipe(lambda t: (t[5] / t[1]).rename("std_L5_over_L1")).reset_index())
    ratio["log2_ratio"] = np.log2(ratio["std_L5_over_L1"])
    r = ratio.set_index(["activation", "init", "quantity"])["std_L5_over_L1"]
    for key, v in r.items():
        study.numbers["ratio_" + "_".join(key)] = float(v)
    ta_std, ta_xav = r[("tanh", "torch_default", "activation")], r[("tanh", "xavier_uniform", "activation")]
    tg_std, tg_xav = r[("tanh", "torch_default", "gradient")], r[("tanh", "xavier_uniform", "gradient")]
    ra = {i: r[("relu", i, "activation")] for i in ("torch_default", "xavier_uniform", "kaiming_normal")}
    rg = {i: r[("relu", i, "gradient")] for i in ("torch_default", "xavier_uniform", "kaiming_normal")}
    closer = abs(np.log2(ta_xav)) < abs(np.log2(ta_std)) and abs(np.log2(tg_xav)) < abs(np.log2(tg_std))
    study.verdict = (
        f"{'Supported' if closer and ta_std < 0.5 else 'Not supported'} for tanh: from layer 1 to layer 5 the activations' "
        f"standard deviation is multiplied by {ta_std:.2f} under the standard init but by {ta_xav:.2f} under Xavier, and "
        f"the back-propagated gradients' (∂L/∂z) by {tg_std:.2f} vs {tg_xav:.2f} (a ratio > 1 means the lower layers get "
        f"smaller gradients) — Xavier keeps both {'closer to' if closer else 'no closer to'} constant across layers. "
        f"For ReLU the activation ratios are {ra['torch_default']:.3f} (standard), {ra['xavier_uniform']:.2f} (Xavier) and "
        f"{ra['kaiming_normal']:.2f} (He), the gradient ratios {rg['torch_default']:.3f}, {rg['xavier_uniform']:.2f} and "
        f"{rg['kaiming_normal']:.2f}: per layer, Xavier multiplies the ReLU activations' std by "
        f"{ra['xavier_uniform'] ** 0.25:.2f} and He by {ra['kaiming_normal'] ** 0.25:.2f} (mean field: 1/√2 ≈ 0.71 and 1).")

    # Figures: violins per (activation function, quantity).
    for act in ("tanh", "relu"):
        for quantity in ("activation", "gradient"):
            d = sample[(sample["activation"] == act) & (sample["quantity"] == quantity)]
            inits = list(dict.fromkeys(d["init"]))
            fig, axes = plt.subplots(1, len(inits), figsize=(4.3 * len(inits), 4.8), sharey=False)
            for ax, init in zip(np.atleast_1d(axes), inits):
                dd = d[d["init"] == init]
                if act == "relu" and quantity == "activation":
                    dd = dd[dd["value"] > 0]  # half the values are exactly 0: show the positive part
                sns.violinplot(dd, x="layer", y="value", cut=0, inner="quartile", density_norm="width",
                               color=sns.color_palette("colorblind")[inits.index(init)], ax=ax, linewidth=0.7)
                ax.set(title=init, xlabel="hidden layer l",
                       ylabel=("activation h^l" + (" (positive part)" if act == "relu" else "")) if quantity == "activation"
                       else "back-propagated gradient ∂L/∂z^l")
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            fig.suptitle(f"{act}: {quantity}s per layer at initialisation (linear y axis, its own scale per panel)",
                         fontsize=12)
            fig.tight_layout()
            what = ("activations h^l = φ(z^l)" if quantity == "activation" else "back-propagated gradients ∂L/∂z^l of "
                    "the mean cross-entropy")
            look = {("tanh", "activation"): "Look at the standard init's violins narrowing towards 0 from layer 1 to 5 "
                                            "while Xavier's keep their width (the paper's figure 6).",
                    ("tanh", "gradient"): "Look at whether the violins keep one width across layers (Xavier) or change "
                                          "width with depth (standard) — the paper's figure 7.",
                    ("relu", "activation"): "Zeros (half the values) are left out. Look at the scale: standard shrinks "
                                            "fast, Xavier by √2 per layer, He keeps it.",
                    ("relu", "gradient"): "Look at the gradient's width across layers: constant only under He."}[(act, quantity)]
            study.figure(f"{act}_{quantity}", fig, f"{act}: {quantity} distributions per layer",
                         f"Violins of the raw {what} of every hidden layer, pooled over units, images and seeds (a random "
                         f"subsample of {p['plot_sample']} values per layer), one panel per initializer; lines mark "
                         f"quartiles. Each panel has its own linear y scale so the shapes are visible; the tables give "
                         f"the standard deviations. {look}")
    # Figure: std per layer on a log scale, all cases.
    t = table.copy()
    t["case"] = t["activation"] + ", " + t["init_label"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, quantity in zip(axes, ("activation", "gradient")):
        sns.lineplot(t[t["quantity"] == quantity], x="layer", y="std", hue="case", marker="o", ax=ax)
        ax.set(yscale="log", xlabel="hidden layer l", ylabel=f"std of {quantity}s (log scale)",
               title=f"{quantity.capitalize()}s: standard deviation per layer", xticks=range(1, 6))
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    study.figure("std_per_layer", fig, "Standard deviation per layer, every case",
                 "Standard deviation of all values of each hidden layer (units × images × seeds), log scale. A flat line "
                 "means the distribution keeps its width through the net. Look at tanh-standard and every ReLU case "
                 "but He falling, and at which lines stay flat.")
    study.table("quantiles", table, "Quantiles and standard deviations per layer",
                "Over all values of each layer (units × images × seeds). frac_saturated: share of tanh activations with "
                "|h| > 0.9; frac_zero: share exactly 0.",
                show=table[["activation", "init", "quantity", "layer", "std", "q05", "median", "q95", "frac_zero"]])
    study.table("ratios", ratio, "How much each distribution shrank across the net",
                "std at layer 5 divided by std at layer 1 (< 1: shrank going up for activations; for gradients, which "
                "travel down, a ratio > 1 means the lower layers receive smaller gradients).")


if __name__ == "__main__":
    main(META, run, __doc__)
