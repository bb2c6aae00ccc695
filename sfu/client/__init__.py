"""A small SDK for the SFU: join a room, produce tracks, consume everybody else's.

Speaks mediasoup-demo's protoo protocol on pymediasoup + aiortc, so it also
works against mediasoup-demo's own server.
"""

from sfu.client.client import SfuClient
from sfu.client.consuming import RemoteConsumer
from sfu.client.data import DataMessage, DataOptions, RemoteDataConsumer
from sfu.client.media import PatternVideoTrack, ToneAudioTrack, TrackSink
from sfu.client.protoo import ProtooConnection, ProtooError
from sfu.client.session import AccessRefusedError, default_device_info

__all__ = [
    "AccessRefusedError",
    "DataMessage",
    "DataOptions",
    "PatternVideoTrack",
    "ProtooConnection",
    "ProtooError",
    "RemoteConsumer",
    "RemoteDataConsumer",
    "SfuClient",
    "ToneAudioTrack",
    "TrackSink",
    "default_device_info",
]
