"""mediasoup's SCTP model: the stream parameters of a data producer or consumer.

``SctpStreamParameters`` is what a client sends in ``produceData`` and what the
server gives each data consumer. An ordered stream is fully reliable; a limit
on the lifetime or the retransmissions makes it partially reliable (RFC 3758),
and only one of the two may be set.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, model_validator

from .rtp_parameters import WireModel
from .validation import invalid

# SCTP stream ids a data channel may use (RFC 8831: 65535 is reserved).
MAX_STREAM_ID = 65534


def _in_range(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise invalid(f"must be in {lo}..{hi}, got {value}")
        return value

    return AfterValidator(check)


class SctpStreamParameters(WireModel):
    wire_name: ClassVar[str] = "sctpStreamParameters"

    stream_id: Annotated[int, _in_range(0, MAX_STREAM_ID)]
    ordered: bool | None = None
    max_packet_life_time: Annotated[int, _in_range(0, 65535)] | None = None
    max_retransmits: Annotated[int, _in_range(0, 65535)] | None = None

    @model_validator(mode="after")
    def _one_reliability(self) -> Self:
        partial = self.max_packet_life_time is not None or self.max_retransmits is not None
        if self.max_packet_life_time is not None and self.max_retransmits is not None:
            raise invalid("cannot have both maxPacketLifeTime and maxRetransmits")
        if partial and self.ordered:
            raise invalid("ordered cannot be true with maxPacketLifeTime or maxRetransmits")
        if self.ordered is None:
            # As mediasoup: ordered unless a reliability limit is given.
            self.ordered = not partial
        return self

    @property
    def reliable(self) -> bool:
        return self.max_packet_life_time is None and self.max_retransmits is None
