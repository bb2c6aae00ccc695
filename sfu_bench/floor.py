"""The floor: what forwarding costs on this machine with no SFU logic at all.

``floor-N`` runs the load pattern of ``fanout-N`` through a minimal forwarder
instead of the SFU, so that the SFU's figures can be read against what the
machine itself charges, measured side by side in the same run:

- a publisher process sends the clip's packet rate (one 1,100-byte video
  packet every ~10.6 ms and one 120-byte audio packet every 20 ms, 144
  packets/s) to the forwarder;
- the forwarder runs on uvloop, as the SFU's media workers do. For every
  packet it receives, and for each of its N subscribers, it writes an RTP
  header into that subscriber's own SRTP session (pylibsrtp, AES-128-CM
  HMAC-SHA1-80), protects the packet, and ``sendto``s it from that
  subscriber's own UDP socket, through the same send the SFU's consumers use
  (the C one of ``SrtpCodec.native_sender`` when it is built, else
  ``protect_fields`` and the socket's ``sendto``). That is the least a
  forwarder has to do per packet and subscriber: no parsing, no rewriting,
  no NACK history, no RTCP;
- subscriber processes (16 per process, as for ``fanout-N``) read every
  datagram through an asyncio event loop, one wake-up at a time, as the
  load clients do, and count it.

On loopback, the kernel runs the receive side of every ``sendto`` (UDP
input, queueing, waking the subscriber's process) in the sender's context,
so this floor includes it, as the SFU's figures do. Everything is on
127.0.0.1 and every process stops by itself after its bounded run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .target import proc_cpu_seconds

__all__ = ["run_floor"]

SUBSCRIBERS_PER_PROCESS = 16
VIDEO_INTERVAL = 1 / 94.0
AUDIO_INTERVAL = 0.020
VIDEO_SIZE = 1100
AUDIO_SIZE = 120
START_TIMEOUT = 20.0
_SRTP_KEY_LENGTH = 30  # AES-128-CM key + salt


def _subscriber_process(conn: Connection, count: int, deadline: float) -> None:
    """Own ``count`` UDP sockets; count every datagram; report the count when asked."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sockets.append(sock)
    conn.send([s.getsockname()[1] for s in sockets])
    received = [0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:

            def read(sock: socket.socket = sock) -> None:
                try:
                    sock.recv(2048)
                except OSError:
                    return
                received[0] += 1

            loop.add_reader(sock.fileno(), read)
        while time.monotonic() < deadline:
            if conn.poll():
                message = conn.recv()
                if message == "count":
                    conn.send(received[0])
                else:
                    return
            await asyncio.sleep(0.05)

    asyncio.run(main())


def _forwarder_process(conn: Connection, ports: list[int], deadline: float) -> None:
    """Receive the publisher's packets; protect and send each to every subscriber."""
    import uvloop
    from pylibsrtp import Policy, Session

    from sfu.media.fastpath import SrtpCodec

    async def main() -> None:
        loop = asyncio.get_running_loop()
        targets = []  # the Python path's (protect_fields, sendto, address)
        native_targets = []  # the C path's send_fields
        sockets = []
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sockets.append(sock)
            policy = Policy(
                key=os.urandom(_SRTP_KEY_LENGTH),
                ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
            codec = SrtpCodec(Session(policy=policy))
            address = ("127.0.0.1", port)
            native = codec.native_sender(sock, address)
            if native is not None:
                native_targets.append(native.send_fields)
            else:
                targets.append((codec.protect_fields, sock.sendto, address))
        counts = [0, 0]  # packets received, packets sent

        class Forward(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                b0, b1, seq, timestamp, ssrc = _HEADER.unpack_from(data)
                tail = data[12:]
                for send in native_targets:
                    send(b0, b1, seq, timestamp, ssrc, tail)
                for protect, sendto, address in targets:
                    protected = protect(b0, b1, seq, timestamp, ssrc, tail)
                    if protected is not None:
                        try:  # noqa: SIM105 - per packet: a with-block would cost the floor it measures
                            sendto(protected, address)
                        except OSError:
                            pass
                counts[0] += 1
                counts[1] += len(ports)

        inbound, _ = await loop.create_datagram_endpoint(Forward, local_addr=("127.0.0.1", 0))
        conn.send(inbound.get_extra_info("sockname")[1])
        while time.monotonic() < deadline:
            if conn.poll():
                message = conn.recv()
                if message == "count":
                    conn.send(tuple(counts))
                else:
                    break
            await asyncio.sleep(0.05)
        inbound.close()
        native_targets.clear()  # before the sockets whose descriptors they hold
        for sock in sockets:
            sock.close()

    uvloop.run(main())


_HEADER = struct.Struct("!BBHII")


def _publisher_process(conn: Connection, port: int, stop_at: float) -> None:
    """Send the clip's packet pattern until ``stop_at`` (monotonic); ``conn`` is unused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    video = bytearray(os.urandom(VIDEO_SIZE))
    audio = bytearray(os.urandom(AUDIO_SIZE))
    seq_v = seq_a = 0
    start = time.monotonic()
    next_video = next_audio = start
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        if next_video <= now:
            _HEADER.pack_into(video, 0, 0x80, 96, seq_v & 0xFFFF, seq_v * 957, 1111)
            sock.sendto(video, ("127.0.0.1", port))
            seq_v += 1
            next_video += VIDEO_INTERVAL
        if next_audio <= now:
            _HEADER.pack_into(audio, 0, 0x80, 111, seq_a & 0xFFFF, seq_a * 960, 2222)
            sock.sendto(audio, ("127.0.0.1", port))
            seq_a += 1
            next_audio += AUDIO_INTERVAL
        time.sleep(max(0.0, min(next_video, next_audio) - time.monotonic()))


def run_floor(n: int, duration: float, warmup: float) -> dict[str, Any]:
    """One floor-N run: N subscribers for ``warmup`` + ``duration`` seconds."""
    context = multiprocessing.get_context("spawn")
    total = START_TIMEOUT + warmup + duration + 10
    deadline = time.monotonic() + total
    processes: list[BaseProcess] = []
    pipes: list[Connection] = []  # to the subscriber processes
    control: list[Connection] = []  # to every process that waits for "stop"

    def start(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Connection]:
        ours, theirs = context.Pipe()
        process = context.Process(target=target, args=(theirs, *args), daemon=True)
        process.start()
        processes.append(process)
        return process, ours

    def started(conn: Connection, what: str) -> Any:
        if not conn.poll(START_TIMEOUT):
            raise RuntimeError(f"the floor's {what} did not start")
        return conn.recv()

    try:
        ports: list[int] = []
        for first in range(0, n, SUBSCRIBERS_PER_PROCESS):
            count = min(SUBSCRIBERS_PER_PROCESS, n - first)
            _, pipe = start(_subscriber_process, count, deadline)
            pipes.append(pipe)
            control.append(pipe)
            ports.extend(started(pipe, "subscriber process"))
        forwarder, forwarder_pipe = start(_forwarder_process, ports, deadline)
        control.append(forwarder_pipe)
        inbound_port = started(forwarder_pipe, "forwarder")
        stop_at = time.monotonic() + warmup + duration + 1.0
        publisher, _ = start(_publisher_process, inbound_port, stop_at)

        time.sleep(warmup)

        def sample() -> tuple[float, float | None, int, int, int]:
            forwarder_pipe.send("count")
            inbound, forwarded = forwarder_pipe.recv() if forwarder_pipe.poll(5) else (0, 0)
            received = 0
            for pipe in pipes:
                pipe.send("count")
                received += pipe.recv() if pipe.poll(5) else 0
            now = time.monotonic()
            return now, proc_cpu_seconds(forwarder.pid or 0), inbound, forwarded, received

        t0, cpu0, inbound0, forwarded0, _ = sample()
        time.sleep(duration)
        t1, cpu1, inbound1, forwarded1, _ = sample()
        # Loss over the whole run, once the publisher has stopped and the last
        # datagrams have landed.
        publisher.join(timeout=warmup + duration + 10)
        time.sleep(0.3)
        _, _, _, forwarded_total, received_total = sample()
        dt = t1 - t0
        out = forwarded1 - forwarded0
        result: dict[str, Any] = {
            "duration_s": round(dt, 2),
            "packets_in_per_s": round((inbound1 - inbound0) / dt, 1),
            "packets_out_per_s": round(out / dt, 1),
            "server_cpu_percent": None,
            "us_per_packet": None,
            "loss_percent": None,
        }
        if cpu0 is not None and cpu1 is not None:
            result["server_cpu_percent"] = round((cpu1 - cpu0) / dt * 100, 1)
            if out:
                result["us_per_packet"] = round((cpu1 - cpu0) / out * 1e6, 2)
        if forwarded_total:
            lost = 1 - received_total / forwarded_total
            result["loss_percent"] = round(max(0.0, 100 * lost), 3)
        return result
    finally:
        for pipe in control:
            with contextlib.suppress(OSError):  # the process is gone already
                pipe.send("stop")
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
