"""Sweeps of repair configurations, one crash-safe CSV row per run (grid) or per iteration (stochastic chains).

Modules, lowest first: :mod:`.csvstore` (the CSV files), :mod:`.schema` (their schemas and columns),
:mod:`.featcache` (cached base-model activations), :mod:`.pool` (worker processes), :mod:`.settings` (the swept
dimensions and their defaults), :mod:`.setup` (sweep-wide settings and the work done once per sweep),
:mod:`.rows` (the fields grid and stochastic rows share), :mod:`.plan` (shards, resume, merge),
:mod:`.grid` and :mod:`.stochastic` (running them).
"""
