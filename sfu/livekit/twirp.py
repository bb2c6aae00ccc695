"""A Twirp server (https://twitchtv.github.io/twirp/docs/spec_v7.html) on aiohttp,
enough for LiveKit's RoomService: ``POST /twirp/{package.Service}/{Method}``.

- Bodies are protobuf (``application/protobuf``, what ``livekit-api`` sends) or
  JSON (``application/json``: the .proto's field names or lowerCamel, unknown
  fields ignored); the reply comes in the request's encoding, JSON with the
  .proto's names and every field, as Twirp's Go server writes it.
- Every call is authorised by ``Authorization: Bearer <access token>``,
  checked by a :class:`TokenVerifier`; the method checks the grants.
- Errors are Twirp's JSON ``{"code", "msg"}`` with its HTTP status; bad input
  is a 4xx, never a 500.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..auth.claims import AccessClaims
from ..auth.tokens import TokenRefusal, TokenVerifier
from ..errors import SfuError

__all__ = ["TWIRP_STATUS", "TwirpError", "TwirpMethod", "TwirpService"]

logger = logging.getLogger(__name__)

# Twirp's error codes and their HTTP statuses (the spec's table, those we use).
TWIRP_STATUS = {
    "invalid_argument": 400,
    "malformed": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "bad_route": 404,
    "not_found": 404,
    "already_exists": 409,
    "failed_precondition": 412,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
}
# A handler's SfuError (a protoo error code) as a Twirp code.
_CODE_FOR_SFU_ERROR = {
    400: "invalid_argument",
    403: "permission_denied",
    404: "not_found",
    406: "invalid_argument",
    409: "failed_precondition",
    413: "invalid_argument",
    429: "resource_exhausted",
    503: "unavailable",
}
PROTOBUF = "application/protobuf"
JSON = "application/json"
# Far above any RoomService request (metadata is capped at 64 KiB by LiveKit).
MAX_BODY_BYTES = 1 << 20

RequestT = TypeVar("RequestT", bound=Message)


class TwirpError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = TWIRP_STATUS[code]

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "msg": self.msg}, status=self.status)


@dataclass(frozen=True)
class TwirpMethod(Generic[RequestT]):
    """A method's request type and its handler (the verified claims, the request)."""

    request_type: type[RequestT]
    handler: Callable[[AccessClaims, RequestT], Awaitable[Message]]


class TwirpService:
    """The methods of one service, routed at ``/twirp/{name}/{Method}``."""

    def __init__(
        self,
        name: str,
        methods: dict[str, TwirpMethod[Any]],
        verifier: TokenVerifier | None,
    ) -> None:
        self.name = name
        self.methods = methods
        self._verifier = verifier
        # Calls answered, by (method, Twirp code or "ok"), for /metrics.
        self.calls: Counter[tuple[str, str]] = Counter()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"/twirp/{self.name}/{{method}}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        method_name = request.match_info["method"]
        label = method_name if method_name in self.methods else "unknown"
        try:
            response = await self._serve(request, method_name)
        except TwirpError as error:
            self.calls[label, error.code] += 1
            logger.info("twirp %s/%s: %s: %s", self.name, method_name, error.code, error.msg)
            return error.response()
        self.calls[label, "ok"] += 1
        return response

    async def _serve(self, request: web.Request, method_name: str) -> web.Response:
        method = self.methods.get(method_name)
        if method is None:
            raise TwirpError("bad_route", f"no method {method_name} in {self.name}")
        content_type = request.content_type
        if content_type not in (PROTOBUF, JSON):
            raise TwirpError(
                "bad_route", f"unexpected Content-Type {content_type!r}: use {PROTOBUF} or {JSON}"
            )
        claims = self._authenticate(request)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise TwirpError("malformed", f"the body is over {MAX_BODY_BYTES} bytes")
        body = await _read_body(request)
        message = _decode(method.request_type, body, content_type)
        try:
            reply = await method.handler(claims, message)
        except SfuError as error:  # e.g. the media worker went away meanwhile
            code = _CODE_FOR_SFU_ERROR.get(error.code, "unavailable")
            raise TwirpError(code, str(error)) from None
        if content_type == PROTOBUF:
            return web.Response(body=reply.SerializeToString(), content_type=PROTOBUF)
        text = json_format.MessageToJson(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return web.Response(text=text, content_type=JSON)

    def _authenticate(self, request: web.Request) -> AccessClaims:
        if self._verifier is None:
            # An open RoomService would let anyone remove anyone (docs/auth.md).
            raise TwirpError("unauthenticated", "RoomService needs an API key: none is configured")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TwirpError("unauthenticated", "no Authorization: Bearer <token> header")
        try:
            return self._verifier.verify(token.strip())
        except TokenRefusal as refusal:
            raise TwirpError("unauthenticated", refusal.message) from None


async def _read_body(request: web.Request) -> bytes:
    """The whole body, at most MAX_BODY_BYTES (a read returns what has arrived,
    which for a large body is only its first chunk)."""
    body = bytearray()
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TwirpError("malformed", f"the body is over {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _decode(request_type: type[RequestT], body: bytes, content_type: str) -> RequestT:
    message = request_type()
    try:
        if content_type == PROTOBUF:
            message.ParseFromString(body)
        else:
            json_format.Parse(body.decode() or "{}", message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise TwirpError(
            "malformed", f"the body is not a {request_type.__name__}: {error}"
        ) from None
    return message
