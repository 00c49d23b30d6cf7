"""The realtime floor: a bare ASGI app (no Litestar, no Kabar) that holds WebSockets and sends one
pre-encoded frame to all of them, so server choices can be compared on what they cost per socket.

Run under any ASGI server, e.g. ``granian --interface asgi tests.realtime.fanout_floor:app`` or
``uvicorn --ws wsproto tests.realtime.fanout_floor:app``; ``FLOOR_MODE`` picks how the frame
reaches the sockets:

- ``sequential``: one loop awaits each socket's ASGI ``send`` in turn;
- ``gather``: every ``send`` started at once, awaited together;
- ``wake``: a task per socket sleeps on its own ``asyncio.Event`` and sends when woken (the shape
  of one sender task per subscriber).

``POST /broadcast`` sends the next event and answers ``{"seq", "n", "t0", "t1", "cpu"}``: the
``time.monotonic()`` before the first send and after the last completed, and the thread CPU
seconds spent. ``GET /rss`` answers the process's resident set in KiB. Used by
``tests.realtime.measure --floor``.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
import os
import time
from pathlib import Path
from typing import Any

_dumps = partial(json.dumps, separators=(",", ":"))
MODE = os.environ.get("FLOOR_MODE", "sequential")
PAD = "x" * 500  # about the size of a real event frame
SENDS: dict[int, Any] = {}
WAKERS: dict[int, asyncio.Event] = {}
STATE: dict[str, Any] = {"seq": 0, "frame": None, "pending": 0, "done": None}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/broadcast":
        STATE["seq"] += 1
        seq = STATE["seq"]
        message = {"type": "websocket.send", "text": _dumps({"op": "event", "seq": seq, "type": "floor", "data": PAD})}
        t0, c0 = time.monotonic(), time.thread_time()
        if MODE == "sequential":
            for ws_send in list(SENDS.values()):
                await ws_send(message)
        elif MODE == "gather":
            await asyncio.gather(*(ws_send(message) for ws_send in list(SENDS.values())))
        else:
            STATE["frame"], STATE["pending"] = message, len(WAKERS)
            done = STATE["done"] = asyncio.get_running_loop().create_future()
            for event in list(WAKERS.values()):
                event.set()
            if STATE["pending"]:
                await done
        t1, c1 = time.monotonic(), time.thread_time()
        body = {"seq": seq, "n": len(SENDS), "t0": t0, "t1": t1, "cpu": c1 - c0}
    else:
        body = {"rss_kib": rss_kib(), "sockets": len(SENDS)}
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    message = await receive()  # the subscribe op
    if message["type"] != "websocket.receive":
        return
    await send({"type": "websocket.send", "text": _dumps({"op": "subscribed", "since": 0, "last_seq": STATE["seq"]})})
    key = id(send)
    SENDS[key] = send
    try:
        if MODE == "wake":
            event = WAKERS[key] = asyncio.Event()
            while True:
                await event.wait()
                event.clear()
                await send(STATE["frame"])
                STATE["pending"] -= 1
                if STATE["pending"] == 0 and not STATE["done"].done():
                    STATE["done"].set_result(None)
        while (await receive())["type"] != "websocket.disconnect":
            pass
    except Exception:  # noqa: BLE001 - the client went away
        pass
    finally:
        SENDS.pop(key, None)
        WAKERS.pop(key, None)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
