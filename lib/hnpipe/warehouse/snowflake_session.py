"""What a Snowflake session is opened with, apart from the credentials (hnpipe.credentials):
its query tag, its timeouts, and the caller's environ kept without showing its values.

STATEMENT_TIMEOUT_IN_SECONDS is a session parameter
(https://docs.snowflake.com/en/sql-reference/parameters#statement-timeout-in-seconds); the
connector's login_timeout bounds a login
(https://docs.snowflake.com/en/developer-guide/python-connector/python-connector-api).
"""

from __future__ import annotations

import collections.abc
import json
import re
from typing import Any, Iterator, Mapping

from hnpipe.errors import WarehouseError

QUERY_TAG_MAX = 2000  # Snowflake's limit on QUERY_TAG, in characters
STATEMENT_TIMEOUT_VARIABLE = "HNPIPE_SNOWFLAKE_STATEMENT_TIMEOUT_S"
LOGIN_TIMEOUT_VARIABLE = "HNPIPE_SNOWFLAKE_LOGIN_TIMEOUT_S"


def timeout_seconds(environ: Mapping[str, str], name: str, default: int, most: int) -> int:
    """A timeout in whole seconds from `name`, else `default`; one clear line when it is bad."""
    raw = environ.get(name)
    if raw is None or not str(raw).strip():
        return default
    text = str(raw).strip()
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= most:
        raise WarehouseError(f"{name}={raw!r} is not allowed: use whole seconds from 1 to {most}")
    return int(text)


def query_tag_json(query_tag: Mapping[str, Any] | None) -> str | None:
    if query_tag is None:
        return None
    if not isinstance(query_tag, Mapping) or not all(isinstance(key, str) for key in query_tag):
        raise WarehouseError(f"invalid query_tag {query_tag!r}: use a mapping with string keys")
    text = json.dumps(dict(query_tag), sort_keys=True, separators=(",", ":"), default=str)
    if len(text) > QUERY_TAG_MAX:
        raise WarehouseError(
            f"query_tag is {len(text)} characters as JSON; Snowflake allows at most {QUERY_TAG_MAX}"
        )
    return text


class HiddenEnviron(collections.abc.Mapping):
    """The caller's environ, kept for connecting, that never shows its values in a repr."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, key: str) -> str:
        return self._environ[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def __repr__(self) -> str:
        return f"<environ: {len(self)} variables>"
