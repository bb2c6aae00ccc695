"""A Selective Forwarding Unit in mediasoup's shape: rooms, routers, transports, producers, consumers."""

__version__ = "0.1.0"
