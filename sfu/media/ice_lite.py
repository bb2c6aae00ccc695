"""ICE-lite responder (RFC 8445 section 2.5): answer the client's binding requests.

The server never sends checks of its own. It answers STUN binding requests
whose USERNAME starts with its ufrag and whose MESSAGE-INTEGRITY is signed
with its password, learns the client's address from them, and follows the
client's nomination (USE-CANDIDATE). aioice has no lite mode, so we use only
its STUN codec.
"""

from __future__ import annotations

import binascii
import hmac
import secrets
import socket
import string
import struct
from dataclasses import dataclass
from enum import Enum

from aioice import stun

_ALPHABET = string.ascii_lowercase + string.digits

# The success response, packed here rather than with aioice's Message: aioice
# serializes the message four times and XORs the address byte by byte in
# Python (about 70 us a check; every client sends one every few seconds, for
# as long as it stays). RFC 5389 sections 15.2, 15.4 and 15.5.
_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE = struct.Struct("!HH")
_COOKIE = 0x2112A442
_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020
_MESSAGE_INTEGRITY = 0x0008
_FINGERPRINT = 0x8028
_FINGERPRINT_XOR = 0x5354554E


def binding_success(transaction_id: bytes, addr: tuple[str, int], key: bytes) -> bytes:
    """A Binding success response carrying XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    host, port = addr[0], addr[1]
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        family, pad = 0x02, struct.pack("!I", _COOKIE) + transaction_id
    else:
        packed = socket.inet_pton(socket.AF_INET, host)
        family, pad = 0x01, struct.pack("!I", _COOKIE)
    address = (int.from_bytes(packed, "big") ^ int.from_bytes(pad, "big")).to_bytes(
        len(packed), "big"
    )
    mapped = (
        _ATTRIBUTE.pack(_XOR_MAPPED_ADDRESS, 4 + len(packed))
        + struct.pack("!BBH", 0, family, port ^ (_COOKIE >> 16))
        + address
    )
    # MESSAGE-INTEGRITY covers the header with a length that counts itself.
    signed = _HEADER.pack(_BINDING_SUCCESS, len(mapped) + 24, _COOKIE, transaction_id) + mapped
    message = signed + _ATTRIBUTE.pack(_MESSAGE_INTEGRITY, 20) + hmac.digest(key, signed, "sha1")
    # FINGERPRINT covers everything before it, with a length that counts it too.
    header = _HEADER.pack(_BINDING_SUCCESS, len(message) - 20 + 8, _COOKIE, transaction_id)
    message = header + message[20:]
    crc = binascii.crc32(message) ^ _FINGERPRINT_XOR
    return message + _ATTRIBUTE.pack(_FINGERPRINT, 4) + struct.pack("!I", crc)


def random_ice_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class StunVerdict(Enum):
    VALID = "valid"  # authenticated binding request: answered with success
    UNAUTHORIZED = "unauthorized"  # unknown ufrag or bad MESSAGE-INTEGRITY: answered 401
    BAD_REQUEST = "bad-request"  # a binding request missing mandatory attributes: answered 400
    IGNORED = "ignored"  # indications and responses: nothing to answer
    MALFORMED = "malformed"  # not parseable as STUN: dropped


@dataclass(frozen=True, slots=True)
class StunOutcome:
    verdict: StunVerdict
    response: bytes | None = None
    nominated: bool = False


@dataclass(frozen=True, slots=True)
class IceCredentials:
    username_fragment: str
    password: str

    @classmethod
    def generate(cls) -> IceCredentials:
        # mediasoup uses 16 and 32 characters; RFC 8445 asks for >= 4 and >= 22.
        return cls(random_ice_string(16), random_ice_string(32))


class IceLiteResponder:
    """Authenticates and answers STUN binding requests for one transport.

    It may hold several credentials: after an ICE restart the previous ones
    stay valid, because clients built on aiortc never adopt new ones.
    """

    def __init__(self, credentials: IceCredentials) -> None:
        self._credentials: list[IceCredentials] = [credentials]

    @property
    def credentials(self) -> IceCredentials:
        return self._credentials[0]

    def add_credentials(self, credentials: IceCredentials, keep_previous: int = 1) -> None:
        """Make ``credentials`` current, keeping ``keep_previous`` older ones valid."""
        self._credentials = [credentials, *self._credentials[:keep_previous]]

    def _password_for(self, username: str) -> str | None:
        local_ufrag, sep, _ = username.partition(":")
        if not sep:
            return None
        for credentials in self._credentials:
            if credentials.username_fragment == local_ufrag:
                return credentials.password
        return None

    def handle(self, data: bytes, addr: tuple[str, int]) -> StunOutcome:
        try:
            request = stun.parse_message(data)
        except Exception:  # the codec raises ValueError, struct.error, KeyError...
            return StunOutcome(StunVerdict.MALFORMED)

        if request.message_method != stun.Method.BINDING or (
            request.message_class != stun.Class.REQUEST
        ):
            return StunOutcome(StunVerdict.IGNORED)

        username = request.attributes.get("USERNAME")
        if not isinstance(username, str) or "PRIORITY" not in request.attributes:
            return StunOutcome(StunVerdict.BAD_REQUEST, self._error(request, 400, "Bad Request"))

        password = self._password_for(username)
        if password is None or not request.check_message_integrity(password.encode()):
            return StunOutcome(StunVerdict.UNAUTHORIZED, self._error(request, 401, "Unauthorized"))

        return StunOutcome(
            StunVerdict.VALID,
            binding_success(request.transaction_id, addr, password.encode()),
            nominated="USE-CANDIDATE" in request.attributes,
        )

    @staticmethod
    def _error(request: stun.Message, code: int, reason: str) -> bytes:
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.ERROR,
            transaction_id=request.transaction_id,
        )
        response.attributes["ERROR-CODE"] = (code, reason)
        response.add_fingerprint()
        return bytes(response)


def is_stun(data: bytes) -> bool:
    """RFC 7983 demux: STUN messages start with a byte in 0..3."""
    return len(data) >= 20 and data[0] < 4
