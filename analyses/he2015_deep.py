"""He et al. (2015): a 30-layer ReLU net trains from He initialisation and stalls from Xavier.

Paper: K. He, X. Zhang, S. Ren and J. Sun (2015), "Delving deep into rectifiers: surpassing
human-level performance on ImageNet classification", section 2.2 and figure 3: a 30-layer ReLU
net initialised with Xavier (Var W = 1/n for square layers, i.e. σ_w² = 1) "completely stalls"
— its gradients vanish, the loss does not go down — while the same net with Var W = 2/n_in
converges.  Claim checked here on an MLP: 30 hidden ReLU layers of width 256 on MNIST, plain SGD
with learning rate 0.01, zero biases.

Method: ``propagate.train`` trains both initializers (and several seeds) together and records the
per-layer statistics (Recorder) at step 0 and every few steps on a fixed batch of training images;
the verdict compares the loss reached and the gradient variance of the first against the last
hidden layer.  Default size (to fit 10 minutes on 2 CPU cores): 2 seeds, 3 epochs over the first
15 000 training images; test accuracy on all 10 000 test images.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from propagate import stats
from propagate.analysis_support import main
from propagate.train import prepare_data, train

META = dict(
    name="he2015_deep",
    title="Training a 30-layer ReLU net: Xavier vs He (He et al. 2015)",
    paper="He et al. (2015), Delving deep into rectifiers, fig. 3: a 30-layer ReLU net initialised with Xavier "
          "stalls (its gradients vanish and the error does not decrease) while He's Var W = 2/fan_in makes it converge.",
    question="Does a 30-layer, width-256 ReLU MLP trained with plain SGD (lr 0.01) learn MNIST from Xavier "
             "initialisation, from He initialisation, and how do the per-layer gradient variances differ at "
             "initialisation and during training?",
    method="propagate.train with depth 30, width 256, ReLU, zero biases, SGD (no momentum) at learning rate 0.01, batch "
           "64, inits xavier (N(0, 2/(fan_in + fan_out))) and he (N(0, 2/fan_in)), several seeds trained together as one "
           "stacked model (each run's gradient is its own). At step 0 and every few steps the Recorder watches one "
           "forward/backward pass of the cross-entropy on a fixed batch of 512 training images: per-layer variance "
           "of the pre-activations and of their gradients ∂L/∂z^l. 'Stall' is measured as the drop of the loss on "
           "that batch relative to ln 10 = 2.303 (a uniform guess). Gradient attenuation = log10 Var(∂L/∂z) of layer 1 "
           "minus that of layer 30 (negative: the first layer's gradient is smaller).",
)


def run(study):
    p = study.size(quick=dict(depth=30, width=32, seeds=1, epochs=1, train_limit=640, record_every=5, lr=0.01),
                   default=dict(depth=30, width=256, seeds=2, epochs=3, train_limit=15000, record_every=100, lr=0.01))
    data = prepare_data()
    if study.quick:  # a smaller test set keeps the smoke test to seconds
        data = type(data)(data.x_train, data.y_train, data.x_test[:1000], data.y_test[:1000], data.source)
    res = train(inits=["xavier", "he"], seeds=p["seeds"], epochs=p["epochs"], depth=p["depth"], width=p["width"],
                optimizer="sgd", lr=p["lr"], bias="zero", record_every=p["record_every"], train_limit=p["train_limit"],
                data=data)
    study.config["train samples/s (all runs)"] = round(res.timings.get("samples_per_s", float("nan")))
    m, s = res.metrics, res.signals
    hidden = s[s["layer"] <= p["depth"]].copy()
    study.table("metrics", m)
    study.table("signals", s)

    batch = s.drop_duplicates(["init", "seed", "step"])[["init", "seed", "step", "epoch", "batch_loss", "batch_acc"]]
    first, last_step = batch["step"].min(), batch["step"].max()
    end = batch[batch["step"] == last_step].groupby("init")[["batch_loss", "batch_acc"]].mean()
    start = batch[batch["step"] == first].groupby("init")["batch_loss"].mean()
    final = m[m["epoch"] == m["epoch"].max()].groupby("init")["test_acc"].agg(["mean", "min", "max"])
    ln10 = math.log(10)
    g0 = hidden[hidden["step"] == first].groupby(["init", "layer"])["log10_preact_grad_var"].mean().unstack()
    gT = hidden[hidden["step"] == last_step].groupby(["init", "layer"])["log10_preact_grad_var"].mean().unstack()
    att0 = (g0[1] - g0[p["depth"]]).to_dict()
    attT = (gT[1] - gT[p["depth"]]).to_dict()
    for i in ("xavier", "he"):
        study.numbers[f"{i}_final_batch_loss"] = float(end.loc[i, "batch_loss"])
        study.numbers[f"{i}_initial_batch_loss"] = float(start.loc[i])
        study.numbers[f"{i}_final_test_acc"] = float(final.loc[i, "mean"])
        study.numbers[f"{i}_grad_attenuation_init"] = float(att0[i])
        study.numbers[f"{i}_grad_attenuation_end"] = float(attT[i])
    x_drop = ln10 - end.loc["xavier", "batch_loss"]
    h_drop = ln10 - end.loc["he", "batch_loss"]
    xavier_stalls = x_drop < 0.1 * max(h_drop, 1e-9) or end.loc["xavier", "batch_loss"] > 0.95 * ln10
    he_learns = h_drop > 0.2 * ln10
    study.numbers.update(xavier_stalls=bool(xavier_stalls), he_learns=bool(he_learns))
    verdict = ("Supported" if xavier_stalls and he_learns else "Partly supported" if he_learns else "Not supported")
    study.verdict = (
        f"{verdict}: after {int(last_step)} SGD steps the loss on the recorded training batch is "
        f"{end.loc['xavier', 'batch_loss']:.3f} from Xavier (ln 10 = {ln10:.3f} is a uniform guess; it started at "
        f"{start.loc['xavier']:.3f}) and {end.loc['he', 'batch_loss']:.3f} from He (started at {start.loc['he']:.3f}); "
        f"final test accuracy {100 * final.loc['xavier', 'mean']:.1f}% (Xavier) vs {100 * final.loc['he', 'mean']:.1f}% "
        f"(He), mean over {p['seeds']} seed(s). Xavier {'stalls' if xavier_stalls else 'does not stall'}. At "
        f"initialisation the gradient variance of layer 1 is 10^{att0['xavier']:.1f} times that of layer {p['depth']} "
        f"under Xavier and 10^{att0['he']:.1f} under He (mean field: ×2^−{p['depth'] - 1} ≈ 10^{-(p['depth'] - 1) * math.log10(2):.1f} "
        f"for Xavier's σ_w² = 1, ×1 for He); at the last recorded step 10^{attT['xavier']:.1f} vs 10^{attT['he']:.1f}.")

    pal = {"xavier": sns.color_palette("colorblind")[0], "he": sns.color_palette("colorblind")[1]}
    eb = ("ci", 95) if p["seeds"] >= 2 else None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    sns.lineplot(batch, x="step", y="batch_loss", hue="init", palette=pal, errorbar=eb, marker="o", ms=3, ax=axes[0])
    axes[0].axhline(ln10, color="0.4", ls="--", lw=1, label="ln 10 (uniform guess)")
    axes[0].set(yscale="log", xlabel="SGD step", ylabel="cross-entropy on the recorded batch (log scale)",
                title="Training loss")
    axes[0].legend(fontsize=8)
    mm = m.assign(test_acc_pct=100 * m["test_acc"])
    sns.lineplot(mm, x="epoch", y="test_acc_pct", hue="init", palette=pal, errorbar=eb, marker="o", ax=axes[1])
    axes[1].axhline(10, color="0.4", ls="--", lw=1, label="chance (10%)")
    axes[1].set(xlabel="epoch (0 = initialisation)", ylabel="test accuracy (%)", title="Test accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    study.figure("training", fig, "Trainability: loss and accuracy",
                 "Left: cross-entropy on the fixed batch of 512 training images at every recording step (log scale); "
                 "dashed: ln 10, the loss of a uniform guess. Right: test accuracy per epoch; dashed: chance. "
                 + ("Bands: 95% CI over seeds. " if eb else "One seed. ")
                 + "Look for the Xavier line staying flat at ln 10 (stalled) while He falls.")

    steps = sorted(hidden["step"].unique())
    pick = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
    d = hidden[hidden["step"].isin(pick)].copy()
    d["step "] = d["step"].astype(int).astype(str)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, init in zip(axes, ("xavier", "he")):
        sns.lineplot(d[d["init"] == init], x="layer", y="log10_preact_grad_var", hue="step ", errorbar=eb,
                     palette="crest", ax=ax)
        ax.set(xlabel="hidden layer l (gradient travels from right to left)",
               ylabel="log10 Var(∂L/∂z^l)", title=f"{init}: gradient variance per layer")
        ax.legend(title="SGD step", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    study.figure("gradients", fig, "Per-layer gradient variance at initialisation and during training",
                 "log10 of the variance of the loss gradient with respect to each hidden layer's pre-activations, on "
                 "the recorded batch, at the first, a middle and the last recording step. A line falling to the left "
                 "means the gradient vanishes on its way down: under Xavier each layer halves it (σ_w² = 1, ReLU). "
                 "Look at the slope of the first step's line for each initializer, and whether training changes it.")
    fv = hidden[hidden["step"] == first]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    sns.lineplot(fv, x="layer", y="log10_preact_var", hue="init", palette=pal, errorbar=eb, marker="o", ms=3, ax=ax)
    ax.set(xlabel="hidden layer l", ylabel="log10 Var(z^l)", title="Forward signal at initialisation")
    fig.tight_layout()
    study.figure("forward", fig, "Forward signal at initialisation",
                 "log10 variance of the pre-activations per layer at step 0. Xavier halves it at each of the 30 ReLU "
                 "layers (a drop of ≈ 9 decades); He keeps it. Look at the slope.")
    summ = pd.DataFrame([{"init": i, "loss start": start.loc[i], "loss end": end.loc[i, "batch_loss"],
                          "batch acc %": 100 * end.loc[i, "batch_acc"], "test acc %": 100 * final.loc[i, "mean"],
                          "grad att. start": att0[i], "grad att. end": attT[i]}
                         for i in ("xavier", "he")])
    study.table("summary", summ, "Summary per initializer",
                "Means over seeds. loss: cross-entropy on the recorded batch at the first and last recording step; "
                "batch acc: accuracy on that batch at the end; test acc: after the last epoch. grad att. = "
                "log10 Var(∂L/∂z^1) − log10 Var(∂L/∂z^30) at the first and last step: how many decades the gradient "
                "variance loses between the top and the first hidden layer.")
    rates = stats.rates(hidden[hidden["step"] == first].assign(neg=lambda t: -t["layer"]), "init", "neg",
                        "log10_preact_grad_var", "seed")
    study.table("gradient_rates_init", rates, "Backward rate at initialisation",
                "Slope of log10 Var(∂L/∂z^l) per layer in the direction the gradient travels (negative: vanishing); "
                "mean-field: log10(1/2) = −0.301 for Xavier, 0 for He.")


if __name__ == "__main__":
    main(META, run, __doc__)
