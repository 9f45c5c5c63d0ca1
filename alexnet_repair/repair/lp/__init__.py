"""The APRNN repair LP (pure numpy / scipy; no torch): its spec (``spec``), the original network's
algebra (``network``), the row blocks and column layout (``rows``) and three formulations of the same
optimum: ``straightforward`` (reference), ``colgen`` (column generation) and ``ipm`` (the certified
structured interior-point method, ``ipm/``). :func:`solve_repair_lp` picks one.
"""

from __future__ import annotations

import logging

import numpy as np

from alexnet_repair.errors import UsageError
from alexnet_repair.repair.lp.colgen import solve_colgen
from alexnet_repair.repair.lp.ipm.certified import ipm_applicable, solve_certified
from alexnet_repair.repair.lp.network import original_network
from alexnet_repair.repair.lp.spec import FORMULATIONS, OBJECTIVES, LPSolution, LPSpec
from alexnet_repair.repair.lp.straightforward import solve_straightforward
from alexnet_repair.solvers import SolveOptions

log = logging.getLogger(__name__)

__all__ = ["FORMULATIONS", "OBJECTIVES", "LPSolution", "LPSpec", "solve_repair_lp"]


def solve_repair_lp(spec: LPSpec, solver: str = "auto", options: SolveOptions | None = None,
                    formulation: str = "auto") -> LPSolution:
    """Solve the repair LP of ``spec``; the returned dW/db satisfy every row of the exact LP.

    formulation: ``straightforward`` (reference, slow at scale), ``colgen`` (column generation over dW with
    lazy rows), ``ipm`` (the certified structured IPM where it applies, else colgen) and ``auto`` = ipm with
    colgen as the exact fallback when the IPM's point is not certified. All give the same optimum.
    """
    if formulation not in FORMULATIONS:
        raise UsageError(f"unknown formulation {formulation!r}; choose one of {', '.join(FORMULATIONS)}")
    options = options or SolveOptions()
    net = original_network(spec)
    if formulation == "straightforward":
        return solve_straightforward(spec, net, solver, options)
    if formulation in ("ipm", "auto") and ipm_applicable(spec):
        try:
            return solve_certified(spec, net, solver=solver, options=options)
        except np.linalg.LinAlgError as err:  # a numerically singular normal system: the exact path still works
            log.warning("structured IPM failed (%s): falling back to column generation", err)
    if formulation == "ipm":
        log.info("the ipm formulation does not cover this case (objective %s, %d layers): using colgen",
                 spec.objective, len(spec.weights))
    return solve_colgen(spec, net, solver=solver, options=options)
