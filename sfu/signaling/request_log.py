"""aiohttp's log of requests it cannot parse, at the right level (signalling
process only: the media workers load no aiohttp)."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["MalformedRequestFilter", "quiet_malformed_requests"]


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs every request it cannot parse (a request line or header
    over its 8190-byte limits, a broken header) at ERROR with a traceback; a
    client's bad input is not a server error, so say it at INFO in one line
    (aiohttp has already answered it with a 4xx)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.ERROR or not isinstance(error, HttpProcessingError):
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = f"{record.getMessage()}: HTTP {error.code} {error.message}"
        record.args = None
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def quiet_malformed_requests() -> None:
    """Install :class:`MalformedRequestFilter` on aiohttp's server logger, once."""
    server_logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_logger.filters):
        server_logger.addFilter(MalformedRequestFilter())
