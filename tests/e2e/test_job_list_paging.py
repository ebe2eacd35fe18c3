"""``GET /api/v1/jobs`` in pages (issue 10), on SQLite and PostgreSQL: ``limit``/``offset``,
``Link: <…>; rel="next"`` and ``X-Total-Count``, the caller's groups, and ``belfry jobs``
and ``belfry export`` following the pages to the last."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Belfry, start_server

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
# Seven jobs in three groups, applied out of order; a page of 3 takes three pages.
NAMES = [
    "gamma/job2",
    "alpha/job3",
    "beta/job1",
    "alpha/job1",
    "gamma/job1",
    "beta/job2",
    "alpha/job2",
]
IN_ORDER = sorted(NAMES, key=lambda job: tuple(job.split("/")))
PAGE = 3
PAUSED = "beta/job2"
DESCRIBED = "alpha/job3"  # the only one whose description says "invoices"


def _spec(job: str) -> dict[str, Any]:
    group, name = job.split("/")
    return {
        "name": name,
        "group": group,
        "schedule": "@yearly",
        "command": "echo hi",
        "paused": job == PAUSED,
        "description": "Bill the invoices." if job == DESCRIBED else "Some job.",
    }


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Belfry]:
    # No worker: a run made by hand stays "scheduled", a state the list must show.
    belfry = start_server(tmp_path / "home", store_url, "--no-worker")
    try:
        belfry.api("POST", "/api/v1/apply", json={"jobs": [_spec(job) for job in NAMES]})
        yield belfry
    finally:
        belfry.stop()


def _pages(server: Belfry, token: str, **params: Any) -> list[httpx.Response]:
    """The first page for ``params``, then every page its ``Link: rel="next"`` names."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        pages = [client.get("/api/v1/jobs", params=params)]
        while "next" in pages[-1].links:
            assert len(pages) <= len(NAMES), "the pages do not end"
            pages.append(client.get(pages[-1].links["next"]["url"]))
    for page in pages:
        assert page.status_code == 200, page.text
    return pages


def _jobs(pages: list[httpx.Response]) -> list[str]:
    return [job["job"] for page in pages for job in page.json()]


def test_pages_cover_every_job_once_in_group_and_name_order(server: Belfry) -> None:
    server.api("POST", "/api/v1/jobs/beta/job1/run")

    pages = _pages(server, server.token, limit=PAGE)

    assert [len(page.json()) for page in pages] == [3, 3, 1]
    assert _jobs(pages) == IN_ORDER
    assert {page.headers["X-Total-Count"] for page in pages} == {str(len(NAMES))}
    # The next page keeps the query and moves the offset (a reference without the host).
    assert pages[0].links["next"]["url"] == "/api/v1/jobs?limit=3&offset=3"
    assert pages[1].links["next"]["url"] == "/api/v1/jobs?limit=3&offset=6"
    assert "link" not in pages[-1].headers
    # Each job carries its own latest run (read for the whole page at once).
    last_states = {job["job"]: job["last_state"] for page in pages for job in page.json()}
    assert last_states == {job: "scheduled" if job == "beta/job1" else None for job in NAMES}
    # The default page holds them all, and says there is no other.
    everything = _pages(server, server.token)
    assert len(everything) == 1 and _jobs(everything) == IN_ORDER
    # Past the end: an empty page that still counts them all.
    past = _pages(server, server.token, offset=len(NAMES))
    assert past[0].json() == [] and past[0].headers["X-Total-Count"] == str(len(NAMES))


def test_filters_hold_on_every_page(server: Belfry) -> None:
    one_group = _pages(server, server.token, group="alpha", limit=2)
    assert [len(page.json()) for page in one_group] == [2, 1]
    assert _jobs(one_group) == ["alpha/job1", "alpha/job2", "alpha/job3"]
    assert {page.headers["X-Total-Count"] for page in one_group} == {"3"}
    assert "group=alpha" in one_group[0].links["next"]["url"]

    assert _jobs(_pages(server, server.token, paused="true", limit=1)) == [PAUSED]
    assert _jobs(_pages(server, server.token, q="INVOICES", limit=1)) == [DESCRIBED]
    running = _pages(server, server.token, paused="false", limit=PAGE)
    assert _jobs(running) == [job for job in IN_ORDER if job != PAUSED]


def test_a_viewer_of_one_group_pages_through_that_group_only(server: Belfry) -> None:
    token = server.user_token("bee", {"beta": "viewer"}, PASSWORD)

    pages = _pages(server, token, limit=1)

    assert _jobs(pages) == ["beta/job1", "beta/job2"]
    assert {page.headers["X-Total-Count"] for page in pages} == {"2"}
    refused = httpx.get(
        server.url + "/api/v1/jobs",
        params={"group": "alpha"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert refused.status_code == 403, refused.text
    listed = server.cli("jobs", "--page-size", "1", "--output", "json", env={"BELFRY_TOKEN": token})
    assert listed.returncode == 0, listed.stderr
    assert [job["job"] for job in json.loads(listed.stdout)] == ["beta/job1", "beta/job2"]


def test_a_bad_limit_or_offset_is_refused_naming_it(server: Belfry) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    refused: list[tuple[dict[str, int | str], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "next"}, "offset"),
    ]
    for params, field in refused:
        answer = httpx.get(server.url + "/api/v1/jobs", params=params, headers=headers, timeout=30)
        assert answer.status_code == 422, (params, answer.text)
        assert [problem["loc"] for problem in answer.json()["detail"]] == [["query", field]]


def test_belfry_jobs_and_export_print_every_job_across_pages(server: Belfry) -> None:
    # A page of 3 and 7 jobs: a CLI that read only the first page would print 3 of them.
    listed = server.cli_json("jobs", "--page-size", str(PAGE))
    assert [job["job"] for job in listed] == IN_ORDER

    table = server.cli("jobs", "--page-size", str(PAGE))
    assert table.returncode == 0, table.stderr
    assert [line.split()[0] for line in table.stdout.splitlines() if "/job" in line] == IN_ORDER

    exported = server.cli("export", "--page-size", str(PAGE))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.count("- name: job") == len(NAMES)

    # A page size the server would refuse is bad input.
    assert server.cli("jobs", "--page-size", "1001").returncode == 2
