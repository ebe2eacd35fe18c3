"""Secret values a run prints are masked before anything is reported (real processes)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from belfry.core.execution import HttpRequest
from belfry.core.states import RunState
from tests.worker.recording import run

SECRET = "abcdef"
ENV = {"TOKEN": SECRET}


async def test_a_printed_secret_is_masked_and_the_command_sees_the_real_value() -> None:
    outcome, reporter = await run(
        'test "$TOKEN" = abcdef && echo "token=$TOKEN"; echo "again $TOKEN" >&2',
        env=ENV,
        secrets=(SECRET,),
    )
    assert outcome.state is RunState.SUCCEEDED  # the comparison with the real value held
    assert reporter.text("stdout") == "token=***\n"
    assert reporter.text("stderr") == "again ***\n"


async def test_a_secret_split_across_writes_is_masked() -> None:
    outcome, reporter = await run(
        "printf 'abc'; sleep 0.3; printf 'def'; sleep 0.3; printf ' end\\n'",
        secrets=(SECRET,),
        flush_interval=0.05,
    )
    assert outcome.state is RunState.SUCCEEDED
    assert reporter.text() == "*** end\n"
    assert all(SECRET[:3] not in chunk.data for chunk in reporter.chunks)
    # The first half was written and sent on its own batch timer, had it not been held.
    assert len(reporter.batches) >= 2


async def test_a_held_start_of_a_secret_is_passed_on_when_it_was_not_one() -> None:
    _, reporter = await run(
        "printf 'abc'; sleep 0.2; printf 'xyz\\n'; printf 'ab'", secrets=(SECRET,)
    )
    assert reporter.text() == "abcxyz\nab"


async def test_output_without_secrets_is_untouched() -> None:
    _, reporter = await run("echo abcdef", env=ENV)
    assert reporter.text() == "abcdef\n"


async def test_a_failure_reason_never_shows_a_secret() -> None:
    outcome, reporter = await run(
        "echo 'ERROR: login with abcdef refused'",
        secrets=(SECRET,),
        failure_pattern="ERROR",
    )
    assert outcome.state is RunState.FAILED
    assert outcome.reason == "failure_pattern matched: ERROR: login with *** refused"
    assert SECRET not in reporter.text()


async def test_a_secret_in_a_large_output_is_masked_in_head_and_tail() -> None:
    code = "import sys\nfor i in range(20000):\n    sys.stdout.write(f'line {i} abcdef\\n')\n"
    outcome, reporter = await run(
        [sys.executable, "-c", code],
        secrets=(SECRET,),
        output_head_bytes=4096,
        output_tail_bytes=4096,
    )
    assert outcome.state is RunState.SUCCEEDED
    text = reporter.text()
    assert SECRET not in text
    assert "line 0 ***\n" in text and "line 19999 ***\n" in text


async def test_short_secrets_are_not_masked() -> None:
    _, reporter = await run('echo "pin=$PIN"', env={"PIN": "123"}, secrets=("123",))
    assert reporter.text() == "pin=123\n"


class _SplitSecretHandler(BaseHTTPRequestHandler):
    """Answers with a body that carries the secret in two writes, 0.2 s apart."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")  # no length: the body ends with the connection
        self.end_headers()
        self.wfile.write(b'{"token": "abc')
        self.wfile.flush()
        time.sleep(0.2)
        self.wfile.write(b'def", "ok": true}\n')

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SplitSecretHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


async def test_a_secret_in_an_http_response_body_is_masked(server: str) -> None:
    outcome, reporter = await run(
        None, http=HttpRequest(url=server), secrets=(SECRET,), flush_interval=0.05
    )
    assert outcome.state is RunState.SUCCEEDED
    assert '{"token": "***", "ok": true}\n' in reporter.text()
    assert "abc" not in reporter.text()
