"""The channel between the signalling process and a media worker: framing and messages, shared by both ends."""

from .channel import Channel, ChannelClosedError, ChannelTimeoutError, NotificationTarget

__all__ = ["Channel", "ChannelClosedError", "ChannelTimeoutError", "NotificationTarget"]
