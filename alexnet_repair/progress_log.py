"""The logger of the long steps' one-line progress: loading a split, building and solving the LP, each round of lazy
rows, verification, the test-set evaluation. Scripts show it on a terminal (cli.setup_logging)."""

import logging

progress = logging.getLogger("alexnet_repair.progress")
