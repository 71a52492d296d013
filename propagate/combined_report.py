"""Reports rebuilt from saved run folders: one folder's own report, or several combined.

Nothing is recomputed: tables are read from each folder's CSVs.  Several folders give one
document — a title page setting "the signal at initialisation" (depth sweeps) beside "what it does
to training" (MNIST runs), verdicts read from rates.csv and metrics.csv — then each run's pages.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from propagate import plots_train, stats, sweep_report
from propagate import sweep_tables as T
from propagate.report import Report
from propagate.runfolder import RunFolderError, read_manifest

KINDS = ("depth-sweep", "mnist")
NEEDS = {"depth-sweep": ("layers", "summary", "rates", "theory"), "mnist": ("metrics", "signals")}


def check_folder(path: Path) -> dict:
    """A complete run folder of a known kind with its CSVs present, or a one-line RunFolderError."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a folder; pass run folders written by propagate depth-sweep or mnist")
    manifest = read_manifest(path)
    if manifest["kind"] not in KINDS:
        raise RunFolderError(f"{path} is a {manifest['kind']!r} run; propagate report knows {', '.join(KINDS)}")
    missing = [f"{n}.csv" for n in NEEDS[manifest["kind"]] if not (path / f"{n}.csv").is_file()]
    if missing:
        raise RunFolderError(f"{path} lacks {', '.join(missing)}; it is not a complete {manifest['kind']} folder")
    return manifest


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} is not a readable CSV ({err.__class__.__name__}); the run folder is damaged") from None


def sweep_verdicts(folder: Path) -> list[str]:
    rates = _read_csv(Path(folder) / "rates.csv")
    return [f"forward — {v}" for v in T.verdicts(rates, "forward")] + \
           [f"backward — {v}" for v in T.verdicts(rates, "backward")]


def mnist_verdicts(folder: Path) -> list[str]:
    m = _read_csv(Path(folder) / "metrics.csv")
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


def combined_report(folders: list[Path], manifests: list[dict], out: Path) -> Path:
    sections = []
    for f, m in zip(folders, manifests):
        if m["kind"] == "depth-sweep":
            sections.append((f"The signal at initialisation — depth sweep {f.name}",
                             "\n".join(f"• {v}" for v in sweep_verdicts(f))))
    for f, m in zip(folders, manifests):
        if m["kind"] == "mnist":
            sections.append((f"What it does to training — MNIST run {f.name}",
                             "\n".join(f"• {v}" for v in mnist_verdicts(f))))
    sections.append(("Contents", "\n".join(f"{k}. {m['kind']}: {f}" for k, (f, m) in enumerate(zip(folders, manifests), 1))
                     + "\nEvery number here is read from the folders' CSV files; nothing is recomputed."))
    with Report(out, "propagate — combined report") as rep:
        rep.text_page("The signal at initialisation, and what it does to training", sections)
        for f, m in zip(folders, manifests):
            if m["kind"] == "depth-sweep":
                sweep_report.add_pages(rep, f, m)
            else:
                plots_train.add_mnist_pages(rep, f)
    return out


def build(folders: list[Path], out: Path) -> Path:
    """The report of one folder (exactly what its run wrote) or the combined report of several.

    Written under a temporary name and renamed, so a damaged folder met half-way leaves no PDF.
    """
    folders = [Path(f) for f in folders]
    manifests = [check_folder(f) for f in folders]
    out = Path(out)
    if out.is_dir():
        raise RunFolderError(f"--out {out} is a folder; give a file name such as {out / 'report.pdf'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        if len(folders) > 1:
            combined_report(folders, manifests, tmp)
        elif manifests[0]["kind"] == "depth-sweep":
            sweep_report.build_report(folders[0], tmp, manifest=manifests[0])
        else:
            plots_train.build_mnist_report(folders[0], tmp, figures=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
