"""APRNN provable repair: the LP (``lp``), its fast formulations, and the model-level engine (``engine``)."""

from .engine import RepairConfig, RepairResult, Verification, apply_solution, layer_inputs, repair, verify

__all__ = ["RepairConfig", "RepairResult", "Verification", "apply_solution", "layer_inputs", "repair", "verify"]
