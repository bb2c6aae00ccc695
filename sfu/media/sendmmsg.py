"""sendmmsg(2) for one UDP socket: many datagrams, one system call.

Python's socket module has no sendmmsg. In single-port mode every transport
shares one socket, so the N protected copies of one incoming packet can go
out in one call instead of N ``sendto`` calls. :class:`BatchSender` copies
each datagram into its own slab (the SRTP buffers it comes from are reused by
the next protect), fills preallocated ``mmsghdr``/``iovec`` arrays with
``struct.pack_into`` (cheaper than ctypes field access), and :meth:`flush`
sends them. A datagram the kernel refuses (full socket buffer: EAGAIN,
ENOBUFS; an unreachable address) is dropped and counted on its owner, never
raised; the batch goes on with the next one.

Linux only (LP64: 64-byte ``mmsghdr``, 16-byte ``iovec``); :func:`available`
says whether it can be used here.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import sys
from collections import Counter
from typing import Any, Protocol

MAX_DATAGRAM = 1536  # room per slot: an SRTP packet of a 1500-byte MTU and more
_IOVEC_SIZE = 16
_MMSGHDR_SIZE = 64
_EINTR_RETRIES = 3
# Destinations whose sockaddr is cached (a bound: cleared when it grows past this).
_MAX_NAMES = 4096

_NAME = struct.Struct("=QI")  # msghdr.msg_name, msghdr.msg_namelen
_IOV_LEN = struct.Struct("=Q")  # iovec.iov_len
_IOV = struct.Struct("=QQ")
_MSG_FIXED = struct.Struct("=QQ")  # msghdr.msg_iov, msghdr.msg_iovlen


class DropCounter(Protocol):
    """What owns a datagram (a transport): its counters are corrected when the
    datagram could not be sent after all."""

    drops: Counter[str]
    bytes_sent: int


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _load_sendmmsg() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    if ctypes.sizeof(_MMsgHdr) != _MMSGHDR_SIZE or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_sendmmsg = _load_sendmmsg()


def available() -> bool:
    return _sendmmsg is not None


def _pinned(buffer: bytearray) -> tuple[int, Any]:
    """The address of a bytearray, and the object that keeps it from moving."""
    holder = (ctypes.c_char * len(buffer)).from_buffer(buffer)
    return ctypes.addressof(holder), holder


def sockaddr(family: int, addr: tuple) -> bytes:
    """The ``struct sockaddr_in``/``sockaddr_in6`` of a Python address tuple."""
    if family == socket.AF_INET:
        return (
            struct.pack("=H", socket.AF_INET)
            + struct.pack("!H", addr[1])
            + socket.inet_pton(socket.AF_INET, addr[0])
            + bytes(8)
        )
    if family == socket.AF_INET6:
        flowinfo = addr[2] if len(addr) > 2 else 0
        scope_id = addr[3] if len(addr) > 3 else 0
        host = addr[0].partition("%")[0]
        return (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", addr[1], flowinfo)
            + socket.inet_pton(socket.AF_INET6, host)
            + struct.pack("=I", scope_id)
        )
    raise ValueError(f"unsupported address family {family}")


class BatchSender:
    """Datagrams for one UDP socket, queued with :meth:`add` and sent by :meth:`flush`.

    Queue only while :attr:`active` (the caller's job: set it around the
    handling of one incoming datagram, then flush); a full batch is flushed
    at once, so a batch never holds more than ``capacity`` datagrams.
    """

    def __init__(self, sock: socket.socket, capacity: int = 256) -> None:
        if _sendmmsg is None:
            raise OSError("sendmmsg is not available on this platform")
        self._socket = sock
        self._family = sock.family
        self.capacity = capacity
        self.active = False
        self.pending = 0
        # counters
        self.calls = 0
        self.sent = 0
        self.dropped = 0

        self._slab = bytearray(capacity * MAX_DATAGRAM)
        self._slab_view = memoryview(self._slab)
        self._iov = bytearray(capacity * _IOVEC_SIZE)
        self._msgs = bytearray(capacity * _MMSGHDR_SIZE)
        slab_address, self._slab_holder = _pinned(self._slab)
        iov_address, self._iov_holder = _pinned(self._iov)
        self._msgs_address, self._msgs_holder = _pinned(self._msgs)
        for i in range(capacity):
            _IOV.pack_into(self._iov, i * _IOVEC_SIZE, slab_address + i * MAX_DATAGRAM, 0)
            _MSG_FIXED.pack_into(
                self._msgs, i * _MMSGHDR_SIZE + 16, iov_address + i * _IOVEC_SIZE, 1
            )
        self._owners: list[DropCounter | None] = [None] * capacity
        self._sizes = [0] * capacity
        self._addrs: list[tuple] = [()] * capacity
        # address tuple -> (sockaddr address, its length, the buffer holding it)
        self._names: dict[tuple, tuple[int, int, Any]] = {}

    def _name(self, addr: tuple) -> tuple[int, int, Any]:
        if len(self._names) >= _MAX_NAMES and not self.pending:
            self._names.clear()
        raw = bytearray(sockaddr(self._family, addr))
        address, holder = _pinned(raw)
        entry = (address, len(raw), (raw, holder))
        self._names[addr] = entry
        return entry

    def add(self, data: Any, addr: tuple, owner: DropCounter | None = None) -> bool:
        """Queue one datagram (bytes-like); False if it cannot be (too long, an
        address this socket cannot take): send it another way."""
        size = len(data)
        if size > MAX_DATAGRAM:
            return False
        name = self._names.get(addr)
        if name is None:
            if len(self._names) >= _MAX_NAMES and self.pending:
                return False  # the cache is full of names the batch still uses
            try:
                name = self._name(addr)
            except (ValueError, OSError, IndexError, TypeError):
                return False
        i = self.pending
        if i == self.capacity:
            self.flush()
            i = 0
        offset = i * MAX_DATAGRAM
        self._slab_view[offset : offset + size] = data
        _NAME.pack_into(self._msgs, i * _MMSGHDR_SIZE, name[0], name[1])
        _IOV_LEN.pack_into(self._iov, i * _IOVEC_SIZE + 8, size)
        self._owners[i] = owner
        self._sizes[i] = size
        self._addrs[i] = addr
        self.pending = i + 1
        return True

    def flush(self) -> None:
        """Send every queued datagram; those refused are dropped and counted."""
        count = self.pending
        if not count:
            return
        self.pending = 0
        if count == 1:
            # One datagram: a plain sendto is cheaper than a ctypes call.
            self.calls += 1
            try:
                self._socket.sendto(self._slab_view[: self._sizes[0]], self._addrs[0])
            except OSError:
                self._drop(0, 1)
            else:
                self.sent += 1
            return
        start = 0
        retries = 0
        fd = self._socket.fileno()
        # Each turn sends at least one datagram, drops one, or is one of a
        # few EINTR retries: at most count + _EINTR_RETRIES turns.
        while start < count:
            self.calls += 1
            result = _sendmmsg(fd, self._msgs_address + start * _MMSGHDR_SIZE, count - start, 0)
            if result > 0:
                self.sent += result
                start += result
                continue
            error = ctypes.get_errno() if result < 0 else 0
            if error == errno.EINTR and retries < _EINTR_RETRIES:
                retries += 1
                continue
            if error in (errno.EAGAIN, errno.ENOBUFS) or fd < 0:
                # A full socket buffer: the rest would fail too. Drop them all.
                self._drop(start, count)
                break
            # This datagram is refused (an unreachable address...): drop it, go on.
            self._drop(start, start + 1)
            start += 1
        # _owners keeps its references until overwritten: transports are long-lived.

    def _drop(self, start: int, end: int) -> None:
        self.dropped += end - start
        for i in range(start, end):
            owner = self._owners[i]
            if owner is not None:
                owner.drops["send-failed"] += 1
                owner.bytes_sent -= self._sizes[i]
