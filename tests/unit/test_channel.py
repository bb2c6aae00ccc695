"""The worker channel: requests, typed errors, notifications, and a peer that goes away."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from sfu.channel import Channel, ChannelClosedError
from sfu.errors import NotFoundError, SfuError


class PortsGoneError(SfuError):
    """An error type the other end does not know."""

    code = 503


async def pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return await Channel.over_socket(a), await Channel.over_socket(b)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def on_notification(self, event: str, data: Any) -> None:
        self.seen.append((event, data))


async def test_requests_errors_and_notifications() -> None:
    control, worker = await pair()

    async def handle(method: str, target: str, data: dict[str, Any]) -> Any:
        if method == "echo":
            worker.notify(target, "echoed", data)
            return {"target": target, **data}
        if method == "missing":
            raise NotFoundError("no such thing")
        if method == "ports":
            raise PortsGoneError("no free UDP port")
        raise RuntimeError("boom")

    serving = asyncio.create_task(worker.run(handle))
    reading = asyncio.create_task(control.run())
    recorder = Recorder()
    control.register("t1", recorder)
    try:
        assert await control.request("echo", "t1", {"n": 1}) == {"target": "t1", "n": 1}
        # The notification was written before the response: it has arrived.
        assert recorder.seen == [("echoed", {"n": 1})]
        with pytest.raises(NotFoundError, match="no such thing"):
            await control.request("missing")
        with pytest.raises(SfuError) as unknown:
            await control.request("ports")
        assert unknown.value.code == 503
        assert "no free UDP port" in str(unknown.value)
        with pytest.raises(SfuError) as internal:
            await control.request("crash")
        assert internal.value.code == 500
        assert "boom" in str(internal.value)
        # Notifications for targets nobody registered are dropped.
        worker.notify("nobody", "echoed", None)
        assert await control.request("echo", "t1", {"n": 2}) == {"target": "t1", "n": 2}
        assert recorder.seen[-1] == ("echoed", {"n": 2})
    finally:
        control.close()
        await asyncio.wait_for(asyncio.gather(serving, reading), 5)
    assert worker.closed


async def test_pending_requests_fail_when_the_worker_goes_away() -> None:
    control, worker = await pair()
    started = asyncio.Event()

    async def never_answer(method: str, target: str, data: dict[str, Any]) -> Any:
        started.set()
        await asyncio.sleep(3600)

    serving = asyncio.create_task(worker.run(never_answer))
    reading = asyncio.create_task(control.run())
    pending = asyncio.create_task(control.request("slow"))
    await asyncio.wait_for(started.wait(), 5)
    serving.cancel()
    worker.close()  # as if the process died
    with pytest.raises(ChannelClosedError):
        await asyncio.wait_for(pending, 5)
    await asyncio.wait_for(reading, 5)
    assert control.closed
    with pytest.raises(ChannelClosedError):
        await control.request("after")


async def test_an_oversized_frame_closes_the_channel() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    control = await Channel.over_socket(a)
    reading = asyncio.create_task(control.run())
    b.sendall(struct.pack("!I", 64 * 1024 * 1024) + b"{}")
    with pytest.raises(ValueError, match="frame of 67108864 bytes"):
        await asyncio.wait_for(reading, 5)
    assert control.closed
    b.close()


async def test_a_notification_before_the_handle_exists_is_delivered_on_attach() -> None:
    # The worker may write a response and, right behind it, a notification about
    # the object it created: both can be read before the requester builds its handle.
    control, worker = await pair()

    async def create_then_close(method: str, target: str, data: dict[str, Any]) -> Any:
        asyncio.get_running_loop().call_soon(worker.notify, "c1", "producerclose", None)
        return {"id": "c1"}

    serving = asyncio.create_task(worker.run(create_then_close))
    reading = asyncio.create_task(control.run())
    try:
        info = await control.request("create")
        await asyncio.sleep(0.2)  # the notification has arrived, with nobody to take it
        recorder = Recorder()
        control.register(info["id"], recorder)
        assert recorder.seen == [("producerclose", None)]
        worker.notify("c1", "later", 1)
        assert await _eventually(lambda: recorder.seen[-1] == ("later", 1))
    finally:
        control.close()
        await asyncio.wait_for(asyncio.gather(serving, reading), 5)


async def _eventually(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
