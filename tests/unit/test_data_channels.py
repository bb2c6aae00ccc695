"""Data channels without a network: SCTP stream parameter rules, and what a
media DataProducer lets through (size cap, message rate, pause) and to whom."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sfu.channel.messages import data_message, data_payload
from sfu.errors import InvalidRequestError
from sfu.media.data_producer import DataProducer, InboundDataLimits, MessageRate
from sfu.models import SctpStreamParameters


def test_stream_parameters_default_to_ordered_and_reliable() -> None:
    stream = SctpStreamParameters.from_wire({"streamId": 3})
    assert stream.ordered is True
    assert stream.reliable
    unordered = SctpStreamParameters.from_wire({"streamId": 3, "maxRetransmits": 0})
    assert unordered.ordered is False
    assert not unordered.reliable
    assert unordered.to_wire() == {"streamId": 3, "ordered": False, "maxRetransmits": 0}


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"streamId": 65535}, "streamId"),
        ({"streamId": -1}, "streamId"),
        ({"streamId": "1"}, "streamId"),
        ({"streamId": 1, "ordered": True, "maxRetransmits": 1}, "ordered"),
        ({"streamId": 1, "maxRetransmits": 1, "maxPacketLifeTime": 5}, "both"),
        ({"streamId": 1, "maxPacketLifeTime": 70000}, "maxPacketLifeTime"),
        ({}, "streamId"),
    ],
)
def test_bad_stream_parameters_are_refused_by_name(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        SctpStreamParameters.from_wire(wire)


def test_data_messages_cross_the_channel_as_text_or_base64() -> None:
    assert data_payload(data_message("hé")) == "hé"
    assert data_payload(data_message(b"\x00\xff")) == b"\x00\xff"
    for bad in ({}, {"binary": "not base64!"}, {"text": 3}, [], "x"):
        with pytest.raises(ValueError, match="data message"):
            data_payload(bad)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.id = "recorder"
        self.sent: list[str | bytes] = []

    def send(self, message: str | bytes) -> None:
        self.sent.append(message)

    def on(self, event: str, handler: Any) -> None:
        pass

    def data_producer_paused(self, paused: bool) -> None:
        self.producer_paused = paused


def direct_producer(max_message_size: int = 100, rate: int = 0) -> DataProducer:
    return DataProducer(
        transport=None,  # type: ignore[arg-type]
        label="chat",
        protocol="",
        stream=None,
        channel=None,
        paused=False,
        app_data={},
        limits=InboundDataLimits(max_message_size, MessageRate(rate)),
    )


async def test_a_data_producer_drops_and_counts_what_it_refuses() -> None:
    producer = direct_producer(max_message_size=10, rate=5)
    consumer = Recorder()
    producer.add_consumer(consumer)  # type: ignore[arg-type]
    producer.receive("x" * 11)
    assert consumer.sent == []
    assert producer.drops["too-large"] == 1
    for i in range(8):
        producer.receive(f"m{i}")
    # A one-second burst of 5, then the excess is dropped.
    assert consumer.sent == [f"m{i}" for i in range(5)]
    assert producer.drops["rate-limited"] == 3
    await asyncio.sleep(0.5)
    producer.receive("later")  # the bucket refilled (2.5 tokens)
    assert consumer.sent[-1] == "later"
    producer.set_paused(True)
    producer.receive("paused")
    assert producer.drops["paused"] == 1
    stats = producer.get_stats()[0]
    assert stats["messagesReceived"] == 7
    assert stats["droppedMessages"] == {"too-large": 1, "rate-limited": 3, "paused": 1}
