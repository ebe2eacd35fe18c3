"""The runs list and a run's page: live output over server-sent events (resumed without
duplicates after a dropped connection), the final state swapped in without a reload, the
kill button, permissions, and the page without JavaScript."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from belfry.core.records import OutputChunk
from belfry.server.ui.run_pages import last_seq, output_tail
from tests.e2e.conftest import Belfry
from tests.ui.conftest import admin_password, first_step, log_in

T = TypeVar("T")

RUN_WAIT = 30_000  # ms: a run's whole life in these tests, with room for a slow machine

COUNTER = """
jobs:
  - name: counter
    schedule: "@yearly"
    command: 'echo warn-1 >&2; for i in $(seq 1 30); do echo line-$i; sleep 0.2; done'
"""
SLEEPER = """
jobs:
  - name: sleeper
    schedule: "@yearly"
    command: 'echo started; sleep 60'
"""


def trigger(server: Belfry, name: str, group: str = "default") -> int:
    return int(server.api("POST", f"/api/v1/jobs/{group}/{name}/run")["id"])


def run_state(server: Belfry, run_id: int) -> str:
    return str(server.api("GET", f"/api/v1/runs/{run_id}")["state"])


def wait_running(server: Belfry, run_id: int) -> None:
    server.wait_for(lambda: run_state(server, run_id) == "running", what="the run to start")


def output_lines(page: Page) -> list[str]:
    return page.locator("#output").inner_text().splitlines()


def test_output_arrives_live_and_the_end_is_swapped_in(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, COUNTER)
    run_id = trigger(ui_server, "counter")
    page.goto(f"{ui_server.url}/runs/{run_id}")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#output")).to_contain_text("line-1")
    assert run_state(ui_server, run_id) == "running"  # line-1 came while the run ran
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=RUN_WAIT)
    expect(page.locator("#run-exit-code")).to_have_text("0")
    expect(page.locator(".timeline .state-succeeded")).to_have_count(1)
    expect(page.get_by_role("link", name="Refresh")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
    lines = output_lines(page)
    assert [line for line in lines if line.startswith("line-")] == [
        f"line-{n}" for n in range(1, 31)
    ]
    assert lines.count("warn-1") == 1
    # stderr is styled apart from stdout.
    stderr = page.locator("#output .out-stderr")
    expect(stderr).to_have_text("warn-1\n")
    colours = page.evaluate(
        "[...document.querySelectorAll('#output .out-stderr, #output .out-stdout')]"
        ".map(e => getComputedStyle(e).color)"
    )
    assert len(set(colours)) == 2


def test_kill_from_the_run_page(page: Page, ui_server: Belfry, tmp_path: Path) -> None:
    ui_server.apply(tmp_path, SLEEPER)
    run_id = trigger(ui_server, "sleeper")
    page.goto(f"{ui_server.url}/runs/{run_id}")
    expect(page.locator("#output")).to_contain_text("started")
    expect(page.locator("#run-state")).to_have_text("running")
    # Killing takes two steps: the first only opens the question.
    kill = page.get_by_role("button", name=f"Kill run {run_id}")
    expect(kill).to_be_hidden()
    first_step(page, "Kill…").click()
    expect(page.locator("#run-summary")).to_contain_text(
        f"Kill run {run_id} of default/sleeper? Its whole process tree is stopped."
    )
    expect(kill).to_be_visible()
    assert run_state(ui_server, run_id) == "running"
    assert not ui_server.api("GET", "/api/v1/audit", params={"action": "run.kill"})
    kill.click()
    expect(page.locator("#run-state")).to_have_text("killed", timeout=RUN_WAIT)
    expect(first_step(page, "Kill…")).to_have_count(0)
    expect(page.get_by_role("button", name="Kill")).to_have_count(0)
    expect(page.locator(".timeline .state-killed")).to_have_count(1)
    assert run_state(ui_server, run_id) == "killed"
    audit = ui_server.api("GET", "/api/v1/audit")
    assert any(entry["action"] == "run.kill" for entry in audit)


class CuttableProxy:
    """A TCP proxy in front of the server that can drop every open connection at once (a
    network cut), and keeps what clients sent (to see a reconnect's Last-Event-ID)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._sent = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> bytes:
        with self._lock:
            return bytes(self._sent)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    with self._lock:
                        self._sent += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._drop(end)

    def _drop(self, end: socket.socket) -> None:
        with self._lock:
            self._open.discard(end)
        # Shut down before closing: a close alone leaves the connection open while the
        # other pump still waits in recv on it.
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def cut(self) -> None:
        """Drop every open connection, both ways, mid-stream."""
        with self._lock:
            ends = list(self._open)
        for end in ends:
            self._drop(end)

    def close(self) -> None:
        self._listener.close()
        self.cut()


@pytest.fixture
def proxy(ui_server: Belfry) -> Iterator[CuttableProxy]:
    cutter = CuttableProxy(ui_server.url)
    try:
        yield cutter
    finally:
        cutter.close()


def test_a_dropped_stream_resumes_without_duplicates_or_gaps(
    page: Page, ui_server: Belfry, proxy: CuttableProxy, tmp_path: Path
) -> None:
    ui_server.apply(
        tmp_path,
        """
        jobs:
          - name: slow-counter
            schedule: "@yearly"
            command: 'for i in $(seq 1 40); do echo line-$i; sleep 0.2; done'
        """,
    )
    run_id = trigger(ui_server, "slow-counter")
    # The session cookie is the server's host's, whatever the port: the proxy's pages see it.
    page.goto(f"{proxy.url}/runs/{run_id}")
    expect(page.locator("#output")).to_contain_text("line-3")
    proxy.cut()
    expect(page.locator("#output")).to_contain_text("line-15", timeout=RUN_WAIT)
    proxy.cut()
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=RUN_WAIT)
    assert output_lines(page) == [f"line-{n}" for n in range(1, 41)]
    # The browser resumed where it was: it said where, twice at least.
    heads = proxy.sent.split(b"\r\n\r\n")
    resumed = [head for head in heads if re.search(rb"GET /runs/\d+/events", head)]
    with_id = [head for head in resumed if re.search(rb"(?im)^last-event-id: \d+", head)]
    assert len(resumed) >= 3 and len(with_id) >= 2, proxy.sent.decode(errors="replace")


def _events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The events of a server-sent event stream (a field per key; data lines joined)."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = f"{event[name]}\n{value}" if name == "data" and name in event else value


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_the_stream_starts_after_last_event_id_or_after(ui_server: Belfry, tmp_path: Path) -> None:
    ui_server.apply(
        tmp_path,
        """
        jobs:
          - name: lines
            schedule: "@yearly"
            command: 'for i in $(seq 1 12); do echo "<b>$i</b> & co"; sleep 0.05; done'
        """,
    )
    run_id = trigger(ui_server, "lines")
    ui_server.wait_for(lambda: run_state(ui_server, run_id) == "succeeded", what="the run")
    chunks = ui_server.api("GET", f"/api/v1/runs/{run_id}/output")["chunks"]
    assert len(chunks) >= 2
    middle = chunks[len(chunks) // 2]["seq"]
    rest = "".join(chunk["data"] for chunk in chunks if chunk["seq"] > middle)
    with httpx.Client(base_url=ui_server.url, timeout=30) as client:
        client.post("/login", data={"name": "admin", "password": admin_password(ui_server)})
        for how in ({"headers": {"Last-Event-ID": str(middle)}}, {"params": {"after": middle}}):
            with client.stream("GET", f"/runs/{run_id}/events", **how) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                events = list(_events(response))
            assert [event["event"] for event in events] == ["chunk", "end"]
            assert int(events[0]["id"]) == chunks[-1]["seq"]
            # Output is escaped HTML, never markup of its own.
            assert "&lt;b&gt;" in events[0]["data"] and "<b>" not in events[0]["data"]
            assert _text(events[0]["data"]) == rest
            assert "succeeded" in events[1]["data"]
        # The URL's after is stale once the browser has a Last-Event-ID: the header wins.
        with client.stream(
            "GET",
            f"/runs/{run_id}/events",
            params={"after": -1},
            headers={"Last-Event-ID": str(chunks[-1]["seq"])},
        ) as response:
            assert [event["event"] for event in _events(response)] == ["end"]


def test_a_viewer_sees_no_kill_button_and_only_readable_runs(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, SLEEPER)
    ui_server.apply(
        tmp_path,
        "jobs:\n  - {name: secret, group: billing, schedule: '@yearly', command: 'true'}\n",
    )
    run_id = trigger(ui_server, "sleeper")
    hidden_id = trigger(ui_server, "secret", "billing")
    ui_server.api("POST", "/api/v1/users", json={"name": "vic", "password": "a-long-passphrase"})
    ui_server.api("PUT", "/api/v1/grants/vic/default", json={"role": "viewer"})
    wait_running(ui_server, run_id)
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server, "vic", "a-long-passphrase")
    tab.goto(f"{ui_server.url}/runs/{run_id}")
    expect(tab.locator("#output")).to_contain_text("started")
    expect(tab.locator("#run-state")).to_have_text("running")
    expect(tab.get_by_role("button", name="Kill")).to_have_count(0)
    expect(first_step(tab, "Kill…")).to_have_count(0)
    # The action refuses him too.
    csrf = tab.locator("input[name=csrf_token]").first.input_value()
    refused = tab.request.post(
        f"{ui_server.url}/runs/{run_id}/kill", form={"csrf_token": csrf}, max_redirects=0
    )
    assert refused.status == 403
    assert run_state(ui_server, run_id) == "running"
    # Runs of groups he may not read are neither listed nor shown.
    tab.goto(f"{ui_server.url}/runs")
    expect(tab.get_by_role("link", name=f"#{run_id}", exact=True)).to_be_visible()
    expect(tab.get_by_role("link", name=f"#{hidden_id}", exact=True)).to_have_count(0)
    refused_page = tab.goto(f"{ui_server.url}/runs/{hidden_id}")
    assert refused_page is not None and refused_page.status == 403
    assert tab.request.get(f"{ui_server.url}/runs/{hidden_id}/events").status == 403
    context.close()


def test_the_run_page_works_without_javascript(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, SLEEPER)
    run_id = trigger(ui_server, "sleeper")
    wait_running(ui_server, run_id)
    ui_server.wait_for(
        lambda: ui_server.api("GET", f"/api/v1/runs/{run_id}/output")["chunks"],
        what="output",
    )
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server)
    tab.goto(f"{ui_server.url}/runs/{run_id}")
    expect(tab.locator("#output")).to_have_text("started\n")
    expect(tab.locator("#run-state")).to_have_text("running")
    refresh = tab.get_by_role("link", name="Refresh")
    expect(refresh).to_be_visible()
    # Kill asks first without JavaScript too: the first step opens the question, acts not.
    first_step(tab, "Kill…").click()
    kill = tab.get_by_role("button", name=f"Kill run {run_id}")
    expect(kill).to_be_visible()
    expect(tab).to_have_url(f"{ui_server.url}/runs/{run_id}")
    assert run_state(ui_server, run_id) == "running"
    assert not ui_server.api("GET", "/api/v1/audit", params={"action": "run.kill"})
    # The confirming button posts and comes back to the page.
    kill.click()
    expect(tab).to_have_url(f"{ui_server.url}/runs/{run_id}")
    ui_server.wait_for(lambda: run_state(ui_server, run_id) == "killed", what="the kill")
    # The page came back while the run was ending or already ended (then without its
    # Refresh link): reading it again shows the end either way.
    tab.reload()
    expect(tab.locator("#run-state")).to_have_text("killed")
    expect(tab.get_by_role("link", name="Refresh")).to_have_count(0)
    context.close()


def test_the_runs_list_filters_and_pages(page: Page, ui_server: Belfry, tmp_path: Path) -> None:
    ui_server.apply(
        tmp_path,
        """
        jobs:
          - {name: quick, schedule: "@yearly", command: "true"}
          - {name: broken, schedule: "@yearly", command: "exit 4"}
        """,
    )
    for _ in range(52):
        trigger(ui_server, "quick")
    broken = trigger(ui_server, "broken")
    ui_server.wait_for(lambda: run_state(ui_server, broken) == "failed", what="the failure")
    page.goto(f"{ui_server.url}/runs")
    expect(page.locator("table.runs tbody tr")).to_have_count(50)
    page.get_by_label("State").select_option("failed")
    expect(page).to_have_url(re.compile(r"state=failed"))
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    row = page.locator("table.runs tbody tr").first
    expect(row.get_by_role("link", name=f"#{broken}", exact=True)).to_be_visible()
    expect(row).to_contain_text("default/broken")
    expect(row).to_contain_text("4")
    page.get_by_label("State").select_option("")
    expect(page).to_have_url(re.compile(r"state=$"))
    page.get_by_label("Job").fill("default/quick")
    page.get_by_label("Job").press("Enter")
    expect(page).to_have_url(re.compile(r"job=default(%2F|/)quick"))
    expect(page.locator("table.runs tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Older →").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    expect(page.locator("table.runs tbody")).not_to_contain_text("default/broken")
    page.get_by_label("Job").fill("not a job")
    page.get_by_label("Job").press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not a job name")


def test_a_stream_lasts_at_most_thirty_seconds_and_resumes_after_it(
    ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, SLEEPER)
    run_id = trigger(ui_server, "sleeper")
    wait_running(ui_server, run_id)
    with httpx.Client(base_url=ui_server.url, timeout=60) as client:
        client.post("/login", data={"name": "admin", "password": admin_password(ui_server)})
        started = time.monotonic()
        with client.stream("GET", f"/runs/{run_id}/events", params={"seen": "running"}) as first:
            lines = list(first.iter_lines())  # until the server closes it
        lasted = time.monotonic() - started
        assert 29 <= lasted <= 35, lasted
        assert "retry: 1000" in lines  # the browser reconnects a second later
        last_id = [line for line in lines if line.startswith("id: ")][-1].removeprefix("id: ")
        with client.stream(
            "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": last_id}
        ) as again:
            ui_server.api("POST", f"/api/v1/runs/{run_id}/kill")
            events = list(_events(again))
    assert events[-1]["event"] == "end" and "killed" in events[-1]["data"]
    resent = "".join(_text(event["data"]) for event in events if event["event"] == "chunk")
    assert "started" not in resent  # only what came after the kill: Belfry's notes


class _Output:
    """Just enough of a store for the output helpers: chunks with these seqs."""

    def __init__(self, seqs: list[int], size: int = 1) -> None:
        at = datetime.now(UTC)
        self.chunks = [OutputChunk(1, seq, "stdout", "x" * size, at) for seq in seqs]
        self.reads = 0

    async def read_output(
        self, run_id: int, after_seq: int = -1, limit: int = 1000
    ) -> list[OutputChunk]:
        self.reads += 1
        return [chunk for chunk in self.chunks if chunk.seq > after_seq][:limit]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` in a thread of its own: the browser tests' event loop may be
    running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 100, 1025])
def test_last_seq_finds_the_end_in_few_reads(count: int) -> None:
    store = _Output([*range(count), count + 5] if count else [])  # a gap before the last
    found = _run(last_seq(store, 1))
    assert found == (count + 5 if count else -1)
    assert store.reads <= 2 * max(1, count).bit_length() + 4
    before = store.reads
    assert _run(last_seq(store, 1, found)) == found  # known: one read
    assert store.reads == before + 1


def test_output_tail_keeps_the_newest_chunks_within_the_budget() -> None:
    store = _Output(list(range(50)), size=10)
    shown, earlier = _run(output_tail(store, 1, chunks=20, chars=95))
    assert [chunk.seq for chunk in shown] == list(range(41, 50)) and earlier
    shown, earlier = _run(output_tail(store, 1, chunks=100, chars=10_000))
    assert len(shown) == 50 and not earlier
    huge = _Output([0, 1], size=500)
    shown, earlier = _run(output_tail(huge, 1, chunks=10, chars=100))
    assert [chunk.seq for chunk in shown] == [1] and earlier  # one chunk, however large
