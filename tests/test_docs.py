"""The README and docs/: a short front door, pages that link up, and the tables and the module
map that follow the registries and the tree instead of being kept by hand."""

from __future__ import annotations

import re
from pathlib import Path

from import_graph import PACKAGE_ROOT

from hnpipe import config, params

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
# [text](target): the target up to a closing parenthesis or a space (a title)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def local_links(path: Path) -> list[str]:
    """The links of a Markdown file that point inside the repository (no scheme, no mailto)."""
    return [target for target in LINK.findall(text(path)) if not re.match(r"[a-z]+:", target)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in text(path).splitlines() if re.match(r"#{1,6} ", line)}


def test_the_readme_is_a_front_door_of_at_most_250_lines() -> None:
    lines = text(README).splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines: move detail to docs/"


def test_the_readme_links_every_docs_page_and_only_pages_that_exist() -> None:
    linked = {target.split("#")[0] for target in local_links(README) if target.startswith("docs/")}
    assert pages(), "no docs/*.md pages"
    assert {f"docs/{page.name}" for page in pages()} - linked == set(), "link these pages from README.md"
    assert {target for target in linked if not (ROOT / target).is_file()} == set(), "README links missing pages"


def test_every_relative_link_and_anchor_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for source in (README, *pages()):
        for target in local_links(source):
            file, _, anchor = target.partition("#")
            destination = (source.parent / file).resolve() if file else source
            if not destination.exists():
                broken.append(f"{source.name}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{source.name}: {target} (no such heading)")
    assert broken == []


def test_the_anchor_slugs_follow_githubs_rule() -> None:
    # The check above would pass vacuously if slug() never matched a real heading.
    assert slug(" Snowflake: who owns what") == "snowflake-who-owns-what"
    assert slug("The statements hnpipe sends, and what vouches for each") == \
        "the-statements-hnpipe-sends-and-what-vouches-for-each"


def test_every_docs_page_opens_with_a_title_and_what_a_reader_comes_for() -> None:
    for page in pages():
        lines = text(page).splitlines()
        assert lines[0].startswith("# "), f"{page.name}: no title on its first line"
        assert lines[1] == "" and lines[2] and not lines[2].startswith(("#", "|", "```", "    ")), \
            f"{page.name}: the title is not followed by a sentence saying what the page is for"


def test_the_readme_shows_the_install_and_test_commands_ci_runs() -> None:
    """.ci/run runs the README's commands; the README must show them exactly."""
    ci = text(ROOT / ".ci" / "run")
    readme = text(README)
    install = 'pip install -e ".[dev]" && hnpipe run --env local'
    assert f"\n{install}\n" in ci and install in readme
    assert "\npytest\n" in ci and "```bash\npytest\n```" in readme


def test_the_variables_table_is_the_one_in_config() -> None:
    assert config.environment_variables_table() in text(DOCS / "environments.md")


def parameter_tables(page: Path) -> list[str]:
    """Every table on a page whose header is the parameter table's, as text."""
    header = params.parameters_table({}).splitlines()[0]
    tables, current = [], None
    for line in text(page).splitlines():
        if line == header:
            current = [line]
            tables.append(current)
        elif current is not None and line.startswith("|"):
            current.append(line)
        else:
            current = None
    return ["\n".join(table) for table in tables]


def test_the_parameter_tables_are_the_registries_and_nothing_else() -> None:
    """Every registered parameter with its default and help, in registry order; no parameter
    table anywhere in the docs that the registry did not write."""
    found = {page.name: parameter_tables(page) for page in (README, *pages())}
    found = {name: tables for name, tables in found.items() if tables}
    assert found == {"environments.md": [params.parameters_table(), params.parameters_table(params.ADMIN_PARAMETERS)]}, \
        'paste python -c "from hnpipe import params; print(params.parameters_table())" into docs/environments.md'


def test_the_parameter_table_lists_each_parameter_once_with_its_help() -> None:
    # What the generated table must hold, read back from the table itself.
    rows = params.parameters_table().splitlines()[2:]
    names = [re.match(r"\| `([a-z_]+)` \|", row).group(1) for row in rows]
    assert names == list(params.PARAMETERS)
    for row, spec in zip(rows, params.PARAMETERS.values()):
        assert row.endswith(f" {spec.help.replace('<', '&lt;')} |")


# -- the module map -------------------------------------------------------------------------
MAP_PAGE = DOCS / "development.md"


def module_map() -> list[str]:
    """The paths the map names: the first word of each line of the indented block after the
    "## Module map" heading (4 spaces, then the path; a deeper indent continues a line)."""
    lines = text(MAP_PAGE).split("## Module map", 1)[1].splitlines()[1:]
    names = []
    for line in lines:
        if line.startswith("#"):
            break
        if re.match(r"    \S", line):
            names.append(line.split()[0])
    return names


def package_tree() -> set[str]:
    """Every module and package of lib/hnpipe as the map writes them (`warehouse/`,
    `warehouse/base.py`), read from the tree so that a rename changes only the map's text."""
    found = set()
    for path in PACKAGE_ROOT.rglob("*.py"):
        relative = path.relative_to(PACKAGE_ROOT)
        if path.name == "__init__.py":
            if relative.parent != Path("."):
                found.add(f"{relative.parent.as_posix()}/")
        else:
            found.add(relative.as_posix())
    return found


def test_the_module_map_names_every_module_and_package_of_the_tree() -> None:
    missing = package_tree() - set(module_map())
    assert not missing, f"add these to the module map in docs/development.md: {sorted(missing)}"


def test_every_name_in_the_module_map_exists_and_appears_once() -> None:
    names = module_map()
    assert len(names) > 10, "the module map was not found"
    assert sorted(name for name in set(names) if names.count(name) > 1) == []
    gone = [name for name in names if not (PACKAGE_ROOT / name).exists()]
    assert gone == [], f"the module map in docs/development.md names what is not there: {gone}"


def test_no_other_page_or_docstring_keeps_a_module_map() -> None:
    """One map: a block naming several modules' files elsewhere would drift from the tree."""
    files = [README, *(page for page in pages() if page != MAP_PAGE), *PACKAGE_ROOT.rglob("__init__.py")]
    names = {name.rstrip("/").rsplit("/", 1)[-1].removesuffix(".py") for name in package_tree()}
    maps = []
    for path in files:
        # an indented line (a code block, a docstring's table) that starts with a module's name
        words = re.findall(r"^ {4,}([a-z_]+)(?:\.py|/)?\s", text(path), re.MULTILINE)
        listed = {word for word in words if word in names}
        if len(listed) >= 3:
            maps.append(f"{path.relative_to(ROOT)}: {sorted(listed)}")
    assert maps == []
