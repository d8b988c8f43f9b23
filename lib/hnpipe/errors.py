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


def one_line(error: object, limit: int | None = None) -> str:
    """An error (or any value) as one line: its text with every run of whitespace, newlines
    included, collapsed to one space; the type's name when the text is empty; cut to `limit`
    characters with an ellipsis. The one helper every one-line message goes through."""
    text = " ".join(str(error).split())
    if not text:
        text = type(error).__name__ if isinstance(error, BaseException) else repr(error)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def printable(text: str) -> str:
    """`text` on one line with terminal control characters escaped (\\x1b, \\n, ...)."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in str(text))
