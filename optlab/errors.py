"""Errors that the CLI turns into one clear line and exit code 2 (no traceback)."""


class OptlabError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message names the file and the key path when there is one, and says what would be valid.
    """


class ConfigError(OptlabError):
    """The config file, an override or a value in it is invalid."""


class RunDirError(OptlabError):
    """A run directory is missing, unreadable, or not an optlab run."""
