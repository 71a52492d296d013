"""PDF reports assembled with matplotlib's PdfPages: title page, figure pages with captions, tables.

Reports are built from a run folder's files (CSV tables, PNG figures, manifest), so a report can
always be rebuilt from disk.  Pages are A4 portrait; text is wrapped, tables are typeset with
matplotlib's table artist and split over pages when long.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

A4 = (8.27, 11.69)
WRAP = 95


def _wrap(text: str, width: int = WRAP) -> str:
    return "\n".join(textwrap.fill(p, width) if p.strip() else "" for p in text.split("\n"))


class Report:
    """Accumulate pages into a PDF; use as a context manager."""

    def __init__(self, path: Path, title: str, metadata: dict | None = None):
        self.path = Path(path)
        self.title = title
        self._pdf = PdfPages(self.path, metadata={"Title": title, "Creator": "propagate", **(metadata or {})})
        self.pages = 0

    def __enter__(self) -> "Report":
        return self

    def __exit__(self, *exc) -> None:
        self._pdf.close()

    def _new_page(self, title: str):
        fig = plt.figure(figsize=A4)
        # Long titles shrink, then wrap, so they never run off the page.
        size = 15 if len(title) <= 62 else max(11.0, 15 * 62 / len(title))
        fig.text(0.5, 0.965, textwrap.fill(title, int(62 * 15 / size)), ha="center", va="top", fontsize=size,
                 weight="bold")
        fig.text(0.5, 0.015, f"{self.title} · page {self.pages + 1}", ha="center", fontsize=7, color="0.4")
        return fig

    def _save(self, fig) -> None:
        self._pdf.savefig(fig)
        plt.close(fig)
        self.pages += 1

    def text_page(self, title: str, sections: Sequence[tuple[str, str]]) -> None:
        """A page of headed paragraphs: ``sections`` = [(heading, body), ...]."""
        fig = self._new_page(title)
        y = 0.92
        for heading, body in sections:
            if heading:
                fig.text(0.07, y, heading, fontsize=11.5, weight="bold", va="top")
                y -= 0.028
            wrapped = _wrap(body)
            fig.text(0.07, y, wrapped, fontsize=9.5, va="top", family="DejaVu Sans", linespacing=1.45)
            y -= 0.0185 * (wrapped.count("\n") + 1) + 0.022
        self._save(fig)

    def figure_page(self, title: str, image: Path, caption: str) -> None:
        """A saved PNG figure scaled to the page, with a caption that says what to read in it."""
        fig = self._new_page(title)
        img = mpimg.imread(str(image))
        h, w = img.shape[:2]
        wrapped = _wrap(caption, 100)
        cap_h = 0.018 * (wrapped.count("\n") + 1) + 0.03
        avail_w, avail_h = 0.9, 0.9 - cap_h - 0.04
        aspect = (h / w) * (A4[0] / A4[1])
        width = min(avail_w, avail_h / aspect)
        height = width * aspect
        ax = fig.add_axes([(1 - width) / 2, 0.93 - height, width, height])
        ax.imshow(img)
        ax.axis("off")
        fig.text(0.07, 0.93 - height - 0.02, wrapped, fontsize=9, va="top", linespacing=1.4)
        self._save(fig)

    def table_page(self, title: str, df: pd.DataFrame, caption: str = "", rows_per_page: int = 38,
                   col_width: dict | None = None) -> None:
        """A typeset table (split over pages when long)."""
        if df.empty:
            self.text_page(title, [("", "(no rows)")])
            return
        for start in range(0, len(df), rows_per_page):
            chunk = df.iloc[start:start + rows_per_page]
            fig = self._new_page(title + ("" if start == 0 else " (continued)"))
            top = 0.92
            if caption and start == 0:
                wrapped = _wrap(caption, 100)
                fig.text(0.07, top, wrapped, fontsize=9, va="top", linespacing=1.4)
                top -= 0.018 * (wrapped.count("\n") + 1) + 0.02
            height = min(top - 0.05, 0.022 * (len(chunk) + 1))
            ax = fig.add_axes([0.05, top - height, 0.9, height])
            ax.axis("off")
            cells = [[_fmt(v) for v in row] for row in chunk.itertuples(index=False)]
            table = ax.table(cellText=cells, colLabels=[str(c) for c in chunk.columns], loc="upper center",
                             cellLoc="right", colLoc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(7.5 if len(chunk.columns) > 7 else 8.5)
            table.auto_set_column_width(list(range(len(chunk.columns))))
            for (r, _), cell in table.get_celld().items():
                cell.set_height(1.0 / (len(chunk) + 1))
                if r == 0:
                    cell.set_facecolor("#e6e6e6")
                    cell.set_text_props(weight="bold")
                cell.set_edgecolor("0.75")
            self._save(fig)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        if v in (float("inf"), float("-inf")):
            return "∞" if v > 0 else "−∞"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)
