"""Bounds on what one HN API answer may cost: bytes on the wire, bytes after decompression, JSON depth.

    body = BoundedBody(limit=2**20, content_encoding="gzip, gzip")
    body.feed(chunk)            # per chunk as it arrives; raises AnswerTooLarge past the limit
    data = body.finish()        # the decoded bytes (raises TruncatedAnswer for a cut-off gzip)
    value = parse_json(data)    # raises TooDeep for JSON deeper than an item can be

The same limit applies to the bytes as they arrive and to the output of every decoding layer,
so a gzip bomb (even gzip inside gzip) is stopped after at most `limit` bytes of output and never
expands whole. Why the default is 1 MiB: docs/performance.md ("Bounded answers").
"""

from __future__ import annotations

import json
import zlib

import orjson

DEFAULT_MAX_ANSWER_BYTES = 1 << 20  # 1 MiB: over 20x the largest HN items (tens of KB)
MAX_CODINGS = 2  # "gzip, gzip" at most: nothing legitimate stacks more
# An HN item is an object of values and lists of numbers: depth 2. Deeper JSON is refused
# (_check_depth's two loops are this number).
MAX_ITEM_DEPTH = 2
_STEP = 1 << 16  # the most one decompression call may produce


class AnswerTooLarge(Exception):
    """The answer is (or declares itself) larger than the limit."""


class TruncatedAnswer(Exception):
    """A compressed answer ended before its compressed stream did (worth retrying)."""


class BadEncoding(Exception):
    """A Content-Encoding the client never asked for, or too many of them."""


class TooDeep(Exception):
    """JSON nested deeper than an HN item can be."""


def limit_text(limit: int) -> str:
    return f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit:,} bytes"


class BoundedBody:
    """An answer's body, decoded as it arrives, never holding more than `limit` bytes per layer."""

    def __init__(self, limit: int, content_encoding: str | None = None) -> None:
        self.limit = limit
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > MAX_CODINGS:
            raise BadEncoding(f"Content-Encoding {content_encoding!r} stacks {len(codings)} codings "
                              f"(at most {MAX_CODINGS})")
        unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise BadEncoding(f"Content-Encoding {unknown[0]!r} was not asked for (gzip or deflate only)")
        # Decode in the reverse order of application; wbits 47 reads gzip or zlib, 15 zlib.
        self._layers = [zlib.decompressobj(47 if c != "deflate" else 15) for c in reversed(codings)]
        self._produced = [0] * (len(self._layers) + 1)  # bytes out of each layer; [0] = the wire
        self._parts: list[bytes] = []

    @property
    def wire_bytes(self) -> int:
        return self._produced[0]

    def feed(self, chunk: bytes) -> None:
        self._count(0, len(chunk))
        self._push(0, chunk)

    def finish(self) -> bytes:
        for index, layer in enumerate(self._layers):
            tail = layer.flush(_STEP)
            while tail:
                self._count(index + 1, len(tail))
                self._push(index + 1, tail)
                tail = layer.flush(_STEP) if not layer.eof else b""
            if not layer.eof:
                raise TruncatedAnswer("the compressed answer ended early")
        return b"".join(self._parts)

    def _count(self, layer: int, size: int) -> None:
        self._produced[layer] += size
        if self._produced[layer] > self.limit:
            where = "on the wire" if layer == 0 else "after decompression"
            raise AnswerTooLarge(f"more than {limit_text(self.limit)} {where}")

    def _push(self, index: int, data: bytes) -> None:
        """Pass `data` through layers index.. to the parts, a bounded step at a time."""
        if index == len(self._layers):
            self._parts.append(data)
            return
        layer = self._layers[index]
        while data:
            try:
                out = layer.decompress(data, _STEP)
            except zlib.error as error:
                raise TruncatedAnswer(f"the compressed answer is damaged ({error})") from None
            data = layer.unconsumed_tail
            if out:
                self._count(index + 1, len(out))
                self._push(index + 1, out)
            elif layer.eof:
                return  # bytes after the end of the compressed stream are ignored


def parse_json(data: bytes) -> object:
    """`data` as JSON, at most an item's depth. Raises TooDeep, or ValueError for bad JSON.

    orjson parses without recursing deeper than 1,024 levels; its "depth limit exceeded" is
    what a deep item gives. json (the standard library) is the fallback for what orjson refuses
    and the API does send: a lone UTF-16 surrogate ("\\ud83d"), which hn.repair_text mends.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if "depth" in str(error) or "recursion" in str(error):
            raise TooDeep("nested more than 1,024 levels deep") from None
        try:
            value = json.loads(data)
        except RecursionError:  # deep after a lone surrogate; the C scanner stops cleanly
            raise TooDeep("nested too deep to parse") from None
    _check_depth(value)
    return value


def _check_depth(value: object) -> None:
    """Refuse a value nested deeper than MAX_ITEM_DEPTH (2): an object or list whose members are
    values, or lists or objects of values. Two plain loops: no recursion to blow up."""
    members = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for member in members:
        if isinstance(member, (dict, list)):
            for inner in (member.values() if isinstance(member, dict) else member):
                if isinstance(inner, (dict, list)):
                    raise TooDeep(f"nested deeper than {MAX_ITEM_DEPTH} levels (an HN item is an object of "
                                  "values and lists of numbers)")
