"""Regenerate lib/hnpipe/sample/hn_sample.json.gz, the bundled HN sample.

    python scripts/make_sample.py            # rewrites the bundled file
    python scripts/make_sample.py OUT.gz     # writes elsewhere (the tests compare the bytes)

The output is byte-for-byte reproducible (tests/test_sample.py checks the committed file), so
rerun this only after changing the generator in lib/hnpipe/sample/data.py, and commit both.
The six items from the HN API docs come verbatim from tests/fixtures/hn_api_docs_items.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hnpipe import sample

ROOT = Path(__file__).resolve().parents[1]
DOCS_ITEMS = ROOT / "tests" / "fixtures" / "hn_api_docs_items.json"
OUTPUT = ROOT / "lib" / "hnpipe" / "sample" / sample.SAMPLE_FILE


def main(argv: list[str]) -> None:
    output = Path(argv[0]) if argv else OUTPUT
    docs_items = json.loads(DOCS_ITEMS.read_text(encoding="utf-8"))
    items = sample.bundle(docs_items)
    sample.write_sample(output, items)
    print(f"wrote {output}: {len(items)} ids, {output.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
