"""Atomic writes (temp file in the same folder + rename), tensor-file reads, and small JSON/CSV helpers.

An interrupted or failed run never leaves a half-written checkpoint, edit set, JSON record or CSV; a file that
cannot be written or read is one line of error naming it, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path

from .errors import UsageError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, and ``os.replace``.

    On any failure the old file (if any) is untouched and the temporary file is gone; an OSError (a folder in
    the way, no permission, disk full) becomes a one-line UsageError naming ``path``.
    """
    return atomic_write_files({path: data})[0]


def atomic_write_files(files: dict) -> list[Path]:
    """Write several files ({path: bytes, or a function that writes them to a binary handle: no copy of a large
    payload in memory}) together: every temporary file is written and synced first, then
    they are renamed into place in order. When a rename fails, the files already replaced get their old
    contents back (from a hard link or copy kept beside them), so the set stays the old one; only a hard kill
    between two renames can leave it mixed (the edit-set loader detects that). No temporary file is left."""
    items = [(Path(path), data) for path, data in files.items()]
    for path, _ in items:
        if path.is_dir():
            raise UsageError(f"cannot write {path}: it is a folder")
    temps, backups, replaced, current = [], {}, [], items[0][0]
    try:
        for current, data in items:
            temps.append(_write_temp(current, data))
        if len(items) > 1:
            for current, _ in items:
                if current.exists():
                    backups[current] = _backup(current)
        for (current, _), tmp in zip(items, temps):
            os.replace(tmp, current)
            replaced.append(current)
    except BaseException as err:
        for path in reversed(replaced):
            try:
                os.replace(backups.pop(path), path) if path in backups else path.unlink()
            except OSError:
                pass
        for leftover in [*temps, *backups.values()]:
            Path(leftover).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UsageError(f"cannot write {current}: {_os_reason(err)}") from None
        raise
    for backup in backups.values():
        Path(backup).unlink(missing_ok=True)
    return [path for path, _ in items]


def _write_temp(path: Path, data) -> str:
    """A synced temporary copy of ``data`` (bytes, or ``data(handle)`` writes them) beside ``path``, with the
    permissions open() would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _backup(path: Path) -> str:
    """A hard link to (or, where links are not possible, a copy of) ``path`` beside it."""
    fd, backup = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".bak.tmp")
    os.close(fd)
    os.unlink(backup)
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _os_reason(err: OSError) -> str:
    return err.strerror or one_line(err)


def one_line(err: BaseException, limit: int = 160) -> str:
    """``err``'s message as one short line (whitespace collapsed, cut at ``limit``), or its type's name."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[:limit - 3].rstrip() + "..."
    return text or type(err).__name__


def _weights_only_reason(err: BaseException) -> str:
    """The useful part of torch's weights_only refusal (its first lines only tell how to turn safety off)."""
    text = " ".join(str(err).split())
    _, found, reason = text.partition("WeightsUnpickler error:")
    if found:
        reason = reason.split("Check the documentation")[0].strip(" .")
        return one_line(ValueError(reason or "unpickling refused"))
    return one_line(err)


def _looks_like_text(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return b"\0" not in head and bool(head.strip())


def _first_sentence(err: BaseException, limit: int = 120) -> str:
    """The first sentence of ``err``'s message (torch appends paragraphs of advice), as one short line."""
    text = " ".join(str(err).split())
    head, dot, rest = text.partition(". ")
    return one_line(ValueError(head if dot and len(head) >= 20 else text), limit)


def load_tensor_file(path: str | Path, what: str, error: type[Exception]):
    """``torch.load(path, map_location="cpu", weights_only=True)``; whatever goes wrong - a folder, an empty,
    text, truncated or random file, a pickle of other objects - raises ``error`` with one line naming ``path``.

    ``what`` names the kind of file in the message ("checkpoint", "edit set"). A missing ``path`` is the
    caller's to report first (its message says how to make one).
    """
    import torch

    path = Path(path)
    a_what = f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"
    if path.is_dir():
        raise error(f"{path} is a folder, not {a_what} file")
    if not path.is_file():
        raise error(f"{path}: not a regular file ({a_what} must be a file)")
    try:
        if path.stat().st_size == 0:
            raise error(f"{path}: empty file, not {a_what}")
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except error:
        raise
    except Exception as err:  # torch.load raises KeyError, IndexError, RuntimeError, EOFError ... on bad files
        if _looks_like_text(path):
            raise error(f"{path}: a text file, not {a_what} (PyTorch files are binary)") from None
        if isinstance(err, pickle.UnpicklingError):
            raise error(f"{path}: not a tensor-only {what} (refused by weights_only loading: "
                        f"{_weights_only_reason(err)})") from None
        raise error(f"{path}: cannot read {what}: not a PyTorch file, or a truncated or corrupt one "
                    f"({type(err).__name__}: {_first_sentence(err)})") from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value):
    """numpy / torch scalars and arrays, Paths and non-finite floats -> plain JSON values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(record: dict) -> str:
    """``record`` as the indented JSON text :func:`write_json` writes (NaN/inf as null, arrays as lists)."""
    return json.dumps(_jsonable(record), indent=2, sort_keys=False) + "\n"


def write_json(path: str | Path, record: dict) -> Path:
    return atomic_write_text(path, json_text(record))


def append_csv_row(path: str | Path, row: dict, columns: list[str]) -> None:
    """Append one complete line (header first if the file is new) with a single write + fsync.

    A process killed mid-sweep leaves either the whole line or none of it; readers skip a torn last line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    new = not path.exists() or path.stat().st_size == 0
    if new:
        writer.writeheader()
    writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, buffer.getvalue().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _csv_cell(value):
    value = _jsonable(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value
