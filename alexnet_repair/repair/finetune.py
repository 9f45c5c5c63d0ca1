"""Fine-tuning baseline (``--method ft``): gradient descent on exactly the parameters the repair LP may edit.

Editable set (as the LP's): rows R of the chosen classifier Linear layer (weights and biases) and every later
bias. Each step: a multi-class hinge loss at the margin on every edit image, optionally plus cross-entropy on
``replay`` training images (the "MFT" baseline of the PRDNN paper); one Adam/SGD step; then every change is
clamped to [-B, B] around the ORIGINAL parameters. Stops as soon as every edit image meets the margin, or after
``max_steps``. The frozen prefix runs once: training works on the edited layer's inputs. Dropout is off (as in
the LP). The result is checked by the same float32 verification as an LP repair, except that activation
patterns may change (fine-tuning does not keep them; flips are counted, not failed on): status "success" when
every edit image meets the margin, "partial" (with the model and its honest efficacy) otherwise.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from alexnet_repair.errors import UsageError
from alexnet_repair.evaluate import margins_of
from alexnet_repair.model import CLASSIFIER_LINEARS
from alexnet_repair.repair.bridge import apply_solution, layer_inputs, prepare, preserve_layer_inputs
from alexnet_repair.repair.types import RepairResult
from alexnet_repair.repair.verify import verify

log = logging.getLogger(__name__)

DEFAULT_LR = {"adam": 1e-2, "sgd": 1e-1}


@dataclass
class FTConfig:
    max_steps: int = 1000         # optimiser steps at most; fewer when every edit image meets the margin earlier
    lr: float | None = None       # learning rate; None = 1e-2 for adam, 1e-1 for sgd
    optimizer: str = "adam"       # "adam" or "sgd" (momentum 0.9)
    replay: int = 0               # training images mixed into every step (cross-entropy); 0 = plain FT
    replay_pool: int = 2048       # training images (drawn once, seeded) whose features the replay batches come from
    replay_weight: float = 1.0    # weight of the replay cross-entropy against the edit hinge loss
    seed: int = 0                 # seeds the replay draws (the updates themselves are deterministic)
    margin_slack: float = 1e-4    # FT aims for margin + slack, so the saved float32 model keeps the margin

    def validate(self) -> None:
        if self.optimizer not in DEFAULT_LR:
            raise UsageError(f"unknown --ft-optimizer {self.optimizer!r}: choose adam or sgd")
        if self.max_steps < 0:
            raise UsageError(f"--ft-max-steps must be >= 0 (got {self.max_steps})")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--ft-lr must be positive (got {self.lr})")
        if self.replay < 0 or self.replay_pool < 1:
            raise UsageError(f"--ft-replay must be >= 0 (got {self.replay})")


class _Editable(torch.nn.Module):
    """The classifier from the edited layer on, with trainable changes dW (|R|, in_k), db_k (|R|), db_j (out_j)."""

    def __init__(self, linears: list[torch.nn.Linear], rows: torch.Tensor):
        super().__init__()
        self.weights = [lin.weight.detach().clone() for lin in linears]
        self.biases = [lin.bias.detach().clone() for lin in linears]
        self.rows = rows
        self.deltas = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(len(rows), self.weights[0].shape[1])),
             torch.nn.Parameter(torch.zeros(len(rows)))]
            + [torch.nn.Parameter(torch.zeros_like(b)) for b in self.biases[1:]])

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # a: (n, in_k) -> logits (n, C)
        z = a @ self.weights[0].T + self.biases[0]
        z_rows = z[:, self.rows] + a @ self.deltas[0].T + self.deltas[1]
        z = z.index_copy(1, self.rows, z_rows)
        for w, b, db in zip(self.weights[1:], self.biases[1:], self.deltas[2:]):
            z = torch.relu(z) @ w.T + b + db
        return z

    @torch.no_grad()
    def clamp_(self, bound: float) -> None:
        for d in self.deltas:
            d.clamp_(-bound, bound)


def hinge(logits: torch.Tensor, labels: torch.Tensor, margin) -> torch.Tensor:
    """Multi-class hinge at the margin (one for all, or (n,) one per image): mean_i sum_{c != t_i}
    relu(margin_i - (y_t - y_c))."""
    gaps = logits.gather(1, labels[:, None]) - logits                     # (n, C), 0 at the target
    viol = torch.relu(torch.as_tensor(margin, dtype=logits.dtype, device=logits.device).reshape(-1, 1) - gaps).scatter(1, labels[:, None], 0.0)
    return viol.sum(1).mean()


def replay_features(model, replay, layer: str, ft: FTConfig, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(features (P, in_k), labels (P,)) of a seeded pool of ``replay``, or None.

    ``replay``: a data.Split (raw images; only the pool is preprocessed) or (inputs (P, 3, 64, 64), labels (P,)).
    """
    if not ft.replay:
        return None
    if replay is None:
        raise UsageError("--ft-replay needs the training split of the edit set's dataset")
    n = len(replay.labels) if hasattr(replay, "inputs") else len(replay[1])
    gen = torch.Generator().manual_seed(ft.seed)
    pool = torch.randperm(n, generator=gen)[:ft.replay_pool]
    if hasattr(replay, "inputs"):
        images, labels = replay.inputs(pool), replay.labels[pool]
    else:
        images, labels = replay[0][pool], torch.as_tensor(replay[1])[pool]
    return layer_inputs(model, images, layer, device, dtype=torch.float32), labels.long()


# Over 60 lines: one fine-tuning run, from feature extraction to the verified result.
def finetune(model, images: torch.Tensor, labels: torch.Tensor, config, ft: FTConfig | None = None,
             replay=None, device="cpu", preserve=None) -> RepairResult:
    """Fine-tune ``model``'s editable parameters on (images, labels); never modifies ``model``.

    ``replay``: training data for ``ft.replay`` > 0 (a data.Split, or (inputs, labels) tensors);
    ``preserve`` (an editsets.PreserveSet): images to keep, by a hinge at their margin (not a guarantee).
    """
    ft = ft or FTConfig()
    config.validate()
    ft.validate()
    start = time.perf_counter()
    model, labels, rows = prepare(model, images, labels, config, device)
    first = CLASSIFIER_LINEARS.index(config.layer)
    linears = [copy.deepcopy(model.get_submodule(n)).to(device) for n in CLASSIFIER_LINEARS[first:]]
    n_out = linears[0].out_features
    row_idx = torch.arange(n_out) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    net = _Editable(linears, row_idx.to(device)).to(device)
    feats = layer_inputs(model, images, config.layer, device, dtype=torch.float32).to(device)
    y = labels.to(device)
    pool = replay_features(model, replay, config.layer, ft, device)
    keep = None
    if preserve is not None and len(preserve):
        keep = (preserve_layer_inputs(model, preserve, config.layer, device).to(device),
                preserve.labels.to(device),
                torch.as_tensor(np.asarray(preserve.margins), dtype=torch.float32).to(device) + ft.margin_slack)
    gen = torch.Generator().manual_seed(ft.seed)
    lr = ft.lr or DEFAULT_LR[ft.optimizer]
    params = list(net.deltas)
    opt = (torch.optim.Adam(params, lr=lr) if ft.optimizer == "adam"
           else torch.optim.SGD(params, lr=lr, momentum=0.9))
    target = config.margin + ft.margin_slack
    prep = time.perf_counter() - start
    t_train = time.perf_counter()
    threads = torch.get_num_threads()
    if config.threads:  # --threads also caps fine-tuning's torch threads (1 is fastest for small layers)
        torch.set_num_threads(config.threads)
    try:
        steps, loss_value = _train(net, opt, feats, y, pool, ft, gen, target, config.param_bound, device, keep)
    finally:
        torch.set_num_threads(threads)
    train_time = time.perf_counter() - t_train
    deltas = [d.detach().double().cpu().numpy() for d in net.deltas]
    repaired = apply_solution(model, config.layer, rows, deltas[0], deltas[1:])
    _pull_within(model, repaired, config.layer, config.param_bound)
    check = verify(model, repaired, images, labels, config, rows, device, check_patterns=False, preserve=preserve,
                   check_preserve=False)
    n_params = sum(d.numel() for d in net.deltas)
    result = RepairResult(status="error", message="", config=config, rows=None if rows is None else rows.tolist(),
                          verification=check, build_time=prep, solve_time=train_time,
                          solver=f"torch-{ft.optimizer}", solver_version=torch.__version__, formulation="ft",
                          iterations={"steps": steps}, n_vars=n_params, n_solves=1,
                          preserve_size=0 if preserve is None else len(preserve),
                          preserve_indices=None if preserve is None else preserve.indices.tolist(),
                          details={"ft": asdict(ft) | {"lr": lr}, "final_loss": loss_value,
                                   "pattern_flips": check.pattern_flips})
    fixed = _fixed_mask(repaired, images, labels, config.margin, device)
    result.fixed_count = int(fixed.sum())
    result.unfixable_indices = torch.nonzero(~fixed).flatten().tolist()
    result.unfixable_labels = labels[~fixed].tolist()
    if check.ok:
        result.status, result.model = "success", repaired
        result.message = (f"fine-tuning fixed all {check.total} edit images in {steps} steps (min margin "
                          f"{check.min_margin:.4f}, max |change| {check.max_abs_change:.4g})")
    elif check.within_bound and check.untouched_identical:
        result.status, result.model = "partial", repaired
        result.message = (f"fine-tuning fixed {result.fixed_count} of {check.total} edit images with the margin "
                          f"after {steps} steps (efficacy {check.efficacy:.1f}%)")
    else:
        result.status = "verify_failed"
        result.message = "fine-tuned model failed verification: " + "; ".join(check.reasons)
    result.total_time = time.perf_counter() - start
    log.info("fine-tuning %s in %.2fs: %s", result.status, result.total_time, result.message)
    return result


def _train(net, opt, feats, y, pool, ft: FTConfig, gen, target: float, bound: float, device,
           keep=None) -> tuple[int, float]:
    """Steps until every margin >= target (and every preserve margin >= its target) or ft.max_steps;
    returns (steps, final edit hinge loss). ``keep``: (features, labels, margin) of the preserve set."""
    steps = 0
    while True:
        logits = net(feats)                                                # (N, C)
        kept = keep is None or bool((margins_of(net(keep[0]), keep[1]) >= keep[2]).all())
        if (kept and bool((margins_of(logits, y) >= target).all())) or steps >= ft.max_steps:
            return steps, float(hinge(logits.detach(), y, target))
        loss = hinge(logits, y, target)
        if keep is not None:  # the preserve set: a hinge at the preserve margin, as the LP's rows ask
            loss = loss + hinge(net(keep[0]), keep[1], keep[2])
        if pool is not None:
            pick = torch.randint(len(pool[1]), (ft.replay,), generator=gen)
            loss = loss + ft.replay_weight * torch.nn.functional.cross_entropy(
                net(pool[0][pick].to(device)), pool[1][pick].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.clamp_(bound)
        steps += 1


@torch.no_grad()
def _fixed_mask(model, images, labels, margin: float, device) -> torch.Tensor:
    logits = model.to(device)(images.to(device)).cpu()
    model.cpu()
    return (logits.argmax(1) == labels) & (margins_of(logits, labels) >= margin)


@torch.no_grad()
def _pull_within(base, repaired, layer: str, bound: float) -> None:
    """Step float32 entries whose rounding put them just past the bound back toward the original value."""
    first = CLASSIFIER_LINEARS.index(layer)
    for name in CLASSIFIER_LINEARS[first:]:
        old_mod, new_mod = base.get_submodule(name), repaired.get_submodule(name)
        for attr in ("weight", "bias"):
            old, new = getattr(old_mod, attr), getattr(new_mod, attr)
            for _ in range(4):
                bad = (new.double() - old.double()).abs() > bound
                if not bad.any():
                    break
                new[bad] = torch.nextafter(new[bad], old[bad])
