"""HTTP for the workspace's WhatsApp channel (owner/admin only; secrets write-only)."""

from __future__ import annotations

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.exc import IntegrityError

from kabar.auth.scope import Scope
from kabar import app as kabar_app
from kabar.channels import providers, schemas as s
from kabar.channels import check, service
from kabar.channels.fake import demo
from kabar.errors import conflict
from kabar.http import provide_scope, runtime_of

demo.register()  # the demo's in-process fake provider and simulator (active only with KABAR_DEMO=1)
if providers.close not in kabar_app.SHUTDOWN_HOOKS:
    kabar_app.SHUTDOWN_HOOKS.append(providers.close)  # the pooled HTTP client to Kapso/Meta


class ChannelController(Controller):
    path = "/v1/workspaces/{ws:str}/channel"
    tags = ["channel"]
    dependencies = {"ctx": Provide(provide_scope)}

    @get("/")
    async def read(self, request: Request, ctx: NamedDependency[Scope]) -> s.ChannelOut:
        runtime = runtime_of(request)
        return await runtime.db.read(service.get_channel, ctx, runtime.cipher)

    @put("/")
    async def replace(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.ChannelIn]) -> s.ChannelOut:
        runtime = runtime_of(request)
        if data.api_base_url:  # where the host resolves to is checked before the transaction opens
            ctx.require("channel.manage")
            await service.check_base_url(data.api_base_url, runtime.settings)
        try:
            return await runtime.db.transaction(service.put_channel, ctx, data, runtime.cipher, runtime.settings)
        except IntegrityError as exc:  # a concurrent PUT from another workspace took the number first
            raise conflict("This phone_number_id is connected to another workspace", slug="phone-number-id-taken") from exc

    @post("/test", status_code=200)
    async def send_test(self, request: Request, ctx: NamedDependency[Scope], data: JSONBody[s.ChannelTestIn]) -> s.ChannelTestOut:
        """Send one text now through the configured provider (the settings page's connection check)."""
        return await check.send_test_message(runtime_of(request), ctx, data)


ROUTES = [ChannelController]
