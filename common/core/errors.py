"""User-facing errors: the CLI prints their message and exits with code 2, never a traceback."""


class UserError(Exception):
    """Bad input the user can fix (a path, a flag, a missing dataset or checkpoint)."""

    exit_code = 2


class DataError(UserError):
    """The requested data cannot be found or read."""


class CheckpointError(UserError):
    """A checkpoint is missing, incomplete or does not match the requested model."""


class TrainingDiverged(Exception):
    """The loss became non-finite; the run stops and earlier results are kept."""

    exit_code = 1
