"""Independent float32 checks of a repair, no solver involved (docs/DESIGN.md, "Verification").

:func:`verify` checks a repaired torch model against its base (what is saved is what is checked);
:func:`check_solution` checks an LP solution of a bare :class:`LPSpec` in float32 (bench, LP tests).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from alexnet_repair.model import CLASSIFIER_LINEARS, AlexNet, layer_position
from alexnet_repair.evaluate import margins_of
from alexnet_repair.repair.bridge import preserve_layer_inputs
from alexnet_repair.repair.lp.spec import LPSpec
from alexnet_repair.repair.lp.spec import margins as lp_margins
from alexnet_repair.repair.types import RepairConfig, Verification


TAIL_CHUNK = 8192  # preserve images whose repaired layers run at once in the check (bounds its memory)


@torch.no_grad()
def verify(base: AlexNet, repaired: AlexNet, images, labels, config: RepairConfig, rows,
           device="cpu", pattern_tol: float = 1e-5, required=None, check_patterns: bool = True,
           preserve=None, check_preserve: bool = True) -> Verification:
    """Independent float32 check of a repaired model (see docs/DESIGN.md, "Verification").

    ``required``: positions of the edit images that must be fixed (default all; max-fixed passes its subset);
    margins and patterns are checked on those, efficacy and ``fixed`` count every image.
    ``check_patterns=False`` (fine-tuning) still counts pattern flips but does not fail on them.
    ``preserve`` (an editsets.PreserveSet): each of its images must keep its label with its margin (min(D, its base
    margin)) and, for a hidden layer, its activation pattern; ``check_preserve=False`` (fine-tuning) counts
    without failing. They are checked on the repaired layers from the prefix outputs of the draw's own pass: the
    prefix is the base model's, bit for bit (checked here), so these are the saved model's outputs.
    """
    base = base.cpu().float().eval()
    repaired = repaired.cpu().float().eval()
    reasons = []
    logits = repaired.to(device)(images.to(device)).cpu()
    repaired.cpu()
    labels = torch.as_tensor(labels, dtype=torch.long)
    margins = margins_of(logits, labels)
    hit = logits.argmax(1) == labels
    correct = int(hit.sum())
    fixed = int((hit & (margins >= config.margin)).sum())
    req = torch.arange(len(labels)) if required is None else torch.as_tensor(required, dtype=torch.long)
    wrong = int((~hit[req]).sum())
    min_margin = float(margins[req].min()) if len(req) else float("inf")
    if wrong:
        reasons.append(f"{wrong} of {len(req)} {'' if required is None else 'required '}edit images misclassified")
    if min_margin < config.margin:
        reasons.append(f"minimum margin {min_margin:.6g} < {config.margin}")
    editable = _editable_mask(base, config.layer, rows)
    max_change, identical = 0.0, True
    base_state, new_state = base.state_dict(), repaired.state_dict()
    for key, old in base_state.items():
        mask = editable.get(key)
        if mask is None:  # untouched: bit-identical (no float64 difference of 57M parameters needed)
            identical &= bool(torch.equal(new_state[key], old))
        else:
            identical &= bool(torch.equal(new_state[key][~mask], old[~mask]))
            if old.numel():
                max_change = max(max_change, float((new_state[key].double() - old.double()).abs().max()))
    within = max_change <= config.param_bound
    if not identical:
        reasons.append("a parameter outside the editable set changed")
    if not within:
        reasons.append(f"max |change| {max_change:.6g} exceeds the bound {config.param_bound}")
    flips = _pattern_flips(base, repaired, images[req], config.layer, pattern_tol, device) if len(req) else 0
    if flips and check_patterns:
        reasons.append(f"{flips} activation pattern(s) after {config.layer} changed")
    kept, p_min, p_excess, p_flips = _check_preserve(base, repaired, preserve, config.layer, pattern_tol, device)
    if preserve is not None and check_preserve:
        if kept < len(preserve):
            reasons.append(f"{len(preserve) - kept} of {len(preserve)} preserve images lost their label or "
                           f"their preserve margin (min(D = {preserve.margin}, base margin); missed by up to "
                           f"{-p_excess:.6g})")
        if p_flips and check_patterns:
            reasons.append(f"{p_flips} activation pattern(s) of preserve images after {config.layer} changed")
    ok = not reasons
    return Verification(ok, correct, len(labels), min_margin, max_change, within, identical, flips + p_flips, reasons,
                        fixed, len(req), len(preserve) if preserve is not None else 0, kept, p_min, p_excess)


def _check_preserve(base, repaired, preserve, layer, tol, device) -> tuple[int, float, float, int]:
    """(images kept with their margin, their least margin, the least margin - required margin, pattern flips) of a
    preserve set; zeros without one. Works from the input of ``layer`` (kept by the draw), TAIL_CHUNK images at a
    time."""
    if preserve is None or not len(preserve):
        return 0, float("inf"), float("inf"), 0
    h_all, stop = preserve_layer_inputs(base, preserve, layer, device), layer_position(layer)
    required = torch.from_numpy(np.asarray(preserve.margins, dtype=np.float32))
    kept, least, excess, flips = 0, float("inf"), float("inf"), 0
    for lo in range(0, len(preserve), TAIL_CHUNK):
        h, labels = h_all[lo:lo + TAIL_CHUNK], preserve.labels[lo:lo + TAIL_CHUNK]
        z_base, _ = _tail(base, h, stop, device)
        z_new, logits = _tail(repaired, h, stop, device)
        margins = margins_of(logits, labels)
        ok = (margins >= required[lo:lo + TAIL_CHUNK]) & (margins > 0)
        kept, least = kept + int(ok.sum()), min(least, float(margins.min()))
        excess = min(excess, float((margins - required[lo:lo + TAIL_CHUNK]).min()))
        flips += sum(int(((z0 > 0) != (z1 > 0))[z0.abs() > tol].sum()) for z0, z1 in zip(z_base, z_new))
    return kept, least, excess, flips


def _tail(net, h: torch.Tensor, stop: int, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(inputs of the classifier's ReLUs after ``stop``, logits) of ``net``'s classifier from position ``stop`` on,
    for the input ``h`` of that position (float32, on the CPU)."""
    h, pre = h.to(device).float(), []
    for module in list(net.classifier)[stop:]:
        if isinstance(module, torch.nn.ReLU):
            pre.append(h.cpu())
        h = module(h)
    return pre, h.cpu()


def _editable_mask(model: AlexNet, layer: str, rows) -> dict[str, torch.Tensor]:
    """Boolean masks of the parameters the repair may change: rows of W_k/b_k and every later bias."""
    start = CLASSIFIER_LINEARS.index(layer)
    lin = model.get_submodule(layer)
    row_mask = torch.zeros(lin.out_features, dtype=torch.bool)
    row_mask[torch.arange(lin.out_features) if rows is None else torch.as_tensor(rows, dtype=torch.long)] = True
    masks = {f"{layer}.weight": row_mask[:, None].expand_as(lin.weight), f"{layer}.bias": row_mask}
    for name in CLASSIFIER_LINEARS[start + 1:]:
        masks[f"{name}.bias"] = torch.ones(model.get_submodule(name).out_features, dtype=torch.bool)
    return masks


def _pattern_flips(base, repaired, images, layer, tol, device) -> int:
    """Hidden units after ``layer`` whose ReLU state differs between the models, among |z_base| > tol."""
    stop = layer_position(layer)
    relus = [i for i, m in enumerate(base.classifier) if isinstance(m, torch.nn.ReLU) and i > stop]
    if not relus:
        return 0
    z_base, z_new = (_pre_activations(net, images, relus, device) for net in (base, repaired))
    return sum(int(((z0 > 0) != (z1 > 0))[z0.abs() > tol].sum()) for z0, z1 in zip(z_base, z_new))


def _pre_activations(net, images, relu_positions, device) -> list[torch.Tensor]:
    """Inputs of the classifier's ReLUs at ``relu_positions`` (each (N, hidden)), float32 on the CPU."""
    net = copy.deepcopy(net).to(device).eval()
    h, pre = net.embed(images.to(device)), []
    for i, module in enumerate(net.classifier):
        if i in relu_positions:
            pre.append(h.cpu())
        h = torch.relu(h) if isinstance(module, torch.nn.ReLU) else module(h)
    return pre


@dataclass
class CheckReport:
    all_correct: bool  # every edit point predicted as its target
    min_margin: float  # min_i (y[t_i] - max_{c != t_i} y[c]) in float32
    margin_ok: bool  # min_margin >= spec.margin
    max_change: float  # largest |float32(new) - float32(old)| over the changed parameters
    bound_ok: bool  # max_change <= spec.param_bound
    pattern_flips: int  # hidden units whose ReLU state differs from the original, among |z0| >= tol
    ok: bool  # all of the above

    def __str__(self) -> str:
        return (f"ok={self.ok} correct={self.all_correct} min_margin={self.min_margin:.6g} "
                f"max_change={self.max_change:.6g} pattern_flips={self.pattern_flips}")


def apply_changes(spec: LPSpec, dW: np.ndarray, db: list[np.ndarray]):
    """float32 (weights, biases) of layers k..m after the change; rows outside R bit-identical."""
    rows = np.arange(spec.weights[0].shape[0]) if spec.rows is None else spec.rows
    ws = [w.astype(np.float32) for w in spec.weights]
    bs = [b.astype(np.float32) for b in spec.biases]
    ws[0][rows] = (ws[0][rows].astype(np.float64) + dW).astype(np.float32)
    bs[0][rows] = (bs[0][rows].astype(np.float64) + db[0]).astype(np.float32)
    for l in range(1, len(ws)):
        bs[l] = (bs[l].astype(np.float64) + db[l]).astype(np.float32)
    return ws, bs


def forward32(inputs: np.ndarray, ws, bs):
    """float32 forward through layers k..m; returns the pre-activations of every layer."""
    a = inputs.astype(np.float32)
    zs = []
    for l, (w, b) in enumerate(zip(ws, bs)):
        z = a @ w.T + b
        zs.append(z)
        a = np.maximum(z, np.float32(0))
    return zs


def check_solution(spec: LPSpec, dW: np.ndarray, db: list[np.ndarray], pattern_tol: float | None = None) -> CheckReport:
    """Check (dW, db) for ``spec`` in float32. Pattern flips are counted only where both the
    original and the new |pre-activation| >= pattern_tol (default spec.pattern_eps / 2): a unit
    sitting at ~0 contributes ~0 either way, and float32 cannot resolve its sign. Preserve points in
    ``spec.inputs`` (after ``n_edit``) must meet their own margins; ``min_margin`` is the edit points'."""
    tol = spec.pattern_eps / 2 if pattern_tol is None else pattern_tol
    ws0 = [w.astype(np.float32) for w in spec.weights]
    bs0 = [b.astype(np.float32) for b in spec.biases]
    ws, bs = apply_changes(spec, dW, db)
    z_old = forward32(spec.inputs, ws0, bs0)
    z_new = forward32(spec.inputs, ws, bs)
    y = z_new[-1].astype(np.float64)
    margins = lp_margins(y, spec.targets)
    changes = [np.abs(w.astype(np.float64) - w0.astype(np.float64)).max() for w, w0 in zip(ws[:1], ws0[:1])]
    changes += [np.abs(b.astype(np.float64) - b0.astype(np.float64)).max() for b, b0 in zip(bs, bs0)]
    max_change = float(max(changes))
    flips = 0
    for zo, zn in zip(z_old[:-1], z_new[:-1]):
        sure = (np.abs(zo) >= tol) & (np.abs(zn) >= tol)
        flips += int(((zo > 0) != (zn > 0))[sure].sum())
    n_edit = spec.n_edit_points  # preserve points (after them) need their own, smaller margin
    min_margin = float(margins[:n_edit].min()) if n_edit else float("inf")
    correct = bool((y.argmax(1) == spec.targets).all())
    kept = spec.point_margins()[n_edit:] - spec.margin_slack
    margin_ok = min_margin >= spec.margin and bool((margins[n_edit:] >= kept).all())
    bound_ok = max_change <= spec.param_bound
    return CheckReport(correct, min_margin, margin_ok, max_change, bound_ok, flips,
                       correct and margin_ok and bound_ok and flips == 0)
