"""Repair an AlexNet on an edit set: features in float64 -> the APRNN LP -> write back -> verify in float32.

Only a repair whose float32 model passes :func:`verify` is reported as ``success``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ..errors import UsageError
from ..model import CLASSIFIER_LINEARS, AlexNet, resolve_layer
from ..solvers import SolveOptions, Status
from . import blocks
from .lp import OBJECTIVES, LPSpec, solve_repair_lp

log = logging.getLogger(__name__)

# "partial": a verified model that fixes only some edit images (max-fixed, or fine-tuning below 100% efficacy)
STATUSES = ("success", "partial", "infeasible", "time_limit", "verify_failed", "error")
MARGIN_RETRIES = 2  # re-solves with a larger margin slack when float32 rounding alone misses the margin


@dataclass
class RepairConfig:
    layer: str = "classifier.6"      # classifier Linear layer to edit (classifier.1 / .4 / .6)
    rows: str | None = None          # editable output rows of that layer: None = all, "a:b", "i,j,k", or a count N
    param_bound: float = 5.0         # every parameter change in [-B, B]
    margin: float = 2.0              # logit[target] - logit[other] >= margin on every edit image
    objective: str = "linf+l1n"      # see repair.lp.OBJECTIVES
    solver: str = "auto"             # auto / highs / gurobi
    algorithm: str = "auto"          # solver algorithm (see solvers.SolveOptions)
    formulation: str = "auto"        # see repair.lp.FORMULATIONS
    time_limit: float | None = None  # seconds for the whole solve
    threads: int | None = None       # solver threads
    method: str = "aprnn"            # "aprnn" (the provable LP repair) or "ft" (fine-tuning baseline)
    on_infeasible: str = "fail"      # "fail", or "max-fixed": repair the largest fixable subset (MILP)

    def validate(self) -> None:
        self.layer = resolve_layer(self.layer)
        if not np.isfinite(self.param_bound) or self.param_bound <= 0:
            raise UsageError(f"--param-bound must be a positive number (got {self.param_bound})")
        if not np.isfinite(self.margin) or self.margin < 0:
            raise UsageError(f"--margin must be >= 0 (got {self.margin})")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.method not in ("aprnn", "ft"):
            raise UsageError(f"unknown method {self.method!r}: choose aprnn or ft")
        if self.on_infeasible not in ("fail", "max-fixed"):
            raise UsageError(f"unknown --on-infeasible {self.on_infeasible!r}: choose fail or max-fixed")
        if self.time_limit is not None and self.time_limit <= 0:
            raise UsageError("--time-limit must be positive")


@dataclass
class Verification:
    ok: bool
    correct: int                 # edit images predicted as their target by the float32 model
    total: int
    min_margin: float            # smallest logit[target] - max other logit (float32)
    max_abs_change: float        # largest |new - old| over all parameters
    within_bound: bool
    untouched_identical: bool    # every parameter outside the editable set bit-identical
    pattern_flips: int           # hidden units after the edited layer whose ReLU state changed (|z0| > tol)
    reasons: list[str] = field(default_factory=list)
    fixed: int = 0               # edit images predicted as their target with at least the margin (of all ``total``)
    required: int = 0            # edit images the repair had to fix (all, or max-fixed's subset); min_margin is theirs

    @property
    def efficacy(self) -> float:
        return 100.0 * self.correct / self.total if self.total else float("nan")


@dataclass
class RepairResult:
    status: str                  # one of STATUSES
    message: str
    config: RepairConfig
    model: AlexNet | None = None           # the repaired float32 model (only when status == "success")
    verification: Verification | None = None
    rows: list[int] | None = None          # editable rows actually used
    objective: float | None = None
    build_time: float = 0.0                # seconds: features + encoding (everything but the solver)
    solve_time: float = 0.0                # seconds in the solver
    total_time: float = 0.0
    solver: str = ""
    solver_version: str = ""
    formulation: str = ""
    iterations: dict = field(default_factory=dict)
    n_vars: int = 0
    n_rows: int = 0
    nnz: int = 0
    n_solves: int = 0
    fixed_count: int | None = None               # edit images the returned model fixes (with the margin)
    unfixable_indices: list[int] | None = None   # positions in the edit set it does not fix (max-fixed: proven
    unfixable_labels: list[int] | None = None    #   unfixable within the bound when mip_gap == 0), and their targets
    details: dict = field(default_factory=dict)  # method-specific: FT steps/loss, the MILP's count, bound and gap

    @property
    def success(self) -> bool:
        return self.status == "success"

    def record(self) -> dict:
        """Everything but the model, as plain values for JSON / CSV."""
        out = {k: v for k, v in asdict(self).items() if k not in ("model", "verification", "config")}
        out["config"] = asdict(self.config)
        out["success"] = self.success
        if self.verification is not None:
            out["verification"] = asdict(self.verification)
            out.update(efficacy=self.verification.efficacy, min_margin=self.verification.min_margin,
                       max_abs_change=self.verification.max_abs_change)
        return out


@torch.no_grad()
def layer_inputs(model: AlexNet, images: torch.Tensor, layer: str, device="cpu", dtype=torch.float64,
                 batch_size: int = 256) -> torch.Tensor:
    """(N, in_k) input of ``layer`` for each image, computed by the frozen prefix in ``dtype`` (dropout off)."""
    net = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    stop = int(layer.split(".")[1])
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
    stop = int(layer.split(".")[1])
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


def lp_spec(model: AlexNet, images: torch.Tensor, labels: torch.Tensor, config: RepairConfig, rows, device="cpu"):
    """The LPSpec of ``config`` on these edit images (float64 features and weights).

    The features are the float32 prefix's (the saved model's own arithmetic), held in float64: a float64 prefix
    differs from what the saved float32 model computes by more than the LP's margin slack on some models.
    """
    start = CLASSIFIER_LINEARS.index(config.layer)
    linears = [model.get_submodule(name) for name in CLASSIFIER_LINEARS[start:]]
    inputs = layer_inputs(model, images, config.layer, device, dtype=torch.float32).double().numpy()
    return LPSpec(inputs=inputs, targets=labels.numpy().astype(np.int64),
                  weights=[m.weight.detach().double().cpu().numpy() for m in linears],
                  biases=[m.bias.detach().double().cpu().numpy() for m in linears],
                  rows=rows, param_bound=config.param_bound, margin=config.margin, objective=config.objective)


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


@torch.no_grad()
def verify(base: AlexNet, repaired: AlexNet, images, labels, config: RepairConfig, rows,
           device="cpu", pattern_tol: float = 1e-5, required=None, check_patterns: bool = True) -> Verification:
    """Independent float32 check of a repaired model (see ARCHITECTURE.md, "Verification").

    ``required``: positions of the edit images that must be fixed (default all; max-fixed passes its subset);
    margins and patterns are checked on those, efficacy and ``fixed`` count every image.
    ``check_patterns=False`` (fine-tuning) still counts pattern flips but does not fail on them.
    """
    base = base.cpu().float().eval()
    repaired = repaired.cpu().float().eval()
    reasons = []
    logits = repaired.to(device)(images.to(device)).cpu()
    repaired.cpu()
    labels = torch.as_tensor(labels, dtype=torch.long)
    target = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf")).max(1).values
    margins = target - others
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
        diff = (new_state[key].double() - old.double()).abs()
        mask = editable.get(key)
        if mask is None:
            identical &= bool(torch.equal(new_state[key], old))
        else:
            identical &= bool(torch.equal(new_state[key][~mask], old[~mask]))
            if diff.numel():
                max_change = max(max_change, float(diff.max()))
    within = max_change <= config.param_bound
    if not identical:
        reasons.append("a parameter outside the editable set changed")
    if not within:
        reasons.append(f"max |change| {max_change:.6g} exceeds the bound {config.param_bound}")
    flips = _pattern_flips(base, repaired, images[req], config.layer, pattern_tol, device) if len(req) else 0
    if flips and check_patterns:
        reasons.append(f"{flips} activation pattern(s) after {config.layer} changed")
    ok = not reasons
    return Verification(ok, correct, len(labels), min_margin, max_change, within, identical, flips, reasons,
                        fixed, len(req))


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
    stop = int(layer.split(".")[1])
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


def repair(model: AlexNet, images: torch.Tensor, labels: torch.Tensor, config: RepairConfig,
           device="cpu") -> RepairResult:
    """APRNN pointwise repair of ``model`` on (images (N,3,64,64), labels (N,)); never modifies ``model``."""
    config.validate()
    if config.method == "ft":
        from .finetune import finetune
        return finetune(model, images, labels, config, device=device)
    start = time.perf_counter()
    model, labels, rows = prepare(model, images, labels, config, device)
    spec = lp_spec(model, images, labels, config, rows, device)
    prep = time.perf_counter() - start
    options = SolveOptions(algorithm=config.algorithm, threads=config.threads, time_limit=config.time_limit)
    sol, repaired, check, spent = _solve_and_verify(model, images, labels, config, rows, spec, options, device)
    result = RepairResult(status="error", message="", config=config, rows=None if rows is None else rows.tolist(),
                          objective=sol.objective, build_time=prep + spent[0], solve_time=spent[1],
                          formulation=sol.formulation, iterations=dict(sol.iterations), n_vars=sol.n_vars,
                          n_rows=sol.n_rows, nnz=sol.nnz, n_solves=spent[2])
    if sol.solve is not None:
        result.solver, result.solver_version = sol.solve.backend, sol.solve.backend_version
    else:  # solved by the toolkit's own certified interior-point method (repair/fastlp.py), no external solver
        from .. import __version__
        result.solver, result.solver_version = f"builtin-{sol.formulation}", __version__
    if sol.status == Status.INFEASIBLE and config.on_infeasible == "max-fixed":
        from .maxfixed import repair_max_fixed
        repair_max_fixed(model, images, labels, config, rows, spec, result, device)
    elif sol.status != Status.OPTIMAL or sol.dW is None:
        result.status = {Status.INFEASIBLE: "infeasible", Status.TIME_LIMIT: "time_limit"}.get(sol.status, "error")
        result.message = _failure_message(result.status, config, sol.message)
    else:
        result.verification = check
        if check.ok:
            result.status, result.model = "success", repaired
            result.fixed_count, result.unfixable_indices, result.unfixable_labels = check.total, [], []
            result.message = (f"all {check.total} edit images fixed with min margin {check.min_margin:.4f} "
                              f"(max |change| {check.max_abs_change:.4g})")
        else:
            result.status, result.message = "verify_failed", "repaired model failed verification: " + "; ".join(
                check.reasons)
    result.total_time = time.perf_counter() - start
    log.info("repair %s in %.2fs: %s", result.status, result.total_time, result.message)
    return result


def _solve_and_verify(model, images, labels, config: RepairConfig, rows, spec, options, device):
    """Solve the LP and verify the float32 model; when that model misses the margin by rounding alone
    (everything else holds, shortfall tiny), re-solve with a larger margin slack, up to MARGIN_RETRIES times.

    Returns (LPSolution, repaired model or None, Verification or None, (build s, solve s, solves) summed).
    """
    spent, limit = [0.0, 0.0, 0], options.time_limit
    for attempt in range(MARGIN_RETRIES + 1):
        if limit is not None and attempt:  # re-solves share the one time limit
            options = replace(options, time_limit=max(limit - spent[0] - spent[1], 1e-3))
        sol = solve_repair_lp(spec, solver=config.solver, options=options, formulation=config.formulation)
        spent = [spent[0] + sol.build_time, spent[1] + sol.solve_time, spent[2] + sol.n_solves]
        if sol.status != Status.OPTIMAL or sol.dW is None:
            return sol, None, None, tuple(spent)
        repaired = apply_solution(model, config.layer, rows, sol.dW, sol.db)
        check = verify(model, repaired, images, labels, config, rows, device)
        if check.ok or attempt == MARGIN_RETRIES or not _rounding_only(check, config, spec):
            return sol, repaired, check, tuple(spent)
        shortfall = config.margin - check.min_margin
        spec.margin_slack = max(2 * spec.margin_slack, spec.margin_slack + 4 * shortfall)
        log.warning("the float32 model missed the margin by %.3g (rounding of large logits); re-solving with "
                    "margin slack %.3g", shortfall, spec.margin_slack)


def _rounding_only(check: Verification, config: RepairConfig, spec: LPSpec) -> bool:
    """Whether a failed check missed only the margin, by no more than float32 rounding noise at this logit scale."""
    if not (check.within_bound and check.untouched_identical and not check.pattern_flips):
        return False
    logit_scale = float(np.abs(blocks.original_network(spec).z0[-1]).max(initial=0.0))
    return 0 < config.margin - check.min_margin <= 1e-2 * max(1.0, config.margin) + 1e-5 * logit_scale


def _failure_message(status: str, config: RepairConfig, detail: str) -> str:
    if status == "infeasible":
        return (f"no repair exists within --param-bound {config.param_bound} and --margin {config.margin} on "
                f"{config.layer}: try a larger --param-bound, a smaller --margin, an earlier --layer, "
                f"or --on-infeasible max-fixed")
    if status == "time_limit":
        return f"the solver hit the time limit ({config.time_limit} s) before proving an optimal repair"
    return f"solver error: {detail or 'unknown'}"
