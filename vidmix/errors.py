"""Errors a user causes and fixes (a config value, a missing dataset, a damaged checkpoint, a bad
video): main.py prints them as one line, without a traceback (`--traceback` shows it)."""


class UserError(Exception):
    """A problem with what the user gave (config, files), with what to do about it."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the run needs is not there (a dataset not built, a run not trained)."""


class UnreadableVideoError(UserError, ValueError):
    """A video given to predict that cannot be decoded (not a video, truncated, no frames)."""


class ConfigError(UserError, ValueError):
    """A config value out of its valid range (a user's mistake, reported without a traceback)."""
