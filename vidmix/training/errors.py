"""Errors a user causes and fixes (a config value, a damaged checkpoint): main.py prints them as
one line, without a traceback."""


class UserError(Exception):
    """A problem with what the user gave (config, files), with what to do about it."""
