"""The channel's messages, defined once for both ends: request methods,
notification events and the payloads that travel with them.

A request names its method and its target (the id of the entity that answers
it, "" for the worker itself); the media entity with that id answers it
(mediasoup's per-entity ``HandleRequest``). A notification goes from a media
entity to the control handle with the same id. Payloads are ``TypedDict``s:
plain JSON objects on the wire, checked by mypy at both ends.

The RTP parts of ``produce`` and ``consume`` travel as the typed models' wire
form (:data:`WireDict`). The control layer puts them in and the worker takes
them out through the helpers below, so camelCase stays at the channel: the
worker's media objects get :class:`~sfu.models.RtpParameters` and
:class:`~sfu.models.RtpMapping`.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from ..models import RtpEncodingParameters, RtpMapping, RtpParameters

# A typed model's wire form (``WireModel.to_wire()``): camelCase, plain JSON.
WireDict = dict[str, Any]


class Method(StrEnum):
    """Requests, control → worker. The prefix names the kind of target."""

    WORKER_START = "worker.start"
    WORKER_CREATE_ROUTER = "worker.createRouter"
    WORKER_GET_STATS = "worker.getStats"
    ROUTER_CLOSE = "router.close"
    ROUTER_CREATE_WEBRTC_TRANSPORT = "router.createWebRtcTransport"
    ROUTER_CREATE_PIPE_TRANSPORT = "router.createPipeTransport"
    ROUTER_CREATE_ACTIVE_SPEAKER_OBSERVER = "router.createActiveSpeakerObserver"
    TRANSPORT_CONNECT = "transport.connect"
    TRANSPORT_RESTART_ICE = "transport.restartIce"
    TRANSPORT_PRODUCE = "transport.produce"
    TRANSPORT_CONSUME = "transport.consume"
    TRANSPORT_GET_STATS = "transport.getStats"
    TRANSPORT_CLOSE = "transport.close"
    PRODUCER_PAUSE = "producer.pause"
    PRODUCER_RESUME = "producer.resume"
    PRODUCER_GET_STATS = "producer.getStats"
    PRODUCER_CLOSE = "producer.close"
    CONSUMER_PAUSE = "consumer.pause"
    CONSUMER_RESUME = "consumer.resume"
    CONSUMER_SET_PRIORITY = "consumer.setPriority"
    CONSUMER_SET_PREFERRED_LAYERS = "consumer.setPreferredLayers"
    CONSUMER_REQUEST_KEY_FRAME = "consumer.requestKeyFrame"
    CONSUMER_GET_STATS = "consumer.getStats"
    CONSUMER_CLOSE = "consumer.close"
    TRANSPORT_PRODUCE_DATA = "transport.produceData"
    TRANSPORT_CONSUME_DATA = "transport.consumeData"
    ROUTER_CREATE_DIRECT_TRANSPORT = "router.createDirectTransport"
    DATA_PRODUCER_PAUSE = "dataProducer.pause"
    DATA_PRODUCER_RESUME = "dataProducer.resume"
    DATA_PRODUCER_GET_STATS = "dataProducer.getStats"
    DATA_PRODUCER_SEND = "dataProducer.send"  # DataMessage, to a direct data producer
    DATA_PRODUCER_CLOSE = "dataProducer.close"
    DATA_CONSUMER_PAUSE = "dataConsumer.pause"
    DATA_CONSUMER_RESUME = "dataConsumer.resume"
    DATA_CONSUMER_GET_STATS = "dataConsumer.getStats"
    DATA_CONSUMER_CLOSE = "dataConsumer.close"
    OBSERVER_ADD_PRODUCER = "observer.addProducer"
    OBSERVER_CLOSE = "observer.close"

    @property
    def is_close(self) -> bool:
        """Closing is idempotent: closing an entity that is already gone is no error."""
        return self.value.endswith(".close")


class Event(StrEnum):
    """Notifications, a media entity → its control handle."""

    SERVER_CLOSE = "serverclose"  # closed by the worker (an error, an ICE timeout): the reason
    ICE_STATE_CHANGE = "icestatechange"
    DTLS_STATE_CHANGE = "dtlsstatechange"
    PRODUCER_CLOSE = "producerclose"
    PRODUCER_PAUSE = "producerpause"
    PRODUCER_RESUME = "producerresume"
    DATA_PRODUCER_CLOSE = "dataproducerclose"
    DATA_MESSAGE = "message"  # DataMessage: to a data producer's handle that asked for them
    DOMINANT_SPEAKER = "dominantspeaker"  # DominantSpeaker
    SILENCE = "silence"


# ---- request payloads (control → worker) ----------------------------------------


class CreateRouterRequest(TypedDict):
    appData: dict[str, Any]


class CreateWebRtcTransportRequest(TypedDict):
    forceTcp: bool
    enableSctp: NotRequired[bool]  # the client sent sctpCapabilities
    appData: dict[str, Any]


class CreatePipeTransportRequest(TypedDict):
    appData: dict[str, Any]


class CreateActiveSpeakerObserverRequest(TypedDict):
    interval: float


class ConnectWebRtcTransportRequest(TypedDict):
    dtlsParameters: dict[str, Any]


class ConnectPipeTransportRequest(TypedDict):
    ip: str
    port: int


class ProduceRequest(TypedDict):
    """Parameters validated and mapped onto the router's by the control layer (ORTC)."""

    kind: str
    rtpParameters: WireDict  # RtpParameters
    rtpMapping: WireDict  # RtpMapping
    paused: bool
    appData: dict[str, Any]
    id: NotRequired[str]  # a pipe producer keeps the id of the producer it mirrors


class ConsumeRequest(TypedDict):
    """The consumer's final parameters (codecs, SSRCs, MID), resolved by the control layer."""

    producerId: str
    kind: str
    rtpParameters: WireDict  # RtpParameters
    consumableRtpEncodings: list[WireDict]  # RtpEncodingParameters
    paused: bool
    appData: dict[str, Any]


def produce_request(
    *,
    kind: str,
    rtp_parameters: RtpParameters,
    rtp_mapping: RtpMapping,
    paused: bool,
    app_data: dict[str, Any],
    producer_id: str | None = None,
) -> ProduceRequest:
    """The control layer's side: a ``produce`` request with its RTP parts on the wire."""
    request = ProduceRequest(
        kind=kind,
        rtpParameters=rtp_parameters.to_wire(),
        rtpMapping=rtp_mapping.to_wire(),
        paused=paused,
        appData=app_data,
    )
    if producer_id is not None:
        request["id"] = producer_id
    return request


def produce_rtp(request: ProduceRequest) -> tuple[RtpParameters, RtpMapping]:
    """The worker's side: a ``produce`` request's RTP parts, parsed once."""
    return (
        RtpParameters.from_wire(request["rtpParameters"]),
        RtpMapping.from_wire(request["rtpMapping"]),
    )


def consume_request(
    *,
    producer_id: str,
    kind: str,
    rtp_parameters: RtpParameters,
    consumable_encodings: list[RtpEncodingParameters],
    paused: bool,
    app_data: dict[str, Any],
) -> ConsumeRequest:
    """The control layer's side: a ``consume`` request with its RTP parts on the wire."""
    return ConsumeRequest(
        producerId=producer_id,
        kind=kind,
        rtpParameters=rtp_parameters.to_wire(),
        consumableRtpEncodings=[encoding.to_wire() for encoding in consumable_encodings],
        paused=paused,
        appData=app_data,
    )


def consume_rtp(request: ConsumeRequest) -> RtpParameters:
    """The worker's side: a ``consume`` request's RTP parameters, parsed once."""
    return RtpParameters.from_wire(request["rtpParameters"])


class ProduceDataRequest(TypedDict):
    """Stream parameters validated by the control layer (the edge)."""

    sctpStreamParameters: WireDict | None  # SctpStreamParameters; None: a direct (server) producer
    label: str
    protocol: str
    paused: bool
    appData: dict[str, Any]
    id: NotRequired[str]  # a pipe data producer keeps the id of the one it mirrors


class ConsumeDataRequest(TypedDict):
    dataProducerId: str
    paused: bool
    appData: dict[str, Any]


class SetPriorityRequest(TypedDict):
    priority: int


class SetPreferredLayersRequest(TypedDict):
    spatialLayer: int
    temporalLayer: int


class AddProducerRequest(TypedDict):
    producerId: str


# ---- responses (worker → control) ------------------------------------------------


class WorkerStarted(TypedDict):
    id: str
    pid: int


class Created(TypedDict):
    """A router or observer made: its id."""

    id: str


class WebRtcTransportCreated(TypedDict):
    id: str
    iceParameters: dict[str, Any]
    iceCandidates: list[dict[str, Any]]
    dtlsParameters: dict[str, Any]
    sctpParameters: dict[str, Any] | None
    iceState: str
    dtlsState: str


class PipeTransportCreated(TypedDict):
    id: str
    ip: str
    port: int


class Produced(TypedDict):
    id: str


class Consumed(TypedDict):
    id: str
    producerPaused: bool


class DataConsumed(TypedDict):
    id: str
    dataProducerPaused: bool
    # SctpStreamParameters, the stream id the transport chose (None on a direct transport).
    sctpStreamParameters: WireDict | None


class WorkerStats(TypedDict):
    counts: dict[str, int]
    totals: dict[str, int]  # packet counters since start, "<name>" or "<name>:<reason>"
    serverDrops: dict[str, int]
    process: dict[str, Any]
    nativeSend: bool  # whether consumers send through the C extension


# ---- notification payloads --------------------------------------------------------


class DominantSpeaker(TypedDict):
    producerId: str
    volume: int


class DataMessage(TypedDict):
    """One data message crossing the channel: to a direct data producer
    (``dataProducer.send``) or from a direct data consumer (``message``)."""

    text: NotRequired[str]
    binary: NotRequired[str]  # base64


def data_message(payload: str | bytes) -> DataMessage:
    if isinstance(payload, str):
        return DataMessage(text=payload)
    return DataMessage(binary=base64.b64encode(payload).decode("ascii"))


def data_payload(message: DataMessage) -> str | bytes:
    """The payload of a DataMessage; ValueError if it is neither text nor base64."""
    if isinstance(message, dict):
        text = message.get("text")
        if isinstance(text, str):
            return text
        binary = message.get("binary")
        if isinstance(binary, str):
            try:
                return base64.b64decode(binary, validate=True)
            except binascii.Error as error:
                raise ValueError(f"bad base64 data message: {error}") from None
    raise ValueError("a data message is {text} or {binary}")
