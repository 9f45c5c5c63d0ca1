"""Errors a user can cause. Scripts print ``str(err)`` as one line and exit non-zero."""


class AlexRepairError(Exception):
    """Base class: a one-line, user-facing message. ``exit_code`` is what a script returns."""

    exit_code = 2


class UsageError(AlexRepairError):
    """Bad arguments or option combinations."""


class DataError(AlexRepairError):
    """Missing, corrupt or mismatched dataset / edit-set files."""


class CheckpointError(AlexRepairError):
    """A model checkpoint that cannot be loaded or does not fit the architecture."""


class SolverError(AlexRepairError):
    """A solver backend is missing, unlicensed or failed in a way the user can act on."""
