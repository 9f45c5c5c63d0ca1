"""Sweeps of repair configurations, one crash-safe CSV row per run (grid) or per iteration (stochastic chains).

Modules, lowest first: :mod:`.csvstore` (the CSV files), :mod:`.schema` (their schemas and columns),
:mod:`.claims` (a lock per run in progress, so several runners share one CSV), :mod:`.progress` (bar or log lines,
time estimates), :class:`alexnet_repair.evaluate.FeatureCache` (cached base-model activations), :mod:`.pool` (worker processes),
:mod:`.settings` (the swept dimensions and their defaults), :mod:`.setup` (sweep-wide settings and the work done
once per sweep), :mod:`.rows` (the fields grid and stochastic rows share), :mod:`.plan` (shards, resume, merge),
:mod:`.grid` and :mod:`.stochastic` (running them); :mod:`.jobs` (shards as submitit tasks, Slurm or local),
:mod:`.submission` (the record of a submitted sweep, status counts, collect) and :mod:`.submit` (submitting and
following one).
"""
