"""The producer's mapping onto its router (mediasoup's ``RtpMapping`` in ``ortc.ts``):
the client's payload types, SSRCs and header extension ids, and the router's.

The control layer computes it (ORTC) and the worker's producer rewrites each
packet with it. Not client input: it is built here, never parsed from a client.
"""

from __future__ import annotations

from pydantic import Field

from .rtp_parameters import WireModel


class RtpMappingCodec(WireModel):
    payload_type: int
    mapped_payload_type: int


class RtpMappingEncoding(WireModel):
    ssrc: int | None = None
    rid: str | None = None
    scalability_mode: str | None = None
    mapped_ssrc: int


class RtpMappingHeaderExtension(WireModel):
    """Not in mediasoup's mapping: the server maps extension ids too."""

    id: int
    mapped_id: int
    uri: str


class RtpMapping(WireModel):
    wire_name = "rtpMapping"

    codecs: list[RtpMappingCodec]
    encodings: list[RtpMappingEncoding]
    header_extensions: list[RtpMappingHeaderExtension] = Field(default_factory=list)
