"""HTTP for ARI's configuration, appointments and per-conversation state (API.md, ARI section)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from kabar.ari import schemas as s
from kabar.ari import llm, service
from kabar.ari.hooks import register  # noqa: F401 - the inbound trigger, in every server process
from kabar.auth.scope import Scope
from kabar.jobs.periodic import start_periodic
from kabar.errors import invalid
from kabar.http import clamp_limit, provide_scope, runtime_of


async def _start_reminders(runtime: Any) -> None:
    await start_periodic(runtime, service.REMINDERS_JOB)


def _register_startup() -> None:
    from kabar.app import STARTUP_HOOKS

    if _start_reminders not in STARTUP_HOOKS:
        STARTUP_HOOKS.append(_start_reminders)


_register_startup()


class AriController(Controller):
    path = "/v1/workspaces/{ws:str}/ari"
    tags = ["ari"]
    dependencies = {"ctx": Provide(provide_scope)}

    @get("/config")
    async def get_config(self, request: Request, ctx: NamedDependency[Scope]) -> s.ConfigOut:
        return await runtime_of(request).db.read(service.get_config, ctx)

    @put("/config")
    async def put_config(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.ConfigIn]) -> s.ConfigOut:
        runtime = runtime_of(request)
        if data.llm:  # the model endpoints: checked (DNS included) before the transaction opens
            ctx.require("ari.manage")
            await llm.check_base_urls(data.llm, runtime.settings)
        return await runtime.db.transaction(service.put_config, ctx, data, runtime.cipher)

    @get("/scoring")
    async def get_scoring(self, request: Request, ctx: NamedDependency[Scope]) -> s.ScoringOut:
        return await runtime_of(request).db.read(service.get_scoring, ctx)

    @put("/scoring")
    async def put_scoring(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.ScoringIn]) -> s.ScoringOut:
        return await runtime_of(request).db.transaction(service.put_scoring, ctx, data)

    @get("/flow-stages")
    async def list_flow_stages(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return await runtime_of(request).db.read(service.list_flow_stages, ctx)

    @post("/flow-stages", status_code=HTTP_201_CREATED)
    async def create_flow_stage(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.FlowStageIn]) -> s.FlowStageOut:
        return await runtime_of(request).db.transaction(service.create_flow_stage, ctx, data)

    @patch("/flow-stages/{item_id:str}")
    async def update_flow_stage(
        self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str], data: JSONBody[s.FlowStagePatch]
    ) -> s.FlowStageOut:
        return await runtime_of(request).db.transaction(service.update_flow_stage, ctx, item_id, data)

    @delete("/flow-stages/{item_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_flow_stage(self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.delete_flow_stage, ctx, item_id)

    @get("/knowledge")
    async def list_knowledge(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return await runtime_of(request).db.read(service.list_knowledge, ctx)

    @post("/knowledge", status_code=HTTP_201_CREATED)
    async def create_knowledge(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.KnowledgeIn]) -> s.KnowledgeOut:
        return await runtime_of(request).db.transaction(service.create_knowledge, ctx, data)

    @patch("/knowledge/{item_id:str}")
    async def update_knowledge(
        self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str], data: JSONBody[s.KnowledgePatch]
    ) -> s.KnowledgeOut:
        return await runtime_of(request).db.transaction(service.update_knowledge, ctx, item_id, data)

    @delete("/knowledge/{item_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_knowledge(self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.delete_knowledge, ctx, item_id)

    @get("/slots")
    async def list_slots(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return await runtime_of(request).db.read(service.list_slots, ctx)

    @post("/slots", status_code=HTTP_201_CREATED)
    async def create_slot(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.SlotIn]) -> s.SlotOut:
        return await runtime_of(request).db.transaction(service.create_slot, ctx, data)

    @patch("/slots/{item_id:str}")
    async def update_slot(
        self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str], data: JSONBody[s.SlotPatch]
    ) -> s.SlotOut:
        return await runtime_of(request).db.transaction(service.update_slot, ctx, item_id, data)

    @delete("/slots/{item_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_slot(self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.delete_slot, ctx, item_id)

    @get("/appointments")
    async def list_appointments(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        start: Annotated[str | None, QueryParameter(name="from")] = None,
        end: Annotated[str | None, QueryParameter(name="to")] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> dict[str, Any]:
        return await runtime_of(request).db.read(
            service.list_appointments, ctx, start=_instant("from", start), end=_instant("to", end), cursor=cursor, limit=clamp_limit(limit)
        )

    @patch("/appointments/{item_id:str}")
    async def update_appointment(
        self, request: Request, ctx: NamedDependency[Scope], item_id: FromPath[str], data: JSONBody[s.AppointmentPatch]
    ) -> s.AppointmentOut:
        return await runtime_of(request).db.transaction(service.update_appointment, ctx, item_id, data)


def _instant(name: str, value: str | None) -> datetime | None:
    """An RFC 3339 instant (a date alone means its start, UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(name, "must be an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None and len(value) == 10:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise invalid(name, "must include a time zone (e.g. 2026-02-09T00:00:00Z)")
    return parsed


@get("/v1/workspaces/{ws:str}/conversations/{conversation_id:str}/ari", tags=["ari"], dependencies={"ctx": Provide(provide_scope)})
async def conversation_ari(request: Request, ctx: NamedDependency[Scope], conversation_id: FromPath[str]) -> s.ConversationAriOut:
    return await runtime_of(request).db.read(service.conversation_ari, ctx, conversation_id)


ROUTES = [AriController, conversation_ari]
