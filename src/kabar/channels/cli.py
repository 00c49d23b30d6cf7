"""``kabar fake-provider`` and ``kabar simulate``: a local WhatsApp provider and simulated customers."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kabar.channels.fake import demo
from kabar.cli import app, console, fail, run_with_runtime

demo.register()  # `kabar seed --demo` connects the demo workspace to the fake provider


@app.command("fake-provider")
def fake_provider(
    port: int = typer.Option(8090, help="Port to listen on (127.0.0.1)."),
    webhook_url: str = typer.Option("http://127.0.0.1:8000/webhooks/kapso", help="Where to post signed Kapso webhooks."),
    secret: str = typer.Option(..., help="Webhook secret (the channel's webhook_secret)."),
    api_key: str = typer.Option(None, help="Require this X-API-Key on sends (the channel's api_key)."),
    sent_after: float = typer.Option(0.5, help="Seconds until the 'sent' webhook."),
    delivered_after: float = typer.Option(1.5, help="Seconds until 'delivered'."),
    read_after: float = typer.Option(4.0, help="Seconds until 'read'."),
    statuses: bool = typer.Option(True, "--statuses/--no-statuses", help="Post status webhooks back."),
) -> None:
    """Run a Kapso-compatible fake WhatsApp provider on 127.0.0.1 (failure injection: POST /_fake/failures)."""
    from kabar.channels.fake.server import FakeProvider

    async def main() -> None:
        fake = FakeProvider(webhook_url=webhook_url, secret=secret, api_key=api_key, statuses=statuses,
                            delays={"sent": sent_after, "delivered": delivered_after, "read": read_after})
        await fake.start(port=port)
        console.print(f"Fake provider on {fake.url}; set the channel's api_base_url to [bold]{fake.api_base_url}[/bold]. Ctrl-C stops it.")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await fake.stop()

    asyncio.run(main())


@app.command()
def simulate(
    customers: int = typer.Option(5, help="Number of distinct customers."),
    rate: float = typer.Option(1.0, help="Messages per second, all customers together."),
    duration: float = typer.Option(30.0, help="Seconds to run."),
    url: str = typer.Option("http://127.0.0.1:8000", help="Kabar's base URL."),
    phone_number_id: str = typer.Option(demo.DEMO_PHONE_NUMBER_ID, help="The channel's phone_number_id."),
    secret: str = typer.Option(None, help="The channel's webhook secret (default: read from the database)."),
    seed: int = typer.Option(None, help="Random seed (same customers and texts each run)."),
) -> None:
    """Simulated customers posting signed inbound webhooks with Indonesian texts."""
    from kabar.channels.fake.simulator import make_customers
    from kabar.channels.fake.simulator import simulate as run

    if rate <= 0 or customers < 1:
        fail("--rate must be positive and --customers at least 1")
    if secret is None:
        secret = _secret_from_database(phone_number_id)
    stats = asyncio.run(run(url, phone_number_id, secret, customers=make_customers(customers, seed=seed), rate=rate, duration=duration, seed=seed))
    table = Table("sent", "200", "failed", "p50 ms", "p95 ms")
    table.add_row(str(stats.sent), str(stats.ok), str(stats.failed), f"{stats.percentile(0.5) * 1000:.1f}", f"{stats.percentile(0.95) * 1000:.1f}")
    Console().print(table)
    if stats.failed:
        raise typer.Exit(1)


def _secret_from_database(phone_number_id: str) -> str:
    from kabar.channels import service as channels

    async def load(runtime: Any) -> Any:
        return await runtime.db.read(channels.load_by_phone_number_ids, runtime.cipher, {phone_number_id})

    found = run_with_runtime(load)
    channel = found.get(phone_number_id)
    if channel is None or not channel.secrets.get("webhook_secret"):
        fail(f"No channel with phone_number_id {phone_number_id!r} and a webhook secret; pass --secret")
    return channel.secrets.get("webhook_secret")
