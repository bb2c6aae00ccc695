"""Strict validation of request payloads: a string where a boolean belongs is an error."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError

_MISSING = object()
MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 256


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", str: "string", dict: "object", list: "array"}.get(
        type(value), type(value).__name__
    )


def get_str(
    data: dict[str, Any], key: str, *, max_length: int = MAX_ID_LENGTH, default: Any = _MISSING
) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise InvalidRequestError(f"missing {key!r} (a string)")
        return default
    if not isinstance(value, str):
        raise InvalidRequestError(f"{key!r} must be a string, not {_type_name(value)}")
    if len(value) > max_length:
        raise InvalidRequestError(f"{key!r} is longer than {max_length} characters")
    return value


def get_bool(data: dict[str, Any], key: str, *, default: bool | None = None) -> bool:
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is None:
            raise InvalidRequestError(f"missing {key!r} (a boolean)")
        return default
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{key!r} must be a boolean, not {_type_name(value)}")
    return value


def get_int(
    data: dict[str, Any], key: str, *, minimum: int, maximum: int, default: int | None = None
) -> int:
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is None:
            raise InvalidRequestError(f"missing {key!r} (an integer)")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{key!r} must be an integer, not {_type_name(value)}")
    if not minimum <= value <= maximum:
        raise InvalidRequestError(f"{key!r} must be in {minimum}..{maximum}")
    return value


def get_object(data: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise InvalidRequestError(f"missing {key!r} (an object)")
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{key!r} must be an object, not {_type_name(value)}")
    return value
