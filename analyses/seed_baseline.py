"""Seed baseline: Xavier vs He vs N(0, 1) on the 784-512-256-10 MNIST MLP, over seeds.

Paper: He et al. (2015), "Delving deep into rectifiers", whose initialisation is the usual
recommendation for ReLU nets; the N(0, 1) init is the common tutorial's ``randn``.  Claim
checked: with ReLU, He initialisation converges fastest and reaches the best accuracy — tested
with several seeds per initializer, confidence intervals and Holm-corrected pairwise tests rather
than one run each.

Default size (to fit 10 minutes on 2 shared CPU cores; 15 runs over all 60 000 images for 10
epochs take ≈ 15–25 minutes there): 5 seeds × 3 initializers, 10 epochs of Adam (lr 1e-3, batch 64)
over the first 20 000 training images; accuracy on all 10 000 test images.  Run it on the full
training set with ``TRAIN_LIMIT = None`` below when more time is available.
"""
from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from propagate import stats
from propagate.analysis_support import main
from propagate.train import prepare_data, train

TRAIN_LIMIT = 20_000

META = dict(
    name="seed_baseline",
    title="Xavier vs He vs N(0, 1) on the MNIST MLP, over seeds",
    paper="He et al. (2015): Var W = 2/fan_in is the right initialisation for ReLU nets; the common assumption is that "
          "it also makes a standard MLP converge fastest and reach the best accuracy. N(0, 1) is the tutorial randn.",
    question="On the 784-512-256-10 ReLU MLP trained with Adam, does He initialisation converge fastest and reach the "
             "best test accuracy, compared with Xavier and N(0, 1), once seed-to-seed variation is accounted for?",
    method="propagate.train trains every (init, seed) together as one stacked model (runs of one seed see the same "
           "batches), Adam lr 1e-3, batch 64, biases as nn.Linear leaves them (U(±1/√fan_in)). Speed = test accuracy "
           "after the first epoch (and the epoch at which the mean curve first reaches 95%); quality = test accuracy "
           "after the last epoch. Per initializer: mean over seeds with a Student-t 95% interval (stats.mean_ci); "
           "between initializers: Welch t-test and Mann–Whitney U for every pair, Holm-corrected "
           "(stats.pairwise_tests). Supported: He's mean is highest and significantly ahead of every other initializer "
           "(Holm p < 0.05) for both speed and final accuracy; refuted: some initializer is significantly ahead of He "
           "on either; otherwise partly supported (He leads on the means) or not supported (He does not lead but is "
           "not significantly behind).",
)

THRESHOLD = 0.95


def claim(tests: pd.DataFrame, means: pd.Series, he: str = "he") -> tuple[str, list[str], list[str]]:
    """(category, inits He is significantly better than, inits significantly better than He).

    category: 'best' (highest mean, significantly ahead of every other), 'tied-best' (highest mean, not significantly
    ahead of all), 'tied' (not highest, but no initializer significantly ahead of He), 'worse' (some initializer is
    significantly ahead of He).
    """
    better, worse = [], []
    for r in tests.itertuples():
        if he not in (r.a, r.b):
            continue
        other = r.b if r.a == he else r.a
        he_minus = r.diff if r.a == he else -r.diff
        if r.significant:
            (better if he_minus > 0 else worse).append(other)
    others = [i for i in means.index if i != he]
    if worse:
        return "worse", better, worse
    if means.idxmax() == he:
        return ("best" if set(better) == set(others) else "tied-best"), better, worse
    return "tied", better, worse


def run(study):
    p = study.size(quick=dict(seeds=2, epochs=2, train_limit=1000, hidden=[64, 32], inits=["xavier", "he", "normal"]),
                   default=dict(seeds=5, epochs=10, train_limit=TRAIN_LIMIT, hidden=[512, 256], inits=["xavier", "he", "normal"]))
    data = prepare_data()
    if study.quick:  # a smaller test set keeps the smoke test to seconds
        data = type(data)(data.x_train, data.y_train, data.x_test[:1000], data.y_test[:1000], data.source)
    res = train(inits=p["inits"], seeds=p["seeds"], epochs=p["epochs"], train_limit=p["train_limit"], hidden=p["hidden"],
                record_every=10 ** 9, data=data)
    study.config["train samples/s (all runs)"] = round(res.timings.get("samples_per_s", float("nan")))
    m = res.metrics
    study.table("metrics", m)
    last = m[m["epoch"] == m["epoch"].max()]
    first = m[m["epoch"] == 1]
    fin = stats.mean_ci(last, "init", ["test_acc", "test_loss"])
    early = stats.mean_ci(first, "init", ["test_acc"])
    t_final = stats.pairwise_tests(last, "init", "test_acc")
    t_early = stats.pairwise_tests(first, "init", "test_acc")
    mean_fin = fin.set_index("init")["test_acc_mean"]
    mean_early = early.set_index("init")["test_acc_mean"]
    curve = m[m["epoch"] >= 1].groupby(["init", "epoch"])["test_acc"].mean().unstack()
    reach = {i: (int(curve.columns[np.argmax(curve.loc[i].to_numpy() >= THRESHOLD)])
                 if (curve.loc[i] >= THRESHOLD).any() else None) for i in curve.index}
    q_final, better_final, worse_final = claim(t_final, mean_fin)
    q_early, better_early, worse_early = claim(t_early, mean_early)
    study.numbers.update(final_best=mean_fin.idxmax(), early_best=mean_early.idxmax(), he_final_claim=q_final,
                         he_speed_claim=q_early,
                         **{f"{i}_final_acc": float(mean_fin[i]) for i in mean_fin.index},
                         **{f"{i}_epoch1_acc": float(mean_early[i]) for i in mean_early.index})

    def words(q, better, worse, what, means):
        ahead = f"; He is significantly ahead of {', '.join(better)}" if better else ""
        if q == "best":
            return f"He is the {what}, significantly ahead of every other initializer"
        if q == "tied-best":
            tied = [i for i in means.index if i not in better and i != "he"]
            return f"He has the highest mean but is not significantly ahead of {', '.join(tied)}{ahead}"
        if q == "tied":
            return (f"{means.idxmax()} has the highest mean, but no initializer is significantly ahead of He{ahead}")
        return f"{', '.join(worse)} {'is' if len(worse) == 1 else 'are'} significantly ahead of He{ahead}"

    fmt = lambda s: ", ".join(f"{i} {100 * s[i]:.2f}%" for i in s.sort_values(ascending=False).index)
    if q_final == "best" and q_early == "best":
        verdict = "Supported"
    elif "worse" in (q_final, q_early):
        verdict = "Refuted"
    elif "best" in (q_final, q_early) or "tied-best" in (q_final, q_early):
        verdict = "Partly supported (He leads on the means, but not significantly on both counts)"
    else:
        verdict = "Not supported (He does not lead, though it is not significantly behind)"
    study.verdict = (
        f"{verdict}. Speed (test accuracy after epoch 1): {words(q_early, better_early, worse_early, 'fastest learner', mean_early)} "
        f"— {fmt(mean_early)}; first epoch with mean test accuracy ≥ {THRESHOLD:.0%}: "
        + ", ".join(f"{i} {reach[i] if reach[i] is not None else 'never'}" for i in curve.index)
        + f". Final test accuracy after {p['epochs']} epochs: "
        f"{words(q_final, better_final, worse_final, 'most accurate', mean_fin)} — {fmt(mean_fin)} (means over "
        f"{p['seeds']} seeds; Welch t-tests Holm-corrected at 5%).")

    pal = dict(zip(p["inits"], sns.color_palette("colorblind", len(p["inits"]))))
    mm = m.assign(test_acc_pct=100 * m["test_acc"], test_err_pct=100 * (1 - m["test_acc"]))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    sns.lineplot(mm, x="epoch", y="test_acc_pct", hue="init", palette=pal, errorbar=("ci", 95), marker="o", ms=4, ax=axes[0])
    axes[0].set(xlabel="epoch (0 = initialisation)", ylabel="test accuracy (%)", title="Test accuracy")
    late = mm[mm["epoch"] >= 1]
    sns.lineplot(late, x="epoch", y="test_err_pct", hue="init", palette=pal, errorbar=("ci", 95), marker="o", ms=4, ax=axes[1])
    axes[1].set(yscale="log", xlabel="epoch", ylabel="test error (%, log scale)", title="Test error, epoch ≥ 1")
    d = m[(m["train_loss"] > 0) & np.isfinite(m["train_loss"])]
    sns.lineplot(d, x="epoch", y="train_loss", hue="init", palette=pal, errorbar=("ci", 95), marker="o", ms=4, ax=axes[2])
    axes[2].set(yscale="log", xlabel="epoch (0 = initialisation)", ylabel="training cross-entropy (log scale)",
                title="Training loss")
    for ax in axes:
        ax.legend(title="init", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    study.figure("learning_curves", fig, "Learning curves",
                 f"Mean over {p['seeds']} seeds with 95% bands: test accuracy (left), test error on a log scale from epoch 1 "
                 "(middle; separates the good initializers), mean training cross-entropy per epoch on a log scale "
                 "(right; epoch 0 is the untrained net). Look at which curve is lowest in error at epoch 1 (speed) and at "
                 "the end (quality), and whether the bands overlap.")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, df, title in ((axes[0], first, "after epoch 1"), (axes[1], last, f"after epoch {p['epochs']}")):
        dd = df.assign(acc=100 * df["test_acc"])
        sns.pointplot(dd, x="init", y="acc", hue="init", palette=pal, errorbar=("ci", 95), capsize=0.15, ax=ax,
                      order=p["inits"], legend=False)
        sns.stripplot(dd, x="init", y="acc", color="0.3", size=4, ax=ax, order=p["inits"])
        ax.set(xlabel="initializer", ylabel="test accuracy (%)", title=f"Test accuracy {title}")
    fig.tight_layout()
    study.figure("final_accuracy", fig, "Accuracy per seed with 95% intervals",
                 "Each grey dot is one seed; the coloured point and bar are the mean and its 95% bootstrap interval. "
                 "Left: after the first epoch (speed); right: after the last epoch (quality). Look at whether He's "
                 "interval lies above the others'.")
    show = fin[["init", "n", "test_acc_mean", "test_acc_ci_low", "test_acc_ci_high", "test_loss_mean"]].copy()
    for c in ("test_acc_mean", "test_acc_ci_low", "test_acc_ci_high"):
        show[c] = 100 * show[c]
    show = show.rename(columns={"test_acc_mean": "final acc %", "test_acc_ci_low": "CI low", "test_acc_ci_high": "CI high",
                                "test_loss_mean": "test loss"})
    show["epoch-1 acc %"] = show["init"].map(100 * mean_early)
    show["first epoch ≥ 95%"] = show["init"].map(lambda i: reach.get(i) if reach.get(i) is not None else "never")
    study.table("final_accuracy", fin, "Final accuracy per initializer",
                "Mean over seeds and Student-t 95% interval of the last epoch's test accuracy; the epoch-1 accuracy; the "
                "first epoch at which the mean curve reaches 95%.", show=show)
    cols = ["a", "b", "mean_a", "mean_b", "diff", "diff_ci_low", "diff_ci_high", "welch_p_holm", "mannwhitney_p_holm",
            "significant"]
    for name, t, when in (("tests_final", t_final, "final"), ("tests_epoch1", t_early, "epoch-1")):
        v = t[cols].copy()
        for c in ("mean_a", "mean_b", "diff", "diff_ci_low", "diff_ci_high"):
            v[c] = 100 * v[c]
        v = v.rename(columns={"mean_a": "acc a %", "mean_b": "acc b %", "diff": "a − b (pp)", "diff_ci_low": "CI low",
                              "diff_ci_high": "CI high", "welch_p_holm": "Welch p (Holm)", "mannwhitney_p_holm": "MW p (Holm)"})
        study.table(name, t, f"Pairwise tests, {when} test accuracy",
                    "Welch t-test and Mann–Whitney U for each pair, p-values Holm-corrected over the pairs; differences "
                    "in percentage points with the Welch 95% interval. With few seeds the Mann–Whitney test cannot reach "
                    "small p-values (5 vs 5: p ≥ 0.008).", show=v)


if __name__ == "__main__":
    main(META, run, __doc__)
