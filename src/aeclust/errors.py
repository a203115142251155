"""Errors that reach the user as one line (the CLI prints them and exits with code 2)."""

from __future__ import annotations


class AeclustError(Exception):
    """Base class for every error caused by the user's input or settings."""


class InputError(AeclustError, ValueError):
    """Bad data: a missing or unreadable file, an array of the wrong shape, bad labels."""


class ConfigError(AeclustError, ValueError):
    """A bad setting: an unknown model or stage name, k out of range, a wrong value."""


class CheckpointError(AeclustError):
    """A checkpoint that does not belong to this run or this version of aeclust."""


class RunDirError(AeclustError):
    """A run directory that exists already (and would be overwritten) or is not a run."""


def unknown_name(kind: str, name: str, known: "list[str] | tuple[str, ...]") -> ConfigError:
    """The error for a name that is not in a registry, listing the names that are."""
    return ConfigError(f"unknown {kind} {name!r}; expected one of: {', '.join(sorted(known))}")
