"""Data channels between real pymediasoup bots through a real server:
produceData, newDataConsumer, ordered and unordered delivery, large binary
messages, dataConsumerClosed when a peer leaves, hostile stream parameters."""

from __future__ import annotations

import asyncio
import os
import random
import struct
import urllib.request

import google_crc32c
import pytest

from sfu.aiortc_adapter import send_raw_sctp, stop_sctp_reading
from sfu.client import DataMessage, DataOptions, ProtooError, SfuClient

from ..conftest import LOOPBACK, ServerProcess
from .helpers import wait_until


def scrape(server: ServerProcess) -> str:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


class Inbox:
    """Every data message a client receives, and a way to wait for some."""

    def __init__(self, client: SfuClient) -> None:
        self.messages: list[DataMessage] = []
        self._changed = asyncio.Event()
        self.closed: list[str] = []
        client.on("data", self._on_data)
        client.on("dataconsumerclosed", self._on_closed)

    def _on_data(self, message: DataMessage) -> None:
        self.messages.append(message)
        self._changed.set()

    def _on_closed(self, data_consumer_id: str) -> None:
        self.closed.append(data_consumer_id)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[DataMessage]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


async def bot(server: ServerProcess, room: str, peer_id: str) -> SfuClient:
    client = SfuClient(server.ws_url, room, peer_id, display_name=peer_id, ice_addresses=LOOPBACK)
    await client.join()
    return client


async def test_chat_between_bots_arrives_in_order_and_binary_intact(
    sfu_server: ServerProcess,
) -> None:
    alice = await bot(sfu_server, "chat", "alice")
    bob = await bot(sfu_server, "chat", "bob")
    inbox = Inbox(bob)
    try:
        for i in range(20):
            await alice.send_data(f"message {i}")
        received = await inbox.wait_for(20)
        assert [m.data for m in received] == [f"message {i}" for i in range(20)]
        assert {m.peer_id for m in received} == {"alice"}
        assert {m.label for m in received} == {"chat"}

        blob = os.urandom(60 * 1024)
        await alice.send_data(blob)
        received = await inbox.wait_for(21)
        assert received[20].data == blob

        # Stats on both sides count what went through.
        producer_id = received[0].data_producer_id
        stats = await alice.request("getDataProducerStats", {"dataProducerId": producer_id})
        assert stats[0]["messagesReceived"] == 21
        assert stats[0]["bytesReceived"] == sum(len(f"message {i}") for i in range(20)) + len(blob)
        consumer_stats = await bob.request(
            "getDataConsumerStats", {"dataConsumerId": received[0].data_consumer_id}
        )
        assert consumer_stats[0]["messagesSent"] == 21
    finally:
        await asyncio.gather(alice.close(), bob.close())


async def test_unordered_channel_without_retransmissions_delivers(
    sfu_server: ServerProcess,
) -> None:
    alice = await bot(sfu_server, "unordered", "alice")
    bob = await bot(sfu_server, "unordered", "bob")
    inbox = Inbox(bob)
    try:
        options = DataOptions(ordered=False, max_retransmits=0)
        for i in range(20):
            await alice.send_data(f"fast {i}", label="game", options=options)
        # Loopback loses nothing: every message arrives, in any order.
        received = await inbox.wait_for(20)
        assert sorted(m.data for m in received) == sorted(f"fast {i}" for i in range(20))
        remote = bob.data_consumers[received[0].data_consumer_id]
        assert remote.label == "game"
        stream = remote.data_consumer.sctpStreamParameters
        assert stream.ordered is False
        assert stream.maxRetransmits == 0
    finally:
        await asyncio.gather(alice.close(), bob.close())


async def test_a_late_joiner_gets_existing_data_producers_and_a_leaver_closes_them(
    sfu_server: ServerProcess,
) -> None:
    alice = await bot(sfu_server, "late", "alice")
    await alice.send_data("hello before anyone")
    bob = await bot(sfu_server, "late", "bob")
    inbox = Inbox(bob)
    try:
        assert await wait_until(lambda: len(bob.data_consumers) == 1, 20)
        await alice.send_data("hello bob")
        received = await inbox.wait_for(1)
        assert received[0].data == "hello bob"
        consumer_id = received[0].data_consumer_id

        await alice.close()
        assert await wait_until(lambda: consumer_id in inbox.closed, 20)
        assert bob.data_consumers == {}
    finally:
        await asyncio.gather(alice.close(), bob.close())


async def test_hostile_produce_data_gets_errors_and_the_peer_stays(
    sfu_server: ServerProcess,
) -> None:
    alice = await bot(sfu_server, "hostile-data", "alice")
    bob = await bot(sfu_server, "hostile-data", "bob")
    inbox = Inbox(bob)
    try:
        transport_id = alice.send_transport.id
        bad = [
            {"transportId": transport_id, "sctpStreamParameters": {"streamId": 70000}},
            {"transportId": transport_id, "sctpStreamParameters": {"streamId": -1}},
            {
                "transportId": transport_id,
                "sctpStreamParameters": {"streamId": 3, "ordered": True, "maxRetransmits": 2},
            },
            {
                "transportId": transport_id,
                "sctpStreamParameters": {
                    "streamId": 3,
                    "maxRetransmits": 2,
                    "maxPacketLifeTime": 100,
                },
            },
            {"transportId": transport_id, "sctpStreamParameters": "nope"},
            {"transportId": transport_id},
            {"transportId": "no-such-transport", "sctpStreamParameters": {"streamId": 3}},
            {"transportId": transport_id, "sctpStreamParameters": {"streamId": 3}, "label": 7},
        ]
        for data in bad:
            with pytest.raises(ProtooError) as refused:
                await alice.request("produceData", data)
            assert refused.value.code in (400, 404), (data, refused.value)
        # The same stream twice: the second is refused.
        await alice.send_data("first")
        stream_id = next(iter(alice._data.data_producers.values())).sctpStreamParameters.streamId
        with pytest.raises(ProtooError) as refused:
            await alice.request(
                "produceData",
                {"transportId": transport_id, "sctpStreamParameters": {"streamId": stream_id}},
            )
        assert refused.value.code == 409, refused.value
        # Alice is still in the room and her chat still reaches bob.
        await alice.send_data("still here")
        received = await inbox.wait_for(2)
        assert [m.data for m in received] == ["first", "still here"]
    finally:
        await asyncio.gather(alice.close(), bob.close())


@pytest.mark.parametrize(
    "server_overrides",
    [{"workers": {"count": 2, "max_peers_per_router": 2}}],
    ids=["two-per-router"],
)
async def test_chat_reaches_every_peer_of_a_room_spanning_two_workers(
    sfu_server: ServerProcess,
) -> None:
    # Two peers fill the room's first router; the next two get a router on the other worker.
    names = ["alice", "bob", "carol", "dave"]
    clients = {name: await bot(sfu_server, "span", name) for name in names}
    inboxes = {name: Inbox(client) for name, client in clients.items()}
    try:
        assert [w["routers"] for w in sfu_server.health()["workers"]] == [1, 1]
        for name, client in clients.items():
            await client.send_data(f"hello from {name}")
        for name, inbox in inboxes.items():
            received = await inbox.wait_for(3)
            assert sorted(m.data for m in received) == sorted(
                f"hello from {other}" for other in names if other != name
            ), name
        # Order holds across the workers too.
        for i in range(20):
            await clients["alice"].send_data(f"n{i}")
        got = await inboxes["dave"].wait_for(23)
        assert [m.data for m in got if m.peer_id == "alice"][1:] == [f"n{i}" for i in range(20)]
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))


@pytest.mark.parametrize(
    "server_overrides",
    [
        {
            "media": {
                "sctp_send_buffer_size": 16384,
                "sctp_stall_timeout": 2.0,
                "data_messages_per_second": 0,
            }
        }
    ],
    ids=["small-buffer"],
)
async def test_a_stalled_reader_is_bounded_and_the_others_are_unaffected(
    sfu_server: ServerProcess,
) -> None:
    alice = await bot(sfu_server, "stall", "alice")
    bob = await bot(sfu_server, "stall", "bob")
    carol = await bot(sfu_server, "stall", "carol")
    bob_inbox, carol_inbox = Inbox(bob), Inbox(carol)
    unreliable = DataOptions(ordered=False, max_retransmits=0)
    try:
        # Both channels set up while bob still reads.
        await alice.send_data("hello")
        await alice.send_data("hi", label="game", options=unreliable)
        await bob_inbox.wait_for(2)
        await carol_inbox.wait_for(2)
        stop_sctp_reading(bob.recv_transport.handler)
        chat_id = next(m.data_consumer_id for m in bob_inbox.messages if m.label == "chat")
        game_id = next(m.data_consumer_id for m in bob_inbox.messages if m.label == "game")

        # 60 KB in batches, each waited for by carol: she reads; bob stopped.
        kilobyte = "x" * 1000
        for batch in range(6):
            for i in range(10):
                await alice.send_data(f"{batch}.{i} {kilobyte}")
                await alice.send_data(f"{batch}.{i} {kilobyte}", label="game", options=unreliable)
            await carol_inbox.wait_for(2 + 20 * (batch + 1))
            stats = (await bob.request("getDataConsumerStats", {"dataConsumerId": game_id}))[0]
            # Bounded: never more than the buffer queued toward bob's unreliable channel.
            assert stats["bufferedAmount"] <= 16384, stats

        # Bob's reliable chat overflowed: closed, and he was told.
        assert await wait_until(lambda: chat_id in bob_inbox.closed, 20)
        # His unreliable channel stays, with its drops counted.
        stats = (await bob.request("getDataConsumerStats", {"dataConsumerId": game_id}))[0]
        assert stats["droppedMessages"].get("buffer-full", 0) > 0, stats
        # Carol got everything, in order on the reliable channel.
        chat = [m.data for m in carol_inbox.messages if m.label == "chat"]
        assert chat == ["hello"] + [f"{b}.{i} {kilobyte}" for b in range(6) for i in range(10)]
        metrics = await asyncio.to_thread(scrape, sfu_server)
        assert 'sfu_data_messages_dropped_total{reason="buffer-full"}' in metrics
    finally:
        await asyncio.gather(alice.close(), bob.close(), carol.close())


def _with_crc(packet: bytes) -> bytes:
    """An SCTP packet with its CRC32c set, so that it passes the checksum and reaches the chunk parser."""
    body = packet[:8] + b"\x00\x00\x00\x00" + packet[12:]
    return packet[:8] + struct.pack("<I", google_crc32c.value(body)) + packet[12:]


async def test_garbage_sctp_inside_dtls_is_dropped_and_the_room_goes_on(
    sfu_server: ServerProcess,
) -> None:
    alice = await bot(sfu_server, "garbage-sctp", "alice")
    bob = await bot(sfu_server, "garbage-sctp", "bob")
    inbox = Inbox(bob)
    try:
        await alice.send_data("before")
        await inbox.wait_for(1)
        handler = alice.send_transport.handler
        rng = random.Random(7)
        init = struct.pack("!BBHIIHHI", 1, 0, 20, 1, 65536, 10, 10, 1)
        data = struct.pack("!BBHIHHI", 0, 3, 20, 1, 0, 0, 51) + b"abcd"
        packets = [rng.randbytes(rng.randrange(1, 1200)) for _ in range(200)]
        packets += [
            _with_crc(struct.pack("!HHI", 5000, 5000, 0) + b"\x00" * 4 + init + data),
            _with_crc(struct.pack("!HHI", 5000, 5000, 0) + b"\x00" * 4 + init[:10]),
            _with_crc(struct.pack("!HHI", 5000, 5000, 0) + b"\x00" * 4 + b"\x00\x00\xff\xff"),
        ]
        for packet in packets:
            await send_raw_sctp(handler, packet)
        # Alice's association and transport live on: her chat still reaches bob.
        await alice.send_data("after")
        received = await inbox.wait_for(2)
        assert [m.data for m in received] == ["before", "after"]
        # The INIT bundled with a DATA chunk, which aiortc asserts on, was contained.
        assert sfu_server.health()["droppedPackets"].get("sctp-malformed", 0) >= 1
        assert "Traceback" not in sfu_server.log()
    finally:
        await asyncio.gather(alice.close(), bob.close())
