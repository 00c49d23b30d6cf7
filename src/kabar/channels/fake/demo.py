"""The demo (``KABAR_DEMO=1``, set by ``scripts/run``): the seeded workspace's channel uses the fake
provider, which runs inside ``kabar serve`` together with a few gently chatting customers. A new
user sees messages arrive, replies, and watches their replies go sent → delivered → read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from kabar.channels import repository as channel_repo
from kabar.channels import service as channels
from kabar.crypto import Cipher

log = logging.getLogger("kabar.demo")

DEMO_PHONE_NUMBER_ID = "kabar-demo-1"
DEMO_DISPLAY_NUMBER = "+62 21 5088 0000"
DEMO_RATE = 0.2  # messages per second: one every five seconds
DEMO_SEEDED_CUSTOMERS = 4  # existing demo contacts who keep writing…
DEMO_NEW_CUSTOMERS = 2  # …and newcomers
DEMO_TYPING_SECONDS = 2.5  # each customer is seen "typing…" this long before the message arrives
_STATE_KEY = "channels.demo"


def seed_channel(uow: Any, workspace_id: str) -> None:
    """``kabar.demo.SEED_HOOKS``: connect the demo workspace to the fake provider."""
    cipher = Cipher(uow.db.settings.encryption_key_bytes)
    channels.configure(
        uow,
        workspace_id,
        cipher,
        provider="fake",
        phone_number_id=DEMO_PHONE_NUMBER_ID,
        display_phone_number=DEMO_DISPLAY_NUMBER,
        api_base_url=None,  # set when the fake provider starts (its port is chosen then)
        secrets={"webhook_secret": secrets.token_urlsafe(24), "api_key": secrets.token_urlsafe(24)},
    )


async def start(runtime: Any) -> None:
    """``kabar.app.STARTUP_HOOKS``: start the fake provider and the simulated customers."""
    if not runtime.settings.demo or _STATE_KEY in runtime.extras:
        return
    from kabar.channels.fake.server import FakeProvider
    from kabar.channels.fake.simulator import Customer, make_customers, simulate

    channel = await runtime.db.read(_demo_channel, runtime.cipher)
    if channel is None:
        log.warning("KABAR_DEMO is set but no demo channel exists; run `kabar seed --demo` first")
        return
    host = "127.0.0.1" if runtime.settings.host in ("0.0.0.0", "::", "") else runtime.settings.host
    kabar_url = f"http://{host}:{runtime.settings.port}"
    fake = FakeProvider(webhook_url=kabar_url + "/webhooks/kapso", secret=channel.secrets.get("webhook_secret") or "",
                        api_key=channel.secrets.get("api_key"), delays={"sent": 0.5, "delivered": 1.5, "read": 4.0})
    await fake.start()
    await runtime.db.transaction(_point_at, fake.api_base_url)
    seeded = await runtime.db.read(_seeded_customers, channel.workspace_id)
    customers = seeded + make_customers(DEMO_NEW_CUSTOMERS, prefix="+62857")

    async def chat() -> None:
        await asyncio.sleep(3)  # let the server start listening
        while True:
            try:
                await simulate(kabar_url, DEMO_PHONE_NUMBER_ID, channel.secrets.get("webhook_secret") or "",
                               customers=[Customer(c.phone, c.name) for c in customers], rate=DEMO_RATE, duration=None, concurrency=2,
                               typing_seconds=DEMO_TYPING_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the demo keeps chatting
                log.exception("demo simulator stopped; restarting")
                await asyncio.sleep(5)

    task = asyncio.get_running_loop().create_task(chat(), name="kabar-demo-customers")
    runtime.extras[_STATE_KEY] = (fake, task)
    log.info("demo: fake WhatsApp provider at %s, %d simulated customers", fake.url, len(customers))


async def stop(runtime: Any) -> None:
    state = runtime.extras.pop(_STATE_KEY, None)
    if state is None:
        return
    fake, task = state
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await fake.stop()


def _demo_channel(conn: Any, cipher: Cipher) -> channels.ChannelConfig | None:
    rows = channel_repo.by_phone_number_ids(conn, [DEMO_PHONE_NUMBER_ID])
    return channels.decrypt(cipher, rows[0]) if rows else None


def _point_at(uow: Any, api_base_url: str) -> None:
    from sqlalchemy import update

    from kabar.db import tables as t

    uow.conn.execute(
        update(t.channels).where(t.channels.c.phone_number_id == DEMO_PHONE_NUMBER_ID).values(api_base_url=api_base_url, updated_at=uow.now)
    )


def _seeded_customers(conn: Any, workspace_id: str) -> list[Any]:
    from types import SimpleNamespace

    from sqlalchemy import select

    from kabar.db import tables as t

    k = t.contacts
    rows = conn.execute(
        select(k.c.phone_e164, k.c.name, k.c.profile_name).where(k.c.workspace_id == workspace_id).order_by(k.c.created_at).limit(DEMO_SEEDED_CUSTOMERS)
    ).all()
    return [SimpleNamespace(phone=r.phone_e164, name=r.profile_name or r.name or "Pelanggan") for r in rows]


def register() -> None:
    """Hook the demo into seeding and the server's lifecycle (idempotent; inert without KABAR_DEMO)."""
    from kabar import app, demo

    if seed_channel not in demo.SEED_HOOKS:
        demo.SEED_HOOKS.append(seed_channel)
    if start not in app.STARTUP_HOOKS:
        app.STARTUP_HOOKS.append(start)
        app.SHUTDOWN_HOOKS.append(stop)
