"""BatchSender: many datagrams in one sendmmsg(2), with real sockets on 127.0.0.1."""

from __future__ import annotations

import ctypes
import errno
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from sfu.media import sendmmsg
from sfu.media.sendmmsg import MAX_DATAGRAM, BatchSender, sockaddr

pytestmark = pytest.mark.skipif(not sendmmsg.available(), reason="no sendmmsg here")


class Owner:
    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.bytes_sent = 0


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def receivers(count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        socks.append(sock)
    return socks


def test_one_call_delivers_every_datagram_to_its_address(sender: socket.socket) -> None:
    targets = receivers(5)
    try:
        batch = BatchSender(sender, capacity=16)
        for round_ in range(3):
            for i, target in enumerate(targets):
                payload = bytes([round_, i]) * (100 + 100 * i)
                # a memoryview of a buffer that is reused at once, as the SRTP buffer is
                scratch = bytearray(payload)
                assert batch.add(memoryview(scratch), target.getsockname())
                scratch[:] = b"\xff" * len(scratch)
            assert batch.pending == 5
            batch.flush()
            assert batch.pending == 0
            for i, target in enumerate(targets):
                assert target.recv(4096) == bytes([round_, i]) * (100 + 100 * i)
        assert batch.calls == 3 and batch.sent == 15 and batch.dropped == 0
    finally:
        for target in targets:
            target.close()


def test_a_full_batch_is_flushed_at_once(sender: socket.socket) -> None:
    (target,) = receivers(1)
    try:
        batch = BatchSender(sender, capacity=4)
        for i in range(10):
            assert batch.add(bytes([i]) * 10, target.getsockname())
        assert batch.pending == 2 and batch.sent == 8
        batch.flush()
        assert [target.recv(100)[0] for _ in range(10)] == list(range(10))
    finally:
        target.close()


def test_too_long_or_foreign_addresses_are_refused_not_queued(sender: socket.socket) -> None:
    batch = BatchSender(sender, capacity=4)
    assert not batch.add(b"x" * (MAX_DATAGRAM + 1), ("127.0.0.1", 9))
    assert not batch.add(b"x", ("::1", 9, 0, 0))  # an IPv6 address on an IPv4 socket
    assert not batch.add(b"x", ("not an ip", 9))
    assert batch.pending == 0


def test_a_refused_datagram_is_dropped_and_counted_and_the_rest_sent(
    sender: socket.socket,
) -> None:
    targets = receivers(2)
    try:
        batch = BatchSender(sender, capacity=8)
        good, bad = Owner(), Owner()
        good.bytes_sent = bad.bytes_sent = 1000
        assert batch.add(b"first", targets[0].getsockname(), good)
        # broadcast without SO_BROADCAST: EACCES for this one datagram only
        assert batch.add(b"refused", ("255.255.255.255", 9), bad)
        assert batch.add(b"second", targets[1].getsockname(), good)
        batch.flush()
        assert targets[0].recv(100) == b"first"
        assert targets[1].recv(100) == b"second"
        assert batch.sent == 2 and batch.dropped == 1
        assert bad.drops["send-failed"] == 1 and bad.bytes_sent == 1000 - len(b"refused")
        assert not good.drops and good.bytes_sent == 1000
    finally:
        for target in targets:
            target.close()


def _failing(error: int, calls: list[int]) -> Any:
    def fake(fd: int, msgs: int, count: int, flags: int) -> int:
        calls.append(count)
        ctypes.set_errno(error)
        return -1

    return fake


def test_a_full_socket_buffer_drops_the_rest_of_the_batch(
    sender: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    batch = BatchSender(sender, capacity=8)
    owner = Owner()
    for i in range(5):
        batch.add(b"x" * 10, ("127.0.0.1", 9 + i), owner)
    monkeypatch.setattr(sendmmsg, "_sendmmsg", _failing(errno.EAGAIN, calls))
    batch.flush()  # never raises
    assert calls == [5]
    assert batch.dropped == 5 and owner.drops["send-failed"] == 5
    assert batch.pending == 0


def test_eintr_is_retried_a_bounded_number_of_times(
    sender: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    batch = BatchSender(sender, capacity=8)
    for _ in range(3):
        batch.add(b"x", ("127.0.0.1", 9))
    monkeypatch.setattr(sendmmsg, "_sendmmsg", _failing(errno.EINTR, calls))
    batch.flush()
    # 3 retries on the first datagram, then one call per datagram, each dropped
    assert len(calls) == 3 + 3
    assert batch.dropped == 3


def test_a_closed_socket_drops_instead_of_raising(sender: socket.socket) -> None:
    batch = BatchSender(sender, capacity=8)
    owner = Owner()
    batch.add(b"x", ("127.0.0.1", 9), owner)
    sender.close()
    batch.flush()
    assert batch.dropped == 1 and owner.drops["send-failed"] == 1


def test_sockaddr_layouts() -> None:
    v4 = sockaddr(socket.AF_INET, ("127.0.0.1", 0x1234))
    assert len(v4) == 16
    assert v4[2:4] == b"\x12\x34" and v4[4:8] == bytes([127, 0, 0, 1])
    v6 = sockaddr(socket.AF_INET6, ("::1", 0x1234, 0, 0))
    assert len(v6) == 28
    assert v6[2:4] == b"\x12\x34" and v6[8:24] == bytes(15) + b"\x01"


def test_a_lone_datagram_goes_by_sendto_and_is_dropped_if_refused(sender: socket.socket) -> None:
    (target,) = receivers(1)
    try:
        batch = BatchSender(sender, capacity=8)
        owner = Owner()
        batch.add(b"alone", target.getsockname(), owner)
        batch.flush()
        assert target.recv(100) == b"alone"
        batch.add(b"refused", ("255.255.255.255", 9), owner)
        batch.flush()
        assert batch.sent == 1 and batch.dropped == 1 and owner.drops["send-failed"] == 1
    finally:
        target.close()
