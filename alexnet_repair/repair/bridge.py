"""The bridge between a torch model and the repair LP: the edited layer's inputs, the editable rows,
the LPSpec of a repair, and writing an LP solution back into a float32 model.

The features are the float32 prefix's (the saved model's own arithmetic), held in float64 for the LP.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from alexnet_repair.errors import UsageError
from alexnet_repair.model import CLASSIFIER_LINEARS, AlexNet, layer_position
from alexnet_repair.repair.lp.spec import LPSpec
from alexnet_repair.repair.types import RepairConfig


@torch.no_grad()
def layer_inputs(model: AlexNet, images: torch.Tensor, layer: str, device="cpu", dtype=torch.float64,
                 batch_size: int = 256) -> torch.Tensor:
    """(N, in_k) input of ``layer`` for each image, computed by the frozen prefix in ``dtype`` (dropout off)."""
    net = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    stop = layer_position(layer)
    outs = []
    for i in range(0, len(images), batch_size):
        h = net.embed(images[i:i + batch_size].to(device=device, dtype=dtype))
        for module in list(net.classifier)[:stop]:
            h = module(h)
        outs.append(h.cpu())
    return torch.cat(outs) if outs else torch.zeros(0, net.classifier[stop].in_features, dtype=dtype)


def parse_rows(rows: str | None, model: AlexNet, layer: str, images, labels, device="cpu") -> np.ndarray | None:
    """Editable rows of ``layer``: None (all), "a:b", "i,j,k", or a count N.

    For a count the rule is: the N rows whose pre-activations carry the largest summed |gradient| of the
    cross-entropy loss over the edit images (the rows through which the edit set's error flows most).
    """
    if rows is None or str(rows).strip().lower() in ("", "all"):
        return None
    n_out = model.get_submodule(layer).out_features
    text = str(rows).strip()
    try:
        if ":" in text:
            lo, hi = (int(p) if p else d for p, d in zip(text.split(":", 1), (0, n_out)))
            chosen = np.arange(lo, hi)
        elif "," in text:
            chosen = np.array([int(p) for p in text.split(",") if p.strip()])
        else:
            return _top_gradient_rows(model, layer, images, labels, int(text), device)
    except ValueError:
        raise UsageError(f"--rows {rows!r}: use a:b, i,j,k or a count") from None
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= n_out:
        raise UsageError(f"--rows {rows!r} selects no valid row of {layer} (it has rows 0..{n_out - 1})")
    return np.unique(chosen)


def _top_gradient_rows(model, layer, images, labels, count, device) -> np.ndarray:
    n_out = model.get_submodule(layer).out_features
    if not 1 <= count <= n_out:
        raise UsageError(f"--rows {count}: a count must lie in 1..{n_out} for {layer}")
    stop = layer_position(layer)
    net = copy.deepcopy(model).to(device).eval()
    h = layer_inputs(model, images, layer, device, dtype=torch.float32).to(device)
    z = net.classifier[stop](h).detach().requires_grad_(True)
    out = z
    for module in list(net.classifier)[stop + 1:]:
        out = torch.relu(out) if isinstance(module, torch.nn.ReLU) else module(out)  # no in-place on the leaf
    torch.nn.functional.cross_entropy(out, labels.to(device), reduction="sum").backward()
    score = z.grad.abs().sum(0).cpu().numpy()
    return np.sort(np.argsort(-score, kind="stable")[:count])


def prepare(model: AlexNet, images: torch.Tensor, labels, config: RepairConfig, device="cpu"):
    """(float32 CPU eval model, int64 labels, editable rows) for a repair; an empty edit set is a UsageError."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0:
        raise UsageError("the edit set is empty: nothing to repair")
    model = model.cpu().float().eval()
    return model, labels, parse_rows(config.rows, model, config.layer, images, labels, device)


def lp_spec(model: AlexNet, images: torch.Tensor, labels: torch.Tensor, config: RepairConfig, rows, device="cpu",
            preserve=None):
    """The LPSpec of ``config`` on these edit images (float32-prefix features and weights, held in float64), with the preserve set's
    features when ``preserve`` (an editsets.PreserveSet) is given.

    The features are the float32 prefix's (the saved model's own arithmetic), held in float64: a float64 prefix
    differs from what the saved float32 model computes by more than the LP's margin slack on some models.
    """
    start = CLASSIFIER_LINEARS.index(config.layer)
    linears = [model.get_submodule(name) for name in CLASSIFIER_LINEARS[start:]]
    inputs = layer_inputs(model, images, config.layer, device, dtype=torch.float32).double().numpy()
    kept = {}
    if preserve is not None and len(preserve):
        kept = dict(preserve_inputs=preserve_layer_inputs(model, preserve, config.layer, device).numpy(),  # float32
                    preserve_labels=preserve.labels.numpy().astype(np.int64),
                    preserve_margin=np.asarray(preserve.margins, dtype=np.float64))
    return LPSpec(inputs=inputs, targets=labels.numpy().astype(np.int64), **kept,
                  weights=[m.weight.detach().double().cpu().numpy() for m in linears],
                  biases=[m.bias.detach().double().cpu().numpy() for m in linears],
                  rows=rows, param_bound=config.param_bound, margin=config.margin, objective=config.objective)


def preserve_layer_inputs(model: AlexNet, preserve, layer: str, device="cpu") -> torch.Tensor:
    """(P, in_k) float32 input of ``layer`` for the preserve images: kept from the draw's pass when it was (the
    same float32 prefix), else computed."""
    kept = preserve.features.get(layer)
    return kept if kept is not None else layer_inputs(model, preserve.images, layer, device, dtype=torch.float32)


def apply_solution(model: AlexNet, layer: str, rows, dW: np.ndarray, db: list[np.ndarray]) -> AlexNet:
    """A float32 copy of ``model`` with W_k[rows] += dW, b_k[rows] += db[0], b_j += db[j] (sums in float64)."""
    repaired = copy.deepcopy(model).cpu().float().eval()
    start = CLASSIFIER_LINEARS.index(layer)
    linears = [repaired.get_submodule(name) for name in CLASSIFIER_LINEARS[start:]]
    idx = torch.arange(linears[0].out_features) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    with torch.no_grad():
        w = linears[0].weight
        w[idx] = (w[idx].double() + torch.from_numpy(np.asarray(dW))).float()
        b = linears[0].bias
        b[idx] = (b[idx].double() + torch.from_numpy(np.asarray(db[0]))).float()
        for lin, delta in zip(linears[1:], db[1:]):
            lin.bias.copy_((lin.bias.double() + torch.from_numpy(np.asarray(delta))).float())
    return repaired
