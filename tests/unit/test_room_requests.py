"""The typed data of the protoo requests: strict, camelCase at the wire, and a
400 whose reason names the field."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.errors import InvalidRequestError
from sfu.rooms.requests import (
    CreateWebRtcTransportRequest,
    JoinRequest,
    ProduceRequest,
    Request,
    SetConsumerPreferredLayersRequest,
    SetConsumerPriorityRequest,
    TransportRequest,
)


@pytest.mark.parametrize(
    ("model", "data", "reason"),
    [
        (JoinRequest, {"displayName": 5}, "displayName must be a string, got 5"),
        (JoinRequest, {"rtpCapabilities": "all"}, "rtpCapabilities must be an object, got 'all'"),
        (JoinRequest, {"displayName": "x" * 257}, "displayName is longer than 256 characters"),
        (CreateWebRtcTransportRequest, {"producing": "yes"}, "producing must be a boolean"),
        (TransportRequest, {}, "missing transportId"),
        (TransportRequest, {"transportId": ["x"]}, "transportId must be a string, got array"),
        (
            ProduceRequest,
            {"transportId": "t", "kind": "smell", "rtpParameters": {}},
            "kind must be 'audio' or 'video', got 'smell'",
        ),
        (
            SetConsumerPriorityRequest,
            {"consumerId": "c", "priority": True},
            "priority must be an integer, got True",
        ),
        (
            SetConsumerPriorityRequest,
            {"consumerId": "c", "priority": 256},
            "priority must be in 1..255, got 256",
        ),
        (SetConsumerPreferredLayersRequest, {"consumerId": "c"}, "missing spatialLayer"),
    ],
)
def test_bad_data_is_a_400_naming_the_field(
    model: type[Request], data: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRequestError) as error:
        model.from_wire(data)
    assert reason in str(error.value)


def test_defaults_null_and_unknown_keys() -> None:
    request = JoinRequest.from_wire({"displayName": None, "device": None, "surprise": 1})
    assert (request.display_name, request.device, request.rtp_capabilities) == ("", {}, None)
    layers = SetConsumerPreferredLayersRequest.from_wire({"consumerId": "c", "spatialLayer": 2})
    assert (layers.spatial_layer, layers.temporal_layer) == (2, 0)


def test_camel_case_only_at_the_wire() -> None:
    # A snake_case key is an unknown key (ignored), not the field.
    assert JoinRequest.from_wire({"display_name": "x"}).display_name == ""
    with pytest.raises(InvalidRequestError, match="missing transportId"):
        TransportRequest.from_wire({"transport_id": "t"})
