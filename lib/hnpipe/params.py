"""Notebook parameters: one declared set, validated wherever a run starts.

Every pipeline notebook accepts the same parameters (so one params file serves them all).
papermill only *warns* about an unknown parameter and injects any type it is given, so
hnpipe checks both: in `hnpipe run` before any notebook starts, and in the notebook itself
(`pipeline.start`) before anything is fetched or written.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from hnpipe import config
from hnpipe.credentials import looks_like_secret_key
from hnpipe.environments import ENVIRONMENTS, unknown_environment
from hnpipe.errors import ParameterError, one_line
from hnpipe.hn_url import check_private_hosts, host_kind, shown_url, url_problem

MAX_ITEMS = 5_000_000
MAX_ANSWER_MB = 64  # max_answer_mb's ceiling: 64 MiB x 256 in flight is already 16 GiB
_ENV_VAR = re.compile(r"[A-Z_][A-Z0-9_]{0,127}", re.ASCII)
# Credential settings a params file may map to environment-variable *names*.
CREDENTIAL_SETTINGS = ("account", "user", "password", "private_key_file", "role", "warehouse",
                       "private_key_file_pwd", "authenticator", "workload_identity_provider", "token_file", "token")

def _check_environment(value: str) -> None:
    if value not in ENVIRONMENTS:
        raise ValueError(f"choose one of {', '.join(ENVIRONMENTS)}")


def _check_n_items(value: int) -> None:
    if not 1 <= value <= MAX_ITEMS:
        raise ValueError(f"use a whole number from 1 to {MAX_ITEMS:,}")


def _check_url(value: str) -> None:
    if value == "sample":
        return
    problem = url_problem(value)
    if problem:
        raise ValueError(problem)


def check_destination(values: Mapping[str, Any]) -> None:
    """Outside local runs the HN API may be on a loopback or private host only when
    `hn_api_private_hosts` lists it (a mirror inside the network); the bundled sample is hnpipe's own."""
    from urllib.parse import urlsplit

    url = values.get("hn_api_url", PARAMETERS["hn_api_url"].default)
    env = values.get("environment", PARAMETERS["environment"].default)
    if not isinstance(url, str) or url == "sample" or env == "local" or url_problem(url):
        return
    host = urlsplit(url).hostname or ""
    allowed = {h.strip("[]").rstrip(".").lower() for h in values.get("hn_api_private_hosts") or []}
    if host_kind(host) == "private" and host.strip("[]").rstrip(".").lower() not in allowed:
        raise ParameterError(
            f"parameter hn_api_url={shown_url(url)!r} is not allowed in {env}: {host} is a loopback or private "
            "host, which only local runs may fetch from; list it in hn_api_private_hosts if it really serves the HN API"
        )


def _check_fraction(value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError("use a fraction from 0 to 1, e.g. 0.5 (1 turns the shrink gate off)")


def _check_window_days(value: int) -> None:
    if not 0 <= value <= 3650:
        raise ValueError("use a whole number of days from 0 to 3650")


def _check_answer_mb(value: int) -> None:
    if not 1 <= value <= MAX_ANSWER_MB:
        raise ValueError(f"use a whole number of MiB from 1 to {MAX_ANSWER_MB}")


def _check_deadline(value: int) -> None:
    if not 1 <= value <= 3600:
        raise ValueError("use a whole number of seconds from 1 to 3600")


def _check_concurrency(value: int) -> None:
    if not 1 <= value <= 256:
        raise ValueError("use a whole number from 1 to 256")


def _check_snowflake_env(value: dict) -> None:
    for setting, variable in value.items():
        if setting not in CREDENTIAL_SETTINGS:
            raise ValueError(f"key {setting!r} is not one of {', '.join(CREDENTIAL_SETTINGS)}")
        if not isinstance(variable, str) or not _ENV_VAR.fullmatch(variable):
            raise ValueError(f"{setting!r} must name an environment variable such as "
                             f"SNOWFLAKE_{setting.upper()}, not hold a value")


def _check_role(value: str) -> None:
    if value and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,127}", value, re.ASCII):
        raise ValueError("use an upper-case Snowflake role name such as HNPIPE_BRANCH, or ''")


def _check_keep_versions(value: int) -> None:
    if not 0 <= value <= 100:
        raise ValueError("use a whole number from 0 to 100")


REFRESH_MODES = ("full", "incremental")  # how ITEMS is rebuilt: hnpipe.refresh


def _check_refresh(value: str) -> None:
    if value not in REFRESH_MODES:
        raise ValueError(f"choose one of {', '.join(REFRESH_MODES)}")


def _check_refresh_window(value: int) -> None:
    if not 0 <= value <= MAX_ITEMS:
        raise ValueError(f"use a whole number of ids from 0 to {MAX_ITEMS:,}")


MAX_ITEM_ID = 2**53  # far above HN's ids (about 51 million in 2026), and exact in a float


def _check_item_id(value: int | None) -> None:
    if value is not None and not 1 <= value <= MAX_ITEM_ID:
        raise ValueError(f"use an HN item id from 1 to {MAX_ITEM_ID:,}, or None")


def _check_backfill_id(value: str) -> None:
    if value and not re.fullmatch(r"BF_[0-9]{8}T[0-9]{6}(_[A-Z0-9]{1,16})?", value, re.ASCII):
        raise ValueError("use a backfill id that `hnpipe backfill plan` printed, e.g. BF_20261207T010000, or ''")


def _check_backfill_shard(value: int) -> None:
    if not 0 <= value <= 1_000_000:
        raise ValueError("use a shard number from the backfill plan (1 and up), or 0 outside a backfill")


def _check_rate(value: float) -> None:
    if not 0 <= value <= 100_000:
        raise ValueError("use requests per second from 0 (no budget) to 100,000")


def check_id_range(values: Mapping[str, Any]) -> None:
    """id_min and id_max together: id_max needs id_min, is not below it, and the range holds
    at most MAX_ITEMS ids (a longer history is a backfill, in shards)."""
    low, high = values.get("id_min"), values.get("id_max")
    if high is not None and low is None:
        raise ParameterError(f"parameter id_max={high} needs id_min too (the range is id_min..id_max, inclusive)")
    if low is not None and high is not None:
        if high < low:
            raise ParameterError(f"parameters id_min={low} and id_max={high} are not allowed: id_max is below id_min")
        if high - low + 1 > MAX_ITEMS:
            raise ParameterError(f"parameters id_min={low} and id_max={high} are not allowed: {high - low + 1:,} ids, "
                                 f"more than {MAX_ITEMS:,}; fetch a longer history with `hnpipe backfill`")
    if values.get("backfill_id") and (low is None or high is None or not values.get("backfill_shard")):
        raise ParameterError(f"parameter backfill_id={values['backfill_id']!r} needs backfill_shard, id_min and id_max "
                             "(`hnpipe backfill run` passes them)")


def _check_action(value: str) -> None:
    if value not in ADMIN_ACTIONS:
        raise ValueError(f"choose one of {', '.join(ADMIN_ACTIONS)}")


def _check_pr_id(value: int | None) -> None:
    if value is not None and not 1 <= value <= 9_999_999_999:
        raise ValueError("use the pull request's number (1 to 10 digits), e.g. 123, or None to read HNPIPE_PR_ID")


def _check_days(value: int) -> None:
    if not 0 <= value <= 3650:
        raise ValueError("use a whole number of days from 0 to 3650")


def _check_hours(value: int) -> None:
    if not 0 <= value <= 24 * 3650:
        raise ValueError("use a whole number of hours from 0 to 87600")


def _check_pr_list(value: list) -> None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ValueError("use a list of pull-request numbers, e.g. [12, 15]")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type | tuple[type, ...]
    default: Any
    help: str
    check: Callable[[Any], None] | None = None
    # Text (a string, or each string of a list) longer than this is refused before any other
    # check reads it: every text parameter has one (tests/test_params.py checks).
    max_length: int | None = None


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("environment", str, "local",
                  "the environment this run is for; must match HNPIPE_ENV", _check_environment, 16),
        Parameter("n_items", int, 1000, f"how many of the most recent HN items to fetch (1 to {MAX_ITEMS:,})",
                  _check_n_items),
        Parameter("hn_api_url", str, "sample",
                  "HN API base URL, or 'sample' for the bundled offline sample (at most 2,048 characters)",
                  _check_url, 2048),
        Parameter("concurrency", int, 32, "parallel HN API requests (1 to 256)", _check_concurrency),
        Parameter("hn_api_private_hosts", list, [],
                  "loopback or private hosts hn_api_url may name outside local runs (a mirror inside the "
                  "network); link-local and metadata addresses never", check_private_hosts, 255),
        Parameter("request_deadline_s", int, 60,
                  "the most one HN API request may take, every attempt and backoff included; a fetch is "
                  "bounded by it too (request_deadline_s x ids per worker); 1 to 3600", _check_deadline),
        Parameter("max_answer_mb", int, 1,
                  "the most one HN API answer may be, in MiB, as it arrives and again decompressed (the "
                  "largest items are tens of KB); a larger answer fails the fetch naming the id; 1 to 64",
                  _check_answer_mb),
        Parameter("snowflake_env", dict, {},
                  "which environment variables hold each Snowflake credential (names, never values)",
                  _check_snowflake_env),
        Parameter("branch_role", str, "",
                  "Snowflake role that may read each new branch clone (USAGE, SELECT on all and future "
                  "tables; '' for none)", _check_role, 255),
        Parameter("max_shrink", (float, int), 0.5,
                  "the largest fraction of its rows a publish may take from the published ITEMS "
                  "(0.5: at least half stay; 1 turns the gate off); more is refused unless allow_shrink",
                  _check_fraction),
        Parameter("shrink_window_days", int, 30,
                  "ITEMS may also not fall below 1 - max_shrink of its largest size over its kept versions "
                  "and the last this many days of history, so runs that each shrink it a little are "
                  "refused too; 0 to 3650 (0: only the per-publish gate)", _check_window_days),
        Parameter("allow_shrink", bool, False,
                  "let this run shrink ITEMS past max_shrink (say so on purpose; the history records it)"),
        Parameter("keep_versions", int, 5,
                  "earlier versions of each table kept for `hnpipe restore` (0 to 100; 0 keeps none)",
                  _check_keep_versions),
        Parameter("refresh", str, "full",
                  "how ITEMS is rebuilt: full (fetch every id) or incremental (fetch the new ids "
                  "and the refresh_window below them, keep the rest)", _check_refresh, 16),
        Parameter("refresh_window", int, 500,
                  "incremental: how many ids below ITEMS' newest are fetched again, since their "
                  f"items may still change (scores, comments); 0 to {MAX_ITEMS:,}", _check_refresh_window),
        Parameter("id_min", (int, type(None)), None,
                  "the first id of an id range to fetch, inclusive (None: the n_items newest); "
                  "with it n_items is not used; 1 to 2^53", _check_item_id),
        Parameter("id_max", (int, type(None)), None,
                  "the last id of the range, inclusive (None with id_min: up to the API's maxitem); at most 5,000,000 ids "
                  "in one run (more: `hnpipe backfill`)",
                  _check_item_id),
        Parameter("max_requests_per_s", (float, int), 0,
                  "the request budget of this process: HN API requests started per second, a token "
                  "bucket (0: no budget; up to 100,000)", _check_rate),
        Parameter("backfill_id", str, "",
                  "set by `hnpipe backfill run`: the plan this shard belongs to; the fetch then goes to "
                  "the backfill stage and publish commits the shard instead of ITEMS ('' outside a backfill)",
                  _check_backfill_id, max_length=40),
        Parameter("backfill_shard", int, 0,
                  "set by `hnpipe backfill run`: which shard of the plan (0 outside a backfill)",
                  _check_backfill_shard),
    )
}

ADMIN_ACTIONS = ("clone", "drop", "list", "prune")
# admin.ipynb takes these on top of PARAMETERS; params files never set them.
ADMIN_PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("action", str, "list", "what to do with the branch clones", _check_action, 16),
        Parameter("pr_id", (int, type(None)), None,
                  "the pull request whose clone to make or drop (None: HNPIPE_PR_ID)", _check_pr_id),
        Parameter("older_than_days", int, 14, "prune: clones older than this are stale", _check_days),
        Parameter("keep_prs", list, [], "prune: open pull requests whose clones stay", _check_pr_list, 32),
        Parameter("min_age_hours", int, 24, "prune: clones younger than this stay, whatever keep_prs "
                  "says (0: none)", _check_hours),
        Parameter("apply", bool, False, "prune: drop the stale clones (False only lists them)"),
    )
}

def parameters_table(declared: Mapping[str, Parameter] = PARAMETERS) -> str:
    """A registry of parameters as docs/environments.md's Markdown table (tests/test_docs.py
    keeps the page equal to it): name, default as a params file writes it, help."""
    rows = ["| parameter | default | what it is |", "|---|---|---|"]
    for spec in declared.values():
        default = spec.default if isinstance(spec.default, str) and spec.default else json.dumps(spec.default)
        # A bare | would end the cell, and <PR> outside `code` would read as an HTML tag.
        parts = spec.help.replace("|", "\\|").split("`")
        text = "`".join(part.replace("<", "&lt;") if i % 2 == 0 else part for i, part in enumerate(parts))
        rows.append(f"| `{spec.name}` | `{default}` | {text} |")
    return "\n".join(rows)


_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", dict: "a mapping", list: "a list",
               bool: "true or false", type(None): "None"}


def _type_name(expected: type | tuple[type, ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_TYPE_NAMES[kind] for kind in kinds)


def _has_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    # bool is a subclass of int in Python: `n_items: yes` must not pass as 1.
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def validate(values: Mapping[str, Any], *, complete: bool = False,
             declared: Mapping[str, Parameter] = PARAMETERS, together: bool = True) -> dict[str, Any]:
    """Check names and types; returns the values merged over the defaults. `together`: also
    the rules across parameters (an id range); False for one `-p` override on its own.

    Raises ParameterError naming the key, the value and what is allowed.
    """
    for key, value in values.items():
        if looks_like_secret_key(key):
            raise ParameterError(
                f"refused parameter {key!r}: secrets are never parameters (papermill writes "
                "parameters into every executed notebook); put it in the environment or .env"
            )
        if key not in declared:
            # A YAML key may be anything (`?` alone is a null key): suggest only for text.
            close = difflib.get_close_matches(key, list(declared), n=1, cutoff=0.75) if isinstance(key, str) else []
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ParameterError(
                f"unknown parameter {key!r}{hint}: allowed are {', '.join(declared)}"
            )
        spec = declared[key]
        longest = max((len(text) for text in (value if isinstance(value, list) else [value])
                       if isinstance(text, str)), default=0)
        if spec.max_length is not None and longest > spec.max_length:  # not echoed: it may be huge
            raise ParameterError(f"parameter {key} is {longest:,} characters long: "
                                 f"at most {spec.max_length:,} are allowed")
        if not _has_type(value, spec.type):
            raise ParameterError(
                f"parameter {key}={_shown(value)} ({type(value).__name__}) is not "
                f"{_type_name(spec.type)}: {spec.help}"
            )
        if spec.check:
            try:
                spec.check(value)
            except ValueError as reason:
                raise ParameterError(f"parameter {key}={_shown(value)} is not allowed: {reason}") from None
    if complete:
        missing = [k for k in declared if k not in values]
        if missing:
            raise ParameterError(f"missing parameters: {', '.join(missing)}")
    check_destination(values)
    if together:
        check_id_range(values)
    return {**{k: p.default for k, p in declared.items()}, **values}


def _shown(value: Any, depth: int = 0) -> str:
    """A value fit for an error message: never what a secret-looking key holds (a password put
    in snowflake_env by mistake), nor a URL's credentials or query. Short: YAML anchors can make
    a value contain itself."""
    if isinstance(value, (Mapping, list)) and depth >= 3:
        return "..."
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {'***' if looks_like_secret_key(str(k)) else _shown(v, depth + 1)}"
                               for k, v in list(value.items())[:20]) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v, depth + 1) for v in value[:20]) + "]"
    text = repr(shown_url(value) if isinstance(value, str) else value)
    return text if len(text) <= 200 else text[:199] + "…"


# -- params files ------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """YAML without 1.1 surprises: `no`/`on` are not booleans, `0123` is not octal 83, and a
    key written twice is refused (PyYAML lets the last of two `n_items:` win silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` is overridden on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base class refuses it
            if first is not key_node:
                lines = f"{first.start_mark.line + 1} and {key_node.start_mark.line + 1}"
                raise ParameterError(f"duplicate key {str(key)[:60]!r} on lines {lines}: "
                                     "a key may appear once (the last would silently win); delete one")
        return super().construct_mapping(node, deep=deep)


def _strict_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    text = loader.construct_scalar(node)
    if text not in ("true", "false"):
        raise ParameterError(
            f"ambiguous YAML value {text!r} (line {node.start_mark.line + 1}): "
            "write true or false, or quote it to mean a string"
        )
    return text == "true"


def _strict_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if not re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
        raise ParameterError(
            f"ambiguous YAML number {text!r} (line {node.start_mark.line + 1}): "
            "write plain decimal digits without leading zeros, or quote it"
        )
    if len(text) > 30:  # no parameter needs more; int() itself refuses past 4,300 digits
        raise ParameterError(f"YAML number {text[:20]}... (line {node.start_mark.line + 1}) has "
                             f"{len(text.lstrip('-')):,} digits: far out of range for any parameter")
    return int(text)


_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _strict_bool)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _strict_int)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ParameterError as error:
        raise ParameterError(f"{source}: {error}") from None
    except yaml.YAMLError as error:
        raise ParameterError(f"{source}: not valid YAML: {one_line(error)}") from None
    except RecursionError:  # PyYAML recurses once per nesting level
        raise ParameterError(f"{source}: not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, AttributeError) as error:
        # PyYAML's own constructors raise these for explicit tags, e.g. `!!float abc`.
        reason = one_line(error, 120)
        raise ParameterError(f"{source}: not valid YAML: cannot read a value ({reason})") from None


def load_params_file(path: Path) -> dict[str, Any]:
    """Read and validate a params file (every key must be a notebook parameter)."""
    if not path.is_file():
        raise ParameterError(f"no params file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ParameterError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    values = parse_yaml(text, str(path))
    if not isinstance(values, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter: value")
    try:
        validate(values)
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}") from None
    if "environment" not in values:
        raise ParameterError(f"{path}: missing 'environment'")
    return values


def params_for(env: str, overrides: Mapping[str, Any] = (), root: Path | None = None) -> dict[str, Any]:
    """params/<env>.yaml with overrides applied, validated; refuses a mismatched environment.
    What `hnpipe run`, `hnpipe admin` and `hnpipe restore` run with."""
    if env not in ENVIRONMENTS:  # before a file name is made of it
        raise unknown_environment(env, "--env")
    values = load_params_file(config.params_dir(root) / f"{env}.yaml")
    overrides = dict(overrides)
    if "environment" in overrides and overrides["environment"] != env:
        raise ParameterError(
            f"-p environment={overrides['environment']} contradicts --env {env}: --env chooses the params "
            f"file and the environment; drop -p environment (or run --env {overrides['environment']})"
        )
    values.update(overrides)
    validate(values)
    if values["environment"] != env:
        raise ParameterError(
            f"params/{env}.yaml sets environment={values['environment']!r}; it must say {env!r}"
        )
    return values


def params_file_values(env: str) -> dict[str, Any]:
    """params/<env>.yaml as written (after loading .env), or {} when hnpipe is installed
    outside a checkout and has no params files: what read-only commands connect with."""
    try:
        config.load_env()
        params_file = config.params_dir() / f"{env}.yaml"
    except FileNotFoundError:
        return {}
    return load_params_file(params_file) if params_file.is_file() else {}


def parse_override(text: str) -> tuple[str, Any]:
    """`-p KEY=VALUE` on the command line; VALUE is read as a strict YAML scalar."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ParameterError(f"bad -p {text!r}: write KEY=VALUE, e.g. -p n_items=500")
    value = parse_yaml(raw, f"-p {key}") if raw else ""
    value = validate({key.strip(): value}, together=False)[key.strip()]
    return key.strip(), value


# -- inside a notebook -------------------------------------------------------------------
def injected_names(namespace: Mapping[str, Any]) -> list[str]:
    """Names papermill injected into this kernel, read from the executed-cell history.

    papermill adds a cell starting with '# Parameters' after the parameters cell; IPython
    keeps every executed cell's source in `In`. Without papermill there is no such cell.
    """
    history = namespace.get("In")
    if not isinstance(history, list):
        return []
    for source in reversed(history):
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    return []


def _assigned_names(source: str) -> list[str] | None:
    """The names a cell of nothing but plain assignments sets; None for any other cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names += [t.id for t in node.targets]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            return None
    return names


def parameter_cell_names(namespace: Mapping[str, Any],
                         declared: Mapping[str, Parameter] = PARAMETERS) -> list[str]:
    """Names the kernel's parameters cells set, read from its executed-cell history (`In`).

    A parameters cell is a cell of plain assignments that sets a declared parameter (or a
    name one typo away from one): the notebook's own, papermill's injected `# Parameters`
    cell, or one the analyst ran since. Walking back from the newest, the first such cell
    that sets `environment` is the whole parameters cell: older runs of it no longer count.
    Without a kernel (a dict of values) there is no history and nothing to check.
    """
    history = namespace.get("In")
    if not isinstance(history, list):
        return []
    found: list[str] = []
    for source in reversed(history):
        names = _assigned_names(source) if isinstance(source, str) else None
        injected = isinstance(source, str) and source.lstrip().startswith("# Parameters")
        if not names or not (injected or any(
                name in declared or difflib.get_close_matches(name, list(declared), n=1, cutoff=0.75)
                for name in names)):
            continue  # papermill's injected cell counts whatever it sets: `-p drop_everything 1`
        found += [name for name in names if name not in found]
        if "environment" in names:
            break
    return found


def from_namespace(namespace: Mapping[str, Any],
                   declared: Mapping[str, Parameter] = PARAMETERS) -> dict[str, Any]:
    """The run's parameters from a notebook's globals, refusing names its parameters cells
    (or papermill's injected cell) set that are not parameters, e.g. a typo `n_item = 50`.

    `declared` is PARAMETERS for the pipeline notebooks, {**PARAMETERS, **ADMIN_PARAMETERS}
    for admin.ipynb.
    """
    values = {name: namespace[name] for name in declared if name in namespace}
    for name in parameter_cell_names(namespace, declared):
        if name not in declared and name in namespace:
            values[name] = namespace[name]  # validate() names it and refuses it
    return validate(values, declared=declared)
