"""Alerts: channels (``/channels``, ``/channels/{name}``), their test, and the delivery log
(``/deliveries``).

Channels are shown as ``GET /api/v1/channels`` shows them: without their credentials.
Deliveries are those about jobs of the groups the user reads (``operations
.visible_deliveries``). Sending a test is for global admins, checked and audited as
``POST /api/v1/channels/{name}/test`` (``operations.send_channel_test``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from belfry.core.alerts import AlertRule
from belfry.core.deliveries import ChannelRecord, DeliveryRecord, GroupRecord
from belfry.core.records import JobRecord
from belfry.server.dependencies import NodeDep, address_of
from belfry.server.node import Node
from belfry.server.operations import send_channel_test, visible_deliveries
from belfry.server.ui.admin_format import one_line
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSession, UiSessionDep
from belfry.services.channels import UnknownChannel

__all__ = ["channel_router"]

# Deliveries shown with each channel on the list, and on a channel's page.
_RECENT_ON_LIST = 5
_RECENT_ON_PAGE = 20
_LOG_SIZES = (50, 200, 1000)


@dataclass(frozen=True)
class ChannelView:
    record: ChannelRecord
    recent: list[DeliveryRecord]

    @property
    def kind(self) -> str:
        return next((k for k in ("apprise", "webhook", "email") if k in self.record.redacted), "?")

    @property
    def settings(self) -> list[tuple[str, str]]:
        """The channel's redacted settings, one line each (``webhook.url: https://…``)."""
        shown: list[tuple[str, str]] = []
        for key, value in self.record.redacted.items():
            if key == "name":
                continue
            if isinstance(value, dict):
                shown.extend((f"{key}.{inner}", one_line(item)) for inner, item in value.items())
            else:
                shown.append((key, one_line(value)))
        return shown


async def _channel(node: Node, name: str) -> ChannelRecord:
    try:
        return await node.jobs.channels.get_channel(name)
    except UnknownChannel as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def _names(notify: list[str], rules: list[AlertRule], name: str) -> bool:
    return name in notify or any(name in rule.notify for rule in rules)


async def _alerting_through(
    node: Node, session: UiSession, name: str
) -> tuple[list[JobRecord], list[GroupRecord]]:
    """The jobs and the groups' settings (of groups the user reads) that alert through
    channel ``name``."""
    readable = session.principal.readable_groups()
    jobs = [
        job
        for job in await node.jobs.list()
        if (readable is None or job.key.group in readable)
        and _names(job.spec.notify, job.spec.alerts, name)
    ]
    groups = [
        group
        for group in await node.jobs.channels.list_groups()
        if (readable is None or group.name in readable)
        and _names(group.spec.notify, group.spec.alerts, name)
    ]
    return jobs, groups


def channel_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/channels", response_class=HTMLResponse)
    async def channels(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        views = [
            ChannelView(
                record,
                await visible_deliveries(
                    node, session.principal, channel=record.name, limit=_RECENT_ON_LIST
                ),
            )
            for record in await node.jobs.channels.list_channels()
        ]
        readable = session.principal.readable_groups()
        groups = [
            group
            for group in await node.jobs.channels.list_groups()
            if readable is None or group.name in readable
        ]
        return page(request, "channels.html", session, channels=views, groups=groups)

    @ui.get("/channels/{name}", response_class=HTMLResponse)
    async def channel(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        name: str,
        test: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        record = await _channel(node, name)
        recent = await visible_deliveries(
            node, session.principal, channel=name, limit=_RECENT_ON_PAGE
        )
        # The test just sent, if the user may see it (tests are about no group: admins).
        tested = next((delivery for delivery in recent if delivery.id == test), None)
        jobs, groups = await _alerting_through(node, session, name)
        return page(
            request,
            "channel.html",
            session,
            channel=ChannelView(record, recent),
            jobs=jobs,
            groups=groups,
            tested=tested,
        )

    @ui.post("/channels/{name}/test")
    async def test_channel(
        node: NodeDep, session: UiSessionDep, request: Request, name: str
    ) -> Response:
        delivery = await send_channel_test(node, session.principal, address_of(request), name)
        # Post/redirect/get: reloading the page shows the result, never sends again.
        return RedirectResponse(
            f"/channels/{name}?test={delivery.id}", status_code=status.HTTP_303_SEE_OTHER
        )

    @ui.get("/deliveries", response_class=HTMLResponse)
    async def deliveries(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        channel: Annotated[str, Query(max_length=200)] = "",
        job: Annotated[str, Query(max_length=300)] = "",
        run: Annotated[str, Query(max_length=20)] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = _LOG_SIZES[0],
    ) -> HTMLResponse:
        problem = None
        run_id = None
        if run.strip():
            if run.strip().isdigit():
                run_id = int(run.strip())
            else:
                problem = f"run: not a run number: {run.strip()!r}"
        found: list[DeliveryRecord] = []
        code = status.HTTP_200_OK
        if problem is None:
            try:
                found = await visible_deliveries(
                    node,
                    session.principal,
                    channel=channel.strip() or None,
                    run=run_id,
                    job=job.strip() or None,
                    limit=limit,
                )
            except HTTPException as error:
                # A malformed job name, or one of a group the user may not read: said on
                # the page, next to the filters that caused it.
                problem, code = str(error.detail), error.status_code
        else:
            code = status.HTTP_422_UNPROCESSABLE_ENTITY
        return page(
            request,
            "channels_deliveries.html",
            session,
            status_code=code,
            deliveries=found,
            channel=channel,
            job=job,
            run=run,
            limit=limit,
            more=next((size for size in _LOG_SIZES if size > limit), None)
            if len(found) >= limit
            else None,
            names=[record.name for record in await node.jobs.channels.list_channels()],
            problem=problem,
        )

    return ui
