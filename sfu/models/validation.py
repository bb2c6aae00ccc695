"""The validation kit shared by the wire models and the config: pydantic v2 does
the parsing; this module turns its first error into one message that names the
field, in the wording each edge uses.

Checks of our own raise :func:`invalid`, whose message is used as written (no
"Value error, " prefix), optionally naming a sub-field of the value checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import AfterValidator, ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["FieldError", "field_errors", "field_path", "first_error", "invalid", "type_name"]

# The error type of invalid(); its message is taken as written.
CUSTOM_ERROR = "sfu_invalid"


def invalid(message: str, field: str | None = None) -> PydanticCustomError:
    """An error for a check of our own. ``field`` names a sub-field of the value
    being checked (for checks across fields, run on the whole object)."""
    # The message goes through the context: pydantic would otherwise read any
    # braces in it (a shown dict, say) as placeholders.
    context: dict[str, Any] = {"message": message}
    if field is not None:
        context["field"] = field
    return PydanticCustomError(CUSTOM_ERROR, "{message}", context)


class FieldError(NamedTuple):
    """One validation error: where, of which pydantic type, on what input."""

    loc: tuple[str | int, ...]
    type: str
    input: Any
    message: str
    context: dict[str, Any]

    @property
    def is_custom(self) -> bool:
        return self.type == CUSTOM_ERROR


def in_range(lo: int, hi: int) -> AfterValidator:
    """An integer field's bounds, with the one message for them (``must be in lo..hi``)."""

    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise invalid(f"must be in {lo}..{hi}, got {value}")
        return value

    return AfterValidator(check)


def field_errors(error: ValidationError) -> list[FieldError]:
    """Every error pydantic found, in the order of the input, with a sub-field
    named by invalid() folded into its location."""
    found = []
    for detail in error.errors(include_url=False):
        context = dict(detail.get("ctx") or {})
        loc = tuple(detail["loc"])
        if "field" in context:
            loc = (*loc, context["field"])
        message = context["message"] if detail["type"] == CUSTOM_ERROR else detail["msg"]
        found.append(FieldError(loc, detail["type"], detail.get("input"), message, context))
    return found


def first_error(error: ValidationError) -> FieldError:
    """The first error (inputs are checked in order: the one a person fixes first)."""
    return field_errors(error)[0]


def field_path(root: str, loc: Sequence[str | int]) -> str:
    """``root`` and a pydantic location as one path: ``rtpParameters.codecs[0].mimeType``."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def type_name(value: object) -> str:
    """A JSON value's type as a person names it."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    names.update({dict: "object", list: "array", type(None): "null"})
    return names.get(type(value), type(value).__name__)
