"""Helpers of the report tests: the text of an HTML report, its header block, and CSV rewrites."""

from __future__ import annotations

import csv
import html
import re
from datetime import datetime, timezone


def text_of(page: str) -> str:
    """The report's text as a reader sees it: tags dropped (a <br> is a newline), entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.replace("<br>", "\n")))


def header_of(page: str) -> dict[str, str]:
    """The header block (label -> text) of a report."""
    block = re.search(r"<dl class='runinfo'>(.*?)</dl>", page, re.S)
    assert block, "no header block"
    return {text_of(k): text_of(v) for k, v in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block.group(1), re.S)}


def run_range(rows) -> str:
    """'runs from <first> to <last>' of the rows' timestamps, in UTC, as the header writes it."""
    stamps = sorted(datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc) for r in rows)
    first, last = (t.strftime("%Y-%m-%d %H:%M:%S UTC") for t in (stamps[0], stamps[-1]))
    return f"runs from {first} to {last}"


def rewrite_csv(src, dst, keep=lambda row: True, **changes) -> list[dict]:
    """Copy the rows of CSV ``src`` that ``keep`` accepts to ``dst``, with the cells in ``changes`` replaced."""
    with open(src, newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, [{**r, **changes} for r in reader if keep(r)]
    with open(dst, "w", newline="") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows
