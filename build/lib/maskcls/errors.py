"""Errors a user can act on. The CLI prints them as ``maskcls: error: ...`` and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (data, config, arguments), not a bug in maskcls.

    ``lines`` holds one message per problem; ``str()`` joins them.
    """

    def __init__(self, *lines: str):
        self.lines = [line for line in lines if line] or ["unknown error"]
        super().__init__("\n".join(self.lines))


class ConfigError(UserError):
    """A config file or override that does not fit the schema."""


class DataError(UserError):
    """A dataset folder that does not fit the competition layout."""


class Interrupted(UserError):
    """The user stopped a job (Ctrl-C); the message says how to continue. Exit code 130."""

    exit_code = 130


class WriteFailed(UserError):
    """A file could not be written (disk full, quota, permissions); the previous version is intact."""


class NonFiniteLoss(UserError):
    """Training diverged: the loss became NaN or infinite."""
