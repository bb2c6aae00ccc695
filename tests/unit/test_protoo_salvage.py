"""Requests that json.loads refuses (too deep) still get an answer if their id can be read."""

from __future__ import annotations

import json

import pytest

from sfu.signaling.protoo import _salvage_request_id

DEEP = "[" * 1100 + '"x"' + "]" * 1100


def _request(request_id: str, data: str = DEEP) -> str:
    return f'{{"data": {{"a": {data}}}, "method": "join", "id": {request_id}, "request": true}}'


@pytest.mark.parametrize(
    "request_id", ["5", "-7", "0", "9007199254740992", "123456789012345678901234567890", '"abc"']
)
def test_the_id_of_a_too_deep_request_is_read_as_json_would_read_it(request_id: str) -> None:
    text = _request(request_id)
    with pytest.raises(RecursionError):
        json.loads(text)
    assert _salvage_request_id(text) == json.loads(request_id)


@pytest.mark.parametrize("request_id", ["1.5", "1e3", "true", "null", "[1]"])
def test_ids_that_cannot_be_answered_are_not_read(request_id: str) -> None:
    assert _salvage_request_id(_request(request_id)) is None


def test_not_a_request_is_not_answered() -> None:
    assert _salvage_request_id(_request("5").replace('"request": true', '"request": false')) is None


def test_a_long_number_that_is_not_an_integer_is_not_read() -> None:
    # 100 000 digits then a dot: a float, so no id. (The scan is possessive, so it
    # does not retry every shorter run of those digits.)
    text = '{"id": ' + "1" * 100_000 + '.5, "request": true, "data": ' + DEEP + "}"
    assert _salvage_request_id(text) is None
