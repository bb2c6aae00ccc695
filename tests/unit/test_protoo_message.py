"""protoo's message shapes, shared by server and client: what goes on the wire and how answers settle."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sfu.signaling import protoo_message
from sfu.signaling.protoo_message import PendingRequests


class Rejected(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def test_messages_have_protoos_shapes() -> None:
    assert protoo_message.request(7, "join", None) == {
        "request": True,
        "id": 7,
        "method": "join",
        "data": {},
    }
    assert protoo_message.success_response("a", None) == {
        "response": True,
        "id": "a",
        "ok": True,
        "data": {},
    }
    assert protoo_message.error_response(7, 404, "no such room") == {
        "response": True,
        "id": 7,
        "ok": False,
        "errorCode": 404,
        "errorReason": "no such room",
    }
    assert protoo_message.notification("newPeer", {"id": "p"}) == {
        "notification": True,
        "method": "newPeer",
        "data": {"id": "p"},
    }
    text = protoo_message.encode(protoo_message.notification("x", None))
    assert " " not in text
    assert json.loads(text)["method"] == "x"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ({"request": True}, "request"),
        ({"response": True}, "response"),
        ({"notification": True}, "notification"),
        ({"request": 1}, None),  # true, not truthy
        ({}, None),
    ],
)
def test_message_kind(message: dict[str, object], kind: str | None) -> None:
    assert protoo_message.message_kind(message) == kind


@pytest.mark.parametrize(("value", "valid"), [(1, True), ("x", True), (True, False), (1.5, False)])
def test_valid_id(value: object, valid: bool) -> None:
    assert protoo_message.valid_id(value) is valid


async def test_pending_requests_settle_by_id() -> None:
    pending = PendingRequests(Rejected)
    first, answered = pending.add()
    second, rejected = pending.add()
    third, stats = pending.add()
    assert len({first, second, third}) == 3
    assert pending.settle({"response": True, "id": first, "ok": True})
    assert await answered == {}
    assert pending.settle({"response": True, "id": second, "ok": False, "errorCode": 403})
    with pytest.raises(Rejected) as info:
        await rejected
    assert (info.value.code, info.value.reason) == (403, "request rejected")
    # Any JSON passes through (stats replies are arrays).
    assert pending.settle({"response": True, "id": third, "ok": True, "data": [1]})
    assert await stats == [1]


async def test_stray_and_foreign_responses_are_not_ours() -> None:
    pending = PendingRequests(Rejected)
    request_id, future = pending.add()
    for stray in (request_id + 1, str(request_id), True, [request_id], None):
        assert not pending.settle({"response": True, "id": stray, "ok": True})
    pending.discard(request_id)
    assert not pending.settle({"response": True, "id": request_id, "ok": True})
    assert not future.done()
    future.cancel()


async def test_fail_all_fails_each_request_with_its_own_error() -> None:
    pending = PendingRequests(Rejected)
    futures = [pending.add()[1] for _ in range(2)]
    pending.fail_all(lambda: ConnectionError("closed"))
    errors = [f.exception() for f in futures]
    assert all(isinstance(e, ConnectionError) for e in errors)
    assert errors[0] is not errors[1]
    request_id, _ = pending.add()  # still usable, and the old ids are gone
    assert not pending.settle({"response": True, "id": request_id - 1, "ok": True})


def test_the_client_loads_no_aiohttp_server_side() -> None:
    server_side = ["aiohttp.web", "sfu.signaling.protoo", "sfu.errors"]
    probe = f"import sys, sfu.client; print([m for m in {server_side!r} if m in sys.modules])"
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"
