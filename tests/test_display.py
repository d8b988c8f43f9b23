"""Readable previews (hnpipe.display): shown shortened, HTML as text, lists as lists; the
frame itself unchanged."""

from __future__ import annotations

import pandas as pd

from hnpipe.display import Preview, readable, text


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "ID": pd.array([1, 2], dtype="Int64"),
        "TIME": pd.to_datetime(["2026-12-07 01:02:03", "2026-12-07 01:02:04"], utc=True),
        "TEXT": ["I don&#x27;t think so.<p>Has <i>anyone</i> tried &lt;this&gt;? " + "x" * 80, None],
        "KIDS": [[11, 12, 13, 14, 15], None],
        "POLL": pd.array([None, None], dtype="Int64"),
    })


def test_text_is_unescaped_untagged_and_shortened() -> None:
    assert text("I don&#x27;t<p>see <a href=\"x\">it</a>") == "I don't ¶ see it"
    assert text("a" * 100, limit=10) == "a" * 9 + "…"


def test_a_preview_shows_readably_and_keeps_the_stored_values() -> None:
    original = frame()
    shown = readable(original)
    assert isinstance(shown, Preview) and isinstance(shown, pd.DataFrame)
    pd.testing.assert_frame_equal(pd.DataFrame(shown), original)  # the data as stored
    assert shown.TEXT[0] == original.TEXT[0] and list(shown.KIDS[0]) == [11, 12, 13, 14, 15]
    html = shown._repr_html_()
    table = html.split("<table")[1].split("</table>")[0]
    import html as markup

    short = text(original.TEXT[0])
    assert short.startswith("I don't think so. ¶ Has anyone") and short.endswith("…") and len(short) == 48
    assert f"<td>{short}</td>" in markup.unescape(table)  # escaped once, for HTML
    assert "&amp;#x27;" not in table and "<p>" not in table and "<i>" not in table
    assert "[11, 12, 13, … +2]" in html and "TIME (UTC)" in html and "2026-12-07 01:02:03" in html
    assert "not shown, empty in these rows: POLL" in html
    assert short in repr(shown)
    assert type(shown[["ID"]]) is pd.DataFrame  # computations give plain frames
