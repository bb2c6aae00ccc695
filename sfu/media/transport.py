"""Transport: what WebRtcTransport and PipeTransport share (mediasoup's Transport).

It owns producers and consumers in dicts by id and by SSRC, routes incoming
RTCP to them, and sends the periodic RTCP (receiver reports and REMB for its
producers, sender reports for its consumers). Subclasses move the bytes:
``send_rtp``, ``send_rtcp`` and whatever receives datagrams.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..channel.messages import (
    Consumed,
    ConsumeDataRequest,
    ConsumeRequest,
    DataConsumed,
    Method,
    Produced,
    ProduceDataRequest,
    ProduceRequest,
    consume_rtp,
    produce_rtp,
)
from ..errors import InvalidRequestError, InvalidStateError, NotFoundError, UnsupportedError
from ..models import MAX_STREAM_ID, RtpMapping, RtpParameters, SctpStreamParameters
from . import rtcp
from .consumer import Consumer
from .data_consumer import DataConsumer
from .data_producer import DataProducer, InboundDataLimits, MessageRate
from .entity import MediaEntity
from .producer import Producer

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from .router import Router

logger = logging.getLogger(__name__)

RTCP_INTERVAL = 1.0
# A periodic compound RTCP packet stays under this many bytes (before SRTCP's
# index and tag), well inside the path MTU.
RTCP_MAX_COMPOUND = 1000
_RTP_HEADER = struct.Struct("!BBHII")
# REMB toward publishers: a loss-based estimate (we advertise goog-remb, so we send it).
REMB_INITIAL_BITRATE = 1_000_000
REMB_MIN_BITRATE = 100_000
REMB_MAX_BITRATE = 4_000_000


class Transport(MediaEntity):
    """Events: ``routerclose``, ``serverclose(reason)``, ``@close``."""

    # A DirectTransport: data producers and consumers without SCTP, whose
    # messages cross the channel (the server's own, and pipes between workers).
    direct = False

    def __init__(self, *, router: Router, app_data: dict[str, Any]) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.router = router
        self.app_data = app_data
        self.closed = False
        self.close_reason: str | None = None
        # Ids on every log line of this transport (JSON logs).
        self.log_extra = {
            "room_id": router.app_data.get("roomId"),
            "peer_id": app_data.get("peerId"),
            "transport_id": self.id,
        }

        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self._producers_by_ssrc: dict[int, Producer] = {}
        self._consumers_by_ssrc: dict[int, Consumer] = {}
        self.data_producers: dict[str, DataProducer] = {}
        self.data_consumers: dict[str, DataConsumer] = {}

        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.fir_seq = 0
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._incoming_bitrate = REMB_INITIAL_BITRATE
        self.available_outgoing_bitrate: int | None = None

        # counters
        self.drops: Counter[str] = Counter()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.rtp_packets_received = 0
        self.rtp_packets_sent = 0
        self.rtcp_packets_received = 0
        self.rtcp_packets_sent = 0
        self.final_counters: Counter[str] = Counter()
        # Closed data producers' and consumers' counters (they are few, unlike packets).
        self.final_data_counters: Counter[str] = Counter()
        # What this transport's client may send on all its data producers.
        settings = router.worker.settings
        self.data_limits = InboundDataLimits(
            settings.max_sctp_message_size, MessageRate(settings.data_messages_per_second)
        )
        # The server's own messages (a direct transport's): no rate limit.
        self.direct_limits = InboundDataLimits(settings.max_sctp_message_size, MessageRate(0))
        # What consumers call per packet: send_rtp_fields, or a faster
        # equivalent a subclass binds them to (WebRtcTransport's C sender).
        self.rtp_fields_sender: Callable[[int, int, int, int, int, bytes], object] = (
            self.send_rtp_fields
        )

    # ---- what subclasses provide ---------------------------------------------

    def send_rtp(self, packet: bytes) -> None:
        raise NotImplementedError

    def send_rtcp(self, packet: bytes) -> None:
        raise NotImplementedError

    def send_rtp_fields(
        self, b0: int, b1: int, seq: int, timestamp: int, ssrc: int, tail: bytes
    ) -> None:
        """``send_rtp`` of the packet made of these header fields and ``tail``
        (WebRtcTransport writes them straight into its SRTP buffer instead)."""
        self.send_rtp(_RTP_HEADER.pack(b0, b1, seq, timestamp, ssrc) + tail)

    def _sctp_stream(
        self, stream: SctpStreamParameters, label: str, protocol: str
    ) -> RTCDataChannel:
        """A negotiated data channel on ``stream`` (WebRtcTransport, with SCTP)."""
        raise UnsupportedError("this transport has no SCTP association")

    def _sctp_stream_ids_in_use(self) -> set[int]:
        used = {d.stream.stream_id for d in self.data_consumers.values() if d.stream}
        used.update(d.stream.stream_id for d in self.data_producers.values() if d.stream)
        return used

    def _rtcp_ready(self) -> bool:
        """Whether periodic RTCP can go out (keys and a remote address are known)."""
        raise NotImplementedError

    def _check_liveness(self) -> bool:
        """Called before each periodic RTCP; True if the transport closed itself."""
        return False

    # ---- producing and consuming -----------------------------------------------

    async def produce(
        self,
        *,
        kind: str,
        rtp_parameters: RtpParameters,
        rtp_mapping: RtpMapping,
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
        producer_id: str | None = None,
    ) -> Producer:
        """A new Producer, with parameters and mapping the control layer resolved
        (ORTC). ``producer_id`` is given only for pipe producers, which keep the
        id of the producer they mirror (as mediasoup's pipeToRouter)."""
        self._check_open()
        if kind not in ("audio", "video"):
            raise InvalidRequestError(f"invalid kind {kind!r}: expected 'audio' or 'video'")
        if producer_id is not None and producer_id in self.router.producers:
            raise InvalidStateError(f"producer {producer_id} already exists in this router")
        producer = Producer(
            producer_id=producer_id or str(uuid.uuid4()),
            kind=kind,
            rtp_parameters=rtp_parameters,
            rtp_mapping=rtp_mapping,
            transport=self,
            paused=paused,
            app_data=app_data or {},
        )
        ssrcs = [*producer.streams, *producer.rtx_ssrcs]
        taken = [s for s in ssrcs if s in self._producers_by_ssrc]
        if taken:
            raise InvalidStateError(f"SSRC {taken[0]} is already used by another producer")
        for ssrc in ssrcs:
            self._producers_by_ssrc[ssrc] = producer
        self._route_streams(producer)
        self.producers[producer.id] = producer
        producer.on("@close", lambda: self._forget_producer(producer))
        self.router.add_producer(producer)
        self.register(producer)
        return producer

    async def consume(
        self,
        *,
        producer_id: str,
        rtp_parameters: RtpParameters,
        paused: bool = True,
        app_data: dict[str, Any] | None = None,
    ) -> Consumer:
        """A new Consumer of ``producer_id``, with its final parameters (codecs,
        SSRCs, MID) resolved by the control layer (ORTC)."""
        self._check_open()
        producer = self.router.producers.get(producer_id)
        if producer is None:
            raise NotFoundError(f"producer {producer_id} not found")
        consumer = Consumer(
            consumer_id=str(uuid.uuid4()),
            producer=producer,
            rtp_parameters=rtp_parameters,
            transport=self,
            paused=paused,
            app_data=app_data or {},
        )
        self.consumers[consumer.id] = consumer
        self._consumers_by_ssrc[consumer.ssrc] = consumer
        if consumer.rtx_ssrc is not None:
            self._consumers_by_ssrc[consumer.rtx_ssrc] = consumer
        consumer.on("@close", lambda: self._forget_consumer(consumer))
        producer.add_consumer(consumer)
        self.register(consumer)
        return consumer

    def produce_data(
        self,
        *,
        stream: SctpStreamParameters | None,
        label: str,
        protocol: str,
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
        data_producer_id: str | None = None,
    ) -> DataProducer:
        """A DataProducer on the client's SCTP stream ``stream.stream_id``, or,
        on a direct transport (no stream), one the server sends on.
        ``data_producer_id`` only for the far end of a pipe, which keeps the id."""
        self._check_open()
        if data_producer_id is not None and data_producer_id in self.router.data_producers:
            raise InvalidStateError(f"data producer {data_producer_id} already exists here")
        if self.direct:
            stream, channel, limits = None, None, self.direct_limits
        elif stream is None:
            raise InvalidRequestError("sctpStreamParameters are required")
        else:
            if stream.stream_id in self._sctp_stream_ids_in_use():
                raise InvalidStateError(f"SCTP stream {stream.stream_id} is already in use")
            channel, limits = self._sctp_stream(stream, label, protocol), self.data_limits
        data_producer = DataProducer(
            transport=self,
            label=label,
            protocol=protocol,
            stream=stream,
            channel=channel,
            paused=paused,
            app_data=app_data or {},
            limits=limits,
            data_producer_id=data_producer_id,
        )
        self.data_producers[data_producer.id] = data_producer
        data_producer.on("@close", lambda: self._forget_data_producer(data_producer))
        self.router.add_data_producer(data_producer)
        self.register(data_producer)
        return data_producer

    def consume_data(
        self,
        *,
        data_producer_id: str,
        paused: bool = False,
        app_data: dict[str, Any] | None = None,
    ) -> DataConsumer:
        """A DataConsumer of ``data_producer_id``, on a stream id this transport
        picks (the lowest free one), with the producer's ordering and reliability."""
        self._check_open()
        data_producer = self.router.data_producers.get(data_producer_id)
        if data_producer is None:
            raise NotFoundError(f"data producer {data_producer_id} not found")
        settings = self.router.worker.settings
        stream = None if self.direct else self._next_consumer_stream(data_producer)
        data_consumer = DataConsumer(
            data_producer=data_producer,
            stream=stream,
            channel=(
                self._sctp_stream(stream, data_producer.label, data_producer.protocol)
                if stream is not None
                else None
            ),
            paused=paused,
            app_data=app_data or {},
            buffer_size=settings.sctp_send_buffer_size,
            stall_timeout=settings.sctp_stall_timeout,
        )
        self.data_consumers[data_consumer.id] = data_consumer
        data_consumer.on("@close", lambda: self._forget_data_consumer(data_consumer))
        data_producer.add_consumer(data_consumer)
        self.register(data_consumer)
        return data_consumer

    def _next_consumer_stream(self, data_producer: DataProducer) -> SctpStreamParameters:
        """The lowest free stream id, with the producer's ordering and reliability
        (a direct producer's messages go ordered and reliable)."""
        used = self._sctp_stream_ids_in_use()
        limit = min(self.router.worker.settings.num_sctp_streams - 1, MAX_STREAM_ID)
        stream_id = next((i for i in range(limit + 1) if i not in used), None)
        if stream_id is None:
            raise InvalidStateError("no free SCTP stream on this transport")
        source = data_producer.stream
        if source is None:
            return SctpStreamParameters(stream_id=stream_id, ordered=True)
        return SctpStreamParameters(
            stream_id=stream_id,
            ordered=source.ordered,
            max_packet_life_time=source.max_packet_life_time,
            max_retransmits=source.max_retransmits,
        )

    def _forget_data_producer(self, data_producer: DataProducer) -> None:
        self.data_producers.pop(data_producer.id, None)
        self.router.remove_data_producer(data_producer)
        self.final_data_counters.update(data_producer.counters())

    def _forget_data_consumer(self, data_consumer: DataConsumer) -> None:
        self.data_consumers.pop(data_consumer.id, None)
        self.final_data_counters.update(data_consumer.counters())

    async def handle_request(self, method: Method, data: Any) -> Any:
        if method in (Method.TRANSPORT_PRODUCE_DATA, Method.TRANSPORT_CONSUME_DATA):
            return self._handle_data_request(method, data)
        match method:
            case Method.TRANSPORT_PRODUCE:
                produce: ProduceRequest = data
                # The channel is an edge: the RTP parts are parsed here, once.
                rtp_parameters, rtp_mapping = produce_rtp(produce)
                producer = await self.produce(
                    kind=produce["kind"],
                    rtp_parameters=rtp_parameters,
                    rtp_mapping=rtp_mapping,
                    paused=produce["paused"],
                    app_data=produce["appData"],
                    producer_id=produce.get("id"),
                )
                return Produced(id=producer.id)
            case Method.TRANSPORT_CONSUME:
                consume: ConsumeRequest = data
                consumer = await self.consume(
                    producer_id=consume["producerId"],
                    rtp_parameters=consume_rtp(consume),
                    paused=consume["paused"],
                    app_data=consume["appData"],
                )
                return Consumed(id=consumer.id, producerPaused=consumer.producer_paused)
            case Method.TRANSPORT_GET_STATS:
                return self.get_stats()
            case Method.TRANSPORT_CLOSE:
                self.close()
                return None
        return await super().handle_request(method, data)

    def _handle_data_request(self, method: Method, data: Any) -> Produced | DataConsumed:
        match method:
            case Method.TRANSPORT_PRODUCE_DATA:
                produce_data: ProduceDataRequest = data
                wire_stream = produce_data["sctpStreamParameters"]
                data_producer = self.produce_data(
                    stream=(
                        SctpStreamParameters.from_wire(wire_stream)
                        if wire_stream is not None
                        else None
                    ),
                    label=produce_data["label"],
                    protocol=produce_data["protocol"],
                    paused=produce_data["paused"],
                    app_data=produce_data["appData"],
                    data_producer_id=produce_data.get("id"),
                )
                return Produced(id=data_producer.id)
            case _:
                consume_data: ConsumeDataRequest = data
                data_consumer = self.consume_data(
                    data_producer_id=consume_data["dataProducerId"],
                    paused=consume_data["paused"],
                    app_data=consume_data["appData"],
                )
                return DataConsumed(
                    id=data_consumer.id,
                    dataProducerPaused=data_consumer.producer_paused,
                    sctpStreamParameters=(
                        data_consumer.stream.to_wire() if data_consumer.stream else None
                    ),
                )

    def get_stats(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _forget_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        for ssrc in [s for s, p in self._producers_by_ssrc.items() if p is producer]:
            del self._producers_by_ssrc[ssrc]
        self._unroute_streams(producer)
        self.router.remove_producer(producer)

    def _route_streams(self, producer: Producer) -> None:
        """The producer's media SSRCs are known (all, or one more): a transport
        with a C receive path routes them to it."""

    def _unroute_streams(self, producer: Producer) -> None:
        """The producer is gone: its SSRCs no longer go to it."""

    def _forget_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        self._consumers_by_ssrc.pop(consumer.ssrc, None)
        if consumer.rtx_ssrc is not None:
            self._consumers_by_ssrc.pop(consumer.rtx_ssrc, None)

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidStateError(f"transport {self.id} is closed")

    def count_drop(self, reason: str) -> None:
        self.drops[reason] += 1

    # ---- RTCP in ------------------------------------------------------------------

    def _receive_rtcp(self, packet: bytes, now: float) -> None:
        """One plain (unprotected) compound RTCP packet: parse, count, dispatch."""
        try:
            reports = rtcp.parse_compound(packet)
        except rtcp.RtcpError:
            self.drops["malformed-rtcp"] += 1
            return
        self.rtcp_packets_received += 1
        self._dispatch_rtcp(reports, now)

    def _dispatch_rtcp(self, reports: list[rtcp.RtcpPacket], now: float) -> None:
        """Hand each parsed RTCP packet to the producer or consumer it is about."""
        for report in reports:
            if isinstance(report, rtcp.SenderReport):
                sender = self._producers_by_ssrc.get(report.ssrc)
                if sender is not None:
                    sender.receive_sender_report(report, now)
                self._receive_report_blocks(report.reports)
            elif isinstance(report, rtcp.ReceiverReport):
                self._receive_report_blocks(report.reports)
            elif isinstance(report, rtcp.Nack):
                consumer = self._consumers_by_ssrc.get(report.media_ssrc)
                if consumer is not None:
                    consumer.receive_nack(report.lost)
            elif isinstance(report, rtcp.Pli):
                consumer = self._consumers_by_ssrc.get(report.media_ssrc)
                if consumer is not None:
                    consumer.receive_key_frame_request()
            elif isinstance(report, rtcp.Fir):
                # FIR carries media_ssrc 0: the target is in the FCI.
                for target_ssrc, _ in report.entries:
                    consumer = self._consumers_by_ssrc.get(target_ssrc)
                    if consumer is not None:
                        consumer.receive_key_frame_request()
            elif isinstance(report, rtcp.Remb):
                self.available_outgoing_bitrate = report.bitrate

    def _receive_report_blocks(self, blocks: tuple[rtcp.ReportBlock, ...]) -> None:
        for block in blocks:
            consumer = self._consumers_by_ssrc.get(block.ssrc)
            if consumer is not None:
                consumer.receive_report_block(block)

    # ---- periodic RTCP ---------------------------------------------------------------

    def _schedule_rtcp(self) -> None:
        # +-50% jitter, as RFC 3550 asks, so transports do not report in lockstep.
        delay = RTCP_INTERVAL * random.uniform(0.5, 1.5)
        self._rtcp_timer = asyncio.get_running_loop().call_later(delay, self._on_rtcp_timer)

    def _on_rtcp_timer(self) -> None:
        if self.closed:
            return
        if self._check_liveness():
            return
        try:
            self._send_periodic_rtcp()
        except Exception:
            logger.exception("transport %s: periodic RTCP failed", self.id, extra=self.log_extra)
        self._schedule_rtcp()

    def _send_periodic_rtcp(self) -> None:
        if not self._rtcp_ready():
            return
        now = time.monotonic()
        blocks: list[rtcp.ReportBlock] = []
        remb_ssrcs: list[int] = []
        worst_loss = 0
        for producer in self.producers.values():
            producer_blocks = producer.periodic_report_blocks(now)
            blocks.extend(producer_blocks)
            if producer.kind == "video":
                remb_ssrcs.extend(producer.streams)
                worst_loss = max([worst_loss, *(b.fraction_lost for b in producer_blocks)])
        # As mediasoup compounds them: the consumers' SRs, the RR, the SDES CNAMEs (then REMB);
        # a new compound packet when one would outgrow RTCP_MAX_COMPOUND.
        head = rtcp.build_rr(self.rtcp_ssrc, blocks) if blocks or remb_ssrcs else b""
        tail = (
            rtcp.build_remb(self.rtcp_ssrc, self._estimate_incoming_bitrate(worst_loss), remb_ssrcs)
            if remb_ssrcs
            else b""
        )
        ntp = rtcp.ntp_now()
        reports: list[bytes] = []
        chunks: list[tuple[int, str]] = []
        size = len(head) + len(tail)
        for consumer in self.consumers.values():
            report = consumer.periodic_sender_report(now, ntp)
            if report is None:
                continue
            added = len(report) + 14 + len(consumer.cname)  # the SR and its SDES packet
            if reports and size + added > RTCP_MAX_COMPOUND:
                self.send_rtcp(b"".join(reports) + head + rtcp.build_sdes(chunks) + tail)
                head = tail = b""
                reports.clear()
                chunks.clear()
                size = 0
            reports.append(report)
            chunks.append((consumer.ssrc, consumer.cname))
            size += added
        if reports:
            self.send_rtcp(b"".join(reports) + head + rtcp.build_sdes(chunks) + tail)
        elif head:
            self.send_rtcp(head + tail)

    def _estimate_incoming_bitrate(self, fraction_lost: int) -> int:
        """Loss-based estimate (as GCC's loss controller): grow under 2 % loss, back off over 10 %."""
        loss = fraction_lost / 256.0
        if loss < 0.02:
            self._incoming_bitrate = int(self._incoming_bitrate * 1.08)
        elif loss > 0.10:
            self._incoming_bitrate = int(self._incoming_bitrate * (1 - 0.5 * loss))
        self._incoming_bitrate = max(
            REMB_MIN_BITRATE, min(self._incoming_bitrate, REMB_MAX_BITRATE)
        )
        return self._incoming_bitrate

    # ---- closing and stats -------------------------------------------------------

    def _close_children(self) -> None:
        for data_consumer in list(self.data_consumers.values()):
            data_consumer.close()
        for data_producer in list(self.data_producers.values()):
            data_producer.close()
        self.final_counters = self.counters()
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
        for consumer in list(self.consumers.values()):
            consumer.transport_closed()
        for producer in list(self.producers.values()):
            producer.transport_closed()
        self.consumers.clear()
        self.producers.clear()

    def router_closed(self) -> None:
        if not self.closed:
            self.close()
            self.emit("routerclose")

    def close(self, reason: str | None = None) -> None:
        raise NotImplementedError

    def counters(self) -> Counter[str]:
        """Totals for /metrics (the worker keeps them after the transport closes)."""
        totals: Counter[str] = Counter(
            rtp_packets_received=self.rtp_packets_received,
            rtp_packets_sent=self.rtp_packets_sent,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            nacks_sent=sum(p.nacks_sent for p in self.producers.values()),
            keyframe_requests_sent=sum(p.keyframe_requests_sent for p in self.producers.values()),
            nacks_received=sum(c.nacks_received for c in self.consumers.values()),
            keyframe_requests_received=sum(
                c.keyframe_requests_received for c in self.consumers.values()
            ),
            packets_retransmitted=sum(c.packets_retransmitted for c in self.consumers.values()),
            gaps_resynchronized=sum(p.gaps_resynchronized for p in self.producers.values()),
        )
        for consumer in self.consumers.values():
            for reason, count in consumer.retransmissions_suppressed.items():
                totals[f"retransmissions_suppressed:{reason}"] += count
        for reason, count in self.drops.items():
            totals[f"dropped:{reason}"] = count
        totals.update(self.final_data_counters)
        for data_producer in self.data_producers.values():
            totals.update(data_producer.counters())
        for data_consumer in self.data_consumers.values():
            totals.update(data_consumer.counters())
        return totals
