"""The bundled Hacker News sample, and a loopback HTTP server that serves it like the live API.

Three parts:

* `generate_sample()` makes a deterministic, realistic run of consecutive HN item ids in the
  exact JSON shape of https://hacker-news.firebaseio.com/v0/item/<id>.json (comments in deep
  threads, stories, Ask/Show HN, jobs, polls with their options, deleted and dead items, ids
  that answer `null`, HTML entities, non-ASCII text).
* `write_sample()` / `load_sample()` store it as `hnpipe/data/hn_sample.json.gz`
  (regenerate with `python scripts/make_sample.py`; the bytes are reproducible).
* `SampleServer` serves any such items over real HTTP on 127.0.0.1, with optional latency and
  injected faults (500, 429, timeouts, dropped connections, truncated bodies) so the client's
  retry logic is exercised against real sockets.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import json
import math
import random
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping

from hnpipe.errors import ParameterError

Item = dict | None

DEFAULT_N_IDS = 6000
DEFAULT_MAX_ITEM = 46_000_000
DEFAULT_SEED = 20261121
SAMPLE_FILE = "hn_sample.json.gz"

# The six items the HN API README shows (https://github.com/HackerNews/API).
DOCS_ITEM_IDS = (8863, 2921983, 121003, 192327, 126809, 160705)

# --------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------

# Item 8863 was posted at 1175714200; ids since then arrive about every 12.78 s on average.
# Anchoring the first time to this line keeps timestamps plausible for any max_item.
_TIME_ANCHOR_ID = 8863
_TIME_ANCHOR = 1175714200
_CENTISECONDS_PER_ID = 1278

# Share of ids per kind (the rest are comments, ~80%).
_P_NULL = 0.008
_P_JOB = 0.005
_P_POLL = 0.0025
_P_STORY = 0.15
_P_DELETED = 0.03
_P_DEAD = 0.02
_P_OUTSIDE_PARENT = 0.04  # a reply to something older than the sample
_P_REPLY_TO_STORY = 0.3  # otherwise a reply to a comment: this is what builds deep threads

# Text is stored the way HN sends it: HTML with &#x27; &quot; &gt; &#x2F; entities.
_SENTENCES = (
    "I don&#x27;t think that&#x27;s how it works in practice.",
    "We tried this at my last job and it didn&#x27;t scale past a few hundred users.",
    "The article glosses over the hard part, which is migrations.",
    "This is the &quot;boring technology&quot; argument again, and I mostly agree with it.",
    "Has anyone benchmarked this against plain Postgres?",
    "The real cost is operational, not the license.",
    "It&#x27;s a trade-off: latency for throughput.",
    "Caching is easy; invalidation is where it gets you.",
    "I&#x27;d love to see the numbers behind the claim that it&#x27;s 10x faster.",
    "Their pricing page says 5 &lt; 10 users is free, which is generous.",
    "Tom &amp; Jerry style debugging: chase the bug until it chases you.",
    "Café culture in Zürich is über-expensive, but the trains run on time.",
    "Naïve résumé parsers break on names like Zoë and Łukasz.",
    "日本語のドキュメントは充実しています。",
    "The Straße naming rules in German OSM data are a nice edge case.",
    "This shipped on a Friday 🚀 and nobody noticed 🙃",
    "Emoji in filenames 📁 still break half the tooling I use.",
    "Ça dépend, as the French say.",
    "Rust&#x27;s borrow checker caught exactly this class of bug for us.",
    "SQLite is underrated for this kind of workload.",
    "Static typing helped our team more than any test suite.",
    "Most of the complexity is accidental, not essential.",
    "Reading the source was faster than reading the docs.",
    "Our on-call rotation got much calmer after we added backpressure.",
    "The paper is from 1978 and still relevant.",
    "I think you&#x27;re conflating correlation with causation here.",
    "Source: I worked on this system for three years.",
    "Same experience here, but with Kubernetes instead.",
)
_QUOTES = (
    "&gt; it&#x27;s 10x faster",
    "&gt; nobody uses this in production",
    "&gt; The real cost is operational",
    "&gt; just use a queue",
)
_CODE = (
    "<pre><code>  SELECT id, title FROM items WHERE type = &#x27;story&#x27;;\n</code></pre>",
    "<pre><code>  for i in range(10):\n      print(i)\n</code></pre>",
    "<pre><code>  curl -s https:&#x2F;&#x2F;example.com&#x2F;api | jq .\n</code></pre>",
)
_DOMAINS = (
    "github.com", "arxiv.org", "nytimes.com", "blog.example.com", "lwn.net", "theverge.com",
    "bbc.co.uk", "martinfowler.com", "zeit.de", "nhk.or.jp", "en.wikipedia.org", "acm.org",
    "substack.com", "medium.com", "rust-lang.org", "python.org", "sqlite.org", "postgresql.org",
)
_PATH_WORDS = (
    "posts", "2025", "blog", "docs", "release-notes", "paper", "why-we-left", "deep-dive",
    "introducing", "v2", "announcement", "benchmarks", "history",
)
_TOPICS = (
    "Postgres", "SQLite", "Rust", "Python 3.14", "WebAssembly", "Kubernetes", "DuckDB", "Linux",
    "a 1980s mainframe", "RISC-V", "the Go scheduler", "LLM agents", "CRDTs", "Zig", "htmx",
    "OpenStreetMap", "Emacs", "the Zürich tram network", "日本語 input methods", "FreeBSD",
)
_STORY_TITLES = (
    "{topic} is faster than you think",
    "Why we moved from {topic} to {topic2}",
    "The hidden cost of {topic}",
    "A deep dive into {topic}",
    "{topic}: the good parts",
    "How {topic} works under the hood",
    "Lessons from running {topic} in production for 5 years",
    "I rewrote our backend in {topic}",
    "The \"{topic}\" paper, explained",
    "What's new in {topic}",
)
_ASK_TITLES = (
    "Ask HN: How do you learn {topic}?",
    "Ask HN: Is {topic} worth it in 2025?",
    "Ask HN: What's your setup for {topic}?",
    "Ask HN: Who is hiring? (November 2025)",
    "Ask HN: Best resources for {topic}?",
)
_SHOW_TITLES = (
    "Show HN: I built a {topic} visualizer",
    "Show HN: A tiny {topic} clone in 500 lines",
    "Show HN: {topic} in the browser – no install needed",
    "Show HN: My weekend project, a CLI for {topic}",
)
_OTHER_TEXT_TITLES = (
    "Tell HN: {topic} saved my weekend",
    "Launch HN: Acme (YC F25) – {topic} for small teams",
    "Tell HN: The {topic} outage is over",
)
_COMPANIES = ("Acme", "Zentry", "Nordlicht", "Kōbō Labs", "Fjordly", "Quill", "Parsec", "Ostara")
_ROLES = ("Founding Engineer", "Senior Data Engineer", "Product Designer", "SRE", "ML Engineer")
_POLL_QUESTIONS = (
    "Poll: Which editor do you use?",
    "Poll: How many hours a week do you code outside work?",
    "Poll: Tabs or spaces?",
    "Poll: Which database would you pick for a new project?",
)
_POLL_OPTIONS = (
    "Vim", "Emacs", "VS Code", "JetBrains", "Something else", "0–5", "5–10", "More than 10",
    "Tabs", "Spaces", "Postgres", "SQLite", "MySQL", "None of the above 🙂",
)
_SYLLABLES = (
    "ka", "zu", "mi", "ro", "te", "an", "el", "po", "qi", "shi", "dev", "hack", "code", "byte",
    "lin", "ux", "ops", "fox", "owl", "grep", "null", "tex", "vim",
)


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def generate_sample(
    n_ids: int = DEFAULT_N_IDS, max_item: int = DEFAULT_MAX_ITEM, seed: int = DEFAULT_SEED
) -> dict[int, Item]:
    """Items for the `n_ids` consecutive ids ending at `max_item`, shaped like the live API.

    Deterministic: the same arguments give the same result (only random.Random(seed) is used).
    Each value is the decoded JSON the live API would answer for that id, or None for `null`.
    """
    _check_int(n_ids, "n_ids", 1)
    _check_int(max_item, "max_item", n_ids)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    return _Generator(random.Random(seed), max_item - n_ids + 1, max_item).run()


class _Generator:
    """One pass over the ids in order; later items reply to earlier ones, as on HN."""

    def __init__(self, rng: random.Random, first_id: int, last_id: int) -> None:
        self.rng = rng
        self.first_id = first_id
        self.last_id = last_id
        self.items: dict[int, Item] = {}
        self.threads: list[int] = []  # live stories and polls that can get comments
        self.comments: list[int] = []  # live comments that can get replies
        self.root_of: dict[int, int] = {}  # comment id -> its story/poll id, when in sample
        self.users = sorted({self._username() for _ in range(1500)})
        self.time = _TIME_ANCHOR + (first_id - _TIME_ANCHOR_ID) * _CENTISECONDS_PER_ID // 100

    def run(self) -> dict[int, Item]:
        rng = self.rng
        item_id = self.first_id
        while item_id <= self.last_id:
            self.time += 1 + int(rng.random() * 10)
            r = rng.random()
            if r < _P_NULL:
                self.items[item_id] = None
            elif r < _P_NULL + _P_JOB:
                self.items[item_id] = self._job(item_id)
            elif r < _P_NULL + _P_JOB + _P_POLL and self.last_id - item_id >= 5:
                item_id = self._poll(item_id)  # also writes its options; returns the last id used
            elif r < _P_NULL + _P_JOB + _P_POLL + _P_STORY:
                self.items[item_id] = self._story(item_id)
            else:
                self.items[item_id] = self._comment(item_id)
            item_id += 1
        for item in self.items.values():
            # HN lists kids in ranked display order, not by id.
            if item and len(item.get("kids", ())) > 1:
                rng.shuffle(item["kids"])
        return self.items

    # -- helpers ------------------------------------------------------------------------

    def _username(self) -> str:
        rng = self.rng
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.4:
            name += str(rng.randint(1, 9999))
        elif rng.random() < 0.1:
            name += rng.choice(("_", "-")) + rng.choice(_SYLLABLES)
        return name

    def _by(self) -> str:
        return self.users[int(self.rng.random() * len(self.users))]

    def _score(self) -> int:
        # Heavy-tailed like HN: most stories stay at 1-3 points, a few reach hundreds.
        return min(3000, int(self.rng.paretovariate(1.3)))

    def _url(self) -> str:
        rng = self.rng
        path = "/".join(rng.choice(_PATH_WORDS) for _ in range(rng.randint(1, 3)))
        return f"https://{rng.choice(_DOMAINS)}/{path}"

    def _link(self) -> str:
        href = self._url().replace("/", "&#x2F;")
        return f'<a href="{href}" rel="nofollow">{href}</a>'

    def _text(self) -> str:
        rng = self.rng
        paragraphs = []
        for p in range(1 + int(rng.random() * rng.random() * 4)):
            r = rng.random()
            if p == 0 and r < 0.1:
                paragraphs.append(rng.choice(_QUOTES))
            elif r < 0.05:
                paragraphs.append(rng.choice(_CODE))
                continue
            sentences = [rng.choice(_SENTENCES) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.08:
                sentences.append("See " + self._link())
            paragraphs.append(" ".join(sentences))
        return "<p>".join(paragraphs)

    def _title(self, templates: tuple[str, ...]) -> str:
        rng = self.rng
        return rng.choice(templates).format(topic=rng.choice(_TOPICS), topic2=rng.choice(_TOPICS))

    def _deleted(self, item_id: int, kind: str) -> dict:
        # The live API keeps only these fields of a deleted item.
        return {"deleted": True, "id": item_id, "time": self.time, "type": kind}

    def _pick_recent(self, ids: list[int], window: int) -> int:
        # Squaring skews the pick towards the newest ids: replies cluster on fresh threads.
        offset = int(self.rng.random() ** 2 * min(window, len(ids)))
        return ids[len(ids) - 1 - offset]

    # -- item kinds ---------------------------------------------------------------------

    def _comment(self, item_id: int) -> dict:
        rng = self.rng
        if rng.random() < _P_DELETED:
            return self._deleted(item_id, "comment")
        r = rng.random()
        root = None
        can_reply_outside = self.first_id > 1
        if not (can_reply_outside or self.threads or self.comments):
            return self._story(item_id)  # id 1: nothing exists yet to reply to
        if (r < _P_OUTSIDE_PARENT and can_reply_outside) or not (self.threads or self.comments):
            parent = max(1, self.first_id - 1 - int(rng.random() * 200_000))
        elif (r < _P_OUTSIDE_PARENT + _P_REPLY_TO_STORY and self.threads) or not self.comments:
            parent = root = self._pick_recent(self.threads, 300)
        else:
            parent = self._pick_recent(self.comments, 1500)
            root = self.root_of.get(parent)
        item = {"by": self._by(), "id": item_id, "parent": parent, "text": self._text(),
                "time": self.time, "type": "comment"}
        parent_item = self.items.get(parent)
        if parent_item is not None:
            parent_item.setdefault("kids", []).append(item_id)
        if rng.random() < _P_DEAD:
            item["dead"] = True  # dead comments stay out of descendants and get no replies
            return item
        if root is not None:
            self.root_of[item_id] = root
            self.items[root]["descendants"] += 1
        self.comments.append(item_id)
        return item

    def _story(self, item_id: int) -> dict:
        rng = self.rng
        if rng.random() < _P_DELETED:
            return self._deleted(item_id, "story")
        item = {"by": self._by(), "descendants": 0, "id": item_id, "score": self._score(),
                "time": self.time, "type": "story"}
        r = rng.random()
        if r < 0.10:  # Ask HN: text, no url
            item["title"] = self._title(_ASK_TITLES)
            item["text"] = self._text()
        elif r < 0.22:  # Show HN: a url, sometimes a description too
            item["title"] = self._title(_SHOW_TITLES)
            item["url"] = self._url()
            if rng.random() < 0.3:
                item["text"] = self._text()
        elif r < 0.26:  # Tell/Launch HN: text, no url
            item["title"] = self._title(_OTHER_TEXT_TITLES)
            item["text"] = self._text()
        elif r < 0.29:  # title only: neither url nor text
            item["title"] = self._title(_STORY_TITLES)
        else:
            item["title"] = self._title(_STORY_TITLES)
            item["url"] = self._url()
        if rng.random() < _P_DEAD:
            item["dead"] = True
        else:
            self.threads.append(item_id)
        return item

    def _job(self, item_id: int) -> dict:
        rng = self.rng
        company = rng.choice(_COMPANIES)
        item = {"by": self._by(), "id": item_id, "score": 1, "time": self.time,
                "title": f"{company} (YC S{rng.randint(15, 25)}) is hiring a {rng.choice(_ROLES)}",
                "type": "job"}
        if rng.random() < 0.7:
            item["url"] = f"https://www.ycombinator.com/companies/{company.lower()}/jobs"
        else:
            item["text"] = self._text()
        return item

    def _poll(self, poll_id: int) -> int:
        """Write a poll and its options (the next ids, same second); return the last id used."""
        rng = self.rng
        by = self._by()
        n_options = rng.randint(2, 5)
        parts = list(range(poll_id + 1, poll_id + 1 + n_options))
        self.items[poll_id] = {
            "by": by, "descendants": 0, "id": poll_id, "parts": parts, "score": self._score(),
            "text": self._text() if rng.random() < 0.3 else "", "time": self.time,
            "title": rng.choice(_POLL_QUESTIONS), "type": "poll",
        }
        for option_id in parts:
            self.items[option_id] = {
                "by": by, "id": option_id, "poll": poll_id, "score": int(rng.random() * 400),
                "text": rng.choice(_POLL_OPTIONS), "time": self.time, "type": "pollopt",
            }
        self.threads.append(poll_id)
        return parts[-1]


def bundle(docs_items: Mapping[int | str, dict], generated: Mapping[int, Item] | None = None
           ) -> dict[int, Item]:
    """The bundled sample: the generated ids plus the HN API docs items, verbatim."""
    items = dict(generate_sample() if generated is None else generated)
    for key, item in docs_items.items():
        items[int(key)] = item
    return dict(sorted(items.items()))


def encode_items(items: Mapping[int, Item]) -> bytes:
    """gzip'd JSON object {"<id>": item-or-null}; mtime=0 and sorted keys make it reproducible."""
    text = json.dumps({str(k): items[k] for k in sorted(items)}, ensure_ascii=False,
                      sort_keys=True, separators=(",", ":"))
    buffer = io.BytesIO()
    # filename="" keeps the output path out of the gzip header, so bytes don't depend on it.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    return buffer.getvalue()


def write_sample(path: str | Path, items: Mapping[int, Item] | None = None) -> Path:
    """Write `items` (default: a fresh `generate_sample()`) as reproducible gzip JSON."""
    path = Path(path)
    path.write_bytes(encode_items(generate_sample() if items is None else items))
    return path


def bundled_sample_path() -> Path:
    return Path(str(importlib.resources.files("hnpipe") / "data" / SAMPLE_FILE))


def read_sample(path: str | Path) -> dict[int, Item]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {int(k): v for k, v in json.load(f).items()}


@lru_cache(maxsize=1)
def load_sample() -> dict[int, Item]:
    """The bundled sample, id -> item (None = the API answers null). Cached: do not mutate."""
    return read_sample(bundled_sample_path())


# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------

_FAULT_KINDS = ("http_500", "http_429", "timeout", "drop", "truncate")


@dataclass(frozen=True)
class Faults:
    """Per-request fault rates in [0, 1] (their sum at most 1), drawn from random.Random(seed).

    http_500   answer 500 Internal Server Error
    http_429   answer 429 Too Many Requests with `Retry-After: <retry_after_s>`
    timeout    sleep `timeout_sleep_s` before answering (set the client's read timeout lower)
    drop       close the connection without answering
    truncate   send 200 and the full Content-Length, but only half the body, then close
    """

    http_500: float = 0.0
    http_429: float = 0.0
    timeout: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    retry_after_s: int = 1
    timeout_sleep_s: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in _FAULT_KINDS:
            rate = getattr(self, kind)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise ParameterError(f"fault rate {kind}={rate!r} is out of range: use 0..1")
        total = sum(getattr(self, kind) for kind in _FAULT_KINDS)
        if total > 1:
            raise ParameterError(f"fault rates add up to {total:g}: their sum must be at most 1")
        _check_int(self.retry_after_s, "retry_after_s", 0)
        sleep = self.timeout_sleep_s
        if isinstance(sleep, bool) or not isinstance(sleep, (int, float)) or not 0 < sleep <= 600:
            raise ParameterError(f"timeout_sleep_s={sleep!r} is out of range: use 0 < s <= 600")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ParameterError(f"fault seed must be an integer, got {self.seed!r}")

    @property
    def any(self) -> bool:
        return any(getattr(self, kind) for kind in _FAULT_KINDS)


_ITEM_PATH = re.compile(r"/v0/item/(\d{1,18})\.json")
_MAXITEM_PATH = "/v0/maxitem.json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a pooled client reuses connections
    server_version = "hnpipe-sample"
    timeout = 60  # an idle keep-alive connection's thread ends after this many seconds
    # Headers and body go out as separate small writes; with Nagle's algorithm on, the
    # client's delayed ACK would stall every response by ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # quiet: tests and the CLI print what matters themselves

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        state = self.server.state
        fault = state.begin_request()
        if state.latency_s:
            time.sleep(state.latency_s)
        status, body = state.answer(self.path.split("?", 1)[0])

        if fault == "drop":
            self.close_connection = True
            return
        if fault == "http_500":
            self._send(500, b'{"error":"injected fault: internal server error"}')
            return
        if fault == "http_429":
            self._send(429, b'{"error":"injected fault: too many requests"}',
                       {"Retry-After": str(state.faults.retry_after_s)})
            return
        if fault == "timeout":
            time.sleep(state.faults.timeout_sleep_s)
        if fault == "truncate":
            self._send(status, body, cut=True)
            return
        self._send(status, body)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
              cut: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
        except OSError:
            self.close_connection = True  # the client already gave up (e.g. read timeout)
        if cut:
            self.close_connection = True


class _State:
    """What the handler threads share: items, latency, faults and counters (under one lock)."""

    def __init__(self, items: Mapping[int, Item], latency_ms: float, faults: Faults) -> None:
        self.items = items
        self.max_item = max(items)
        self.latency_s = latency_ms / 1000
        self.faults = faults
        self.lock = threading.Lock()
        self.rng = random.Random(faults.seed)
        self.requests = 0
        self.connections = 0
        self.faults_injected = dict.fromkeys(_FAULT_KINDS, 0)

    def begin_request(self) -> str | None:
        with self.lock:
            self.requests += 1
            if not self.faults.any:
                return None
            r = self.rng.random()
            for kind in _FAULT_KINDS:
                rate = getattr(self.faults, kind)
                if r < rate:
                    self.faults_injected[kind] += 1
                    return kind
                r -= rate
            return None

    def answer(self, path: str) -> tuple[int, bytes]:
        if path == _MAXITEM_PATH:
            return 200, str(self.max_item).encode()
        match = _ITEM_PATH.fullmatch(path)
        if match:
            item = self.items.get(int(match.group(1)))
            # Like the live API: unknown ids answer 200 with `null`.
            return 200, json.dumps(item, ensure_ascii=False, sort_keys=True,
                                   separators=(",", ":")).encode("utf-8")
        return 404, b'{"error":"not found: use /v0/maxitem.json or /v0/item/<id>.json"}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The default listen backlog (5) drops SYNs when a pool opens 32 connections at once,
    # and the kernel retries them only after a second.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)
        if add:
            with self.state.lock:
                self.state.connections += 1

    def close_connections(self) -> None:
        """Wake threads waiting on idle keep-alive connections so they end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-request is expected here (faults, timeouts)


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port {port!r} is out of range: use 0..65535 (0 = any free port)")
    return port


def _check_latency(latency_ms: object) -> float:
    ok = isinstance(latency_ms, (int, float)) and not isinstance(latency_ms, bool)
    if not ok or not math.isfinite(latency_ms) or not 0 <= latency_ms <= 60_000:
        raise ParameterError(f"latency_ms {latency_ms!r} is out of range: use 0..60000")
    return float(latency_ms)


class SampleServer:
    """Serve items over loopback HTTP like the live API: /v0/maxitem.json, /v0/item/<id>.json.

        with SampleServer() as server:          # the bundled sample, on a free port
            client = HttpHNClient(server.base_url)

    `items=None` serves the bundled sample. `requests_served` counts every request answered
    (or deliberately not answered), `faults_injected` each fault kind, and
    `connections_accepted` the TCP connections opened.
    """

    def __init__(self, items: Mapping[int, Item] | None = None, host: str = "127.0.0.1",
                 port: int = 0, latency_ms: float = 0.0, faults: Faults = Faults()) -> None:
        items = load_sample() if items is None else items
        if not isinstance(items, Mapping) or not items:
            raise ParameterError("items must be a non-empty mapping of id -> item dict or None")
        bad = next((k for k in items if isinstance(k, bool) or not isinstance(k, int) or k < 1),
                   None)
        if bad is not None:
            raise ParameterError(f"item id {bad!r} is not allowed: ids are integers >= 1")
        if not isinstance(faults, Faults):
            raise ParameterError(f"faults must be a Faults instance, got {faults!r}")
        self._host = host
        self._requested_port = _check_port(port)
        self._state = _State(items, _check_latency(latency_ms), faults)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SampleServer:
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._requested_port), self._state)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"hnpipe-sample-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SampleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SampleServer is not running: call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v0"

    @property
    def max_item(self) -> int:
        return self._state.max_item

    @property
    def ids(self) -> int:
        """How many ids it knows (items and nulls); any other id answers null too."""
        return len(self._state.items)

    @property
    def requests_served(self) -> int:
        with self._state.lock:
            return self._state.requests

    @property
    def connections_accepted(self) -> int:
        """TCP connections opened so far: few, if the client pools and keeps them alive."""
        with self._state.lock:
            return self._state.connections

    @property
    def faults_injected(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.faults_injected)


def serve(port: int = 8765, latency_ms: float = 0.0, error_rate: float = 0.0,
          host: str = "127.0.0.1", *, items: Mapping[int, Item] | None = None,
          faults: Faults | None = None) -> None:
    """Serve `items` (default: the bundled sample) until Ctrl-C or SIGTERM (`hnpipe serve-sample`).

    `error_rate` is the share of HTTP 500 answers; pass `faults` for every other fault kind
    (not both). The first line printed names the base URL; the last, once stopped, what was
    served and which faults were injected, so a script driving the server can check both.
    """
    if isinstance(error_rate, bool) or not isinstance(error_rate, (int, float)) \
            or not 0 <= error_rate <= 1:
        raise ParameterError(f"error_rate {error_rate!r} is out of range: use 0..1")
    if faults is not None and error_rate:
        raise ParameterError("give either error_rate or faults, not both: "
                             "error_rate is Faults(http_500=...)")
    server = SampleServer(items=items, host=host, port=port, latency_ms=latency_ms,
                          faults=faults if faults is not None else Faults(http_500=error_rate))
    # SIGTERM (a benchmark or test stopping the server) ends it like Ctrl-C: cleanly, with
    # the closing summary. Only the main thread may install signal handlers.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with server:
            try:  # Ctrl-C may arrive while the banner is still being printed
                print(f"serving {server.ids:,} HN ids at {server.base_url} "
                      f"(max item {server.max_item}); Ctrl-C to stop", flush=True)
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    injected = ", ".join(f"{kind}={count}" for kind, count in server.faults_injected.items())
    print(f"stopped after {server.requests_served} requests on {server.connections_accepted} "
          f"connections; faults injected: {injected}", flush=True)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


__all__ = [
    "DOCS_ITEM_IDS", "Faults", "SampleServer", "bundle", "bundled_sample_path", "encode_items",
    "generate_sample", "load_sample", "read_sample", "serve", "write_sample",
]
