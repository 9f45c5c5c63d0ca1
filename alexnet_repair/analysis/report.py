"""Writing analysis outputs: PNGs, tables, edit-set contact sheets, and one self-contained HTML report.

The HTML holds every image as a base64 ``data:`` URI and its style inline: no scripts, no links to anything
outside the file, so it can be mailed or archived as is. It reads at any window width: a header block says what
produced the runs, each table sits in a box that scrolls sideways when the window is narrower than the table,
images shrink to the page, and a plot left out for having nothing to compare is one line where it would have been.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import CLASS_NAMES, load_split
from ..errors import AlexRepairError
from ..fileio import atomic_write_bytes, atomic_write_text
from ..plots import contact_sheet

log = logging.getLogger(__name__)

STYLE = """body{font-family:system-ui,sans-serif;max-width:1320px;margin:1.5em auto;padding:0 1em;color:#222;
line-height:1.4}
.table-wrap{overflow-x:auto;max-width:100%;margin:.5em 0 1.2em;scrollbar-color:#999 #eee}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:bottom}
th{background:#f0f0f0;font-weight:600}td{white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}figure{margin:1.5em 0}figcaption{color:#555;font-size:14px}
.note{color:#555;font-style:italic;border-left:3px solid #bbb;padding-left:.6em}
code{white-space:nowrap;font-family:ui-monospace,monospace;font-size:.95em}
.runinfo{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1.2em;margin:1em 0;padding:.8em 1em;
background:#f7f7f7;border:1px solid #ddd;font-size:14px}
.runinfo dt{font-weight:600}.runinfo dd{margin:0;overflow-wrap:anywhere}
.synthetic{background:#ffe2a8;border:1px solid #d9a000;padding:0 .3em;font-weight:600}"""
SHEET_IMAGES = 16     # edit images shown per contact sheet


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_figures(figs: dict, out_dir: Path) -> dict[str, tuple[Path | None, bytes | None, str, str]]:
    """Save each (Figure, caption, note) as <name>.png; returns name -> (path, png, caption, note), path and png
    None for a plot left out (Figure None)."""
    out = {}
    for name, (fig, caption, note) in figs.items():
        data = None if fig is None else png_bytes(fig)
        out[name] = (None if data is None else atomic_write_bytes(out_dir / f"{name}.png", data), data, caption, note)
    return out


def write_table(table: pd.DataFrame, out_dir: Path, stem: str, markdown: str) -> list[Path]:
    return [atomic_write_text(out_dir / f"{stem}.csv", table.to_csv(index=False)),
            atomic_write_text(out_dir / f"{stem}.md", markdown)]


def contact_sheets(df: pd.DataFrame, out_dir: Path, limit: int = 3, data_dir: str | None = None
                   ) -> tuple[list[tuple[str, Path, bytes]], list[str]]:
    """Edit images of up to ``limit`` successful runs (one per type first), titled label / before -> after.

    Reads each run's JSON record and the images from its dataset; returns (sheets, notes on what was skipped).
    """
    if "record_path" not in df:
        return [], ["the CSV has no record_path column: no edit images to show"]
    ok = df[df["success"] & (df["record_path"].fillna("").astype(str).str.len() > 0)]
    picks = ok.sort_values("requested_repair_set_size").drop_duplicates("repair_set_type")
    picks = pd.concat([picks, ok.drop(picks.index)]).head(limit)
    sheets, notes, splits = [], [], {}
    for row in picks.itertuples():
        path = Path(row.record_path)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            meta, setup = record["editset"], record["setup"]
            after = record["edit_predictions_after"]
        except (OSError, ValueError, KeyError) as err:
            notes.append(f"{row.experiment_id}: no usable record at {path} ({type(err).__name__})")
            continue
        key = (setup["dataset"], meta["split"], data_dir or setup["data_dir"])
        try:
            split = splits.get(key) or splits.setdefault(key, load_split(*key, download=False))
        except AlexRepairError as err:
            notes.append(f"{row.experiment_id}: images unavailable ({err})")
            continue
        n = min(SHEET_IMAGES, len(meta["indices"]))
        labels, before = meta["labels"][:n], meta["predictions"][:n]
        titles = [f"{CLASS_NAMES[t][:5]}\n{CLASS_NAMES[b][:5]}->{CLASS_NAMES[a][:5]}"
                  for t, b, a in zip(labels, before, after[:n])]
        colors = ["green" if a == t else "red" for t, a in zip(labels, after[:n])]
        target = contact_sheet(split.images[meta["indices"][:n]], titles, out_dir / f"editset_{row.experiment_id}.png",
                               ncols=8, colors=colors)
        sheets.append((f"{row.experiment_id}: {n} of {len(meta['indices'])} edit images "
                       f"(true label, then prediction before -> after repair)", target, target.read_bytes()))
    return sheets, notes


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _cell(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "-"
        return f"{value:.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"
    return str(value)


def html_table(table: pd.DataFrame, digits: int = 3) -> str:
    """The table in a box that scrolls sideways when it is wider than the page; numeric columns right-aligned,
    long column names may break after an underscore."""
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    align = [" class='num'" if n else "" for n in numeric]
    head = "".join(f"<th{a}>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c, a in zip(table.columns, align))
    body = "".join("<tr>" + "".join(f"<td{a}>{html.escape(_cell(v, digits))}</td>" for v, a in zip(row, align))
                   + "</tr>" for row in table.itertuples(index=False))
    return f"<div class='table-wrap'><table><tr>{head}</tr>{body}</table></div>"


def header_html(lines) -> str:
    """The header block of :func:`.header.header_lines` as a definition list."""
    items = []
    for line in lines:
        text = "<br>".join(html.escape(part) for part in line.text.split("\n"))
        if line.flag:
            text = f"<span class='{line.flag}'>{text}</span>"
        items.append(f"<dt>{html.escape(line.label)}</dt><dd>{text}</dd>")
    return f"<dl class='runinfo'>{''.join(items)}</dl>" if items else ""


def _note(text: str) -> str:
    """A one-line note; command-line flags in it (--margins) are code, never broken across lines."""
    return "<p class='note'>" + re.sub(r"(--[\w-]+)", r"<code>\1</code>", html.escape(text)) + "</p>"


def _figure(data: bytes, alt: str, caption: str, note: str = "") -> str:
    extra = _note(note) if note else ""
    return f"<figure>{_img(data, alt)}<figcaption>{html.escape(caption)}</figcaption>{extra}</figure>"


def build_html(title: str, intro: list[str], tables: list[tuple[str, pd.DataFrame]], figures: dict,
               sheets: list[tuple[str, Path, bytes]] = (), notes: list[str] = (), header=()) -> str:
    """The report page: ``header`` lines (:mod:`.header`) first; ``figures`` as :func:`write_figures` returns them,
    a plot left out as its note; ``notes`` explain missing contact sheets (one line each)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>", header_html(header)]
    parts += [f"<p>{html.escape(line)}</p>" for line in intro]
    for heading, table in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>{html_table(table)}")
    if figures:
        parts.append("<h2>Plots</h2>")
    for name, (_, data, caption, note) in figures.items():
        if data is not None or note:
            parts.append(_figure(data, name, caption, note) if data is not None else _note(note))
    if sheets or notes:
        parts.append("<h2>Edit sets before and after repair</h2>")
    parts += [_figure(data, caption, caption) for caption, _, data in sheets]
    parts += [_note(n) for n in notes]
    parts.append("</body></html>")
    return "\n".join(parts)
