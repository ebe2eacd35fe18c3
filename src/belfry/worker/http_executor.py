"""The HTTP executor: makes an HTTP job's request (``order.http``) and reports it as a run.

The run's output is the response: its status line, then its body as text, both on stdout
and capped like a command's output; ``failure_pattern`` is searched in the body only.
Errors (connection refused, TLS, a bad URL) are written on the ``belfry`` stream. The
request is made by the agent itself, so ``reporter.started`` gets the agent's own pid:
there is no process of the run to signal, and a kill or timeout abandons the request.

Redirects are not followed: the status judged is the one the URL answers, so a job that
expects a redirect can say so, and a request never silently goes to another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import httpx

from belfry.core.execution import HttpRequest, Outcome, RunOrder
from belfry.core.schedules import format_instant
from belfry.core.states import RunState
from belfry.worker.reporting import RunReporter
from belfry.worker.run_output import RunOutput

__all__ = ["request_headers", "run_http"]

_REASON_CHARS = 200


def request_headers(order: RunOrder, request: HttpRequest) -> httpx.Headers:
    """The job's headers over the run's own: ``X-Belfry-*`` headers carry what a command
    gets as BELFRY_* variables (``X-Belfry-Occurrence`` is the idempotency key)."""
    headers = httpx.Headers(
        {
            "User-Agent": "belfry",
            "X-Belfry-Job": order.job,
            "X-Belfry-Run-Id": str(order.run_id),
            "X-Belfry-Scheduled-For": format_instant(order.scheduled_for),
            "X-Belfry-Attempt": str(order.attempt),
            "X-Belfry-Occurrence": order.occurrence,
        }
    )
    headers.update(request.headers)  # case-insensitive: the job's value replaces ours
    return headers


async def run_http(
    order: RunOrder,
    request: HttpRequest,
    reporter: RunReporter,
    kill: asyncio.Event,
    output: RunOutput,
    *,
    host: str,
) -> Outcome:
    """Make ``request`` and return the run's outcome (also passed to ``reporter.finished``).

    ``order.timeout_seconds`` bounds the whole exchange (connecting, sending, reading the
    body). Succeeded if the status is in ``expect_status`` and no body line matches the
    failure pattern; a failed request is ``failed``; timeout and kill abandon the request.
    Never raises for the request's sake; exceptions from ``reporter`` and cancellation
    propagate, as in the shell executor.
    """
    loop = asyncio.get_running_loop()
    await reporter.started(order.run_id, os.getpid(), host)
    pump = loop.create_task(output.pump(reporter))
    exchange = loop.create_task(_exchange(order, request, output))
    kill_wait = loop.create_task(kill.wait())
    try:
        done, _ = await asyncio.wait(
            {exchange, kill_wait, pump},
            timeout=order.timeout_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if pump in done and exchange not in done:
            pump.result()  # raises the reporter's exception
            raise RuntimeError("output pump stopped before the run ended")
        status: int | None = None
        error: str | None = None
        killed = timed_out = False
        if exchange in done:  # a finished exchange wins over a kill that came with it
            status, error = exchange.result()
        else:
            killed = kill_wait.done()
            timed_out = not killed
            why = "kill requested" if killed else f"timed out after {order.timeout_seconds:g}s"
            await _abandon(exchange)
            output.note(f"{why}: request abandoned\n")
        if error is not None:
            output.note(f"HTTP request failed: {error}\n")
        failure_matched = output.finish()
        await pump
        outcome = _judge(
            status,
            request.expect_status,
            failure_matched,
            error=error,
            timed_out=timed_out,
            killed=killed,
        )
        await reporter.finished(order.run_id, outcome)
        return outcome
    finally:
        kill_wait.cancel()
        if not exchange.done():
            await _abandon(exchange)
        if not pump.done():
            pump.cancel()


async def _exchange(
    order: RunOrder, request: HttpRequest, output: RunOutput
) -> tuple[int | None, str | None]:
    """Make the request, writing the response to ``output``: (status, None) or (None, error)."""
    content = request.body.encode() if request.body is not None else None
    try:
        # No httpx timeouts: the run's own timeout bounds the exchange as a whole.
        async with (
            httpx.AsyncClient(timeout=None, follow_redirects=False) as client,
            client.stream(
                request.method.upper(),
                request.url,
                headers=request_headers(order, request),
                content=content,
            ) as response,
        ):
            status_line = f"{response.http_version} {response.status_code} {response.reason_phrase}"
            output.write("stdout", status_line.rstrip() + "\n", scan=False)
            # Decoded as the response's charset says (UTF-8 if it does not), bad bytes
            # replaced; read as it arrives, so a huge body costs no more memory than the cap.
            async for text in response.aiter_text():
                output.write("stdout", text)
            return response.status_code, None
    except Exception as error:  # anything the request raises fails the run, not the agent
        return None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def _abandon(exchange: asyncio.Task[tuple[int | None, str | None]]) -> None:
    """Cancel the exchange and wait for its connection to close."""
    exchange.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await exchange


def _judge(
    status: int | None,
    expect_status: tuple[int, ...],
    failure_matched: str | None,
    *,
    error: str | None,
    timed_out: bool,
    killed: bool,
) -> Outcome:
    """The final state of an HTTP run; reasons read as a command's do (core.execution.judge)."""
    if killed:
        return Outcome(RunState.KILLED, None, "killed on request")
    if timed_out:
        return Outcome(RunState.TIMED_OUT, None, "timeout")
    if error is not None or status is None:
        return Outcome(RunState.FAILED, None, f"HTTP request failed: {error}"[:_REASON_CHARS])
    if status not in expect_status:
        expected = ", ".join(str(code) for code in expect_status)
        return Outcome(RunState.FAILED, None, f"HTTP {status} (expected {expected})")
    if failure_matched is not None:
        reason = f"failure_pattern matched: {failure_matched[:_REASON_CHARS]}"
        return Outcome(RunState.FAILED, None, reason)
    return Outcome(RunState.SUCCEEDED, None)
