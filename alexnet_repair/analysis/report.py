"""Writing analysis outputs: PNGs, tables, edit-set contact sheets, and one self-contained HTML report.

The HTML holds every image as a base64 ``data:`` URI and its style inline: no scripts, no links to anything
outside the file, so it can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from pathlib import Path

import pandas as pd

from ..data import CLASS_NAMES, load_split
from ..errors import AlexRepairError
from ..fileio import atomic_write_bytes, atomic_write_text
from ..plots import contact_sheet

log = logging.getLogger(__name__)

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f0f0f0}img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#555;font-size:14px}
.note{color:#a33}"""
SHEET_IMAGES = 16     # edit images shown per contact sheet


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_figures(figs: dict, out_dir: Path) -> dict[str, tuple[Path, bytes, str]]:
    """Save each (Figure, caption) as <name>.png; returns name -> (path, png, caption)."""
    out = {}
    for name, (fig, caption) in figs.items():
        data = png_bytes(fig)
        out[name] = (atomic_write_bytes(out_dir / f"{name}.png", data), data, caption)
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


def html_table(table: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        return f"{v:.{digits}g}" if isinstance(v, float) and v == v else ("-" if isinstance(v, float) else str(v))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
                   for row in table.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def build_html(title: str, intro: list[str], tables: list[tuple[str, pd.DataFrame]], figures: dict,
               sheets: list[tuple[str, Path, bytes]] = (), notes: list[str] = (), plot_notes: list[str] = ()) -> str:
    """The report page: ``notes`` explain missing contact sheets, ``plot_notes`` skipped plots (one line each)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in intro]
    for heading, table in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>{html_table(table)}")
    if figures or plot_notes:
        parts.append("<h2>Plots</h2>")
    for name, (_, data, caption) in figures.items():
        parts.append(f"<figure>{_img(data, name)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in plot_notes]
    if sheets or notes:
        parts.append("<h2>Edit sets before and after repair</h2>")
    for caption, _, data in sheets:
        parts.append(f"<figure>{_img(data, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    parts.append(f"<p><small>generated {time.strftime('%Y-%m-%d %H:%M:%S')}</small></p></body></html>")
    return "\n".join(parts)
