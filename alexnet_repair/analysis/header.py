"""The report's header block: which base model, dataset, grid, toolkit commit and time produced the runs an
analysis reads, all taken from the CSV's own columns (and this analysis's commit and clock)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from ..data import CLASS_NAMES
from ..provenance import git_commit
from .common import distinct, fmt
from .preserve import SIZE, size_label

# (column, what the header calls it) of the settings a sweep can take several values of
GRID_SETTINGS = [("repair_set_type", "types"), ("requested_repair_set_size", "edit-set sizes"),
                 ("target_class", "classes"), ("param_bound", "parameter bounds"), ("margin", "margins"),
                 ("layer", "layers"), ("method", "methods"), ("objective", "objectives"),
                 ("requested_preserve_size", "preserve sizes"), ("preserve_margin", "preserve margins"),
                 ("seed", "seeds")]
STOCHASTIC_SETTINGS = [("homogeneity", "types"), ("batch_size", "batch sizes"), *GRID_SETTINGS[2:]]
SHA_DIGITS = 12


@dataclass(frozen=True)
class HeaderLine:
    label: str
    text: str               # may hold newlines (shown as line breaks)
    flag: str = ""          # "synthetic": the report marks it so nobody takes the numbers for CIFAR-10's


def _values(df: pd.DataFrame, column: str) -> str:
    values = distinct(df, column)
    if column == SIZE:
        return ", ".join(map(size_label, values)) or "-"
    if column == "target_class":
        return ", ".join(f"{int(v)} {CLASS_NAMES[int(v)]}" for v in values) or "none (no class-homogeneous runs)"
    return ", ".join(fmt(v) for v in values) or "-"


def _model(df: pd.DataFrame, path_column: str | None) -> str:
    shas = df["weights_sha256"].fillna("").astype(str).str[:SHA_DIGITS] if "weights_sha256" in df else None
    paths = df[path_column].fillna("").astype(str) if path_column in df else None
    if shas is None:
        return ", ".join(sorted(set(paths if paths is not None else ()) - {""})) or "not recorded in the CSV"
    pairs = pd.DataFrame({"path": paths if paths is not None else "", "sha": shas}).drop_duplicates()
    return "; ".join(f"{p} (sha256 {s or '-'}…)" if p else f"sha256 {s or '-'}… (the CSV records no path)"
                     for p, s in sorted(pairs.itertuples(index=False)))


def _dataset(df: pd.DataFrame) -> HeaderLine:
    names = distinct(df, "dataset")
    if not names:
        return HeaderLine("dataset", "not recorded in the CSV")
    split = (f"; edit sets from the {' and '.join(map(str, distinct(df, 'edit_split')))} split"
             if "edit_split" in df else "")
    text = ", ".join("synthetic: generated images, not CIFAR-10" if n == "synthetic" else str(n) for n in names)
    return HeaderLine("dataset", text + split, "synthetic" if "synthetic" in names else "")


def _ran(df: pd.DataFrame) -> str:
    stamps = pd.to_datetime(df["timestamp"], errors="coerce", utc=True).dropna() if "timestamp" in df else []
    made = time.strftime("%Y-%m-%d %H:%M:%S %z")
    if len(stamps) == 0:
        return f"run times not recorded\nreport made {made}"
    first, last = (t.strftime("%Y-%m-%d %H:%M:%S UTC") for t in (stamps.min(), stamps.max()))
    return f"runs from {first} to {last}\nreport made {made}"


def header_lines(df: pd.DataFrame, settings=GRID_SETTINGS, model_path: str | None = "baseline_model_path",
                 extra=()) -> list[HeaderLine]:
    """The header of a report on the runs ``df``: base model, dataset, the distinct values of each swept setting
    (``settings``: [(column, name)]), ``extra`` lines, toolkit commits and times."""
    grid = "\n".join(f"{name}: {_values(df, column)}" for column, name in settings
                     if column in df and (column != "preserve_margin" or distinct(df, column)))   # (none: no line)
    commits = ", ".join(map(str, distinct(df, "git_commit"))) or "not recorded"
    versions = ", ".join(map(str, distinct(df, "toolkit_version")))
    return [HeaderLine("base model", _model(df, model_path)), _dataset(df), HeaderLine("grid", grid), *extra,
            HeaderLine("toolkit", f"runs at commit {commits}" + (f" (alexnet_repair {versions})" if versions else "")
                       + f"; this analysis at commit {git_commit() or 'unknown'}"),
            HeaderLine("ran", _ran(df))]
