"""DirectTransport: the control handle on a worker's direct transport (mediasoup's DirectTransport.ts).

Its data producers are sent on by the server (``DataProducer.send``) and its
data consumers' messages come here (their ``message`` event): the room's own
messages, and data piped to a router on another worker.
"""

from __future__ import annotations

from .transport import Transport


class DirectTransport(Transport):
    """Data only: ``produce_data`` and ``consume_data`` take no SCTP stream."""
