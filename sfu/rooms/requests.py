"""The data of each protoo request a peer sends, as typed models parsed once by
the room's dispatch (mediasoup-demo's protocol: docs/protocol.md).

camelCase lives only at the wire: ``{"transportId": ...}`` parses into
``TransportRequest.transport_id``. Parsing is strict (a string where a boolean
belongs is an error, never converted), JSON null means absent, and unknown
keys are ignored, as they always were. A bad value is a protoo error 400 whose
reason names the field (``producing must be a boolean, got 'yes'``).

The RTP parts (``rtpCapabilities``, ``rtpParameters``) and the DTLS parameters
stay wire dicts here: ORTC and the transport validate them with their own models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from ..models import MediaKind, SctpStreamParameters, WireModel
from ..models.validation import in_range, invalid

# Longest id (transport, producer, consumer) and display name a peer may send.
MAX_ID_LENGTH = 128
# roomId and peerId: printable, no spaces, bounded.
ROOM_OR_PEER_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
MAX_NAME_LENGTH = 256


def _at_most(length: int) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) > length:
            raise invalid(f"is longer than {length} characters")
        return value

    return AfterValidator(check)


ObjectId = Annotated[str, _at_most(MAX_ID_LENGTH)]
Name = Annotated[str, _at_most(MAX_NAME_LENGTH)]
JsonObject = dict[str, Any]
Layer = Annotated[int, in_range(0, 15)]

# What a request needs of the peer's state; checked before its data is read
# (join twice is "already joined" whatever else is wrong with it).
PeerState = Literal["any", "joined", "not joined"]
# The kind of object a request names by id (see TargetedRequest).
ObjectKind = Literal["transport", "producer", "consumer", "dataProducer", "dataConsumer"]


class Request(WireModel):
    """A request's ``data``: camelCase keys only (no snake_case aliases at the wire)."""

    model_config = ConfigDict(validate_by_name=False, frozen=True)

    required_state: ClassVar[PeerState] = "any"


class TargetedRequest(Request):
    """A request about one of the peer's own objects, named by its first field.

    When the rest of the data is bad too, an unknown or foreign object is the
    error the peer gets (the room looks the object up before reading the rest).
    """

    target_kind: ClassVar[ObjectKind]
    target_key: ClassVar[str]


class TransportRequest(TargetedRequest):
    """``restartIce``, ``getTransportStats``."""

    target_kind: ClassVar[ObjectKind] = "transport"
    target_key: ClassVar[str] = "transportId"

    transport_id: ObjectId


class ProducerRequest(TargetedRequest):
    """``closeProducer``, ``pauseProducer``, ``resumeProducer``, ``getProducerStats``."""

    target_kind: ClassVar[ObjectKind] = "producer"
    target_key: ClassVar[str] = "producerId"

    producer_id: ObjectId


class ConsumerRequest(TargetedRequest):
    """``pauseConsumer``, ``resumeConsumer``, ``requestConsumerKeyFrame``, ``getConsumerStats``."""

    target_kind: ClassVar[ObjectKind] = "consumer"
    target_key: ClassVar[str] = "consumerId"

    consumer_id: ObjectId


class DataProducerRequest(TargetedRequest):
    """``getDataProducerStats``."""

    target_kind: ClassVar[ObjectKind] = "dataProducer"
    target_key: ClassVar[str] = "dataProducerId"

    data_producer_id: ObjectId


class DataConsumerRequest(TargetedRequest):
    """``getDataConsumerStats``."""

    target_kind: ClassVar[ObjectKind] = "dataConsumer"
    target_key: ClassVar[str] = "dataConsumerId"

    data_consumer_id: ObjectId


class NoData(Request):
    """``getRouterRtpCapabilities``: whatever data comes is ignored."""


class ResumeRequest(Request):
    """``resume``: take a session over after a dropped WebSocket."""

    session_token: Annotated[str, _at_most(256)]


class JoinRequest(Request):
    required_state: ClassVar[PeerState] = "not joined"

    display_name: Name = ""
    device: JsonObject = Field(default_factory=dict)
    # Absent for peers that only send (mediasoup-demo's consume=false).
    rtp_capabilities: JsonObject | None = None
    sctp_capabilities: JsonObject | None = None


class ChangeDisplayNameRequest(Request):
    required_state: ClassVar[PeerState] = "joined"

    display_name: Name


class CreateWebRtcTransportRequest(Request):
    force_tcp: bool = False
    producing: bool = False
    consuming: bool = False
    sctp_capabilities: JsonObject | None = None


class ConnectWebRtcTransportRequest(TransportRequest):
    dtls_parameters: JsonObject


class ProduceRequest(TransportRequest):
    required_state: ClassVar[PeerState] = "joined"

    kind: MediaKind
    rtp_parameters: JsonObject
    app_data: JsonObject = Field(default_factory=dict)
    paused: bool = False


class ProduceDataRequest(TransportRequest):
    required_state: ClassVar[PeerState] = "joined"

    sctp_stream_parameters: SctpStreamParameters
    label: Name = ""
    protocol: Name = ""
    app_data: JsonObject = Field(default_factory=dict)


class SetConsumerPreferredLayersRequest(ConsumerRequest):
    spatial_layer: Layer
    temporal_layer: Layer = 0


class SetConsumerPriorityRequest(ConsumerRequest):
    priority: Annotated[int, in_range(1, 255)]
