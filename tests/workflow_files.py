"""The CI workflow files as data, and the hnpipe commands their shell steps run: shared by
test_workflows.py, test_workflow_steps.py and test_pr_rehearsal.py. Not a test file, so no test
module imports another.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / ".github" / "workflows"
GITHUB_FILES = ["ci.yml", "branch-deployment.yml", "production.yml", "backfill.yml"]
# What the shell variables the scripts pass as --env and --to hold (others become "1").
SCRIPT_VALUES = {"HNPIPE_ENV": "staging", "BACKFILL_TO": "maxitem"}
GITLAB = ROOT / ".gitlab-ci.yml"
# GitLab keywords that are not jobs.
GITLAB_KEYWORDS = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache",
                   "before_script", "after_script"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def github(name: str) -> dict[str, Any]:
    return load(GITHUB / name)


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    return workflow.get("on", workflow.get(True))


def gitlab_document(path: Path = GITLAB) -> dict[str, Any]:
    """A GitLab CI file with its `include: local` files merged in (the file's own keys win)."""
    document = load(path)
    merged: dict[str, Any] = {}
    for entry in document.get("include", []):
        included = gitlab_document(ROOT / entry["local"].lstrip("/"))
        merged.update({key: value for key, value in included.items() if key != "variables"})
        merged["variables"] = {**merged.get("variables", {}), **included.get("variables", {})}
    variables = {**merged.get("variables", {}), **document.get("variables", {})}
    merged.update(document)
    if variables:
        merged["variables"] = variables
    merged.pop("include", None)
    return merged


def gitlab_files() -> list[Path]:
    """.gitlab-ci.yml and the child pipelines its trigger jobs include."""
    files = [GITLAB]
    for body in load(GITLAB).values():
        if isinstance(body, dict) and isinstance(body.get("trigger"), dict) and "include" in body["trigger"]:
            include = body["trigger"]["include"]
            if isinstance(include, str):  # a file in the repository (not one a job generates, as backfill's)
                files.append(ROOT / include)
    return files


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    """GitLab jobs with their `extends` merged in (hidden templates, .name, left out), those of
    the child pipelines too (each with its own file's templates)."""
    jobs: dict[str, dict[str, Any]] = {}
    for path in gitlab_files():
        jobs.update(_gitlab_file_jobs(gitlab_document(path)))
    return jobs


def _gitlab_file_jobs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    templates = {name: body for name, body in document.items() if name.startswith(".")}

    def resolved(body: dict[str, Any]) -> dict[str, Any]:
        parent = body.get("extends")
        if not parent:
            return dict(body)
        base = resolved(templates[parent])
        merged = {**base, **body}
        for key in ("variables",):  # GitLab deep-merges hashes
            if key in base and key in body:
                merged[key] = {**base[key], **body[key]}
        merged.pop("extends")
        return merged

    return {name: resolved(body) for name, body in document.items()
            if not name.startswith(".") and name not in GITLAB_KEYWORDS}


# -- shell scripts -> hnpipe commands ------------------------------------------------------
def github_scripts(workflow: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(job, script) for every `run:` step, in order."""
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            if "run" in step:
                yield job_name, step["run"]


def gitlab_scripts() -> Iterator[tuple[str, str]]:
    for job_name, job in gitlab_jobs().items():
        for key in ("before_script", "script", "after_script"):
            for script in job.get(key, []):
                yield job_name, script


def hnpipe_commands(script: str, values: dict[str, str] | None = None) -> list[list[str]]:
    """The argument lists of the `hnpipe` commands in a shell script, in order.

    CI expressions (${{ ... }}) and shell variables become `values[name]`, else "1"; an
    argument list built at run time ("$@") is left out; redirections, pipes and the rest of
    the shell are cut away. Heredoc bodies are skipped.
    """
    values = values or {}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name.strip(), "1")

    commands = []
    lines = iter(script.replace("\\\n", " ").splitlines())
    for line in lines:
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", line)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
        if not re.search(r"(^|[\s;&|({])hnpipe\s", line):
            continue
        line = line.replace('"$@"', "")
        line = re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}|\$\{(\w+)\}|\$(\w+)", substitute, line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("();<>|&"):
                if words[:1] == ["hnpipe"]:
                    commands.append(words[1:])
                words = []
                if token in (">", ">>", "<"):
                    words = ["<redirect>"]  # the next word is a file name, not a command
            elif words[:1] == ["<redirect>"]:
                words = []
            elif words or token not in ("if", "then", "else", "do", "!", "{", "}"):
                words.append(token)
    return commands


def all_hnpipe_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name in GITHUB_FILES:
        for job, script in github_scripts(github(name)):
            found += [(f"{name}:{job}", command) for command in hnpipe_commands(script, SCRIPT_VALUES)]
    for job, script in gitlab_scripts():
        found += [(f".gitlab-ci.yml:{job}", command) for command in hnpipe_commands(script, SCRIPT_VALUES)]
    return found


def step_commands(job: dict[str, Any], values: dict[str, str] | None = None) -> list[list[str]]:
    return [command for step in job.get("steps", []) if "run" in step
            for command in hnpipe_commands(step["run"], values)]
