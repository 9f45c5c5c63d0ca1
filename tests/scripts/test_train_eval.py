"""train.py -> checkpoint + sidecar -> eval.py, and the scripts' bad-input behaviour."""

import json

import pytest
import torch

import eval as eval_script
import train as train_script
from alexnet_repair.model import load_checkpoint


def test_train_then_eval_on_tiny_synthetic(workdir, capsys):
    out = workdir / "artifacts" / "tiny.pth"
    rc = train_script.main(["--dataset", "synthetic", "--width-scale", "16", "--epochs", "1", "--limit", "160",
                            "--batch-size", "32", "--output", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["dataset"] == "synthetic" and "synthetic" in printed
    assert sidecar["config"]["epochs"] == 1 and 0 <= sidecar["test_accuracy"] <= 100
    model = load_checkpoint(out)
    assert model.hidden == 256

    assert eval_script.main(["--weights", str(out), "--dataset", "synthetic", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "synthetic/test (2000 images)" in table and "airplane" in table and "truck" in table
    records = list((workdir / "results").glob("eval_*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["dataset"] == "synthetic" and len(record["per_class_accuracy"]) == 10
    assert record["accuracy"] == pytest.approx(sidecar["test_accuracy"])  # same model, same split, same number


def test_train_on_cifar_folder_and_refuse_overwrite(workdir, cifar_dir, capsys):
    out = workdir / "artifacts" / "alexnet_base.pth"
    args = ["--data-dir", str(cifar_dir), "--no-download", "--width-scale", "16", "--epochs", "1", "--quiet"]
    assert train_script.main(args) == 0
    before = out.read_bytes()
    assert train_script.main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert train_script.main(args + ["--force", "--seed", "3"]) == 0
    assert out.read_bytes() != before


def test_eval_json_and_cifar_folder(workdir, cifar_dir, tiny_checkpoint, capsys):
    rc = eval_script.main(["--weights", str(tiny_checkpoint), "--data-dir", str(cifar_dir), "--no-download",
                           "--json", "--quiet", "--batch-size", "7"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["dataset"] == "cifar10-folder" and record["images"] == 100
    model = load_checkpoint(tiny_checkpoint)
    from alexnet_repair.data import load_split
    split = load_split("cifar10", "test", cifar_dir, download=False)
    with torch.no_grad():
        expected = (model(split.inputs()).argmax(1) == split.labels).float().mean().item() * 100
    assert record["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("setup, args, message", [
    ("none", ["--weights", "missing.pth"], "checkpoint not found"),
    ("pickle", ["--weights", "obj.pth"], "not a tensor-only checkpoint"),
    ("shape", ["--weights", "shape.pth"], "has shape"),
    ("none", ["--weights", "x.pth", "--cuda"], "CUDA"),
    ("none", ["--weights", "x.pth", "--batch-size", "0"], "--batch-size"),
])
def test_eval_bad_inputs_exit_nonzero_with_one_line(workdir, tiny_model, capsys, setup, args, message):
    if setup == "pickle":
        import pickle
        (workdir / "obj.pth").write_bytes(pickle.dumps({"weights": ValueError("not a tensor")}))
    if setup == "shape":
        state = tiny_model.state_dict()
        state["classifier.1.weight"] = torch.zeros(5, 5)
        torch.save(state, workdir / "shape.pth")
    if "--cuda" in args:
        torch.save(tiny_model.state_dict(), workdir / "x.pth")
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    rc = eval_script.main(args + ["--dataset", "synthetic", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not list((workdir / "results").iterdir())  # nothing written


def test_train_cuda_without_gpu_writes_nothing(workdir, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    rc = train_script.main(["--dataset", "synthetic", "--cuda", "--output", "m.pth"])
    assert rc == 2 and "CUDA" in capsys.readouterr().err
    assert not (workdir / "m.pth").exists()


class _Stream:
    """A stderr stand-in: records what is written; ``isatty`` says whether it is a terminal."""

    def __init__(self, tty: bool):
        self.tty, self.parts = tty, []

    def write(self, text):
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return self.tty

    @property
    def text(self):
        return "".join(self.parts)


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bars_only_on_a_terminal(monkeypatch, cifar_train, cifar_test, tty):
    """Progress bars are drawn when stderr is a terminal; a log file (not a tty) gets no bar frames at all."""
    import sys

    from alexnet_repair.evaluate import predict
    from alexnet_repair.model import small_alexnet
    from alexnet_repair.training import TrainConfig, train

    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    model = small_alexnet(scale=16, seed=0)
    train(model, cifar_train.head(40), cifar_test.head(20), TrainConfig(epochs=1, batch_size=20), progress=True)
    predict(model, cifar_test, progress=True, desc="bar-check")
    if tty:
        assert "epoch 1/1" in stream.text and "bar-check" in stream.text
    else:
        assert stream.text == ""
    quiet = _Stream(True)
    monkeypatch.setattr(sys, "stderr", quiet)
    predict(model, cifar_test, progress=False)
    assert quiet.text == ""  # --quiet: never, even on a terminal
