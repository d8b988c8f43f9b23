"""Parameter validation: params files, -p overrides and what papermill injects."""

from __future__ import annotations

import re
from pathlib import Path

import papermill
import pytest
from hnpipe import datasets, params
from hnpipe.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILES = sorted((ROOT / "params").glob("*.yaml"))
# Every dataset's notebook (the registry's) and explore, which reads them.
NOTEBOOKS = [dataset.notebook for dataset in datasets.dependency_order()] + ["explore.ipynb"]


def test_there_is_a_params_file_per_environment() -> None:
    assert [p.stem for p in PARAMS_FILES] == sorted(["local", "staging", "production", "branch"])


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_params_file_is_valid_and_names_its_environment(path: Path) -> None:
    values = params.load_params_file(path)
    assert values["environment"] == path.stem


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_key_is_in_the_one_parameter_set(path: Path) -> None:
    """One set of names (a notebook declares those it uses); the run-safety ones are in every file."""
    keys = set(params.load_params_file(path))
    assert keys <= set(params.PARAMETERS), keys - set(params.PARAMETERS)
    assert {"request_deadline_s", "hn_api_private_hosts", "max_shrink", "allow_shrink"} <= keys


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_parameters_cell_matches_declared_defaults(notebook: str) -> None:
    declared = papermill.inspect_notebook(str(ROOT / "notebooks" / notebook))
    assert "environment" in declared and set(declared) <= set(params.PARAMETERS)
    if notebook == "items.ipynb":  # the fetch's parameters, where the fetch is
        assert {"n_items", "hn_api_url", "concurrency", "request_deadline_s", "hn_api_private_hosts"} <= set(declared)
    for name in declared:
        assert eval(declared[name]["default"]) == params.PARAMETERS[name].default, name  # noqa: S307 - our literals


@pytest.mark.parametrize("values,message", [
    ({"n_items": "10"}, "parameter n_items='10' (str) is not a whole number"),
    ({"n_items": True}, "parameter n_items=True (bool) is not a whole number"),
    ({"n_items": 0}, "n_items=0 is not allowed: use a whole number from 1"),
    ({"n_items": 10_000_000}, "n_items=10000000 is not allowed"),
    ({"environment": "prod"}, "environment='prod' is not allowed: choose one of local, staging"),
    ({"environment": False}, "environment=False (bool) is not a string"),
    ({"hn_api_url": "ftp://x"}, "hn_api_url='ftp://x' is not allowed: use 'sample'"),
    ({"concurrency": 0}, "concurrency=0 is not allowed"),
    ({"max_answer_mb": 0}, "max_answer_mb=0 is not allowed: use a whole number of MiB from 1 to 64"),
    ({"max_answer_mb": 65}, "max_answer_mb=65 is not allowed"),
    ({"colour": "red"}, "unknown parameter 'colour': allowed are environment, n_items"),
    ({"snowflake_password": "hunter2"}, "refused parameter 'snowflake_password': secrets are never"),
    ({"api_token": "x"}, "refused parameter 'api_token'"),
    ({"snowflake_env": {"password": "hunter2"}}, "'password' must name an environment variable"),
    ({"snowflake_env": {"colour": "X"}}, "key 'colour' is not one of account, user"),
])
def test_validate_refuses_with_one_line_naming_key_and_value(values: dict, message: str) -> None:
    with pytest.raises(ParameterError) as refused:
        params.validate(values)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_validate_fills_defaults() -> None:
    values = params.validate({"n_items": 5})
    assert values == {"environment": "local", "n_items": 5, "hn_api_url": "sample",
                      "concurrency": 32, "snowflake_env": {}, "branch_role": "", "keep_versions": 5,
                      "refresh": "full", "refresh_window": 500, "hn_api_private_hosts": [],
                      "request_deadline_s": 60, "max_answer_mb": 1, "max_shrink": 0.5, "shrink_window_days": 30,
                      "allow_shrink": False,
                      "id_min": None, "id_max": None, "max_requests_per_s": 0, "backfill_id": "",
                      "backfill_shard": 0}


@pytest.mark.parametrize("values,message", [
    ({"id_max": 10}, "parameter id_max=10 needs id_min too"),
    ({"id_min": 10, "id_max": 9}, "id_max is below id_min"),
    ({"id_min": 1, "id_max": params.MAX_ITEMS + 1}, "more than 5,000,000; fetch a longer history with `hnpipe backfill`"),
    ({"id_min": 0}, "parameter id_min=0 is not allowed: use an HN item id from 1"),
    ({"backfill_id": "BF_20261207T010000"}, "needs backfill_shard, id_min and id_max"),
    ({"backfill_id": "x; drop"}, "use a backfill id that `hnpipe backfill plan` printed"),
    ({"max_requests_per_s": -1}, "use requests per second from 0"),
])
def test_id_range_and_backfill_parameters_are_checked_together(values: dict, message: str) -> None:
    with pytest.raises(ParameterError) as refused:
        params.validate(values)
    assert message in str(refused.value)


def test_an_id_range_is_taken_whole_and_one_override_alone_is_fine() -> None:
    assert params.validate({"id_min": 5, "id_max": 5})["id_max"] == 5
    assert params.parse_override("id_max=7") == ("id_max", 7)  # checked with the rest later


@pytest.mark.parametrize("text,message", [
    ("environment: local\nn_items: 0123\n", "ambiguous YAML number '0123' (line 2)"),
    ("environment: no\n", "ambiguous YAML value 'no' (line 1)"),
    ("environment: local\nn_items: 1_000\n", "ambiguous YAML number '1_000'"),
    ("environment: local\nn_items: 0x10\n", "ambiguous YAML number '0x10'"),
    ("environment: local\nn_items: [1\n", "not valid YAML"),
    ("- local\n", "expected a mapping"),
    ("n_items: 5\n", "missing 'environment'"),
    ("environment: local\nn_items: 10.5\n", "n_items=10.5 (float) is not a whole number"),
])
def test_params_file_yaml_surprises_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(text)
    with pytest.raises(ParameterError) as refused:
        params.load_params_file(path)
    assert message in str(refused.value)
    assert str(path) in str(refused.value)


def test_quoted_strings_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text('environment: "local"\nhn_api_url: "sample"\nn_items: 12\n')
    assert params.load_params_file(path) == {"environment": "local", "hn_api_url": "sample", "n_items": 12}


@pytest.mark.parametrize("text,expected", [
    ("n_items=500", ("n_items", 500)),
    ("hn_api_url=http://127.0.0.1:9/v0", ("hn_api_url", "http://127.0.0.1:9/v0")),
    ("environment=local", ("environment", "local")),
])
def test_parse_override(text: str, expected: tuple) -> None:
    assert params.parse_override(text) == expected


@pytest.mark.parametrize("text,message", [
    ("n_items", "write KEY=VALUE"),
    ("n_items=abc", "n_items='abc' (str) is not a whole number"),
    ("n_items=012", "ambiguous YAML number '012'"),
    ("colour=red", "unknown parameter 'colour'"),
])
def test_parse_override_refuses(text: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        params.parse_override(text)


def test_injected_names_read_from_papermill_cell_history() -> None:
    namespace = {"In": ["", 'environment = "local"\nn_items = 5',
                        '# Parameters\nn_items = 7\ncolour = "red"\n', "x = 1"],
                 "n_items": 7, "colour": "red", "environment": "local"}
    assert params.injected_names(namespace) == ["n_items", "colour"]
    with pytest.raises(ParameterError, match="unknown parameter 'colour'"):
        params.from_namespace(namespace)


def test_from_namespace_ignores_notebook_variables_outside_the_injected_cell() -> None:
    namespace = {"In": ["", 'environment = "local"'], "environment": "local", "items": object(),
                 "n_items": 3}
    assert params.from_namespace(namespace)["n_items"] == 3


def test_admin_parameters_are_declared_apart_from_the_pipeline_ones() -> None:
    admin = {**params.PARAMETERS, **params.ADMIN_PARAMETERS}
    values = params.validate({"action": "clone", "pr_id": 12, "keep_prs": [3, 4], "apply": True},
                             declared=admin)
    assert (values["action"], values["pr_id"], values["keep_prs"], values["apply"]) == ("clone", 12, [3, 4], True)
    assert params.validate({}, declared=admin)["pr_id"] is None
    with pytest.raises(ParameterError, match="unknown parameter 'action'"):
        params.validate({"action": "clone"})  # pipeline notebooks do not take it
    for bad, message in [({"action": "nuke"}, "action='nuke' is not allowed: choose one of clone, drop"),
                         ({"pr_id": "12"}, "pr_id='12' (str) is not a whole number or None"),
                         ({"pr_id": 0}, "pr_id=0 is not allowed"),
                         ({"apply": 1}, "apply=1 (int) is not true or false"),
                         ({"keep_prs": [1, "2"]}, "keep_prs=[1, '2'] is not allowed")]:
        with pytest.raises(ParameterError, match=re.escape(message)):
            params.validate(bad, declared=admin)


# -- issue 18 row 9: duplicate keys, text length limits -----------------------------------------
def test_a_duplicate_key_in_a_params_file_is_refused_naming_it_and_both_lines() -> None:
    text = "environment: local\nn_items: 10\nconcurrency: 4\nn_items: 20\n"
    with pytest.raises(ParameterError) as refused:
        params.parse_yaml(text, "params/local.yaml")
    assert str(refused.value) == ("params/local.yaml: duplicate key 'n_items' on lines 2 and 4: "
                                  "a key may appear once (the last would silently win); delete one")
    nested = "snowflake_env:\n  user: A\n  user: B\n"
    with pytest.raises(ParameterError, match="duplicate key 'user' on lines 2 and 3"):
        params.parse_yaml(nested, "params/staging.yaml")
    # A YAML merge key (<<) overriding what it merges is not a duplicate.
    assert params.parse_yaml("a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n", "f") == {"a": {"k": 1}, "b": {"k": 2}}


def test_every_text_parameter_has_a_length_limit() -> None:
    for spec in [*params.PARAMETERS.values(), *params.ADMIN_PARAMETERS.values()]:
        kinds = spec.type if isinstance(spec.type, tuple) else (spec.type,)
        if str in kinds or list in kinds:
            assert spec.max_length and spec.max_length <= 4096, spec.name
    huge = "https://example.com/" + "a" * 50_000_000  # 50 MB used to pass validation
    with pytest.raises(ParameterError) as refused:
        params.validate({"hn_api_url": huge})
    assert str(refused.value) == ("parameter hn_api_url is 50,000,020 characters long: "
                                  "at most 2,048 are allowed")
    with pytest.raises(ParameterError, match="hn_api_private_hosts is 1,000 characters long"):
        params.validate({"hn_api_private_hosts": ["a" * 1000]})


# -- issue 18 row 10: credentials however the @ or : is written ----------------------------------
@pytest.mark.parametrize("url", [
    "https://user:s3cretpw%40hn.example.com/v0",        # @ percent-encoded
    "https://user:s3cretpw%2540hn.example.com/v0",      # ... twice
    "https://user:s3cretpw\uff20hn.example.com/v0",     # full-width ＠
    "https://user\uff1as3cretpw\ufe6bhn.example.com/v0",  # full-width colon, small commercial at
    "https://s3cretpw\uff20hn.example.com/v0",          # no colon at all
    "https://user:s3cretpw@hn.example.com/v0",          # the plain form, as before
    "https://xn--user:s3cretpw-8785e.example.com/v0",    # IDNA: the label decodes to user:s3cretpw＠
])
def test_credentials_in_a_url_are_refused_and_never_echoed(url: str) -> None:
    from hnpipe.hn_url import shown_url

    with pytest.raises(ParameterError) as refused:
        params.validate({"hn_api_url": url})
    message = str(refused.value)
    assert "s3cretpw" not in message and "must not hold a user name or password" in message, message
    assert "s3cretpw" not in shown_url(url)
