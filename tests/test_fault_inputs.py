"""Bad input, fuzzed with hypothesis: every value is either accepted as valid, or refused
with a one-line hnpipe error (never another exception type), before any side effect.

Covered: parameters (`params.validate`, `-p KEY=VALUE` through `params.parse_override`),
params files (generated YAML, with YAML 1.1 surprises such as `no`, `on`, `0123`, `0x1F`,
tags, anchors, timestamps, huge numbers, and raw bytes), identifiers and names the
warehouse accepts (`check_identifier`, `Target`, DuckDB database and table names), the
environment variables that choose where a run writes (and a `.env`, which may never set them),
and `hnpipe run` itself, in process,
which must create neither the warehouse nor the runs directory when it refuses.
"""

from __future__ import annotations

import json
import math
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hnpipe import cli, config, environments, params
from hnpipe.environments import Target
from hnpipe.errors import HnpipeError, ParameterError
from hnpipe.items import empty_items_frame
from hnpipe.ops import diff
from hnpipe.warehouse import spec_for
from hnpipe.warehouse.duckdb_engine import DuckDBWarehouse
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from helpers_faults import LONG, ROOT

EXAMPLES = 1_500 if LONG else 120
fuzz = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

IDENTIFIER = re.compile(r"[A-Z][A-Z0-9_]{0,127}", re.ASCII)

# Scalars a YAML 1.1 reader would turn into something else than they look like.
YAML_SURPRISES = [
    "no", "yes", "No", "YES", "on", "off", "On", "y", "n", "true", "false", "True", "FALSE",
    "0123", "007", "0o17", "0x1F", "0b101", "1_000", "+5", "-0", "00", "1e3", "1.5", "1.",
    ".inf", "-.inf", ".nan", "~", "null", "Null", "", "2020-01-01", "2020-01-01T10:00:00Z",
    "12:30:00", "190:20:30", "'quoted'", '"dq"', "'unterminated", "!!binary aGk=", "!!str 5",
    "!!int 5", "!!float 5", "!!bool yes", "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system", "!custom x", "&anchor 1", "*anchor", "[1, 2", "{a: 1", "[]",
    "{}", "[1, 2]", "{user: X}", "{password: hunter2}", "|", ">", "- x", "? x", "%YAML 1.1",
    "---", "...", "\t", "@x", "`x`", "9" * 5_000, "-" + "9" * 5_000, "1" + "0" * 30,
    "5000001", "0", "-1", "4999999", "sample", "http://", "ftp://x/v0", "https://h/v0 x",
    "!!float abc", "!!timestamp x", "!!set {1}", "&x [*x]", "[" * 500 + "]" * 500,
    "local", "production", "LOCAL", "branch", "HNPIPE_BRANCH", "lower_role",
]
KEYS = [*params.PARAMETERS, *params.ADMIN_PARAMETERS, "password", "snowflake_password",
        "api_token", "Secret", "private_key", "colour", "ENVIRONMENT", "n items", ""]


def one_line_hnpipe_error(error: BaseException) -> None:
    assert isinstance(error, HnpipeError), f"{type(error).__name__}: {error}"
    assert "\n" not in str(error) and str(error).strip(), repr(str(error))


def refused(call, *args, **kwargs) -> HnpipeError | None:
    """Run `call`; return the hnpipe error it refused with (one line), None if it accepted.
    Any other exception fails the test, naming the input."""
    try:
        call(*args, **kwargs)
    except HnpipeError as error:
        one_line_hnpipe_error(error)
        return error
    return None


# -- values of every kind ---------------------------------------------------------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(YAML_SURPRISES), st.binary(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=20))


def check_accepted(values_in: dict[str, Any], result: dict[str, Any]) -> None:
    """What validate() accepted really is what the parameters declare."""
    declared = {**params.PARAMETERS, **params.ADMIN_PARAMETERS}
    for key, value in values_in.items():
        spec = declared[key]
        kinds = spec.type if isinstance(spec.type, tuple) else (spec.type,)
        assert isinstance(value, kinds) and (not isinstance(value, bool) or bool in kinds), (key, value)
    if "n_items" in values_in:
        assert 1 <= result["n_items"] <= params.MAX_ITEMS
    if "concurrency" in values_in:
        assert 1 <= result["concurrency"] <= 256
    assert result["environment"] in environments.ENVIRONMENTS


@pytest.mark.slow  # several whole pipeline runs (or 100k ids): seconds even on a quiet machine
@fuzz
@given(st.dictionaries(keys, values, max_size=5))
def test_validate_accepts_only_declared_well_typed_values(candidate: dict) -> None:
    declared = {**params.PARAMETERS, **params.ADMIN_PARAMETERS}
    try:
        result = params.validate(candidate, declared=declared)
    except HnpipeError as error:
        one_line_hnpipe_error(error)
        assert isinstance(error, ParameterError)
    else:
        check_accepted(candidate, result)


@fuzz
@given(st.sampled_from(["n_items", "concurrency", "keep_versions", "older_than_days", "pr_id"]),
       st.one_of(st.integers(min_value=-(10**30), max_value=10**30),
                 st.sampled_from([10**100, -(10**100), 2**63, 2**64 + 1])))
def test_huge_and_negative_numbers_are_refused_or_in_range(key: str, number: int) -> None:
    declared = {**params.PARAMETERS, **params.ADMIN_PARAMETERS}
    assume(key in declared)
    error = refused(params.validate, {key: number}, declared=declared)
    if error is None:
        assert -1 < number < 10**10, f"{key}={number} accepted"
    else:
        assert str(number)[:20] in str(error)  # names the bad value


@fuzz
@given(st.one_of(
    st.text(max_size=60),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(YAML_SURPRISES)),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=30)),
))
def test_override_is_parsed_strictly_or_refused_in_one_line(text: str) -> None:
    try:
        key, value = params.parse_override(text)
    except HnpipeError as error:
        one_line_hnpipe_error(error)
    else:
        try:
            validated = params.validate({key: value})
        except HnpipeError as error:  # e.g. id_max without id_min: refused, in one line
            one_line_hnpipe_error(error)
            return
        check_accepted({key: value}, validated)
        raw = text.partition("=")[2].strip()
        if raw in ("no", "yes", "on", "off", "No", "YES", "On", "y", "n"):
            assert value == raw, "a YAML 1.1 boolean word must stay a string"
        if re.fullmatch(r"0[0-9]+", raw):
            raise AssertionError(f"{text!r} accepted as {value!r}: a leading zero is ambiguous")


# -- params files ----------------------------------------------------------------------------------
def yaml_document(pairs: list[tuple[str, str]], indent: bool) -> str:
    lines = []
    for key, value in pairs:
        lines.append(f"{key}: {value}")
        if indent:
            lines.append(f"  {value}")
    return "\n".join(lines) + "\n"


params_files = st.one_of(
    st.builds(yaml_document, st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(YAML_SURPRISES)),
                                      max_size=7), st.booleans()),
    st.builds(yaml_document, st.lists(st.tuples(keys, st.text(max_size=20)), max_size=4), st.booleans()),
    # a valid file with one line changed
    st.builds(lambda key, value: (ROOT / "params" / "local.yaml").read_text() + f"{key}: {value}\n",
              st.sampled_from(KEYS), st.sampled_from(YAML_SURPRISES)),
    st.text(max_size=200),
    st.binary(max_size=200),
)


@fuzz
@given(params_files)
def test_params_files_are_read_strictly_or_refused_in_one_line(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "local.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        try:
            loaded = params.load_params_file(path)
        except HnpipeError as error:
            one_line_hnpipe_error(error)
            assert str(path) in str(error), "the error names the file"
        else:
            check_accepted(loaded, params.validate(loaded))
            assert "environment" in loaded


@pytest.mark.parametrize("line,named", [
    ("n_items: 0123", "0123"), ("n_items: 0x1F", "0x1F"), ("n_items: 1_000", "1_000"),
    ("concurrency: no", "no"), ("concurrency: on", "on"), ("n_items: 1e3", "1e3"),
    ("n_items: " + "9" * 5_000, "999999"), ("hn_api_url: !!python/name:os.system", "python/name"),
    ("n_items: 2020-01-01", "datetime.date(2020, 1, 1)"), ("n_items: !!float abc", "abc"),
    ("n_items: !!timestamp x", "not valid YAML"), ("n_items: " + "[" * 500, "not valid YAML"),
    ("n_items: " + "[" * 500 + "]" * 500, "nested too deeply"), (b"n_items: \x80", "not UTF-8"),
    ("snowflake_env: {password: hunter2}", "password"),
    ("snowflake_password: x", "snowflake_password"),
], ids=lambda value: (value if isinstance(value, str) else repr(value))[:24])
def test_yaml_surprises_in_a_params_file_are_refused_naming_the_value(tmp_path: Path, line: str | bytes,
                                                                      named: str) -> None:
    path = tmp_path / "local.yaml"
    path.write_bytes(b"environment: local\n" + (line if isinstance(line, bytes) else line.encode()) + b"\n")
    with pytest.raises(ParameterError) as error:
        params.load_params_file(path)
    one_line_hnpipe_error(error.value)
    assert named in str(error.value) and str(path) in str(error.value)


# -- identifiers and warehouse names --------------------------------------------------------------
names = st.one_of(
    st.text(max_size=140), st.text(alphabet=string.ascii_uppercase + string.digits + "_", max_size=140),
    st.sampled_from(["", "ITEMS", "items", "ITEMS;DROP TABLE X", 'IT"EMS', "ITEMS ", "Ä", "ITEMS\n",
                     "1ITEMS", "_ITEMS", "A" * 128, "A" * 129, "ITEMS\x00", "İTEMS", "ＩＴＥＭＳ"]),
    st.none(), st.integers(), st.binary(max_size=10), st.lists(st.text(max_size=3), max_size=2),
)


@fuzz
@given(names)
def test_check_identifier_accepts_exactly_the_safe_names(name: object) -> None:
    if refused(environments.check_identifier, name) is None:
        assert isinstance(name, str) and IDENTIFIER.fullmatch(name), repr(name)
    else:
        assert not (isinstance(name, str) and IDENTIFIER.fullmatch(name))


@fuzz
@given(names, names)
def test_targets_refuse_unsafe_database_or_schema_names(database: object, schema: object) -> None:
    if refused(Target, database, schema) is None:
        assert all(isinstance(n, str) and IDENTIFIER.fullmatch(n) for n in (database, schema))


ITEMS = empty_items_frame()


@fuzz
@given(names)
def test_warehouse_refuses_unsafe_names_before_touching_the_disk(name: object) -> None:
    safe = isinstance(name, str) and IDENTIFIER.fullmatch(name)
    assume(not safe)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "warehouse"
        warehouse = DuckDBWarehouse(directory)
        target = Target("LOCAL", "TESTER")
        for call in (
            lambda: warehouse.path(name),
            lambda: warehouse.database_exists(name),
            lambda: warehouse.publish_frame(target, name, ITEMS, "run1"),
            lambda: warehouse.publish_query(target, name, "SELECT 1 AS ID", "run1"),
            lambda: warehouse.append_rows(target, name, ITEMS),
            lambda: warehouse.read_table(target, name),
            lambda: warehouse.table_exists(target, name),
            lambda: warehouse.clone_database("LOCAL", name),
            lambda: warehouse.clone_database(name, "PRODUCTION_CLONE_1"),
            lambda: warehouse.drop_database(name),
            lambda: diff.diff_databases(warehouse, "LOCAL", name),
        ):
            assert refused(call) is not None, f"{name!r} accepted"
        assert not directory.exists(), f"{name!r}: something was written before the refusal"


# -- environment variables that choose where a run writes -----------------------------------------
env_values = st.one_of(st.text(alphabet=st.characters(blacklist_characters="\x00",
                                                      blacklist_categories=("Cs",)), max_size=30),
                       st.sampled_from(["local", "LOCAL", "production", " branch", "branch", "0", "007",
                                        "123", "-1", "1e3", "12a", "９", "duckdb", "duckdb:", "snowflake ",
                                        "duckdb:/tmp/x", "nan", "inf", "-0.5", "30", ""]))


@fuzz
@given(st.fixed_dictionaries({}, optional={
    "HNPIPE_ENV": env_values, "HNPIPE_PR_ID": env_values, "HNPIPE_DEV_SCHEMA": env_values,
    "GITHUB_REF": st.one_of(env_values, env_values.map(lambda v: f"refs/pull/{v}/merge")),
    "CI_MERGE_REQUEST_IID": env_values, "USER": env_values}),
    st.sampled_from(environments.ENVIRONMENTS + ("prod", "", "LOCAL")))
def test_environment_variables_resolve_to_a_safe_target_or_are_refused(environ: dict, requested: str) -> None:
    try:
        target = environments.resolve(requested, environ)
    except HnpipeError as error:
        one_line_hnpipe_error(error)
    else:
        assert requested == (environ.get("HNPIPE_ENV") or "local")
        assert IDENTIFIER.fullmatch(target.database) and IDENTIFIER.fullmatch(target.schema)
        if requested != "production":
            assert target.database != "PRODUCTION"


DOTENV_KEYS = [*config.PROCESS_ONLY, "HNPIPE_DEV_SCHEMA", "HNPIPE_WAREHOUSE", "SNOWFLAKE_USER", "USER"]


@fuzz
@given(st.dictionaries(st.sampled_from(DOTENV_KEYS), env_values, max_size=4),
       st.sampled_from(environments.ENVIRONMENTS))
def test_a_dotenv_never_chooses_where_a_run_writes(scratch_run: Path, entries: dict, requested: str) -> None:
    """.env, fuzzed: one that sets HNPIPE_ENV or a PR id is refused whole (naming the file and the
    variable, loading nothing); any other leaves the process's environment (local here) in charge."""
    import os

    dotenv = scratch_run / "project" / ".env"
    dotenv.write_text("".join(f"{key}={json.dumps(value, ensure_ascii=False)}\n" for key, value in entries.items()),
                      encoding="utf-8")
    saved = dict(os.environ)
    try:
        chosen = [key for key in config.PROCESS_ONLY if key in entries]
        error = refused(environments.process_environment)
        if chosen:
            assert error is not None and str(dotenv) in str(error) and chosen[0] in str(error), entries
            assert dict(os.environ) == saved, "nothing of a refused .env is loaded"
            return
        assert error is None, entries
        assert environments.process_environment() == "local"
        for key in config.PROCESS_ONLY:
            assert os.environ.get(key) == saved.get(key)
        if refused(environments.resolve, requested) is None:
            assert requested == "local"
    finally:
        os.environ.clear()
        os.environ.update(saved)


@fuzz
@given(env_values, env_values)
def test_warehouse_settings_from_the_environment_are_checked(spec: str, lock_timeout: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            resolved = str(spec_for("local", {"HNPIPE_WAREHOUSE": spec}))
        except HnpipeError as error:
            one_line_hnpipe_error(error)
        else:
            assert resolved == "snowflake" or resolved.startswith("duckdb:/")
        try:
            warehouse = DuckDBWarehouse(Path(scratch) / "warehouse", lock_timeout_s=lock_timeout)
        except HnpipeError as error:
            one_line_hnpipe_error(error)
        else:
            assert 0 <= warehouse.lock_timeout_s < math.inf
        assert not (Path(scratch) / "warehouse").exists()


# -- `hnpipe run`, in process: refused input creates nothing --------------------------------------
@pytest.fixture
def scratch_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root of our own (pyproject.toml + params/), and where a run would write."""
    (tmp_path / "project" / "params").mkdir(parents=True)
    (tmp_path / "project" / "pyproject.toml").write_text("")
    monkeypatch.setenv("HNPIPE_ROOT", str(tmp_path / "project"))
    monkeypatch.setenv("HNPIPE_WAREHOUSE", f"duckdb:{tmp_path / 'warehouse'}")
    monkeypatch.setenv("HNPIPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("HNPIPE_ENV", raising=False)
    return tmp_path


def assert_refused_without_side_effects(scratch: Path, argv: list[str], capsys) -> None:
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 1, (argv, err)
    assert err.startswith("hnpipe: error: ") and err.count("\n") == 1, err
    assert not (scratch / "warehouse").exists() and not (scratch / "runs").exists(), argv


@fuzz
@given(params_files)
def test_hnpipe_run_refuses_a_bad_params_file_and_creates_nothing(scratch_run: Path, capsys,
                                                                  content: str | bytes) -> None:
    path = config.params_dir() / "local.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        values = params.load_params_file(path)
        params.validate(values)
        valid = values.get("environment") == "local"
    except HnpipeError:
        valid = False
    assume(not valid)  # a valid file would start a real run
    assert_refused_without_side_effects(scratch_run, ["run", "--env", "local"], capsys)


@fuzz
@given(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(YAML_SURPRISES)),
    st.text(max_size=40)))
def test_hnpipe_run_refuses_a_bad_override_and_creates_nothing(scratch_run: Path, capsys, text: str) -> None:
    (config.params_dir() / "local.yaml").write_bytes((ROOT / "params" / "local.yaml").read_bytes())
    try:
        params.parse_override(text)
        valid = True
    except HnpipeError:
        valid = False
    assume(not valid)
    assert_refused_without_side_effects(scratch_run, ["run", "--env", "local", f"--param={text}"], capsys)


# -- where the HN client may go ---------------------------------------------------------------------
BAD_URLS = [
    "https://jane:hunter2@hacker-news.firebaseio.com/v0", "http://hunter2@h.test/v0",
    "http://169.254.169.254/latest/meta-data", "http://[fe80::1%25eth0]/v0", "http://metadata.google.internal/v0",
    "http://[::ffff:169.254.169.254]/v0", "http://0.0.0.0/v0", "http://224.0.0.1/v0",
    "https://h.test/v0?auth=hunter2", "https://h.test/v0#frag", "https://h.test/v0?", "http://h.test:99999/v0",
    "http://h.test:0/v0", "http://h.test:/v0", "http://h.test:port/v0", "http://h .test/v0",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_hnpipe_run_refuses_a_url_with_credentials_or_an_unsafe_host_without_echoing_it(
        scratch_run: Path, capsys, url: str) -> None:
    (config.params_dir() / "local.yaml").write_bytes((ROOT / "params" / "local.yaml").read_bytes())
    status = cli.main(["run", "--env", "local", "--param", f"hn_api_url={url}"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("hnpipe: error: ") and err.count("\n") == 1, err
    assert "hunter2" not in err
    assert not (scratch_run / "warehouse").exists() and not (scratch_run / "runs").exists()


@pytest.mark.parametrize("env", ["staging", "production", "branch"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/v0", "http://localhost:8765/v0", "http://10.1.2.3/v0",
                                 "http://192.168.0.10/v0", "http://[::1]:8765/v0", "http://2130706433/v0"])
def test_outside_local_runs_a_private_hn_host_must_be_listed(env: str, url: str) -> None:
    values = {"environment": env, "hn_api_url": url}
    error = refused(params.validate, values)
    assert error is not None and "hn_api_private_hosts" in str(error)
    host = url.split("//")[1].rsplit(":", 1)[0].split("/")[0] if "[" not in url else "::1"
    assert refused(params.validate, {**values, "hn_api_private_hosts": [host.strip("[]")]}) is None
    assert refused(params.validate, {**values, "environment": "local"}) is None
