"""Typed data both processes share (the signalling process and the media workers)."""
