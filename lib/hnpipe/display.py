"""Previews a person can read on a laptop: the data as stored, shown shortened.

`readable(frame)` returns the same frame (same values, same type for every computation: a
`Preview` is a DataFrame) whose display in a notebook or a terminal is:

* text (TEXT, TITLE, ...) with HTML entities and tags turned into text (`&#x27;` -> `'`,
  `<p>` -> a paragraph break shown as ` ¶ `), shortened to TEXT_CHARS with an ellipsis;
* lists (KIDS, PARTS) as lists, `[46000101, 46000102, … +12]`;
* times to the second, without the `+00:00` every row repeats (the header says UTC);
* columns empty in every shown row left out, named under the table;

so a table of ITEMS fits a laptop screen. Nothing is changed in the frame itself.
"""

from __future__ import annotations

import html
import re

import pandas as pd

TEXT_CHARS = 48
LIST_ITEMS = 3
_TAG = re.compile(r"<[^>]*>")
_PARAGRAPH = re.compile(r"<p>|<br\s*/?>", re.IGNORECASE)


def text(value: object, limit: int = TEXT_CHARS) -> object:
    """HTML as plain text, on one line, at most `limit` characters."""
    if not isinstance(value, str):
        return value
    plain = _TAG.sub("", _PARAGRAPH.sub(" ¶ ", value))
    plain = " ".join(html.unescape(plain).split())
    return plain if len(plain) <= limit else plain[: limit - 1].rstrip() + "…"


def listing(value: object, limit: int = LIST_ITEMS) -> object:
    """A list as a short list: its first items and how many more."""
    if value is None or (not isinstance(value, (list, tuple)) and not hasattr(value, "tolist")):
        return value
    items = list(value.tolist() if hasattr(value, "tolist") else value)
    shown = ", ".join(str(item) for item in items[:limit])
    more = f", … +{len(items) - limit}" if len(items) > limit else ""
    return f"[{shown}{more}]"


def _is_list_column(column: pd.Series) -> bool:
    sample = column.dropna()
    return not sample.empty and sample.map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "tolist")).all()


def shown(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The display copy of `frame`, and the columns left out (empty in every row)."""
    out = pd.DataFrame(frame).copy()
    empty = [name for name in out.columns if out[name].isna().all() and len(out)]
    out = out.drop(columns=empty)
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            out[name] = column.dt.strftime("%Y-%m-%d %H:%M:%S")
            out = out.rename(columns={name: f"{name} (UTC)"})
        elif _is_list_column(column):
            out[name] = column.astype(object).map(listing)
        elif column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            out[name] = column.astype(object).map(text)
    return out.astype(object).where(out.notna(), ""), empty


# Narrow columns that wrap (text, lists, URLs at any character) and a compact font, so a
# table of ITEMS fits the output area of a laptop screen with JupyterLab's file browser open.
_STYLE = ("<style>.hnpipe-preview td, .hnpipe-preview th {font-size: 11px; padding: 1px 4px; "
          "max-width: 9em; white-space: normal; overflow-wrap: anywhere; line-height: 1.25}"
          ".hnpipe-preview th {word-break: break-all}</style>")


class Preview(pd.DataFrame):
    """A DataFrame shown readably (see the module); computations on it give plain frames."""

    @property
    def _constructor(self):
        return pd.DataFrame

    def _repr_html_(self) -> str:
        table, empty = shown(self)
        note = f"<p><small>not shown, empty in these rows: {', '.join(empty)}</small></p>" if empty else ""
        body = table.to_html(index=False, escape=True, na_rep="", classes="hnpipe-preview", border=0)
        return f'{_STYLE}<div class="hnpipe-preview-wrap">{body}{note}</div>'

    def __repr__(self) -> str:
        table, empty = shown(self)
        note = f"\n(not shown, empty in these rows: {', '.join(empty)})" if empty else ""
        return table.to_string(index=False, na_rep="") + note


def readable(frame: pd.DataFrame) -> Preview:
    """`frame` (unchanged) as a Preview: shown shortened, HTML as text, lists as lists."""
    return Preview(frame)
