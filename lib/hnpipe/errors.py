"""Errors hnpipe raises on purpose: each message is one line a user can act on."""


class HnpipeError(Exception):
    """Base class: a refusal or failure with a one-line, user-facing message."""


class ParameterError(HnpipeError, ValueError):
    """A notebook parameter or params file value is unknown or ill-typed."""


class GuardError(HnpipeError):
    """A run or write was refused because environment, parameters or target disagree."""


class FetchError(HnpipeError):
    """The HN API could not be read (after retries), or answered something unusable."""


class WarehouseError(HnpipeError):
    """The warehouse refused or failed an operation."""


class WarehouseLockedError(WarehouseError):
    """The embedded database file stayed locked by another process past the wait."""
