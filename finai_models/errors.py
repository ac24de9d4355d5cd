"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class FinAIError(Exception):
    """Base class: the message names the problem and where it is."""


class ConfigError(FinAIError):
    """A config file is missing, malformed, or has a missing/unknown key."""


class DataError(FinAIError):
    """Input data does not match the raw schema, or an output folder is not ours to write."""
