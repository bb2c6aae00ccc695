"""sfu.signaling.request_log: a client's malformed HTTP request is INFO, not a server ERROR."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import LineTooLong

from sfu.signaling.request_log import MalformedRequestFilter


def record(level: int, error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord(
        "aiohttp.server",
        level,
        __file__,
        1,
        "Error handling request from %s",
        ("1.2.3.4",),
        exc_info,
    )


def test_a_malformed_request_is_one_info_line() -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.INFO)
    try:
        entry = record(logging.ERROR, LineTooLong("line", "8190", "9000"))
        assert MalformedRequestFilter().filter(entry)
        assert (entry.levelno, entry.levelname, entry.exc_info) == (logging.INFO, "INFO", None)
        assert entry.getMessage().startswith("Error handling request from 1.2.3.4: HTTP 400")
    finally:
        logging.getLogger("aiohttp.server").setLevel(logging.NOTSET)


def test_other_errors_stay_errors() -> None:
    entry = record(logging.ERROR, RuntimeError("a bug"))
    assert MalformedRequestFilter().filter(entry)
    assert entry.levelno == logging.ERROR
    assert entry.exc_info is not None
