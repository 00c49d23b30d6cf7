"""The WebSocket write fast path: pre-built frames written straight to the connection's transport.

Why (measured with ``tests/realtime/measure.py --profile``, server pinned to one core): sending one
webhook's 3 events to 1,000 sockets through the ASGI ``send`` cost about 13 µs per frame, in
uvicorn's send, wsproto building the same frame again for every socket, Litestar's two send
wrappers, and one ``transport.write`` (a system call) per frame. Server-to-client frames are not
masked, so an event's frame is the same bytes for every socket: it is built once
(``ws_frame``), and a socket gets its whole batch in one ``transport.write``.

It applies only where it is exactly equivalent to the ASGI send: uvicorn's wsproto connections
without permessage-deflate (``kabar serve`` turns it off), while the connection is open and its
transport is not paused for a slow reader. Everything else (granian, the in-process test client,
a socket with a backlog, handshake and close) goes through ASGI as usual.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Any

PROTOCOL_KEY = "kabar.ws_protocol"  # scope key: the uvicorn protocol object behind ``send``


def ws_frame(text: str) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


class RawWriter:
    """Writes frames to one uvicorn wsproto connection's transport (see the module docstring)."""

    __slots__ = ("proto",)

    def __init__(self, proto: Any):
        self.proto = proto

    def ready(self) -> bool:
        """True when bytes written now go out like an ASGI send would send them."""
        proto = self.proto
        return proto.writable.is_set() and not proto.close_sent and not proto.transport.is_closing()

    def write(self, data: bytes) -> None:
        self.proto.transport.write(data)


def _is_uvicorn_wsproto(proto: Any) -> bool:
    return (
        type(proto).__module__ == "uvicorn.protocols.websockets.wsproto_impl"
        and type(proto).__name__ == "WSProtocol"
        and getattr(getattr(proto, "config", None), "ws_per_message_deflate", True) is False
        and all(hasattr(proto, name) for name in ("transport", "writable", "close_sent"))
    )


def raw_writer(scope: dict[str, Any]) -> RawWriter | None:
    proto = scope.get(PROTOCOL_KEY)
    return RawWriter(proto) if proto is not None else None


def raw_send(scope: dict[str, Any]) -> Callable[[Any], Awaitable[None]] | None:
    """The server's own ASGI send (without Litestar's wrappers), when known."""
    proto = scope.get(PROTOCOL_KEY)
    return proto.send if proto is not None else None


def with_raw_websockets(app: Any) -> Any:
    """ASGI wrapper: records, for uvicorn wsproto WebSockets, the protocol object behind ``send``."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            proto = getattr(send, "__self__", None)
            if _is_uvicorn_wsproto(proto):
                scope[PROTOCOL_KEY] = proto
        await app(scope, receive, send)

    return wrapped


def create_served_app() -> Any:
    """The factory ``kabar serve`` gives uvicorn: the app, with the fast path wired in."""
    from kabar.app import create_app

    return with_raw_websockets(create_app())
