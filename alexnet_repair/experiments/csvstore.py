"""Crash-safe CSV files that survive ``kill -9``: one complete line per record, a torn tail repaired, rows
replaced or dropped by an atomic rewrite, several files merged, a file written before columns were added
rewritten with them.

Every cell is one physical line (newlines in messages become spaces), so "the file ends in a newline" is
exactly "the last record is complete". Writers take an exclusive ``flock`` on a hidden ``.<name>.lock``
beside the file, so shards or chains writing one CSV from several processes never interleave.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError
from ..fileio import _csv_cell, append_csv_row, atomic_write_text

log = logging.getLogger(__name__)
csv.field_size_limit(1 << 26)  # per-class lists and index lists can exceed the 128 KiB default


def clean_cell(value):
    """A CSV cell on one line: lists/dicts as JSON, None/NaN as blank, newlines flattened."""
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    value = _csv_cell(value)
    if isinstance(value, str):
        value = " ".join(value.splitlines())
    return value


@contextmanager
def locked(path: str | Path):
    """An exclusive advisory lock tied to ``path`` (held on ``.<name>.lock`` so atomic renames keep it valid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _complete_text(path: Path) -> tuple[str, int]:
    """The file's text up to and including its last newline, and how many torn bytes follow it."""
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", errors="replace"), len(data) - end


def read_csv(path: str | Path) -> tuple[list[str] | None, list[dict]]:
    """(header, rows) of a CSV log, ignoring a torn last line. (None, []) for a missing or empty file."""
    text, _ = _complete_text(Path(path))
    if not text.strip():
        return None, []
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    return header, [dict(row) for row in reader]


def repair_tail(path: str | Path) -> int:
    """Cut a torn last line (a write killed half way); returns the bytes removed. Call under :func:`locked`."""
    path = Path(path)
    _, torn = _complete_text(path)
    if torn:
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - torn)
            handle.flush()
            os.fsync(handle.fileno())
    return torn


def compatible(header: list[str], columns: list[str]) -> bool:
    """Whether a file with ``header`` can hold rows of ``columns``: the same columns, or some of them in their order
    (a file written before columns were added)."""
    known = set(header)
    return len(known) == len(header) and [c for c in columns if c in known] == list(header)


def check_header(path: str | Path, header: list[str] | None, columns: list[str]) -> None:
    if header is not None and not compatible(header, columns):
        unknown = [c for c in header if c not in columns]
        raise DataError(f"{path} was written with other columns (another version of the toolkit?"
                        f"{' unknown: ' + ', '.join(unknown[:5]) if unknown else ''}): "
                        f"choose another --output-file, or move the old file away")


def _conform(path: Path, columns: list[str]) -> None:
    """Under the lock: a file written before some of ``columns`` existed is rewritten atomically with all of them
    (blank in its old rows); a file with other columns is a DataError."""
    header = read_header(path)
    check_header(path, header, columns)
    if header is not None and header != list(columns):
        _, rows = read_csv(path)
        log.info("%s: adding the columns %s (blank in its %d earlier rows)", path,
                 ", ".join(c for c in columns if c not in header), len(rows))
        atomic_write_text(path, to_csv_text(rows, columns))


def append_row(path: str | Path, row: dict, columns: list[str]) -> None:
    """Append ``row`` as one complete, fsynced line (header first on a new file; see :func:`_conform`)."""
    with locked(path):
        repair_tail(path)
        _conform(Path(path), columns)
        append_csv_row(path, {k: clean_cell(row.get(k)) for k in columns}, columns)


def read_header(path: str | Path) -> list[str] | None:
    text, _ = _complete_text(Path(path))
    first = text.split("\n", 1)[0]
    return next(csv.reader([first])) if first.strip() else None


def replace_rows(path: str | Path, key: str, rows: list[dict], columns: list[str]) -> None:
    """Rewrite the file atomically with every old row whose ``key`` is among ``rows``' keys replaced by them."""
    _rewrite(path, key, {r[key] for r in rows}, rows, columns, check=True)


def drop_rows(path: str | Path, key: str, values, columns: list[str]) -> None:
    """Rewrite the file atomically without the rows whose ``key`` is among ``values``."""
    _rewrite(path, key, set(values), [], columns, check=False)


def _rewrite(path, key: str, old_keys: set, rows: list[dict], columns: list[str], check: bool) -> None:
    """Under the lock: the old rows whose ``key`` is not in ``old_keys``, then ``rows``, atomically."""
    with locked(path):
        header, old = read_csv(path)
        if check:
            check_header(path, header, columns)
        kept = [r for r in old if r.get(key) not in old_keys]
        atomic_write_text(path, to_csv_text(kept + rows, columns))


def store_row(path: str | Path, row: dict, columns: list[str], replace_key: str | None = None) -> None:
    """Append ``row``, or with ``replace_key`` put it in place of the old row(s) with the same ``replace_key``."""
    if replace_key:
        replace_rows(path, replace_key, [row], columns)
    else:
        append_row(path, row, columns)


def to_csv_text(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: clean_cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def dedupe(rows: list[dict], key: str) -> list[dict]:
    """One row per ``key`` (first-seen order): a successful row beats a failed one, else the later one wins."""
    best: dict[str, dict] = {}
    for row in rows:
        old = best.get(row.get(key))
        if old is None or is_true(row.get("success")) or not is_true(old.get("success")):
            best[row.get(key)] = row
    return list(best.values())


def merge_csvs(inputs: list[str | Path], output: str | Path, key: str, schema_column: str = "schema") -> int:
    """Combine CSV logs of one schema into ``output`` (atomically); returns the row count. The inputs have the same
    columns, or some lack columns the others have (written before they were added: blank in the output)."""
    header0, rows, schemas = None, [], set()
    for path in inputs:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file")
        header, part = read_csv(path)
        if header is None:
            continue
        if header0 is None or compatible(header0, header):
            header0 = header
        elif not compatible(header, header0):
            raise DataError(f"{path} has other columns than {inputs[0]} (written by another version?)")
        schemas |= {r.get(schema_column) for r in part}
        rows += part
    if header0 is None:
        raise DataError(f"nothing to merge: {', '.join(map(str, inputs))} hold no rows")
    if len(schemas) > 1:
        raise DataError(f"the inputs mix schemas {sorted(map(str, schemas))}: merge files of one toolkit version")
    merged = dedupe(rows, key)
    atomic_write_text(output, to_csv_text(merged, header0))
    return len(merged)


def json_cell(value, default=None):
    """Parse a JSON-encoded CSV cell (lists, dicts); ``default`` for blanks and junk."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return default
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default
