"""Errors that carry their kind, so callers can tell retry from give-up.

A sync keeps the most severe error it saw; anything fatal stops deletes.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""

    transient: bool = False


class ConfigError(SyncdError):
    """The configuration is invalid; the message names the location at fault."""


class NotFound(SyncdError, FileNotFoundError):
    """The bucket, container, folder or object does not exist."""


class PermissionDenied(SyncdError, PermissionError):
    """Credentials were refused or lack a permission."""


class PreconditionFailed(SyncdError):
    """A conditional operation found the object changed."""


class Unsupported(SyncdError):
    """The store or catalog cannot do what was asked."""


class TransientError(SyncdError):
    """A retryable failure (throttling, timeout, reset) that outlived its retries."""

    transient = True


class CatalogError(SyncdError):
    """The catalog cannot do what was asked; the message names the catalog and what to do."""


class CatalogUnavailable(CatalogError):
    """The catalog cannot be reached now (a lost connection, a locked or full disk)."""

    transient = True


class LeaseLost(SyncdError):
    """Another replica claimed the lease this work ran under: its writes are refused."""

    transient = True


class Stopped(SyncdError):
    """Work was asked to stop (the daemon is shutting down) and ended between batches."""

    transient = True


class ListingOrderError(SyncdError):
    """A listing yielded a key that is not strictly greater than the one before."""

    def __init__(self, previous: str, key: str) -> None:
        super().__init__(f"listing out of order: {key!r} came after {previous!r}")
        self.previous = previous
        self.key = key


class SafetyStop(SyncdError):
    """The reconciler refused to delete; nothing was deleted."""
