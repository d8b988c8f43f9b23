"""The bundled Hacker News sample: a deterministic generator, and the file it is stored in.

* `generate_sample()` makes a deterministic, realistic run of consecutive HN item ids in the
  exact JSON shape of https://hacker-news.firebaseio.com/v0/item/<id>.json (comments in deep
  threads, stories, Ask/Show HN, jobs, polls with their options, deleted and dead items, ids
  that answer `null`, HTML entities, non-ASCII text).
* `write_sample()` / `load_sample()` store it as `hnpipe/sample/hn_sample.json.gz`
  (regenerate with `python scripts/make_sample.py`; the bytes are reproducible).
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import json
import random
from functools import lru_cache
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
    return Path(str(importlib.resources.files("hnpipe.sample") / SAMPLE_FILE))


def read_sample(path: str | Path) -> dict[int, Item]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {int(k): v for k, v in json.load(f).items()}


@lru_cache(maxsize=1)
def load_sample() -> dict[int, Item]:
    """The bundled sample, id -> item (None = the API answers null). Cached: do not mutate."""
    return read_sample(bundled_sample_path())
