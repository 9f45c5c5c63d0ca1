"""Repair methods on a model: ``aprnn`` (the provable LP), ``finetune`` (the baseline) and ``maxfixed``
(best effort when no repair of every image exists). They import types, bridge and verify only."""
