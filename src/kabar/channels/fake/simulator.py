"""Simulated customers: signed Kapso v2 ``whatsapp.message.received`` webhooks with Indonesian
texts, at a steady rate, against a running Kabar (``kabar simulate``, and the demo)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from kabar.channels.fake import payloads as p
from kabar.channels.kapso.webhook import FAKE_TYPING_EVENT

TEXTS = [
    "Halo kak, mau tanya dong 🙏",
    "Masih ada stok ukuran 42?",
    "Ongkir ke Bandung berapa ya?",
    "Bisa COD nggak kak?",
    "Saya mau pesan 2 ya",
    "Kapan barangnya dikirim?",
    "Sudah saya transfer, mohon dicek 🙏",
    "Jam buka toko sampai jam berapa?",
    "Ada promo bulan ini?",
    "Terima kasih banyak kak 😊",
    "Alamat tokonya di mana ya?",
    "Bisa kirim katalog terbaru?",
    "Pembayaran bisa pakai QRIS?",
    "Kak, pesanan saya belum sampai",
    "Boleh minta nomor resinya?",
    "Selamat pagi, apakah bisa konsultasi hari Sabtu?",
    "Harga grosirnya berapa kak?",
    "Oke kak, ditunggu ya",
]
NAMES = ["Budi Santoso", "Siti Rahma", "Agus Pratama", "Dewi Lestari", "Rina Wijaya", "Andi Saputra", "Putri Kusuma",
         "Joko Nugroho", "Ayu Permata", "Rizky Hidayat", "Nur Halimah", "Fajar Siregar", "Indah Nasution", "Wulan Sari"]


@dataclass(frozen=True)
class Customer:
    phone: str  # E.164
    name: str


def make_customers(n: int, *, seed: int | None = None, prefix: str = "+62813") -> list[Customer]:
    rng = random.Random(seed)
    phones: set[str] = set()
    while len(phones) < n:
        phones.add(f"{prefix}{rng.randrange(10**7, 10**8)}")
    return [Customer(phone, rng.choice(NAMES)) for phone in sorted(phones)]


@dataclass
class Stats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def send_message(http: httpx.AsyncClient, url: str, pnid: str, secret: str, customer: Customer, text: str) -> int:
    doc = p.kapso_received(pnid=pnid, phone=customer.phone, text=text, name=customer.name)
    raw = p.encode(doc)
    response = await http.post(url.rstrip("/") + "/webhooks/kapso", content=raw,
                               headers=p.kapso_headers(raw, secret, "whatsapp.message.received"))
    return response.status_code


async def send_typing(http: httpx.AsyncClient, url: str, pnid: str, secret: str, customer: Customer, state: str = "typing") -> int:
    """The customer starts (or stops, ``state="paused"``) typing: a ``kabar.fake.typing`` event."""
    raw = p.encode(p.fake_typing(pnid=pnid, phone=customer.phone, state=state))
    response = await http.post(url.rstrip("/") + "/webhooks/kapso", content=raw,
                               headers=p.kapso_headers(raw, secret, FAKE_TYPING_EVENT))
    return response.status_code


async def simulate(url: str, pnid: str, secret: str, *, customers: list[Customer], rate: float,
                   duration: float | None, seed: int | None = None, concurrency: int = 32, typing_seconds: float = 0.0) -> Stats:
    """Post ``rate`` messages per second from random ``customers`` for ``duration`` seconds
    (forever when None). Requests overlap up to ``concurrency`` so a slow answer does not slow the rate.
    With ``typing_seconds``, each customer is seen typing for that long before the message (the demo)."""
    rng = random.Random(seed)
    stats = Stats()
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()
    started = time.monotonic()

    async def one(http: httpx.AsyncClient, customer: Customer, text: str) -> None:
        async with slots:
            if typing_seconds > 0:
                try:
                    await send_typing(http, url, pnid, secret, customer)
                except httpx.HTTPError:
                    pass  # typing is best effort
                await asyncio.sleep(typing_seconds)
            t0 = time.perf_counter()
            try:
                status = await send_message(http, url, pnid, secret, customer, text)
            except httpx.HTTPError:
                status = 0
            stats.latencies.append(time.perf_counter() - t0)
            if status == 200:
                stats.ok += 1
            else:
                stats.failed += 1

    async with httpx.AsyncClient(timeout=30) as http:
        while duration is None or time.monotonic() - started < duration:
            task = asyncio.create_task(one(http, rng.choice(customers), rng.choice(TEXTS)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            stats.sent += 1
            next_at = started + stats.sent / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.wait(pending)
    return stats
