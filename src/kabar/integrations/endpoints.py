"""HTTP for outgoing webhooks: endpoints, their deliveries, redelivery and a test event."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from kabar.app import SHUTDOWN_HOOKS, STARTUP_HOOKS
from kabar.auth.scope import Scope
from kabar.http import clamp_limit, provide_scope, runtime_of
from kabar.integrations import dispatch, service
from kabar.integrations import schemas as s


class WebhooksController(Controller):
    path = "/v1/workspaces/{ws:str}/webhooks"
    tags = ["webhooks"]
    dependencies = {"ctx": Provide(provide_scope)}

    @get("/")
    async def list_webhooks(self, request: Request, ctx: NamedDependency[Scope]) -> dict[str, Any]:
        return {"data": await runtime_of(request).db.read(service.list_webhooks, ctx), "next_cursor": None}

    @post("/", status_code=HTTP_201_CREATED)
    async def create_webhook(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.WebhookCreate]) -> s.Webhook:
        return await service.create_webhook(runtime_of(request), ctx, data)

    @get("/{webhook_id:str}")
    async def get_webhook(self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str]) -> s.Webhook:
        return await runtime_of(request).db.read(service.get_webhook, ctx, webhook_id)

    @patch("/{webhook_id:str}")
    async def update_webhook(
        self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str], data: JSONBody[s.WebhookUpdate]
    ) -> s.Webhook:
        return await service.update_webhook(runtime_of(request), ctx, webhook_id, data)

    @delete("/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_webhook(self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str]) -> None:
        await runtime_of(request).db.transaction(service.delete_webhook, ctx, webhook_id)

    @post("/{webhook_id:str}/rotate-secret", status_code=200)
    async def rotate_secret(self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str]) -> s.Webhook:
        runtime = runtime_of(request)
        return await runtime.db.transaction(service.rotate_secret, ctx, webhook_id, runtime.cipher)

    @post("/{webhook_id:str}/test", status_code=200)
    async def send_test(self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str]) -> s.TestResult:
        return await service.send_test(runtime_of(request), ctx, webhook_id)

    @get("/{webhook_id:str}/deliveries")
    async def list_deliveries(
        self,
        request: Request,
        ctx: NamedDependency[Scope],
        webhook_id: FromPath[str],
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
        status: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        return await runtime_of(request).db.read(
            service.list_deliveries, ctx, webhook_id, cursor=cursor, limit=clamp_limit(limit), status=status
        )

    @get("/{webhook_id:str}/deliveries/{delivery_id:str}")
    async def get_delivery(
        self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str], delivery_id: FromPath[str]
    ) -> s.Delivery:
        return await runtime_of(request).db.read(service.get_delivery, ctx, webhook_id, delivery_id)

    @post("/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver", status_code=HTTP_202_ACCEPTED)
    async def redeliver(
        self, request: Request, ctx: NamedDependency[Scope], webhook_id: FromPath[str], delivery_id: FromPath[str]
    ) -> Response[s.Delivery]:
        out = await runtime_of(request).db.transaction(service.redeliver, ctx, webhook_id, delivery_id)
        return Response(out, status_code=HTTP_202_ACCEPTED)


ROUTES = [WebhooksController]

# The safety sweep runs in every app process (see kabar.integrations.dispatch).
if dispatch.start_sweeper not in STARTUP_HOOKS:
    STARTUP_HOOKS.append(dispatch.start_sweeper)
    SHUTDOWN_HOOKS.append(dispatch.stop_sweeper)
