"""The crash-safe sweep CSV store: a torn last line (a write killed half way) is ignored, then cut."""

from __future__ import annotations

from alexnet_repair.experiments.csvstore import append_row, read_csv


def test_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "log.csv"
    append_row(path, {"a": 1, "b": "x\ny"}, ["a", "b"])
    with open(path, "ab") as handle:
        handle.write(b"2,half a li")                     # a write cut short
    assert read_csv(path)[1] == [{"a": "1", "b": "x y"}]
    append_row(path, {"a": 3, "b": "z"}, ["a", "b"])
    assert path.read_text() == "a,b\n1,x y\n3,z\n"
