"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""


class AdlabError(Exception):
    """A problem with the user's input (config, data, checkpoint, paths), not a bug in adlab."""


class ConfigError(AdlabError):
    """Invalid configuration file or override."""


class DataError(AdlabError):
    """Missing, empty, corrupt or inconsistent data."""


class CheckpointError(AdlabError):
    """A checkpoint that cannot be read or does not fit the model."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after saving what it had; the message says how to resume."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class WorkerStopped(Interrupted):
    """A study worker stopped by a signal (scancel, preemption, a time limit) or a lost queue; the
    message says what became of the run it held."""
