"""`UserError`: a mistake the user can fix — a config value, a file, a record, a command-line flag.

The command line reports one as a single line naming what is wrong and exits with code 2; every other
exception is a bug and keeps its traceback. `--debug` (or `H2OVL_DEBUG=1`) shows tracebacks for user
errors too. Imports only the standard library, so every layer can raise it.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """Something the user gave is wrong; the message names it and says what to do."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing, unreadable, or holds more than weights and plain data."""


def read_text_file(path: str | os.PathLike, error: type[UserError], what: str) -> str:
    """The UTF-8 text of a file the user named; an unreadable or non-UTF-8 file raises `error` naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        raise error(
            f"{path}: {what} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from None
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None


class RunFailed(Exception):
    """A run this command started or took part in failed, and what happened is reported elsewhere (a log, a
    peer's error): the command ends in one line saying where, exit code 1. Not the user's mistake."""


class RankLost(RunFailed):
    """Another process of a distributed run died or stopped answering within the collective timeout; this
    one stopped too. Not the user's mistake, yet a traceback of the collective that noticed it tells nothing
    more: the command ends in one line naming the rank, exit code 1."""


class Stopped(Exception):
    """The command was told to stop (a signal) and stopped cleanly; it exits with 128 + the signal number."""

    def __init__(self, signum: int, detail: str) -> None:
        super().__init__(detail)
        self.signum = signum


class SettingError(UserError, ValueError):
    """A setting (config key, flag) whose value cannot work with the others or with the run it resumes."""


class SpecError(UserError, ValueError):
    """A sweep spec that cannot be run; the message names the file and key."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss of an optimizer step is NaN or infinite (`model.optim.nonfinite_loss: stop`): the run ends naming
    the step and its samples; the fix is a setting (learning rate, clipping, skipping such steps)."""


class OutOfMemory(UserError, RuntimeError):
    """The accelerator ran out of memory; the message names the settings that decide how much a step needs."""
