"""The tuneforge error hierarchy: every message says what is wrong and how to fix it."""


class TuneforgeError(Exception):
    """Base class; the CLI prints these without a traceback (use --debug for one)."""


class DataError(TuneforgeError):
    """Input data is unreadable or invalid (the message names file, row and column)."""


class ModelNotFoundError(TuneforgeError):
    """A base model or artifact cannot be found (the message says what to install or pass)."""


class ConfigError(TuneforgeError):
    """A configuration value is invalid."""


class ArtifactError(TuneforgeError):
    """A model artifact directory is missing files or was written by an incompatible version."""
