"""The floor: the same server (granian) and framework (Litestar + msgspec) answering one indexed
contact lookup with no Kabar code at all. Kabar's by-phone results are reported as a ratio to it,
so the numbers say how much of what the machine can do Kabar delivers.

Served with ``granian --factory kabar.bench.floor:create_floor_app``; the database URL comes from
``KABAR_DATABASE_URL`` exactly as for Kabar itself.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import msgspec
from litestar import Litestar, Response, get
from litestar.params import FromPath, FromQuery


class FloorContact(msgspec.Struct):
    id: str
    phone: str
    name: str | None
    lead_status: str
    lead_score: int


SQL = "SELECT id, phone_e164, name, lead_status, lead_score FROM contacts WHERE workspace_id = {p1} AND phone_e164 = {p2}"


def create_floor_app() -> Litestar:
    url = os.environ["KABAR_DATABASE_URL"]
    state: dict[str, Any] = {}

    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1]
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
        sql = SQL.format(p1="?", p2="?")

        @get("/floor/{ws:str}/contact")
        async def lookup(ws: FromPath[str], phone: FromQuery[str]) -> Response:
            row = conn.execute(sql, (ws, phone)).fetchone()
            if row is None:
                return Response({"found": False})
            return Response({"found": True, "contact": FloorContact(*row)})

        return Litestar([lookup])

    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    sql = SQL.format(p1="$1", p2="$2")

    async def open_pool(app: Litestar) -> None:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=4, max_size=10)

    async def close_pool(app: Litestar) -> None:
        await state["pool"].close()

    @get("/floor/{ws:str}/contact")
    async def lookup_pg(ws: FromPath[str], phone: FromQuery[str]) -> Response:
        row = await state["pool"].fetchrow(sql, ws, phone)
        if row is None:
            return Response({"found": False})
        return Response({"found": True, "contact": FloorContact(*row)})

    return Litestar([lookup_pg], on_startup=[open_pool], on_shutdown=[close_pool])
