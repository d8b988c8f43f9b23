"""The bundled HN sample and the loopback server that serves it like the live API.

The module map is docs/development.md.
"""

from hnpipe.sample.data import (
    DEFAULT_MAX_ITEM,
    DEFAULT_N_IDS,
    DOCS_ITEM_IDS,
    SAMPLE_FILE,
    Item,
    bundle,
    bundled_sample_path,
    encode_items,
    generate_sample,
    load_sample,
    read_sample,
    write_sample,
)
from hnpipe.sample.server import Faults, SampleServer, serve

__all__ = [
    "DEFAULT_MAX_ITEM", "DEFAULT_N_IDS", "DOCS_ITEM_IDS", "Faults", "Item", "SAMPLE_FILE", "SampleServer", "bundle", "bundled_sample_path",
    "encode_items", "generate_sample", "load_sample", "read_sample", "serve", "write_sample",
]
