"""The bench subscribers' receiver reports: one task per load process sends them
(``sfu_bench.load.ReceiverReports``), and aiortc's own report task of a receiver
whose packets the bench intercepts is stopped
(``aiortc_hooks.stop_idle_receiver_reports``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from sfu.aiortc_adapter import restrict_host_addresses
from sfu_bench import load
from sfu_bench.aiortc_hooks import stop_idle_receiver_reports
from sfu_bench.load import ReceiverReports


class Member:
    """Stands for a load subscriber: its report interval and what it sent."""

    def __init__(self, interval: float, fail: bool = False, crash: bool = False) -> None:
        self.interval = interval
        self.fail = fail
        self.crash = crash
        self.sent: list[float] = []

    def report_interval(self) -> float:
        return self.interval

    async def send_report(self) -> bool:
        self.sent.append(asyncio.get_running_loop().time())
        if self.crash:
            raise RuntimeError("a bug in one subscriber")
        return not self.fail


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_one_task_sends_every_member_on_its_own_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "REPORT_TICK", 0.01)
    reports = ReceiverReports.of_running_loop()
    assert ReceiverReports.of_running_loop() is reports
    fast, slow = Member(0.05), Member(0.5)
    gone, broken = Member(0.05, fail=True), Member(0.05, crash=True)
    reports.add(fast)  # type: ignore[arg-type]
    task = reports._task
    for member in (slow, gone, broken):
        reports.add(member)  # type: ignore[arg-type]
    assert reports._task is task
    assert len(reports) == 4

    await wait_until(lambda: len(slow.sent) >= 2)
    # Each interval is varied over 0.5-1.5 times its length, never shorter.
    gaps = [b - a for a, b in zip(fast.sent, fast.sent[1:], strict=False)]
    assert gaps, gaps
    assert min(gaps) >= 0.025 - 0.001, gaps
    assert slow.sent[1] - slow.sent[0] >= 0.25 - 0.001
    assert len(fast.sent) > len(slow.sent)
    # A member whose transport is gone, or whose report raised, is sent to once, then
    # left out; the others go on.
    assert len(gone.sent) == 1
    assert len(broken.sent) == 1
    assert len(reports) == 2

    reports.discard(fast)  # type: ignore[arg-type]
    reports.discard(slow)  # type: ignore[arg-type]
    assert task is not None
    await asyncio.wait_for(task, 5)  # nobody left: the task ends
    count = len(fast.sent)
    reports.add(fast)  # type: ignore[arg-type]
    assert reports._task is not task  # and starts again
    await wait_until(lambda: len(fast.sent) > count)
    reports.discard(fast)  # type: ignore[arg-type]


async def test_stop_idle_receiver_reports_ends_aiortcs_task_and_close_still_returns() -> None:
    with restrict_host_addresses(["127.0.0.1"]):
        sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sender.addTrack(AudioStreamTrack())
        await sender.setLocalDescription(await sender.createOffer())
        await receiver_pc.setRemoteDescription(sender.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender.setRemoteDescription(receiver_pc.localDescription)
    try:
        receiver: Any = receiver_pc.getTransceivers()[0].receiver  # aiortc's private state
        # aiortc starts the task once the transport connects.
        await wait_until(lambda: receiver._RTCRtpReceiver__rtcp_task is not None)
        task = receiver._RTCRtpReceiver__rtcp_task
        await wait_until(receiver._RTCRtpReceiver__rtcp_started.is_set)
        assert stop_idle_receiver_reports(receiver)
        await wait_until(task.done)
        assert not task.cancelled()  # aiortc's task catches the cancellation and exits
        assert not stop_idle_receiver_reports(receiver)  # nothing left to stop
    finally:
        # RTCRtpReceiver.stop() waits for the task to have exited: it must not hang.
        await asyncio.wait_for(receiver_pc.close(), 10)
        await asyncio.wait_for(sender.close(), 10)
