"""The ICE-lite responder: answers signed checks, rejects bad integrity and unknown ufrags."""

import secrets

import pytest
from aioice import stun

from sfu.media.ice_lite import IceCredentials, IceLiteResponder, StunVerdict, binding_success

ADDR = ("127.0.0.1", 50000)


def binding_request(username: str, password: str, *, use_candidate: bool = False) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1853817087
    request.attributes["ICE-CONTROLLING"] = 12345
    if use_candidate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(password.encode())
    return bytes(request)


def make() -> tuple[IceLiteResponder, IceCredentials]:
    credentials = IceCredentials("serverufrag", "serverpassword0123456789")
    return IceLiteResponder(credentials), credentials


def test_valid_check_gets_signed_success_with_mapped_address() -> None:
    responder, credentials = make()
    outcome = responder.handle(binding_request("serverufrag:client", credentials.password), ADDR)
    assert outcome.verdict is StunVerdict.VALID
    assert not outcome.nominated
    assert outcome.response is not None
    response = stun.parse_message(outcome.response)
    assert response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ADDR
    assert response.check_message_integrity(credentials.password.encode())


@pytest.mark.parametrize(
    "addr", [("127.0.0.1", 50000), ("10.1.2.3", 1), ("::1", 65535), ("fe80::1:2", 4242)]
)
def test_binding_success_matches_aioice_byte_for_byte(addr: tuple[str, int]) -> None:
    """Our packed response equals aioice's Message with the same attributes, and parses."""
    transaction_id = secrets.token_bytes(12)
    key = b"serverpassword0123456789"
    expected = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=transaction_id,
    )
    expected.attributes["XOR-MAPPED-ADDRESS"] = addr
    expected.add_message_integrity(key)  # aioice adds FINGERPRINT after it
    ours = binding_success(transaction_id, addr, key)
    assert ours == bytes(expected)
    parsed = stun.parse_message(ours)  # checks FINGERPRINT
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == addr
    assert parsed.check_message_integrity(key)
    assert not parsed.check_message_integrity(b"another key")


def test_use_candidate_nominates() -> None:
    responder, credentials = make()
    outcome = responder.handle(
        binding_request("serverufrag:client", credentials.password, use_candidate=True), ADDR
    )
    assert outcome.verdict is StunVerdict.VALID
    assert outcome.nominated


def test_bad_message_integrity_is_rejected_with_401() -> None:
    responder, _ = make()
    outcome = responder.handle(
        binding_request("serverufrag:client", "wrong-password-xxxxxxxxx"), ADDR
    )
    assert outcome.verdict is StunVerdict.UNAUTHORIZED
    assert outcome.response is not None
    assert stun.parse_message(outcome.response).error_code == 401


def test_unknown_ufrag_is_rejected_with_401() -> None:
    responder, credentials = make()
    outcome = responder.handle(binding_request("otherufrag:client", credentials.password), ADDR)
    assert outcome.verdict is StunVerdict.UNAUTHORIZED


def test_tampered_message_fails_fingerprint_and_is_dropped() -> None:
    responder, credentials = make()
    data = bytearray(binding_request("serverufrag:client", credentials.password))
    data[-10] ^= 0xFF
    outcome = responder.handle(bytes(data), ADDR)
    assert outcome.verdict in (StunVerdict.MALFORMED, StunVerdict.UNAUTHORIZED)


def test_truncated_and_garbage_inputs_are_malformed() -> None:
    responder, credentials = make()
    good = binding_request("serverufrag:client", credentials.password)
    for data in (good[:19], good[:30], b"\x00\x01" + b"\xff" * 40, bytes(20)):
        outcome = responder.handle(data, ADDR)
        assert outcome.verdict in (
            StunVerdict.MALFORMED,
            StunVerdict.IGNORED,
            StunVerdict.BAD_REQUEST,
        )


def test_missing_priority_is_bad_request() -> None:
    responder, credentials = make()
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = "serverufrag:client"
    request.add_message_integrity(credentials.password.encode())
    assert responder.handle(bytes(request), ADDR).verdict is StunVerdict.BAD_REQUEST


def test_ice_restart_keeps_previous_credentials_valid() -> None:
    responder, old = make()
    new = IceCredentials("newufrag0000", "newpassword0123456789012")
    responder.add_credentials(new)
    assert responder.credentials == new
    assert (
        responder.handle(binding_request("newufrag0000:c", new.password), ADDR).verdict
        is StunVerdict.VALID
    )
    assert (
        responder.handle(binding_request("serverufrag:c", old.password), ADDR).verdict
        is StunVerdict.VALID
    )
    # Only one previous generation is kept.
    responder.add_credentials(IceCredentials("third0000000", "thirdpassword01234567890"))
    assert (
        responder.handle(binding_request("serverufrag:c", old.password), ADDR).verdict
        is StunVerdict.UNAUTHORIZED
    )
