"""Typed data shared by the signalling process and the media workers.

- :mod:`sfu.models.rtp_parameters`: mediasoup's RTP model (capabilities,
  parameters, codecs, header extensions, encodings, RTCP).
- :mod:`sfu.models.rtp_mapping`: a producer's payload types, SSRCs and
  extension ids mapped onto its router's (computed by ORTC, used by the worker).
- :mod:`sfu.models.sctp_parameters`: a data channel's SCTP stream parameters.
- :mod:`sfu.models.rtp_uris`: the header extension URIs, for ORTC and the media plane.
- :mod:`sfu.models.stats`: counters both processes name (retransmission suppression reasons).
- :mod:`sfu.models.validation`: the validation kit (pydantic v2) that the wire
  models and the config share: one clear message naming the bad field.
"""

from .rtp_mapping import (
    RtpMapping,
    RtpMappingCodec,
    RtpMappingEncoding,
    RtpMappingHeaderExtension,
)
from .rtp_parameters import (
    CodecParameters,
    MediaKind,
    Priority,
    RtcpFeedback,
    RtcpParameters,
    RtpCapabilities,
    RtpCodecCapability,
    RtpCodecParameters,
    RtpEncodingParameters,
    RtpHeaderExtension,
    RtpHeaderExtensionDirection,
    RtpHeaderExtensionParameters,
    RtpParameters,
    RtxParameters,
    WireModel,
)
from .rtp_uris import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_RID,
    URI_RRID,
    URI_TOFFSET,
    URI_TRANSPORT_WIDE_CC,
    URI_VIDEO_ORIENTATION,
)
from .sctp_parameters import MAX_STREAM_ID, SctpStreamParameters

__all__ = [
    "MAX_STREAM_ID",
    "URI_ABS_SEND_TIME",
    "URI_AUDIO_LEVEL",
    "URI_MID",
    "URI_RID",
    "URI_RRID",
    "URI_TOFFSET",
    "URI_TRANSPORT_WIDE_CC",
    "URI_VIDEO_ORIENTATION",
    "CodecParameters",
    "MediaKind",
    "Priority",
    "RtcpFeedback",
    "RtcpParameters",
    "RtpCapabilities",
    "RtpCodecCapability",
    "RtpCodecParameters",
    "RtpEncodingParameters",
    "RtpHeaderExtension",
    "RtpHeaderExtensionDirection",
    "RtpHeaderExtensionParameters",
    "RtpMapping",
    "RtpMappingCodec",
    "RtpMappingEncoding",
    "RtpMappingHeaderExtension",
    "RtpParameters",
    "RtxParameters",
    "SctpStreamParameters",
    "WireModel",
]
