"""run_repair.py --preserve: the report line, preserve_indices in the JSON record, and a saved checkpoint that keeps
every preserve image with the preserve margin; without --preserve the report has no preserve line."""

from __future__ import annotations

import json

import numpy as np
import torch

import run_repair
from alexnet_repair.editsets import build_editset, save_editset
from alexnet_repair.evaluate import margins_of
from alexnet_repair.model import load_checkpoint


def test_preserve_report_record_and_checkpoint(workdir, capsys, fitted_model, fitted_checkpoint, cifar_dir,
                                               cifar_test, cifar_train):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=10, progress=False)
    editset, _ = save_editset(es, workdir / "data/edit_sets/misclassified_edit_dataset.pt")
    common = ["--edit-set", str(editset), "--weights", str(fitted_checkpoint), "--margin", "0.5", "--data-dir",
              str(cifar_dir), "--no-download", "--quiet", "--threads", "1", "--no-eval"]
    assert run_repair.main([*common, "--output", "plain.pth"]) == 0
    assert "preserve" not in capsys.readouterr().out

    assert run_repair.main([*common, "--preserve", "20", "--preserve-margin", "0.1", "--output", "kept.pth"]) == 0
    printed = capsys.readouterr().out
    line, = (text for text in printed.splitlines() if text.startswith("preserve "))
    record_path = printed.split("record          ")[1].strip()
    record = json.loads(open(record_path).read())
    assert line == f"preserve        20 images (train), {record['preserve_rows_added']} rows added, 20 kept"
    assert record["preserve_size"] == record["preserve_kept"] == 20 and record["config"]["preserve_margin"] == 0.1
    indices = record["preserve_indices"]
    assert len(set(indices)) == 20 and all(0 <= i < len(cifar_train) for i in indices)
    images, labels = cifar_train.inputs(np.array(indices)), cifar_train.labels[indices]
    with torch.no_grad():
        assert float(margins_of(fitted_model(images), labels).min()) >= 0.1           # drawn with the margin
        kept = margins_of(load_checkpoint("kept.pth")(images), labels)
        lost = margins_of(load_checkpoint("plain.pth")(images), labels)
    assert float(kept.min()) >= 0.1                                                    # and kept by the saved model
    assert float(lost.min()) < 0.1    # the plain repair of the same edit set loses some: the preserve set did work
