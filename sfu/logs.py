"""Logging set-up: text for people, JSON lines for pipelines, with room/peer/transport ids.

The ids come from the record's ``extra`` (the media plane passes them) or,
in a peer's signalling task, from context variables the room sets.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

room_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("room_id", default=None)
peer_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("peer_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_CONTEXT_FIELDS = ("room_id", "peer_id", "transport_id")


class ContextFilter(logging.Filter):
    """Fill room_id/peer_id from the signalling context when the call did not pass them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "room_id", None) is None:
            record.room_id = room_id_var.get()
        if getattr(record, "peer_id", None) is None:
            record.peer_id = peer_id_var.get()
        if not hasattr(record, "transport_id"):
            record.transport_id = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
