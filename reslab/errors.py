"""Exception types for user mistakes.

One type per kind of mistake, all deriving from :class:`ReslabError`. Messages say what was
wrong (naming the file or argument), what was expected, and what to do. The CLI prints them as
one line on stderr and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class ReslabError(Exception):
    """Base class of every error reslab raises for bad input or a bad environment."""


class ModelConfigError(ReslabError, ValueError):
    """Unknown model name, invalid depth, or an option a model does not support."""


class DatasetError(ReslabError, ValueError):
    """A dataset is missing, corrupt, or malformed (files, shapes, dtypes, labels)."""


class CheckpointError(ReslabError, ValueError):
    """A checkpoint or run directory is missing, corrupt, or does not match the model."""


class ConfigError(ReslabError, ValueError):
    """A recipe, config file, or command-line setting is invalid."""


class TrainingError(ReslabError, RuntimeError):
    """Training cannot go on (non-finite loss, out of memory); the last good checkpoint stays."""


class AnalysisError(ReslabError, ValueError):
    """An analysis was asked for something it cannot compute with the inputs given."""
