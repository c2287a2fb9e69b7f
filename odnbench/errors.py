"""Errors the CLI turns into one clear line (exit code 2) instead of a traceback."""

import difflib


class OdnbenchError(Exception):
    """A user-facing error: the message alone must say what was wrong and what is allowed."""


class UnknownNameError(OdnbenchError, KeyError):
    def __init__(self, kind: str, name: str, choices):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        close = difflib.get_close_matches(name, self.choices, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        allowed = ", ".join(self.choices) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}.{hint} Available: {allowed}.")

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return self.args[0]


class OdnbenchDeprecationWarning(DeprecationWarning):
    """Plugin API that still works but goes away in the next minor version (docs/plugins.md,
    "Deprecation policy"). Shown by default (``import odnbench`` adds the filter), unlike
    Python's DeprecationWarning, since the code that triggers it is a plugin, not ``__main__``."""


class PluginError(OdnbenchError):
    """A plugin failed to load or broke the contract."""


class DataError(OdnbenchError):
    """Dataset files or tensors that are damaged or not what the dataset declares."""


class DataNotFoundError(DataError):
    """Dataset files are missing and could not be downloaded."""


class MissingDependencyError(OdnbenchError):
    """A cell needs another method's result (e.g. prune needs a full-depth model) that is not there."""


class DivergedError(OdnbenchError):
    """Training produced a NaN or infinite loss, or a model NaN values: the cell fails instead of
    storing a broken model."""


class CorruptResultError(OdnbenchError):
    """A result.json that cannot be read as a result (truncated, not JSON, not an object)."""


class ModelFileError(OdnbenchError):
    """A stored model that cannot (or must not) be loaded: the message says which and why."""


class UnstorableModelError(OdnbenchError):
    """A model that the safe format cannot store (a class outside the allowlist, tied weights, ...)."""
