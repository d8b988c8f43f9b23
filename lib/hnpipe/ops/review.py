"""`hnpipe comment`: the branch run's report as one pull-request comment (GitHub) or
merge-request note (GitLab), updated on every push instead of adding another.

The report (changed datasets, row counts, the data diff: what the workflow also writes to the
job summary) gets a list of the run's HTML records (hnpipe.runner.records) with links: on
GitLab each file of the job's artifacts, on GitHub the run's artifact (GitHub serves an
artifact as one zip; upload-artifact@v4 gives its URL as the `artifact-url` output,
https://github.com/actions/upload-artifact/pull/496).

The one comment is found by a marker on its first line, among the comments listed page by page:
* GitHub: a pull request's conversation comments are issue comments. List, create and update:
  GET/POST /repos/{owner}/{repo}/issues/{number}/comments and
  PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}
  (https://docs.github.com/en/rest/issues/comments); token GITHUB_TOKEN (GH_TOKEN), the job
  needs `pull-requests: write`. Bodies are cut below GitHub's 65,536 characters.
* GitLab: GET/POST /projects/:id/merge_requests/:merge_request_iid/notes and
  PUT /projects/:id/merge_requests/:merge_request_iid/notes/:note_id
  (https://docs.gitlab.com/ee/api/notes.html#merge-requests); token HNPIPE_GITLAB_TOKEN
  (PRIVATE-TOKEN header; the `api` scope, since CI_JOB_TOKEN cannot write notes).

Outside GitHub Actions and GitLab CI the comment is printed, not posted (a local rehearsal).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from hnpipe.credentials import redact
from hnpipe.errors import HnpipeError

MARKER = "<!-- hnpipe branch deployment report -->"
MAX_BODY = 60_000  # under GitHub's 65,536-character limit, with room for the records list
PAGE = 100


class Platform:
    """Where the comment goes: list, create and update one pull request's comments."""

    name = ""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def require(self, *names: str) -> list[str]:
        missing = [name for name in names if not self.environ.get(name)]
        if missing:
            raise HnpipeError(f"cannot comment on {self.name}: {', '.join(missing)} not set")
        return [self.environ[name] for name in names]

    def request(self, method: str, url: str, headers: dict, body: dict | None = None):
        import requests

        try:
            response = requests.request(method, url, headers=headers, json=body, timeout=30)
        except requests.RequestException as error:
            raise HnpipeError(f"cannot comment on {self.name}: {method} {url}: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise HnpipeError(f"cannot comment on {self.name}: {method} {url} answered {response.status_code} "
                              f"{redact(response.text[:200])!r}")
        return response


class GitHub(Platform):
    name = "GitHub"

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ)
        self.api = environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        (self.repo,) = self.require("GITHUB_REPOSITORY")
        self.number = environ.get("HNPIPE_PR_ID") or ""
        if not self.number.isdigit():
            raise HnpipeError("cannot comment on GitHub: HNPIPE_PR_ID (the pull request number) not set")
        token = environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN")
        if not token:
            raise HnpipeError("cannot comment on GitHub: GITHUB_TOKEN (or GH_TOKEN) not set")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": "2022-11-28"}

    def comments(self) -> list[dict]:
        found, page = [], 1
        while True:
            batch = self.request("GET", f"{self.api}/repos/{self.repo}/issues/{self.number}/comments"
                                        f"?per_page={PAGE}&page={page}", self.headers).json()
            found += batch
            if len(batch) < PAGE:
                return found
            page += 1

    def create(self, body: str) -> str:
        self.request("POST", f"{self.api}/repos/{self.repo}/issues/{self.number}/comments", self.headers,
                     {"body": body})
        return f"commented on pull request #{self.number}"

    def update(self, comment: dict, body: str) -> str:
        self.request("PATCH", f"{self.api}/repos/{self.repo}/issues/comments/{comment['id']}", self.headers,
                     {"body": body})
        return f"updated the comment on pull request #{self.number}"

    def record_links(self, paths: list[str], url: str) -> list[str]:
        where = f"[the run's records (zip)]({url})" if url else "the run's `executed-notebooks` artifact"
        return [f"HTML records of this run, in {where}:", *(f"- `{path}`" for path in paths)]


class GitLab(Platform):
    name = "GitLab"

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ)
        api, project, self.iid, token = self.require("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID",
                                                     "HNPIPE_GITLAB_TOKEN")
        self.notes = f"{api.rstrip('/')}/projects/{project}/merge_requests/{self.iid}/notes"
        self.headers = {"PRIVATE-TOKEN": token}

    def comments(self) -> list[dict]:
        found, page = [], "1"
        while page:
            response = self.request("GET", f"{self.notes}?per_page={PAGE}&page={page}&sort=asc", self.headers)
            found += response.json()
            page = response.headers.get("X-Next-Page", "")
        return found

    def create(self, body: str) -> str:
        self.request("POST", self.notes, self.headers, {"body": body})
        return f"added the note to merge request !{self.iid}"

    def update(self, comment: dict, body: str) -> str:
        self.request("PUT", f"{self.notes}/{comment['id']}", self.headers, {"body": body})
        return f"updated the note on merge request !{self.iid}"

    def record_links(self, paths: list[str], url: str) -> list[str]:
        job = url or self.environ.get("CI_JOB_URL", "")
        return ["HTML records of this run (job artifacts):",
                *(f"- [{path}]({job}/artifacts/file/{path})" if job else f"- `{path}`" for path in paths)]


def platform(environ: Mapping[str, str]) -> Platform | None:
    if environ.get("GITHUB_ACTIONS") == "true":
        return GitHub(environ)
    if environ.get("GITLAB_CI") == "true":
        return GitLab(environ)
    return None


def records_in(directory: Path, base: Path) -> list[str]:
    """The HTML records under `directory`, as paths relative to `base` (the checkout)."""
    if not directory.is_dir():
        return []
    found = sorted(directory.rglob("*.html"))
    return [str(path.resolve().relative_to(base.resolve())) if path.resolve().is_relative_to(base.resolve())
            else str(path) for path in found]


def body(report: str, links: list[str]) -> str:
    if len(report) > MAX_BODY:
        report = report[:MAX_BODY] + "\n\n… (cut: the job summary has the whole report)"
    return "\n".join([MARKER, report.rstrip(), "", *(links or ["No HTML records: nothing ran."])]) + "\n"


def post(report: str, records: list[str], records_url: str, environ: Mapping[str, str]) -> str:
    """Create or update the one comment; returns what was done."""
    where = platform(environ)
    if where is None:
        print(body(report, [f"- `{path}`" for path in records]))
        return "not on GitHub Actions or GitLab CI: the comment above was not posted"
    text = body(report, where.record_links(records, records_url) if records else [])
    mine = [c for c in where.comments() if str(c.get("body", "")).startswith(MARKER)]
    return where.update(mine[0], text) if mine else where.create(text)


def add_arguments(parser) -> None:
    parser.add_argument("--report", required=True, type=Path, help="the Markdown report to post")
    parser.add_argument("--records", type=Path, default=Path("runs"),
                        help="where the run's records are (default: runs/); their HTML files are linked")
    parser.add_argument("--records-url", default="", help="where the records can be downloaded (GitHub: the "
                        "artifact's URL; GitLab: the job URL, default CI_JOB_URL)")


def main(args) -> int:
    report = args.report.read_text(encoding="utf-8")
    print(post(report, records_in(args.records, Path.cwd()), args.records_url, os.environ))
    return 0
