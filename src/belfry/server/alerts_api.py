"""The alerts API: channels, group settings and the delivery log.

Channels are shared by all groups: anyone signed in may list them (without their
credentials), global admins delete and test them; they are created by ``apply``. The
delivery log shows each caller the deliveries about jobs of the groups it may read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel

from belfry.core.channels import ChannelSpec
from belfry.core.deliveries import ChannelRecord, DeliveryRecord, GroupRecord
from belfry.server.dependencies import NodeDep, UserDep, address_of, require_global_admin
from belfry.server.node import Node
from belfry.server.operations import (
    apply_changes,
    require_same_name,
    send_channel_test,
    visible_deliveries,
)
from belfry.server.schemas import ERROR_RESPONSES, ApplyRequest
from belfry.services.channels import ChannelInUse, UnknownChannel

__all__ = ["ChannelOut", "DeliveryOut", "GroupSettingsOut", "alerts_router"]


class ChannelOut(BaseModel):
    name: str
    kind: str
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ChannelRecord) -> ChannelOut:
        kind = next(k for k in ("apprise", "webhook", "email") if k in record.redacted)
        return cls(
            name=record.name,
            kind=kind,
            spec=dict(record.redacted),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class GroupSettingsOut(BaseModel):
    name: str
    spec: dict[str, Any]
    updated_at: datetime

    @classmethod
    def of(cls, record: GroupRecord) -> GroupSettingsOut:
        return cls(
            name=record.name,
            spec=record.spec.model_dump(mode="json", exclude_defaults=True),
            updated_at=record.updated_at,
        )


class DeliveryOut(BaseModel):
    id: int
    channel: str
    kind: str
    job: str
    run_id: int | None
    title: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    alert: dict[str, Any]

    @classmethod
    def of(cls, record: DeliveryRecord) -> DeliveryOut:
        return cls(
            id=record.id,
            channel=record.channel,
            kind=record.kind.value,
            job=record.job,
            run_id=record.run_id,
            title=record.alert.title,
            state=record.state.value,
            attempts=record.attempts,
            last_error=record.last_error,
            created_at=record.created_at,
            next_attempt_at=record.next_attempt_at,
            sent_at=record.sent_at,
            alert=record.alert.to_document(),
        )


async def _channel(node: Node, name: str) -> ChannelRecord:
    try:
        return await node.jobs.channels.get_channel(name)
    except UnknownChannel as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def alerts_router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.get("/channels", response_model=list[ChannelOut])
    async def list_channels(node: NodeDep, caller: UserDep) -> list[ChannelOut]:
        """Every channel, without its credentials."""
        return [ChannelOut.of(record) for record in await node.jobs.channels.list_channels()]

    @api.get("/channels/{name}", response_model=ChannelOut)
    async def show_channel(node: NodeDep, caller: UserDep, name: str) -> ChannelOut:
        return ChannelOut.of(await _channel(node, name))

    @api.put("/channels/{name}", response_model=ChannelOut)
    async def put_channel(
        node: NodeDep, caller: UserDep, request: Request, name: str, spec: ChannelSpec
    ) -> ChannelOut:
        """Create or replace one channel, as ``apply`` does (global admins)."""
        require_global_admin(caller)
        require_same_name(spec.name, name)
        await apply_changes(node, caller, address_of(request), ApplyRequest(channels=[spec]))
        return ChannelOut.of(await _channel(node, name))

    @api.delete("/channels/{name}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_channel(node: NodeDep, caller: UserDep, request: Request, name: str) -> None:
        """Delete a channel no job or group alerts through (global admins)."""
        require_global_admin(caller)
        record = await _channel(node, name)
        try:
            await node.jobs.channels.delete_channel(name)
        except ChannelInUse as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        await node.audit.record(
            caller,
            "channel.delete",
            address=address_of(request),
            target=name,
            before=dict(record.redacted),
        )

    @api.post("/channels/{name}/test", response_model=DeliveryOut)
    async def test_channel(
        node: NodeDep, caller: UserDep, request: Request, name: str
    ) -> DeliveryOut:
        """Send a test alert through the channel now; the delivery says how it went."""
        return DeliveryOut.of(await send_channel_test(node, caller, address_of(request), name))

    @api.get("/groups", response_model=list[GroupSettingsOut])
    async def list_group_settings(node: NodeDep, caller: UserDep) -> list[GroupSettingsOut]:
        """The settings (alert rules) of the groups the caller may read."""
        readable = caller.readable_groups()
        return [
            GroupSettingsOut.of(record)
            for record in await node.jobs.channels.list_groups()
            if readable is None or record.name in readable
        ]

    @api.get("/deliveries", response_model=list[DeliveryOut])
    async def list_deliveries(
        node: NodeDep,
        caller: UserDep,
        channel: str | None = None,
        run: int | None = None,
        job: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[DeliveryOut]:
        """Alerts sent, waiting or given up, newest first: of a channel, a run or a job."""
        found = await visible_deliveries(
            node, caller, channel=channel, run=run, job=job, limit=limit
        )
        return [DeliveryOut.of(record) for record in found]

    return api
