"""Export an AlexNet to ONNX with the classic TorchScript exporter, check it with onnxruntime, describe it in JSON.

The exported graph uses only Conv, Relu, MaxPool, Flatten and Gemm, the operators every verifier reads. On the
model's 64x64 input the last feature map is 1x1, so ``AdaptiveAvgPool2d((6, 6))`` only copies each channel 36
times (and torch's TorchScript exporter cannot export it); the copies are folded into ``classifier.1``
(``W'[:, c] = sum_k W[:, 36 c + k]``, summed in float64 and rounded once). The function is the same up to float32
rounding, which :func:`compare_with_torch` bounds on real images.
"""

from __future__ import annotations

import copy
import io
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import CLASS_NAMES, CROP, RESIZE
from ..errors import CheckpointError, UsageError
from ..model import AlexNet

log = logging.getLogger(__name__)

FORMAT = "alexnet_repair.onnx"
FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "input", "logits"
INPUT_SHAPE = (3, CROP, CROP)
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-5
BATCH_CHOICES = ("dynamic", "1")
PREPROCESSING = {
    "source_images": "32x32 RGB uint8 (CIFAR-10)",
    "resize_short_side": RESIZE, "interpolation": "bilinear, antialias", "center_crop": CROP,
    "scale": "[0, 1] (uint8 / 255)", "normalization": None,
    "layout": "N,C,H,W float32; VNN-LIB X_i is the flattened C,H,W index of one image",
}
GRAPH_NOTE = ("avgpool over the 1x1 feature map folded into classifier.1 (Conv/Relu/MaxPool/Flatten/Gemm only); "
              "dropout removed (eval mode)")


class ExportNet(nn.Module):
    """``model``'s function on (B, 3, 64, 64) inputs, with the avgpool folded away.

    ``margin_shift=M`` appends 10 outputs ``logit_k - M`` (the last Gemm's rows repeated, bias minus M), so a
    margin property ``logit_t - logit_c <= M`` reads ``Y_{10+t} <= Y_c``: one output compared with another.
    """

    def __init__(self, model: AlexNet, margin_shift: float | None = None):
        super().__init__()
        with torch.no_grad():
            spatial = tuple(model.features(torch.zeros(1, *INPUT_SHAPE)).shape[-2:])
        if spatial != (1, 1):
            raise CheckpointError(f"the feature map on a 64x64 input is {spatial}, expected (1, 1): not the "
                                  f"toolkit's AlexNet structure")
        fc1, fc2, fc3 = model.classifier[1], model.classifier[4], model.classifier[6]
        c5 = model.features[10].out_channels
        folded = nn.Linear(c5, fc1.out_features)
        last = nn.Linear(fc3.in_features, fc3.out_features * (2 if margin_shift is not None else 1))
        with torch.no_grad():
            repeats = fc1.in_features // c5
            folded.weight.copy_(fc1.weight.double().reshape(fc1.out_features, c5, repeats).sum(-1).float())
            folded.bias.copy_(fc1.bias)
            if margin_shift is None:
                last.weight.copy_(fc3.weight)
                last.bias.copy_(fc3.bias)
            else:
                last.weight.copy_(torch.cat([fc3.weight, fc3.weight]))
                last.bias.copy_(torch.cat([fc3.bias, (fc3.bias.double() - float(margin_shift)).float()]))
        self.features = model.features
        self.classifier = nn.Sequential(folded, nn.ReLU(), _copy_linear(fc2), nn.ReLU(), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _copy_linear(layer: nn.Linear) -> nn.Linear:
    out = nn.Linear(layer.in_features, layer.out_features)
    out.load_state_dict(layer.state_dict())
    return out


def parse_batch(value) -> int | str:
    text = str(value).strip()
    if text not in BATCH_CHOICES:
        raise UsageError(f"--batch must be 'dynamic' or 1 (got {value!r})")
    return 1 if text == "1" else "dynamic"


def export_bytes(model: AlexNet, opset: int = DEFAULT_OPSET, batch: int | str = "dynamic",
                 margin_shift: float | None = None, metadata: dict | None = None) -> bytes:
    """The ONNX file of ``model`` (checked by ``onnx.checker``), with ``metadata`` as string metadata_props."""
    import onnx

    if not isinstance(opset, int) or opset < 9:
        raise UsageError(f"--opset must be an integer >= 9 (got {opset})")
    net = ExportNet(model.eval(), margin_shift).eval()
    kwargs = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset,
              "do_constant_folding": True, "dynamo": False}
    if batch == "dynamic":
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(net, (torch.zeros(1, *INPUT_SHAPE),), buffer, **kwargs)
    except Exception as err:  # the exporter raises many types (unsupported opset, operator ...)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UsageError(f"ONNX export failed (opset {opset}): {first}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = f"alexnet_repair AlexNet, {INPUT_NAME} (N,3,64,64) in [0,1] -> {OUTPUT_NAME}; {GRAPH_NOTE}"
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def ort_session(source: bytes | str | Path):
    """An onnxruntime CPU session for an ONNX file or its bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    model = source if isinstance(source, bytes) else str(source)
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime wraps its C++ errors in its own exception types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"onnxruntime cannot load the ONNX model: {first}") from None


def ort_run(session, inputs: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Outputs of ``session`` for float32 inputs (n, 3, 64, 64), one image at a time when the batch is fixed to 1."""
    spec = session.get_inputs()[0]
    step = 1 if spec.shape and spec.shape[0] == 1 else chunk
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    parts = [session.run(None, {spec.name: inputs[i:i + step]})[0] for i in range(0, len(inputs), step)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@torch.no_grad()
def torch_logits(model: AlexNet, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i:i + chunk]) for i in range(0, len(images), chunk)])


def compare_with_torch(model: AlexNet, session, images: torch.Tensor, tolerance: float = DEFAULT_TOLERANCE,
                       margin_shift: float | None = None, what: str = "images") -> dict:
    """onnxruntime vs torch on ``images``; CheckpointError when the ONNX model is not faithful.

    Faithful: every output within ``tolerance`` of torch's float32 logits; or, for models whose float32 logits
    carry more rounding than that (huge weights), an ONNX error against a float64 forward pass of at most twice
    torch's own float32 error plus ``tolerance``: no worse than a second float32 evaluation order.
    """
    reference = _with_shift(torch_logits(model, images).double().numpy(), margin_shift)
    start = time.perf_counter()
    outputs = ort_run(session, images.numpy()).astype(np.float64)
    seconds = round(time.perf_counter() - start, 3)
    if outputs.shape != reference.shape:
        raise CheckpointError(f"the ONNX model gives outputs of shape {outputs.shape}, torch {reference.shape}")
    diff = float(np.abs(outputs - reference).max()) if outputs.size else 0.0
    agree = int((outputs[:, :10].argmax(1) == reference[:, :10].argmax(1)).sum())
    record = {"what": what, "images": int(len(images)), "max_abs_logit_diff": diff, "tolerance": tolerance,
              "predictions_agree": agree, "onnxruntime_seconds": seconds}
    if diff <= tolerance:
        return record
    exact = _with_shift(torch_logits(copy.deepcopy(model).double(), images.double()).numpy(), margin_shift)
    onnx_err, torch_err = float(np.abs(outputs - exact).max()), float(np.abs(reference - exact).max())
    record["float64_reference"] = {"onnx_max_abs_error": onnx_err, "torch_float32_max_abs_error": torch_err}
    if not onnx_err <= 2 * torch_err + tolerance:
        raise CheckpointError(f"ONNX check failed: onnxruntime and torch logits differ by up to {diff:.3g} on "
                              f"{len(images)} {what} (tolerance {tolerance:g}; against float64: onnx "
                              f"{onnx_err:.3g}, torch float32 {torch_err:.3g}); nothing written")
    log.warning("onnxruntime and torch differ by up to %.3g (> %g), within float32 rounding of this model: torch's "
                "own error against float64 is %.3g, the ONNX model's %.3g", diff, tolerance, torch_err, onnx_err)
    return record


def _with_shift(logits: np.ndarray, margin_shift: float | None) -> np.ndarray:
    return logits if margin_shift is None else np.concatenate([logits, logits - float(margin_shift)], axis=1)


def sidecar(*, onnx_name: str, onnx_sha256: str, source: Path, source_sha256: str, model: AlexNet, opset: int,
            batch, check: dict, margin_shift: float | None = None) -> dict:
    """The JSON that travels with an exported ONNX file."""
    import onnx
    import onnxruntime

    from ..provenance import versions

    outputs = 2 * len(CLASS_NAMES) if margin_shift is not None else len(CLASS_NAMES)
    batch_dim = "batch" if batch == "dynamic" else 1
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "onnx": onnx_name, "onnx_sha256": onnx_sha256,
        "source_checkpoint": str(source), "source_sha256": source_sha256, "arch": model.arch(),
        "opset": opset, "batch": batch, "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "input": {"name": INPUT_NAME, "shape": [batch_dim, *INPUT_SHAPE], "dtype": "float32", "range": [0.0, 1.0]},
        "output": {"name": OUTPUT_NAME, "shape": [batch_dim, outputs], "meaning": "logits (no softmax)"},
        "preprocessing": PREPROCESSING, "class_names": list(CLASS_NAMES), "graph": GRAPH_NOTE,
        "check": check,
        "versions": {**versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if margin_shift is not None:
        record["margin_shift"] = float(margin_shift)
        record["output"]["meaning"] = (f"Y_0..Y_9 logits; Y_10..Y_19 = logits - {margin_shift:g} (for margin "
                                       f"properties in the simple VNN-LIB subset)")
    return record


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (never the checkpoint's own ``.json`` sidecar)."""
    path = Path(onnx_path)
    return path.with_name(path.name + ".json")
