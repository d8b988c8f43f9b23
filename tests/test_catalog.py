"""Documentation: table and column comments on both engines, lineage, and the catalog page."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from hnpipe import cli, datasets, history, pipeline
from hnpipe.environments import Target
from hnpipe.errors import GuardError, WarehouseError
from hnpipe.datasets import COLUMN_DESCRIPTIONS
from hnpipe.items import items_frame
from hnpipe.ops import catalog
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from registered import built_in_sql
from snowflake_fakes import Recorder

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
TARGET = Target("LOCAL", "TESTER")
STAGING = Target("STAGING", "HACKER_NEWS")
HOSTILE = '<img src=x onerror="alert(1)">&'


@pytest.fixture
def built(clean_env: Path, monkeypatch) -> Path:
    """ITEMS and COMMENTS built by the pipeline (STORIES not), by a hostile-looking CI actor."""
    monkeypatch.setenv("GITHUB_ACTOR", HOSTILE)
    values = {"environment": "local", "n_items": 150}
    step = pipeline.start("ITEMS", values)
    step.publish(step.fetch_items())
    pipeline.start("COMMENTS", values).build()
    return clean_env


def test_every_publish_writes_the_definitions_as_comments(built: Path) -> None:
    with duckdb.connect(str(built / "LOCAL.duckdb"), read_only=True) as con:
        tables = dict(con.execute("SELECT table_name, comment FROM duckdb_tables()").fetchall())
        columns = con.execute("SELECT table_name, column_name, comment FROM duckdb_columns() "
                              "WHERE table_name IN ('ITEMS', 'COMMENTS')").fetchall()
    for name in ("ITEMS", "COMMENTS"):
        assert tables[name] == datasets.get(name).table_comment
        assert datasets.get(name).description in tables[name]
    assert tables["COMMENTS"].endswith("Built from ITEMS by notebooks/comments.ipynb (hnpipe).")
    assert {(table, column): text for table, column, text in columns} == {
        (table, column): text for table in ("ITEMS", "COMMENTS")
        for column, text in COLUMN_DESCRIPTIONS.items()}


def test_duckdb_comments_are_escaped_guarded_and_checked(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh")
    wh.publish_frame(TARGET, "ITEMS", items_frame([{"id": 1, "type": "story"}]), "run1")
    wh.comment_table(TARGET, "ITEMS", "it's \\ 'quoted'", {"ID": "the id's text"})
    info = wh.describe_table(TARGET, "ITEMS")
    assert (info.comment, info.columns[0].name, info.columns[0].type, info.columns[0].comment) == (
        "it's \\ 'quoted'", "ID", "BIGINT", "the id's text")
    with pytest.raises(WarehouseError, match=r"^cannot comment LOCAL\.TESTER\.ITEMS: no column NOPE \(it has ID, "):
        wh.comment_table(TARGET, "ITEMS", "x", {"NOPE": "y"})
    assert wh.describe_table(TARGET, "ITEMS").comment == "it's \\ 'quoted'"  # nothing half-written

    def refuse(actual: Target) -> None:
        raise WarehouseError(f"refused write to {actual}")

    with pytest.raises(WarehouseError, match="refused write"):
        DuckDBWarehouse(tmp_path / "wh", write_guard=refuse).comment_table(TARGET, "ITEMS", "z")


def test_snowflake_comment_sql_is_escaped_and_names_are_checked() -> None:
    recorder = Recorder(tables={"ITEMS": 1}, columns=[("ID", "NUMBER", None), ("TYPE", "TEXT", None)])
    warehouse = recorder.warehouse()
    warehouse.comment_table(STAGING, "ITEMS", "Items it's \\ here.", {"ID": "The id's"})
    comments = [statement for statement in recorder.statements if statement[0].startswith("COMMENT")]
    assert comments == [
        ("COMMENT ON TABLE \"ITEMS\" IS 'Items it\\'s \\\\ here.'", None),
        ("COMMENT ON COLUMN \"ITEMS\".\"ID\" IS 'The id\\'s'", None),
    ]
    assert recorder.statements.index(('USE SCHEMA "STAGING"."HACKER_NEWS"', None)) < recorder.statements.index(comments[0])
    sent = len(recorder.statements)
    with pytest.raises(GuardError, match="identifiers must match"):
        warehouse.comment_table(STAGING, "ITEMS", "x", {'ID" IS \'\'; DROP TABLE ITEMS; --': "y"})
    assert len(recorder.statements) == sent  # refused before any SQL


def test_comments_on_fakesnow(fake_snowflake) -> None:
    with fake_snowflake.create_databases("STAGING").warehouse() as wh:
        wh.ensure_schema(STAGING)
        stories = datasets.get("STORIES")
        wh.publish_frame(STAGING, "STORIES", items_frame([{"id": 1, "type": "story"}]), "run1")
        wh.comment_table(STAGING, "STORIES", stories.table_comment, stories.column_descriptions)
        info = wh.describe_table(STAGING, "STORIES")
        assert info.comment == stories.table_comment
        assert {column.name: column.comment for column in info.columns} == COLUMN_DESCRIPTIONS


def test_lineage_comes_from_the_dataset_graph() -> None:
    built = [dataset.name for dataset in built_in_sql()]  # each from ITEMS
    assert datasets.lineage() == [("HN API", "ITEMS"), *(("ITEMS", name) for name in built)]
    assert catalog.lineage_text() == f"HN API -> ITEMS -> {', '.join(built)}"


class _Tags(HTMLParser):
    VOID = {"meta", "br", "img", "link", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"


def test_catalog_page_describes_every_dataset_and_escapes_everything(built: Path) -> None:
    wh = DuckDBWarehouse(built)
    last = history.last_successes(wh, TARGET)
    now = last["ITEMS"]["FINISHED_AT"].to_pydatetime() + timedelta(hours=3, minutes=7)
    page = catalog.build(wh, TARGET, "local", now=now)

    parser = _Tags()
    parser.feed(page)
    assert parser.open == [] and not {"script", "img", "link", "iframe"} & set(parser.seen)
    assert not re.search(r"(src|href)=\"(?!#)", page)  # self-contained: only in-page links
    assert HOSTILE not in page and html_escaped(HOSTILE) in page  # the actor, escaped

    tables = wh.list_tables(TARGET)
    for dataset in datasets.dependency_order():
        section = page.split(f'<h2 id="{dataset.name}">')[1].split("<h2")[0]
        assert html_escaped(dataset.description) in section
        for column, text in dataset.column_descriptions.items():
            assert f"<td><code>{column}</code></td>" in section and html_escaped(text) in section
        if dataset.name in tables:
            assert f"<dt>rows</dt><dd>{tables[dataset.name]:,}</dd>" in section
            assert last[dataset.name]["RUN_ID"] in section
            assert "<td>BIGINT[]</td>" in section  # types as stored
        else:
            assert "not published in this environment" in section and "no successful run recorded" in section
    items = page.split('<h2 id="ITEMS">')[1].split("<h2")[0]
    assert "<dt>freshness</dt><dd>3 h 7 min old</dd>" in items
    built = [dataset.name for dataset in built_in_sql()]
    assert ", ".join(f'<a href="#{name}">{name}</a>' for name in built) in items
    assert f"HN API &rarr; ITEMS &rarr; {', '.join(built)}" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_hnpipe_docs_writes_the_page_where_git_ignores_it(built: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["docs"]) == 0
    written = tmp_path / "runs" / "local" / "catalog.html"
    assert capsys.readouterr().out.strip() == f"wrote the data catalog of local (LOCAL.TESTER) to {written}"
    assert "<h2 id=\"STORIES\">" in written.read_text()
    assert [p.name for p in written.parent.iterdir()] == ["catalog.html"]  # no temporary left
    # Under the repository the default is runs/<env>/catalog.html, which git ignores.
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/local/catalog.html"], cwd=ROOT)
    assert ignored.returncode == 0
    assert cli.main(["docs", "--output", str(tmp_path)]) == 1
    assert "is a directory: name the HTML file to write" in capsys.readouterr().err
    other = tmp_path / "elsewhere" / "page.html"
    assert cli.main(["docs", "--env", "staging", "--output", str(other)]) == 0
    assert "not published in this environment" in other.read_text()


def test_hnpipe_docs_overwrites_only_an_earlier_catalog_page_and_nothing_in_the_warehouse(
        built: Path, tmp_path: Path, capsys) -> None:
    import os

    warehouse = Path(os.environ["HNPIPE_WAREHOUSE"].partition(":")[2])
    database = next(warehouse.glob("*.duckdb"))
    before = database.read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    link = tmp_path / "link.html"
    link.symlink_to(database)
    for output in (database, warehouse / "catalog.html", notes, link):
        assert cli.main(["docs", "--output", str(output)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"hnpipe: error: refused --output {output}: ") and err.count("\n") == 1, err
    assert database.read_bytes() == before and notes.read_text() == "my notes\n"
    assert not (warehouse / "catalog.html").exists()
    page = tmp_path / "catalog.html"
    assert cli.main(["docs", "--output", str(page)]) == 0
    assert cli.main(["docs", "--output", str(page)]) == 0  # an earlier page: replaced
    assert '<meta name="generator" content="hnpipe docs">' in page.read_text()
