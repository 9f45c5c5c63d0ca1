"""The crash-safe sweep CSV store: a torn last line (a write killed half way) is ignored, then cut; an older header
is upgraded, a foreign one refused."""

from __future__ import annotations

import pytest

from alexnet_repair.errors import DataError
from alexnet_repair.experiments.csvstore import append_row, read_csv


def test_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "log.csv"
    append_row(path, {"a": 1, "b": "x\ny"}, ["a", "b"])
    with open(path, "ab") as handle:
        handle.write(b"2,half a li")                     # a write cut short
    assert read_csv(path)[1] == [{"a": "1", "b": "x y"}]
    append_row(path, {"a": 3, "b": "z"}, ["a", "b"])
    assert path.read_text() == "a,b\n1,x y\n3,z\n"


def test_an_older_header_is_upgraded_and_a_foreign_one_refused(tmp_path):
    path = tmp_path / "log.csv"
    append_row(path, {"a": 1, "c": 2}, ["a", "c"])
    append_row(path, {"a": 3, "b": "x", "c": 4}, ["a", "b", "c"])
    assert path.read_text() == "a,b,c\n1,,2\n3,x,4\n"
    with pytest.raises(DataError, match="unknown: b"):      # an older writer never drops a newer file's column
        append_row(path, {"a": 5}, ["a", "c"])
    other = tmp_path / "other.csv"
    other.write_text("a,z\n1,2\n")
    with pytest.raises(DataError, match="other columns"):
        append_row(other, {"a": 1}, ["a", "b"])
    assert other.read_text() == "a,z\n1,2\n"
