"""The small runner every script in ``analyses/`` shares: options, CSVs, figures, PDF, verdict.

An analysis is a module with a docstring (the paper and the claim), a ``META`` dict and a
``run(study)`` function::

    META = dict(name="born_dead", title="Born dead: …", question="…", method="…")

    def run(study):
        p = study.size(quick=dict(trials=300), default=dict(trials=5000))
        df = …                                   # compute
        study.table("cells", df, title="…", caption="…")
        study.figure("probability", fig, title="…", caption="…")
        study.numbers["inside"] = 0.95           # numbers the verdict is computed from
        study.verdict = f"… {x:.2f} …"           # a sentence computed from the data

    if __name__ == "__main__":
        main(META, run, __doc__)

Output layout (``--out DIR``, default ``reports/`` of the repository)::

    DIR/NAME.pdf              title page (question, claim, verdict, method, sizes), figures, tables
    DIR/NAME/*.csv            every table the analysis computed (full, not only what the PDF shows)
    DIR/NAME/figures/*.png    the figures the PDF shows
    DIR/NAME/result.json      name, size (quick|default), verdict, numbers, seconds, versions

``propagate analysis NAME`` and ``python analyses/NAME.py`` run the same code.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from propagate.report import Report

ROOT = Path(__file__).resolve().parent.parent
ANALYSES_DIR = ROOT / "analyses"
DEFAULT_OUT = ROOT / "reports"


class AnalysisError(ValueError):
    """An unknown analysis or a bad option; one line."""


def available() -> list[str]:
    """Names of the analyses in ``analyses/`` (a file each)."""
    if not ANALYSES_DIR.is_dir():
        return []
    return sorted(p.stem for p in ANALYSES_DIR.glob("*.py") if not p.stem.startswith("_"))


def load(name: str):
    """Import ``analyses/NAME.py`` as a module (it need not be on sys.path)."""
    if name not in available():
        raise AnalysisError(f"unknown analysis {name!r}; available: {', '.join(available()) or 'none'}")
    path = ANALYSES_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"propagate_analysis_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Study:
    """One run of an analysis: collects tables, figures and the verdict, then writes them."""

    def __init__(self, meta: dict, out: Path | str | None = None, quick: bool = False, doc: str | None = None):
        for key in ("name", "title", "question", "method"):
            if key not in meta:
                raise AnalysisError(f"analysis META lacks {key!r}")
        self.meta = meta
        self.doc = doc or ""
        self.quick = bool(quick)
        self.out = Path(out) if out is not None else DEFAULT_OUT
        self.dir = self.out / meta["name"]
        self.pdf = self.out / f"{meta['name']}.pdf"
        self.config: dict = {}
        self.numbers: dict = {}
        self.notes: list[tuple[str, str]] = []
        self.verdict: str | None = None
        self._pages: list[tuple] = []
        self._t0 = time.perf_counter()
        self.seconds: float | None = None

    # -- sizes ---------------------------------------------------------------------------
    def size(self, quick: dict, default: dict) -> dict:
        """The parameters for this run (quick or default); they are shown on the title page."""
        chosen = dict(quick if self.quick else default)
        self.config.update(chosen)
        return chosen

    # -- outputs -------------------------------------------------------------------------
    def _ensure(self) -> None:
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)

    def table(self, name: str, df: pd.DataFrame, title: str | None = None, caption: str = "",
              show: pd.DataFrame | None = None) -> Path:
        """Write ``NAME/<name>.csv``; with a ``title`` also typeset ``show`` (default: ``df``) in the PDF."""
        self._ensure()
        path = self.dir / f"{name}.csv"
        df.to_csv(path, index=False, float_format="%.10g")
        if title:
            self._pages.append(("table", title, show if show is not None else df, caption))
        return path

    def figure(self, name: str, fig, title: str, caption: str) -> Path:
        """Save ``fig`` as ``NAME/figures/<name>.png`` and add it to the PDF with its caption."""
        self._ensure()
        path = self.dir / "figures" / f"{name}.png"
        fig.savefig(path, dpi=130)
        plt.close(fig)
        self._pages.append(("figure", title, path, caption))
        return path

    def note(self, heading: str, text: str) -> None:
        """An extra headed paragraph on the title page (after the verdict)."""
        self.notes.append((heading, text))

    # -- finish --------------------------------------------------------------------------
    def _config_text(self) -> str:
        size = "quick (--quick: a smoke-test size, not for conclusions)" if self.quick else "default"
        parts = [f"{k} = {v}" for k, v in self.config.items()]
        return f"size: {size}; " + "; ".join(parts) + f". Wall time {self.seconds:.1f} s."

    def finish(self) -> dict:
        if not self.verdict:
            raise AnalysisError(f"analysis {self.meta['name']} set no verdict")
        self._ensure()
        self.seconds = time.perf_counter() - self._t0
        from propagate.runfolder import versions

        result = {"name": self.meta["name"], "title": self.meta["title"], "size": "quick" if self.quick else "default",
                  "verdict": self.verdict, "numbers": self.numbers, "config": self.config,
                  "seconds": round(self.seconds, 2), "versions": versions(),
                  "command": f"python analyses/{self.meta['name']}.py" + (" --quick" if self.quick else "")}
        (self.dir / "result.json").write_text(json.dumps(result, indent=2, default=_jsonable))
        sections = [("Question", self.meta["question"])]
        if self.meta.get("paper"):
            sections.append(("Paper and claim", self.meta["paper"]))
        sections.append(("Verdict (computed from this run's numbers)", self.verdict))
        sections += self.notes
        sections.append(("Method", self.meta["method"]))
        sections.append(("Size of this run", self._config_text()))
        sections.append(("Files", f"Tables: {self.dir.name}/*.csv; figures: {self.dir.name}/figures/*.png. "
                                  f"Regenerate: {result['command']} (or propagate analysis {self.meta['name']}"
                                  + (" --quick" if self.quick else "") + ")."))
        with Report(self.pdf, f"propagate analysis · {self.meta['name']}") as rep:
            rep.text_page(self.meta["title"], sections)
            ordered = [pg for pg in self._pages if pg[0] == "figure"] + [pg for pg in self._pages if pg[0] == "table"]
            for kind, title, obj, caption in ordered:
                if kind == "figure":
                    rep.figure_page(title, obj, caption)
                else:
                    rep.table_page(title, obj, caption)
        return result


def _jsonable(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def execute(module_or_name, quick: bool = False, out: Path | str | None = None) -> dict:
    """Run one analysis (a loaded module or its name) and write its outputs; returns result.json's dict."""
    import torch

    module = load(module_or_name) if isinstance(module_or_name, str) else module_or_name
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    study = Study(module.META, out=out, quick=quick, doc=module.__doc__)
    threads = torch.get_num_threads()
    # Analyses made of many tiny tensor ops ask for one thread (META["threads"] = 1): on a busy machine every
    # parallel region of a 2-thread pool waits for a time slice (~8 ms per op measured on a loaded 2-core box).
    if module.META.get("threads"):
        torch.set_num_threads(int(module.META["threads"]))
    try:
        module.run(study)
    finally:
        torch.set_num_threads(threads)
    study.config["torch threads"] = module.META.get("threads") or threads
    return study.finish() | {"pdf": str(study.pdf), "dir": str(study.dir)}


def main(meta: dict, run: Callable[[Study], None], doc: str | None = None, argv=None) -> dict:
    """Command line of ``python analyses/NAME.py [--quick] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog=f"analyses/{meta['name']}.py", description=(doc or "").strip().split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke-test size")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder [{DEFAULT_OUT}]")
    args = parser.parse_args(argv)

    class _Module:
        META, __doc__ = meta, doc

    _Module.run = staticmethod(run)
    result = execute(_Module, quick=args.quick, out=args.out)
    print(f"{meta['name']}: {result['verdict']}")
    print(f"wrote {result['pdf']} and {result['dir']}/ in {result['seconds']:.1f} s")
    return result
