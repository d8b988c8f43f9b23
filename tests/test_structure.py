"""The package's shape: no import cycles, no module too big to read, imports at the top.

The graph comes from the source (tests/import_graph.py), so a cycle introduced through a
function-local import fails here even though Python would tolerate it at run time.
"""

from __future__ import annotations

from import_graph import cycles, engine_name_uses, import_graph, module_files

MAX_MODULE_LINES = 700


def test_the_package_has_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The check above would pass vacuously if cycles() could not see one.
    graph = {"a": {"b": [1]}, "b": {"c": [1]}, "c": {"a": [-5]}, "d": {"a": [1]}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_is_over_700_lines() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in module_files().items()}
    too_big = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not too_big, f"split these modules: {too_big}"


def test_function_local_imports_of_hnpipe_say_why() -> None:
    """A function-local import is allowed only to keep start-up fast (e.g. the Snowflake
    connector), and the line above it says so."""
    files = module_files()
    unexplained = []
    for module, imported in import_graph().items():
        lines = files[module].read_text(encoding="utf-8").splitlines()
        for target, numbers in imported.items():
            for number in numbers:
                if number < 0 and not _comment_above(lines, -number - 1):
                    unexplained.append(f"{module} line {-number} imports {target}")
    assert not unexplained, unexplained


def _comment_above(lines: list[str], index: int) -> bool:
    """Whether the block of import lines holding lines[index] has a comment right above it."""
    above = index - 1
    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def test_warehouse_engines_import_nothing_above_the_warehouse_package() -> None:
    """Backends depend on the shared rules below them, never on the pipeline or commands."""
    below = {"hnpipe.config", "hnpipe.environments", "hnpipe.errors", "hnpipe.credentials",
             "hnpipe.warehouse.base", "hnpipe.warehouse.frames", "hnpipe.warehouse.snowflake_frames",
             "hnpipe.warehouse.snowflake_session", "hnpipe.warehouse.duckdb_locks",
             "hnpipe.warehouse.duckdb_files", "hnpipe.warehouse.duckdb_host", "hnpipe.warehouse.registry",
             "hnpipe.warehouse.directory_stage", "hnpipe.warehouse.snowflake_stage"}
    from hnpipe.warehouse.registry import ENGINES  # the registry under test

    graph = import_graph()
    for engine in (*(engine.module for engine in ENGINES.values()), "hnpipe.warehouse.base", "hnpipe.warehouse.frames"):
        assert set(graph[engine]) <= below, f"{engine} imports {set(graph[engine]) - below}"


# Account tools that are one engine's by nature may name it, in one place each (issue 16).
ACCOUNT_TOOLS = {"ops/doctor.py"}


def test_only_the_account_tools_know_an_engine_by_name_outside_the_warehouse_package() -> None:
    """Callers ask the engine's capabilities (hnpipe.warehouse.base): a new engine is a module
    and a registry line (docs/development.md), not a hunt through ops/ and the runner."""
    uses = engine_name_uses()
    assert [use for use in uses if use.split(":")[0] not in ACCOUNT_TOOLS] == []
    assert len(uses) <= 2, uses  # doctor's one table of account checks


def test_the_engine_name_finder_finds_each_kind(tmp_path) -> None:
    # The check above would pass vacuously if the finder could not see them.
    (tmp_path / "warehouse").mkdir()
    (tmp_path / "warehouse" / "inside.py").write_text('spec == "duckdb"\n')
    (tmp_path / "ops.py").write_text(
        '"""Talks of "duckdb" in its docstring only."""\n'
        'from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse\n'
        'if spec == "snowflake": pass\n'
        'if spec.startswith("duckdb:"): pass\n'
        'x = f"duckdb:{directory}"\n'
        'if warehouse.engine != other: pass\n'
        'if isinstance(warehouse, DuckDBWarehouse): pass\n'
        'options = {"snowflake_env": 1}\n')
    uses = engine_name_uses(tmp_path, {"duckdb": "DuckDBWarehouse", "snowflake": "SnowflakeWarehouse"})
    assert sorted(int(use.split(":")[1]) for use in uses) == [2, 3, 4, 5, 6, 7], uses


def test_every_hnpipe_variable_the_code_reads_is_listed_once_with_what_it_does() -> None:
    import re

    from hnpipe import config

    root = module_files()["hnpipe"].parents[2]
    sources = [path for path in module_files().values()]
    sources += [root / ".gitlab-ci.yml", *(root / ".github" / "workflows").glob("*.yml")]
    used = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        if path.name == "config.py":  # leave out the list itself
            text = text[:text.index("ENVIRONMENT_VARIABLES")] + text[text.index("def environment_variables_table"):]
        used |= set(re.findall(r"(?<![A-Z_])(HNPIPE_[A-Z_]+)(?=[\"'\]:=}\s])", text))
    used -= {"HNPIPE_BRANCH", "HNPIPE_PROD", "HNPIPE_READER"}  # role names (snowflake/setup.sql's), not variables
    used.discard("HNPIPE_SMOKE_")  # the prefix of hnpipe doctor's throwaway objects
    used.discard("HNPIPE_STAGE")  # the Snowflake stage's name (hnpipe.warehouse.base.STAGE_NAME)
    listed = set(config.ENVIRONMENT_VARIABLES)
    assert used - listed == set(), "add these to config.ENVIRONMENT_VARIABLES"
    assert listed - used == set(), "listed but never read"


def test_no_test_file_imports_another_test_file() -> None:
    """What tests share lives in helper modules (helpers_faults.py, workflow_files.py,
    snowflake_fakes.py ...): importing a test_*.py module runs its tests' module code twice
    and makes pytest collect its fixtures and names in the wrong place."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [f"{path.name} line {node.lineno} imports {name}"
                          for name in names if name.split(".")[0].startswith("test_")]
    assert not offenders, offenders


# A run is one value (hnpipe.run_context.RunContext): the runner hands it on whole instead of
# these pieces side by side.
RUN_PIECES = {"env", "values", "target", "run_id"}


def test_the_runner_passes_the_run_as_one_value() -> None:
    import ast

    source = module_files()["hnpipe.runner"].read_text(encoding="utf-8")
    side_by_side = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            taken = RUN_PIECES & {argument.arg for argument in arguments}
            if len(taken) > 1:
                side_by_side.append(f"def {node.name}({', '.join(sorted(taken))})")
        elif isinstance(node, ast.Call):
            passed = [arg.id for arg in node.args if isinstance(arg, ast.Name)]
            passed += [keyword.arg for keyword in node.keywords]
            taken = RUN_PIECES & set(passed)
            if len(taken) > 1:
                side_by_side.append(f"a call on line {node.lineno} passing {', '.join(sorted(taken))}")
    assert not side_by_side, side_by_side
