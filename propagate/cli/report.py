"""``propagate report RUN_DIR [RUN_DIR …] --out FILE.pdf``: rebuild a report from saved run folders.

Nothing is recomputed: the tables are read from each folder's CSVs.  One folder gives the same
report its run wrote; several give one document — a title page setting "the signal at
initialisation" (depth sweeps) beside "what it does to training" (MNIST runs), with verdicts read
from rates.csv and metrics.csv, then each run's pages.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd

from propagate.runfolder import RunFolderError, read_manifest

KINDS = ("depth-sweep", "mnist")


def _fail(message: str):
    raise click.UsageError(message)


def _check_folder(path: Path) -> dict:
    try:
        manifest = read_manifest(path)
    except RunFolderError as err:
        _fail(str(err))
    if manifest["kind"] not in KINDS:
        _fail(f"{path} is a {manifest['kind']!r} run; propagate report knows {', '.join(KINDS)}")
    need = {"depth-sweep": ("layers", "summary", "rates", "theory"), "mnist": ("metrics", "signals")}[manifest["kind"]]
    missing = [f"{n}.csv" for n in need if not (path / f"{n}.csv").is_file()]
    if missing:
        _fail(f"{path} lacks {', '.join(missing)}; it is not a complete {manifest['kind']} folder")
    return manifest


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        _fail(f"{path} is not a readable CSV ({err.__class__.__name__}); the run folder is damaged")


# ------------------------------------------------------------------------------------------
# Verdicts for the combined title page, from the folders' CSVs
def sweep_verdicts(folder: Path) -> list[str]:
    from propagate import sweep_tables as T

    rates = _read_csv(folder / "rates.csv")
    return [f"forward — {v}" for v in T.verdicts(rates, "forward")] + \
           [f"backward — {v}" for v in T.verdicts(rates, "backward")]


def mnist_verdicts(folder: Path) -> list[str]:
    from propagate import stats

    m = _read_csv(folder / "metrics.csv")
    last = m[m["epoch"] == m["epoch"].max()]
    ci = stats.mean_ci(last, "init", "test_acc").sort_values("test_acc_mean", ascending=False)
    lines = []
    for r in ci.itertuples():
        band = (f" (95% CI {100 * r.test_acc_ci_low:.2f}–{100 * r.test_acc_ci_high:.2f}%, {r.n} seeds)"
                if np.isfinite(r.test_acc_ci_low) else f" ({r.n} seed{'s' if r.n > 1 else ''})")
        lines.append(f"{r.init}: final test accuracy {100 * r.test_acc_mean:.2f}%{band} after epoch {int(last['epoch'].max())}")
    if len(ci) > 1:
        lines.append(f"best: {ci['init'].iloc[0]}")
    return lines


# ------------------------------------------------------------------------------------------
# Each run's pages inside a shared Report
def sweep_pages(rep, folder: Path, manifest: dict) -> None:
    from propagate import sweep_report as S

    hook = getattr(S, "add_pages", None)
    if hook is not None:  # the sweep report's own page builder, when it offers one
        hook(rep, folder, manifest)
        return
    from propagate import plots
    from propagate import sweep_tables as T

    t = S.load_tables(folder)
    figdir = folder / "figures"
    if not all((figdir / f"{n}.png").is_file() for n in plots.FIGURES):
        S.make_figures(folder)
    rep.text_page(f"Depth sweep: {folder.name}", [
        ("Question", S.QUESTION),
        ("Configuration", S._config_text(manifest)),
        ("Verdicts, forward", "\n".join(f"• {v}" for v in T.verdicts(t["rates"], "forward"))),
        ("Verdicts, backward", "\n".join(f"• {v}" for v in T.verdicts(t["rates"], "backward"))),
        ("Method", S.METHOD),
    ])
    for name in plots.FIGURES:
        rep.figure_page(name.split("_", 1)[1].replace("_", " ").capitalize(), figdir / f"{name}.png", S.CAPTIONS[name])
    r = t["rates"][["init", "width", "direction", "rate", "ci_low", "ci_high", "n", "theory_rate", "factor", "verdict"]]
    rep.table_page("Rates: log10 variance per layer (rates.csv)", r,
                   "rate = mean over seeds of the per-seed least-squares slope; 95% t-interval; theory_rate = the same "
                   "fit of the mean-field curve; factor = 10^rate per layer.")


def mnist_pages(rep, folder: Path, manifest: dict, scratch: Path) -> None:
    from propagate import plots_train as P

    hook = getattr(P, "add_mnist_pages", None)
    if hook is not None:  # the MNIST report's own page builder, when it offers one
        hook(rep, folder)
        return
    metrics, signals, manifest = P.load_run(folder)
    order = P._init_order(metrics, manifest)
    tests = None
    if P._n_seeds(metrics) >= 2 and len(order) >= 2:
        last = metrics[metrics["epoch"] == metrics["epoch"].max()]
        from propagate import stats

        tests = stats.pairwise_tests(last, "init", "test_acc")
    rep.text_page(f"MNIST training: {folder.name}", [
        ("Question", "Does the initializer change how fast the net learns, how well it ends up, and what its layers "
                     "look like on the way?"),
        ("Configuration", P._config_text(manifest, metrics)),
        ("Verdicts (computed from the numbers)", P._verdicts(metrics, signals, tests, order)),
    ])
    rep.figure_page("Learning curves", P.learning_curves_figure(metrics, order, scratch / "learning.png"),
                    "Test accuracy (top) and training/test cross-entropy (bottom, log10 scale) per epoch; epoch 0 is the "
                    "untrained net. Look at how quickly each initializer passes the dashed line and where it levels off.")
    rep.figure_page("Signal size during training", P.signals_figure(signals, "log10_preact_var", order, scratch / "var.png"),
                    "log10 variance of each layer's pre-activations on the recorded batch during training, one panel "
                    "per initializer. Look at the spread between layers at the start and whether training closes it.")
    rep.figure_page("Gradients during training",
                    P.signals_figure(signals, "log10_weight_grad_norm", order, scratch / "grad.png"),
                    "log10 norm of each layer's weight gradient on the recorded batch. Look at the spread between layers.")
    rep.table_page("Final test accuracy per initializer", P.final_accuracy(metrics, order),
                   "Mean over seeds of the last epoch's test accuracy with a Student-t 95% interval.")


def combined_report(folders: list[Path], manifests: list[dict], out: Path) -> Path:
    from propagate.report import Report

    sweeps = [(f, m) for f, m in zip(folders, manifests) if m["kind"] == "depth-sweep"]
    runs = [(f, m) for f, m in zip(folders, manifests) if m["kind"] == "mnist"]
    sections = []
    for f, _ in sweeps:
        sections.append((f"The signal at initialisation — depth sweep {f.name}",
                         "\n".join(f"• {v}" for v in sweep_verdicts(f))))
    for f, _ in runs:
        sections.append((f"What it does to training — MNIST run {f.name}",
                         "\n".join(f"• {v}" for v in mnist_verdicts(f))))
    sections.append(("Contents", "\n".join(f"{k}. {m['kind']}: {f}" for k, (f, m) in enumerate(zip(folders, manifests), 1))
                     + "\nEvery number here is read from the folders' CSV files; nothing is recomputed."))
    with tempfile.TemporaryDirectory() as tmp, Report(out, "propagate — combined report") as rep:
        rep.text_page("The signal at initialisation, and what it does to training", sections)
        for k, (f, m) in enumerate(zip(folders, manifests)):
            if m["kind"] == "depth-sweep":
                sweep_pages(rep, f, m)
            else:
                scratch = Path(tmp) / str(k)
                scratch.mkdir()
                mnist_pages(rep, f, m, scratch)
    return out


def build(folders: list[Path], out: Path) -> Path:
    """The report of one folder (exactly what its run wrote) or the combined report of several."""
    manifests = [_check_folder(Path(f)) for f in folders]
    out = Path(out)
    if out.exists() and out.is_dir():
        _fail(f"--out {out} is a folder; give a file name such as {out / 'report.pdf'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(folders) == 1:
        folder, manifest = Path(folders[0]), manifests[0]
        if manifest["kind"] == "depth-sweep":
            from propagate.sweep_report import build_report

            # The run built its report before it finished, so its manifest had no wall_seconds yet (build_report
            # prints "Wall time" only when present): leave it out to rebuild the very report the run wrote.
            return build_report(folder, out, manifest={k: v for k, v in manifest.items() if k != "wall_seconds"})
        from propagate.plots_train import build_mnist_report

        return build_mnist_report(folder, out)
    return combined_report([Path(f) for f in folders], manifests, out)


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PDF to write, e.g. reports/combined.pdf.")
def report_cmd(run_dirs, out):
    """Rebuild a PDF report from saved run folders, without recomputing anything.

    One RUN_DIR gives the report that run wrote; several (e.g. a depth sweep and an MNIST run)
    give one document whose title page sets the signal at initialisation beside what it does to
    training, followed by each run's pages.
    """
    from propagate.sweep_report import RunFolderError as SweepFolderError
    from propagate.plots_train import MnistReportError

    for d in run_dirs:
        if not d.is_dir():
            _fail(f"{d} is not a folder; pass run folders written by propagate depth-sweep or propagate mnist")
    try:
        path = build(list(run_dirs), out)
    except (RunFolderError, SweepFolderError, MnistReportError, KeyError) as err:
        msg = str(err).strip("'\"")
        _fail(f"cannot rebuild the report: {msg}" if isinstance(err, KeyError) else msg)
    click.echo(f"wrote {path}")
