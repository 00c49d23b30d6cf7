"""The push fan-out's pieces, in process: inline sends, the backlog pump, overflow, the transport
fast path, and the hand-stepped coroutine resumption they rely on. (The same paths run end to end
in test_socket.py against real ``kabar serve`` processes.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from kabar.realtime.feed import SocketSubscription, _resume, ws_message
from kabar.realtime.hub import RealtimeOptions
from kabar.realtime.service import LogEvent, Viewer
from kabar.realtime.transport import ws_frame

OWNER = Viewer(sees_all=True, user_id="owner")
MEMBER = Viewer(sees_all=False, user_id="member")


class FakeHub:
    def __init__(self, queue_size: int = 100):
        self.options = RealtimeOptions(queue_size=queue_size, send_timeout=5)


class FakeSend:
    """An ASGI send that completes at once, or waits while ``blocked`` (a full TCP window)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate: asyncio.Future[None] | None = None

    def block(self) -> None:
        self.gate = asyncio.get_running_loop().create_future()

    def release(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.set_result(None)

    async def __call__(self, message: dict[str, Any]) -> None:
        while self.gate is not None:
            await self.gate
        self.sent.append(message["text"])


class FakeRaw:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.open = True

    def ready(self) -> bool:
        return self.open

    def write(self, data: bytes) -> None:
        self.writes.append(data)


def event(seq: int, audience: tuple[str, ...] | None = None) -> LogEvent:
    return LogEvent(seq, "message.created", {"n": seq}, datetime(2026, 1, 1, tzinfo=UTC), None, audience)


def seqs(sent: list[str]) -> list[Any]:
    import json

    return [json.loads(text).get("seq", json.loads(text)["op"]) for text in sent]


def subscription(send: Any, viewer: Viewer = OWNER, raw: Any = None, queue_size: int = 100) -> tuple[SocketSubscription, list[int]]:
    ended: list[int] = []
    sub = SocketSubscription(FakeHub(queue_size), "ws", viewer, send, lambda: ended.append(1), raw)  # type: ignore[arg-type]
    return sub, ended


async def settle(sub: SocketSubscription) -> None:
    for _ in range(100):
        if sub.pump is None:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("pump did not finish")


async def test_caught_up_sockets_are_sent_to_inline_and_a_blocked_send_gets_a_pump_that_keeps_order():
    send = FakeSend()
    sub, ended = subscription(send)
    sub.offer([event(1), event(2)])
    assert seqs(send.sent) == [1, 2] and sub.pump is None  # no task for the common case
    send.block()
    sub.offer([event(3), event(4)])
    assert sub.pump is not None  # the waiting send went to the pump, 4 is queued behind it
    sub.offer([event(4), event(5)])  # 4 again: the seq guard drops the repeat
    sub.push(ws_message({"op": "pong"}))
    send.release()
    await settle(sub)
    assert seqs(send.sent) == [1, 2, 3, 4, 5, "pong"] and not ended
    sub.offer([event(6)])
    assert seqs(send.sent)[-1] == 6 and sub.pump is None


async def test_members_only_get_what_they_may_see_and_the_cursor_passes_the_rest():
    send = FakeSend()
    sub, _ = subscription(send, MEMBER)
    sub.offer([event(1, ("someone",)), event(2, ("member",)), event(3, None), event(4, ("someone",))])
    assert seqs(send.sent) == [2, 3] and sub.cursor == 4


async def test_a_socket_too_far_behind_gets_resync_then_is_ended_once():
    send = FakeSend()
    sub, ended = subscription(send, queue_size=3)
    sub.offer([event(1)])
    send.block()
    sub.offer([event(2)])
    sub.offer([event(s) for s in range(3, 10)])
    assert sub.overflowed and not sub.pending
    send.release()
    await settle(sub)
    assert seqs(send.sent) == [1, 2, "resync"] and sub.close_code == 4008 and ended == [1]
    sub.offer([event(10)])  # ended: nothing more is sent
    assert seqs(send.sent)[-1] == "resync"


async def test_a_failed_send_ends_the_subscription():
    async def broken(message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    sub, ended = subscription(broken)
    sub.offer([event(1), event(2)])
    assert ended == [1] and sub.closed


async def test_transport_fast_path_writes_each_sockets_batch_once_and_falls_back_when_paused():
    send, raw = FakeSend(), FakeRaw()
    sub, _ = subscription(send, MEMBER, raw)
    batch = [event(1, None), event(2, ("someone",)), event(3, ("member",))]
    sub.offer(batch)
    assert raw.writes == [batch[0].frame + batch[2].frame] and not send.sent and sub.cursor == 3
    raw.open = False  # paused for a slow reader: the ASGI send (and its backpressure) takes over
    sub.offer([event(4)])
    assert seqs(send.sent) == [4] and len(raw.writes) == 1


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_ws_frame_is_a_valid_unmasked_text_frame(size: int):
    text = ("é" * size)[: max(0, size // 2)] + "x" * (size - max(0, size // 2))
    decoder = FrameProtocol(client=True, extensions=[])
    decoder.receive_bytes(ws_frame(text))
    frames = list(decoder.received_frames())
    assert len(frames) == 1
    assert frames[0].opcode is Opcode.TEXT and frames[0].payload == text and frames[0].message_finished


async def test_resume_continues_a_hand_stepped_coroutine_with_results_errors_and_cancellation():
    loop = asyncio.get_running_loop()
    cleaned: list[str] = []

    async def work(fut: asyncio.Future[int]) -> int:
        try:
            return await fut * 2
        finally:
            cleaned.append("done")

    fut: asyncio.Future[int] = loop.create_future()
    coro = work(fut)
    waiting = coro.send(None)  # suspends on fut, as a blocked send does
    task = asyncio.ensure_future(_resume(coro, waiting))
    fut.set_result(21)
    assert await task == 42

    fut = loop.create_future()
    coro = work(fut)
    task = asyncio.ensure_future(_resume(coro, coro.send(None)))
    fut.set_exception(ValueError("boom"))
    with pytest.raises(ValueError):
        await task

    fut = loop.create_future()
    coro = work(fut)
    task = asyncio.ensure_future(_resume(coro, coro.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["done", "done", "done"]
