"""Hostile signaling: fuzzed protoo frames, out-of-order calls, floods, the
``[limits]`` caps, and peers that guess other peers' ids.

Every request with an id the server can echo gets exactly one reply, ok:true
or ok:false with an integer errorCode (never 500) and a non-empty errorReason;
the connection stays usable; other rooms' media keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from sfu.client import TrackSink

from ..conftest import ServerProcess
from .helpers import RawPeer, join, wait_until

# Generous rate limits for the fuzzing server: the fuzzer should reach the handlers.
FUZZ_LIMITS: dict[str, dict[str, Any]] = {
    "limits": {"requests_per_second": 1_000_000.0, "request_burst": 1_000_000}
}
SMALL_LIMITS: dict[str, dict[str, Any]] = {
    "limits": {
        "max_rooms": 2,
        "max_peers_per_room": 2,
        "max_producers_per_peer": 1,
        "requests_per_second": 5,
        "request_burst": 10,
        "max_transports_per_peer": 2,
    }
}
small_limits = pytest.mark.parametrize("server_overrides", [SMALL_LIMITS], ids=["small-limits"])

MAX_REQUEST_BYTES = 65536  # http.max_request_bytes (the default)
# The server's WebSocket drops frames over this (close 1009), see
# test_a_frame_over_the_websocket_cap_does_not_hurt_the_room; the fuzzer stays under it.
WEBSOCKET_CAP = max(8 * MAX_REQUEST_BYTES, 1 << 20)
# Codes a failure may carry (docs/protocol.md); 500 never.
DOCUMENTED_ERRORS = {400, 403, 404, 406, 409, 413, 429, 503}

# Environment overrides for a longer hunt: FUZZ_SEED=7 FUZZ_EXAMPLES=20000 FUZZ_SECONDS=600
# (and FUZZ_DEBUG=1 to print the most common error replies).
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))
# Seconds; the fuzzing stops there even short of FUZZ_MAX_EXAMPLES.
FUZZ_TIME_BUDGET = float(os.environ.get("FUZZ_SECONDS", "25"))
# Nesting the fuzzer generates: past the server's cap (32) and past what
# Python's JSON parser accepts (~975), both of which must still be answered.
FUZZ_MAX_DEPTH = 1500
# The longest gap between two video frames tolerated while the fuzzer runs.
MAX_FRAME_GAP = 5.0


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return FUZZ_LIMITS


@contextlib.asynccontextmanager
async def raw_peers(server: ServerProcess) -> AsyncIterator[Callable[..., Awaitable[RawPeer]]]:
    """``connect(room, peer_id, accept_consumers=False)`` -> RawPeer; all closed on exit."""
    session = aiohttp.ClientSession()
    peers: list[RawPeer] = []

    async def connect(room: str, peer_id: str, accept_consumers: bool = False) -> RawPeer:
        ws = await session.ws_connect(
            f"{server.ws_url}/?roomId={room}&peerId={peer_id}", protocols=("protoo",)
        )
        peers.append(RawPeer(ws, accept_consumers=accept_consumers))
        return peers[-1]

    try:
        yield connect
    finally:
        for peer in peers:
            await peer.close()
        await session.close()


def check_reply(message: dict[str, Any], what: str = "") -> None:
    """A well-formed protoo response: ok:true with data, or a documented error with a reason."""
    assert message.get("response") is True, f"{what}: not a response: {message}"
    if message.get("ok") is True:
        assert "data" in message, f"{what}: ok:true without data: {message}"
        return
    assert message.get("ok") is False, f"{what}: ok is neither true nor false: {message}"
    code, reason = message.get("errorCode"), message.get("errorReason")
    assert isinstance(code, int) and not isinstance(code, bool), f"{what}: errorCode {code!r}"
    assert code in DOCUMENTED_ERRORS, f"{what}: errorCode {code} (never 500): {message}"
    assert isinstance(reason, str) and reason.strip(), f"{what}: empty errorReason: {message}"


def frame_gaps(sink: TrackSink, start: float, end: float) -> float:
    """The longest time in [start, end] without a frame arriving at ``sink``."""
    times = [start, *(t for t in sink.timestamps if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


async def wait_for_bucket(peer: RawPeer, timeout: float = 5.0) -> dict[str, Any]:
    """getRouterRtpCapabilities until it is not rate-limited (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply = await peer.request("getRouterRtpCapabilities")
        if reply["ok"] or reply.get("errorCode") != 429 or loop.time() > deadline:
            return reply
        await asyncio.sleep(0.25)


# ---- fuzzing: values the server must survive ------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text put into a frame verbatim (what json.dumps cannot or will not write)."""

    text: str

    @staticmethod
    def deep(depth: int, kind: str) -> Raw:
        if kind == "list":
            return Raw("[" * depth + '"x"' + "]" * depth)
        return Raw('{"a":' * depth + "null" + "}" * depth)

    def __repr__(self) -> str:
        return (
            f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''}, {len(self.text)} chars)"
        )


@dataclass(frozen=True)
class Huge:
    """``char * count``, made when the frame is sent (and shown short in failure reports)."""

    char: str
    count: int

    def __repr__(self) -> str:
        return f"Huge({self.char!r} * {self.count})"


@dataclass(frozen=True)
class Ref:
    """An id of an object, resolved when the frame is sent: one of the main fuzzing
    connection's own (``own``), or another's, stale or made up."""

    kind: str  # transport, producer, consumer
    own: bool
    index: int


class Registry:
    """Ids the fuzzer may name: its own, the victim's (another peer in the room),
    closed ones, made-up ones."""

    def __init__(self) -> None:
        kinds = ("transport", "producer", "consumer")
        self.own: dict[str, list[str]] = {kind: [] for kind in kinds}
        self.others: dict[str, list[str]] = {kind: [str(uuid.uuid4()), ""] for kind in kinds}

    def add(self, kind: str, object_id: Any, own: bool) -> None:
        ids = (self.own if own else self.others)[kind]
        if isinstance(object_id, str) and object_id not in ids:
            ids.append(object_id)
            if len(ids) > 32:
                del ids[4]  # keep the first ones (the victim's), forget old ones

    def resolve(self, ref: Ref) -> str:
        ids = self.own[ref.kind] if ref.own and self.own[ref.kind] else self.others[ref.kind]
        return ids[ref.index % len(ids)]


def encode(value: Any, registry: Registry, ensure_ascii: bool) -> str:
    raws: dict[str, str] = {}

    def replace(v: Any) -> Any:
        if isinstance(v, Ref):
            return registry.resolve(v)
        if isinstance(v, Huge):
            return v.char * v.count
        if isinstance(v, Raw):
            key = f"\x00raw{len(raws)}\x00"
            raws[json.dumps(key)] = v.text
            return key
        if isinstance(v, list):
            return [replace(x) for x in v]
        if isinstance(v, dict):
            return {k: replace(x) for k, x in v.items()}
        return v

    plain = replace(value)
    text = json.dumps(plain, ensure_ascii=ensure_ascii)
    if not ensure_ascii:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: only escaped they can be sent
            text = json.dumps(plain)
    for key, raw in raws.items():
        text = text.replace(key, raw, 1)
    return text


def answerable_id(message: Any) -> tuple[bool, Any]:
    """Whether the server must answer this frame (docs/protocol.md), and the id."""
    if not isinstance(message, dict) or message.get("request") is not True:
        return False, None
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        return False, None
    return True, request_id


def id_key(request_id: Any) -> tuple[str, Any]:
    return (type(request_id).__name__, request_id)


KNOWN_METHODS = [
    "getRouterRtpCapabilities",
    "createWebRtcTransport",
    "join",
    "connectWebRtcTransport",
    "restartIce",
    "produce",
    "closeProducer",
    "pauseProducer",
    "resumeProducer",
    "pauseConsumer",
    "resumeConsumer",
    "setConsumerPreferredLayers",
    "setConsumerPriority",
    "requestConsumerKeyFrame",
    "changeDisplayName",
    "getTransportStats",
    "getProducerStats",
    "getConsumerStats",
    "produceData",
    "resume",
]
ODD_METHODS = [
    "",
    " join",
    "JOIN",
    "__init__",
    "constructor",
    "__proto__",
    "toString",
    "_join",
    "_handlers",
    "newConsumer",
    "peerClosed",
    "close",
    "consumeData",
    "\x00",
    "join\x00",
    "é",
    "😀",
    "\ud800",
    "getRouterRtpCapabilities ",
    "a" * 5000,
]
NASTY_STRINGS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-0",
    "0x1F",
    "null",
    "true",
    "undefined",
    "",
    " ",
    "\u202e\x00",
    "%s%s%n",
    "' OR 1=1 --",
    "../../../etc/passwd",
    "\ud800",
    "\udfff",
    "😀" * 10,
    "a" * 129,
    "a" * 257,
    "{}",
    "[]",
    "__proto__",
    "audio",
    "video",
    "client",
    "server",
]

AUDIO_PARAMS: dict[str, Any] = {
    "mid": "0",
    "codecs": [
        {
            "mimeType": "audio/opus",
            "payloadType": 111,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"useinbandfec": 1},
            "rtcpFeedback": [{"type": "transport-cc"}],
        }
    ],
    "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1}],
    "encodings": [{"ssrc": 11111111}],
    "rtcp": {"cname": "fuzz", "reducedSize": True},
}
VIDEO_PARAMS: dict[str, Any] = {
    "mid": "1",
    "codecs": [
        {
            "mimeType": "video/VP8",
            "payloadType": 96,
            "clockRate": 90000,
            "rtcpFeedback": [
                {"type": "nack"},
                {"type": "nack", "parameter": "pli"},
                {"type": "ccm", "parameter": "fir"},
            ],
        },
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}},
    ],
    "encodings": [{"ssrc": 22222222, "rtx": {"ssrc": 22222223}, "maxBitrate": 500000}],
    "rtcp": {"cname": "fuzz"},
}
SIMULCAST_PARAMS: dict[str, Any] = {
    **VIDEO_PARAMS,
    "encodings": [
        {"rid": "r0", "scalabilityMode": "L1T3"},
        {"rid": "r1"},
        {"rid": "r2", "active": False},
    ],
}
H264_PARAMS: dict[str, Any] = {
    "codecs": [
        {
            "mimeType": "video/H264",
            "payloadType": 102,
            "clockRate": 90000,
            "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"},
        }
    ],
    "encodings": [{"ssrc": 33333333}],
}
DTLS_PARAMS: dict[str, Any] = {
    "role": "client",
    "fingerprints": [{"algorithm": "sha-256", "value": ":".join(["AB"] * 32)}],
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    children: Iterable[Any] = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


_DELETE = object()


def _mutate(template: Any, path: tuple[Any, ...], new: Any) -> Any:
    result = copy.deepcopy(template)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if new is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return result


def fuzz_strategies(router_caps: dict[str, Any]) -> st.SearchStrategy[Any]:
    """One example: which connection, how to encode, and 1-4 frames."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats()
        | st.text(max_size=40)
    )
    json_values = st.recursive(
        scalars,
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4)
        ),
        max_leaves=12,
    )
    refs = st.builds(
        Ref,
        st.sampled_from(["transport", "producer", "consumer"]),
        st.booleans(),
        st.integers(0, 31),
    )
    huge = st.builds(
        Huge,
        st.sampled_from(["x", "é", "😀", "\x00", '"', "\\", "\ud800"]),
        st.integers(50_000, 62_000),
    )
    deep = st.builds(Raw.deep, st.integers(1, FUZZ_MAX_DEPTH), st.sampled_from(["list", "object"]))
    numbers = st.sampled_from(
        ["1e400", "-1e400", "NaN", "-Infinity", "0.1e-400", "-0", "1E+2"]
    ).map(Raw)
    numbers |= st.integers(1, 4200).map(lambda n: Raw("7" * n))  # Python parses up to 4300 digits
    anything = st.one_of(
        json_values,
        json_values,
        json_values,
        st.sampled_from(NASTY_STRINGS),
        refs,
        refs,
        huge,
        deep,
        numbers,
    )

    def mutated(template: Any) -> st.SearchStrategy[Any]:
        paths = _paths(template)
        change = st.tuples(
            st.sampled_from(paths), st.one_of(st.just(_DELETE), anything, anything)
        ).map(lambda pv: _mutate(template, pv[0], pv[1]))
        return st.one_of(st.just(template), change, change)

    def field(specific: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(specific, specific, specific, anything)

    def ref(kind: str) -> st.SearchStrategy[Any]:
        own = st.sampled_from([True, True, True, False])
        return st.builds(Ref, st.just(kind), own, st.integers(0, 31))

    def with_ssrc(template: dict[str, Any], ssrc: int) -> dict[str, Any]:
        params = copy.deepcopy(template)
        for n, encoding in enumerate(params["encodings"]):
            if "ssrc" in encoding:
                encoding["ssrc"] = (ssrc + 2 * n) % 2**32
            if "rtx" in encoding:
                encoding["rtx"]["ssrc"] = (ssrc + 2 * n + 1) % 2**32
        return params

    # Valid values for each field, and the same mangled now and then.
    templates = st.sampled_from([AUDIO_PARAMS, VIDEO_PARAMS, SIMULCAST_PARAMS, H264_PARAMS])
    small_caps = {
        "codecs": [c for c in router_caps["codecs"] if c["mimeType"] == "audio/opus"],
        "headerExtensions": [],
    }
    valid: dict[str, st.SearchStrategy[Any]] = {
        "transportId": ref("transport"),
        "producerId": ref("producer"),
        "consumerId": ref("consumer"),
        "kind": st.sampled_from(["audio", "video"]),
        "rtpParameters": st.builds(with_ssrc, templates, st.integers(0, 2**32 - 1)),
        "dtlsParameters": st.builds(
            lambda role: {**DTLS_PARAMS, "role": role},
            st.sampled_from(["client", "server", "auto"]),
        ),
        "rtpCapabilities": st.sampled_from([router_caps, small_caps]),
        "sctpCapabilities": st.just({"numStreams": {"OS": 1024, "MIS": 1024}}),
        "displayName": st.text(max_size=50),
        "device": st.just({"flag": "fuzz", "name": "hypothesis", "version": "6"}),
        "forceTcp": st.booleans(),
        "producing": st.booleans(),
        "consuming": st.booleans(),
        "paused": st.booleans(),
        "appData": st.dictionaries(st.text(max_size=10), json_values, max_size=4),
        "spatialLayer": st.integers(0, 15),
        "temporalLayer": st.integers(0, 15),
        "priority": st.integers(1, 255),
        "sessionToken": st.text(max_size=40),
    }
    mangled: dict[str, st.SearchStrategy[Any]] = {
        **valid,
        "rtpParameters": st.one_of(
            valid["rtpParameters"],
            *(mutated(t) for t in (AUDIO_PARAMS, VIDEO_PARAMS, SIMULCAST_PARAMS, H264_PARAMS)),
        ),
        "dtlsParameters": mutated(DTLS_PARAMS),
        "rtpCapabilities": st.one_of(mutated(router_caps), mutated(small_caps)),
        "displayName": st.text(max_size=300),
        "appData": json_values | deep,
        "spatialLayer": st.integers(-2, 20),
        "temporalLayer": st.integers(-2, 20),
        "priority": st.integers(-1, 300),
    }
    fields = {name: field(strategy) for name, strategy in mangled.items()}
    # Per method: its own fields always present (each maybe mangled), plus random others.
    method_fields = {
        "createWebRtcTransport": ["producing", "consuming"],
        "join": ["displayName", "device", "rtpCapabilities"],
        "connectWebRtcTransport": ["transportId", "dtlsParameters"],
        "restartIce": ["transportId"],
        "produce": ["transportId", "kind", "rtpParameters", "appData"],
        "closeProducer": ["producerId"],
        "pauseProducer": ["producerId"],
        "resumeProducer": ["producerId"],
        "getProducerStats": ["producerId"],
        "pauseConsumer": ["consumerId"],
        "resumeConsumer": ["consumerId"],
        "requestConsumerKeyFrame": ["consumerId"],
        "getConsumerStats": ["consumerId"],
        "setConsumerPreferredLayers": ["consumerId", "spatialLayer", "temporalLayer"],
        "setConsumerPriority": ["consumerId", "priority"],
        "changeDisplayName": ["displayName"],
        "getTransportStats": ["transportId"],
        "resume": ["sessionToken"],
    }
    random_data = st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.fixed_dictionaries({}, optional=fields),
        json_values,
        st.none(),
        deep,
    )
    methods = st.one_of(
        st.sampled_from(KNOWN_METHODS),
        st.sampled_from(KNOWN_METHODS),
        st.sampled_from(ODD_METHODS),
        st.text(max_size=30),
        json_values,
    )
    ids = st.one_of(
        st.integers(0, 2**31),
        st.integers(-(2**70), 2**70),
        st.text(max_size=20).filter(lambda s: not s.startswith("probe-")),
        st.sampled_from([0, 1, "1", "", "dup"]),  # duplicates within an example
        st.sampled_from([None, True, False, 1.5, 1.0, [], {}]),  # ids that cannot be echoed
    )
    request_flag = st.sampled_from([True, True, True, True, True, True, "true", 1, False, None])

    def typed_envelope(method: str) -> st.SearchStrategy[Any]:
        names = method_fields[method]
        well_formed = st.fixed_dictionaries({name: valid[name] for name in names})
        if method == "produce":  # the kind that goes with the parameters
            well_formed = well_formed.map(
                lambda d: {**d, "kind": d["rtpParameters"]["codecs"][0]["mimeType"].split("/")[0]}
            )
        one_wrong = st.tuples(
            well_formed, st.sampled_from(names), st.one_of(st.just(_DELETE), anything)
        ).map(lambda t: _mutate(t[0], (t[1],), t[2]))
        any_wrong = st.fixed_dictionaries(
            {name: fields[name] for name in names},
            optional={k: v for k, v in fields.items() if k not in names},
        )
        return st.fixed_dictionaries(
            {
                "request": st.sampled_from([True, True, True, True, True, False]),
                "id": st.integers(0, 2**53),
                "method": st.just(method),
                "data": st.one_of(well_formed, well_formed, one_wrong, one_wrong, any_wrong),
            },
        )

    # The methods that create state more often than the others.
    weighted = (
        sorted(method_fields)
        + ["produce"] * 5
        + [
            "createWebRtcTransport",
            "connectWebRtcTransport",
            "join",
            "closeProducer",
            "pauseProducer",
            "resumeProducer",
            "pauseConsumer",
            "resumeConsumer",
        ]
    )
    typed_by_method = {method: typed_envelope(method) for method in method_fields}  # built once
    typed = st.sampled_from(weighted).flatmap(typed_by_method.__getitem__)
    envelope = st.fixed_dictionaries(
        {"request": request_flag, "id": ids, "method": methods},
        optional={
            "data": random_data,
            "notification": st.booleans(),
            "response": st.booleans(),
            "extra": json_values,
        },
    )
    notification = st.fixed_dictionaries(
        {"notification": st.just(True), "method": methods}, optional={"data": random_data}
    )
    stray = st.fixed_dictionaries(
        {"response": st.just(True), "id": ids, "ok": st.booleans()},
        optional={"data": json_values, "errorCode": json_values, "errorReason": json_values},
    )
    frame = st.one_of(
        typed.map(lambda m: ("json", m)),
        typed.map(lambda m: ("json", m)),
        typed.map(lambda m: ("json", m)),
        typed.map(lambda m: ("json", m)),
        envelope.map(lambda m: ("json", m)),
        envelope.map(lambda m: ("json", m)),
        notification.map(lambda m: ("json", m)),
        stray.map(lambda m: ("json", m)),
        json_values.map(lambda m: ("json", m)),  # random JSON as a whole frame
        st.text(max_size=200).map(lambda t: ("text", t)),  # not JSON (usually)
        st.binary(max_size=200).map(lambda b: ("binary", b)),
    )
    return st.tuples(
        st.sampled_from(["main", "main", "main", "fresh"]),
        st.booleans(),  # ensure_ascii
        st.lists(frame, min_size=1, max_size=4),
    )


class FuzzBudgetExhausted(Exception):
    """Raised in the @given function once the time budget is spent: ends the run."""


class Fuzzer:
    """Sends one example's frames, then a probe request, and checks every reply that came
    back before the probe's (the server handles a connection's requests in order)."""

    def __init__(
        self,
        connect: Callable[..., Awaitable[RawPeer]],
        main: RawPeer,
        victim: RawPeer,
        registry: Registry,
    ) -> None:
        self.connect = connect
        self.main = main
        self.victim = victim
        self.registry = registry
        self.probes = itertools.count(1)
        self.fresh = itertools.count(1)
        self.cases = 0
        self.frames = 0
        self.requests = 0
        self.oversized = 0
        self.replies: Counter[str] = Counter()
        self.ok_methods: Counter[str] = Counter()
        self.errors: Counter[tuple[str, int, str]] = Counter()

    async def run_example(
        self, connection: str, ensure_ascii: bool, frames: list[tuple[str, Any]]
    ) -> None:
        for consumer_id in self.victim.consumer_ids:
            self.registry.add("consumer", consumer_id, own=False)
        for consumer_id in self.main.consumer_ids:
            self.registry.add("consumer", consumer_id, own=True)
        if connection == "fresh":
            peer = await self.connect("fuzz", f"fuzz-{next(self.fresh)}")
        else:
            peer = self.main
        try:
            await self._run(peer, ensure_ascii, frames)
        finally:
            if peer is not self.main:
                await peer.close()
        self.cases += 1

    async def _run(self, peer: RawPeer, ensure_ascii: bool, frames: list[tuple[str, Any]]) -> None:
        expected: Counter[tuple[str, Any]] = Counter()
        sent: dict[tuple[str, Any], deque[tuple[Any, int]]] = {}
        for kind, payload in frames:
            assert not peer.ws.closed, (
                f"the server closed the connection (code {peer.ws.close_code}) before {frames!r}"
            )
            if kind == "binary":
                await peer.send_raw(payload)
                continue
            if kind == "text":
                text = payload
                try:
                    message = json.loads(text)
                except (ValueError, RecursionError):
                    message = None
            else:
                text = encode(payload, self.registry, ensure_ascii)
                message = payload
                if len(text.encode("utf-8", "surrogatepass")) > WEBSOCKET_CAP:
                    self.oversized += 1
                    continue
            await peer.send_raw(text)
            self.frames += 1
            answerable, request_id = answerable_id(message)
            if answerable:
                key = id_key(request_id)
                expected[key] += 1
                sent.setdefault(key, deque()).append((message.get("method"), len(text)))
                self.requests += 1
        probe = f"probe-{next(self.probes)}"
        await peer.send_request("getRouterRtpCapabilities", request_id=probe)
        responses = await peer.responses_until(probe, timeout=10.0)
        probe_reply = responses.pop()
        assert probe_reply["ok"] is True, f"the probe after {frames!r} failed: {probe_reply}"

        got: Counter[tuple[str, Any]] = Counter()
        for response in responses:
            key = id_key(response.get("id"))
            assert key in sent and sent[key], (
                f"a reply nobody asked for (or one too many): {response} after {frames!r}"
            )
            method, size = sent[key].popleft()
            what = f"{method!r} ({size} chars)"
            check_reply(response, what)
            if size > MAX_REQUEST_BYTES:
                assert response["errorCode"] == 413, f"{what}: over the size limit: {response}"
            got[key] += 1
            self.replies["ok" if response["ok"] else str(response["errorCode"])] += 1
            if response["ok"]:
                self.ok_methods[str(method)] += 1
            else:
                self.errors[
                    (str(method)[:30], response["errorCode"], response["errorReason"][:70])
                ] += 1
            if response["ok"] and method == "createWebRtcTransport":
                self.registry.add("transport", response["data"].get("id"), own=peer is self.main)
            if response["ok"] and method == "produce":
                self.registry.add("producer", response["data"].get("id"), own=peer is self.main)
        missing = expected - got
        assert not missing, f"no reply (silence) to ids {sorted(missing)} of frames {frames!r}"
        assert not peer.ws.closed, f"the server closed the connection after {frames!r}"


# ---- 1. fuzzing, out-of-order calls and floods, with media flowing next door ------


async def run_scripted_cases(connect: Callable[..., Awaitable[RawPeer]]) -> int:
    """Out-of-order calls and duplicate ids, each on a fresh connection: exact codes."""
    cases = 0

    async def expect(peer: RawPeer, method: str, data: Any, code: int | None) -> dict[str, Any]:
        nonlocal cases
        reply = await peer.request(method, data)
        check_reply(reply, method)
        if code is None:
            assert reply["ok"] is True, f"{method} {data!r}: {reply}"
        else:
            assert reply["ok"] is False and reply["errorCode"] == code, (
                f"{method} {data!r}: {reply}"
            )
        cases += 1
        return reply

    unknown = str(uuid.uuid4())
    peer = await connect("fuzz", "order-1")
    # Before anything: the objects named do not exist.
    await expect(
        peer, "connectWebRtcTransport", {"transportId": unknown, "dtlsParameters": DTLS_PARAMS}, 404
    )
    await expect(peer, "restartIce", {"transportId": unknown}, 404)
    await expect(peer, "getTransportStats", {"transportId": unknown}, 404)
    await expect(peer, "closeProducer", {"producerId": unknown}, 404)
    await expect(peer, "resumeConsumer", {"consumerId": unknown}, 404)
    await expect(peer, "changeDisplayName", {"displayName": "early"}, 409)
    # resume in the middle of a session
    await expect(peer, "resume", {"sessionToken": "whatever"}, 409)
    created = await expect(
        peer, "createWebRtcTransport", {"producing": True, "consuming": False}, None
    )
    transport = created["data"]["id"]
    produce = {"transportId": transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS}
    await expect(peer, "produce", produce, 409)  # before join
    await expect(
        peer,
        "connectWebRtcTransport",
        {"transportId": transport, "dtlsParameters": DTLS_PARAMS},
        None,
    )
    await expect(
        peer,
        "connectWebRtcTransport",
        {"transportId": transport, "dtlsParameters": DTLS_PARAMS},
        409,
    )
    await expect(peer, "join", {"displayName": "order", "device": {}}, None)
    await expect(peer, "join", {"displayName": "order", "device": {}}, 409)  # join twice
    await expect(peer, "resume", {"sessionToken": "whatever"}, 409)
    producer = (await expect(peer, "produce", produce, None))["data"]["id"]
    await expect(peer, "produce", produce, 409)  # the same SSRC again
    await expect(peer, "pauseProducer", {"producerId": producer}, None)
    await expect(peer, "pauseProducer", {"producerId": producer}, None)
    await expect(peer, "resumeProducer", {"producerId": producer}, None)
    await expect(peer, "closeProducer", {"producerId": producer}, None)
    await expect(peer, "closeProducer", {"producerId": producer}, 404)  # closed already
    await expect(peer, "pauseProducer", {"producerId": producer}, 404)
    await expect(peer, "getProducerStats", {"producerId": producer}, 404)
    await expect(peer, "restartIce", {"transportId": transport}, None)
    await expect(peer, "restartIce", {"transportId": transport}, None)

    # Duplicate request ids: one reply per request, in order.
    peer = await connect("fuzz", "order-2")
    for method in (
        "getRouterRtpCapabilities",
        "noSuchMethod",
        "join",
        "join",
        "getRouterRtpCapabilities",
    ):
        await peer.send_request(method, {"displayName": "dup"}, request_id=7)
    await peer.send_request("getRouterRtpCapabilities", request_id="end")
    replies = await peer.responses_until("end")
    assert [(r["id"], r["ok"], r.get("errorCode")) for r in replies] == [
        (7, True, None),
        (7, False, 404),
        (7, True, None),
        (7, False, 409),
        (7, True, None),
        ("end", True, None),
    ], replies
    for reply in replies:
        check_reply(reply)
    cases += 5
    return cases


async def flood(peer: RawPeer, count: int) -> float:
    """``count`` requests as fast as possible, then every reply (bounded); returns seconds."""
    started = time.monotonic()
    requests = [
        ("getRouterRtpCapabilities", None),
        ("noSuchMethod", {}),
        ("join", {"displayName": 5}),
        ("getTransportStats", {"transportId": "nope"}),
        ("createWebRtcTransport", {"producing": "x"}),
    ]
    ids = []
    for n in range(count):
        method, data = requests[n % len(requests)]
        ids.append(await peer.send_request(method, data, request_id=f"flood-{n}"))
        if n % 100 == 0:
            await peer.notify("pauseProducer", {"producerId": f"nope-{n}"})
    await peer.send_request("getRouterRtpCapabilities", request_id="flood-end")
    replies = await peer.responses_until("flood-end", timeout=30.0)
    elapsed = time.monotonic() - started
    assert [r["id"] for r in replies[:-1]] == ids, "a flooded request got no reply, or out of order"
    for reply in replies:
        check_reply(reply, "flood")
    return elapsed


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # large reprs
async def test_fuzzed_signaling_gets_answers_and_media_next_door_keeps_flowing(
    sfu_server: ServerProcess,
) -> None:
    """Hypothesis fuzzing over a real WebSocket.

    The server is a fixture and the frames go over the event loop's sockets,
    so the ``@given`` function runs in a worker thread (``asyncio.to_thread``)
    and hands each example to the event loop with
    ``asyncio.run_coroutine_threadsafe``; the loop meanwhile keeps running the
    two real aiortc peers of the "media" room. Generation is seeded
    (``FUZZ_SEED``), bounded (``FUZZ_MAX_EXAMPLES`` examples, and examples
    past ``FUZZ_TIME_BUDGET`` seconds the next example raises
    ``FuzzBudgetExhausted``, which ends hypothesis' run), and not shrunk (the server
    keeps state between examples): a failure shows the example as generated.
    Then scripted out-of-order calls, duplicate ids and a flood of 500
    requests.
    """
    loop = asyncio.get_running_loop()
    alice = await join(sfu_server, "media", "alice", 440, audio=False)
    bob = await join(sfu_server, "media", "bob", 660, audio=False)
    try:
        assert await bob.client.wait_for_consumers(1, timeout=15)
        assert await alice.client.wait_for_consumers(1, timeout=15)
        sinks = {
            "alice->bob": bob.sink_for("alice", "video"),
            "bob->alice": alice.sink_for("bob", "video"),
        }
        for sink in sinks.values():
            assert await sink.wait_frames(5, timeout=20), "media never started"

        async with raw_peers(sfu_server) as connect:
            # A victim in the fuzz room: joined, consuming, with a transport and a producer.
            victim = await connect("fuzz", "victim", accept_consumers=True)
            caps = (await victim.request("getRouterRtpCapabilities"))["data"]
            registry = Registry()
            for producing in (True, False):
                created = await victim.request(
                    "createWebRtcTransport", {"producing": producing, "consuming": not producing}
                )
                registry.add("transport", created["data"]["id"], own=False)
            victim_transport = registry.others["transport"][2]
            assert (
                await victim.request(
                    "join", {"displayName": "victim", "device": {}, "rtpCapabilities": caps}
                )
            )["ok"]
            produced = await victim.request(
                "produce",
                {"transportId": victim_transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS},
            )
            assert produced["ok"], produced
            registry.add("producer", produced["data"]["id"], own=False)

            # The main fuzzing connection starts joined, with a transport each way (so
            # that well-formed calls get far); fresh connections start from nothing.
            main = await connect("fuzz", "fuzzer", accept_consumers=True)
            for producing in (True, False):
                created = await main.request(
                    "createWebRtcTransport", {"producing": producing, "consuming": not producing}
                )
                registry.add("transport", created["data"]["id"], own=True)
            assert (
                await main.request(
                    "join", {"displayName": "fuzzer", "device": {}, "rtpCapabilities": caps}
                )
            )["ok"]
            fuzzer = Fuzzer(connect, main, victim, registry)
            deadline = time.monotonic() + FUZZ_TIME_BUDGET
            budget_hit = False

            @seed(FUZZ_SEED)
            @settings(
                max_examples=FUZZ_MAX_EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                report_multiple_bugs=False,
                suppress_health_check=list(HealthCheck),
            )
            @given(fuzz_strategies(caps))
            def fuzz(example: tuple[str, bool, list[tuple[str, Any]]]) -> None:
                if time.monotonic() > deadline:
                    raise FuzzBudgetExhausted
                future = asyncio.run_coroutine_threadsafe(fuzzer.run_example(*example), loop)
                try:
                    future.result(timeout=30)
                except TimeoutError:
                    future.cancel()
                    raise AssertionError(f"example hung for 30 s: {example!r}") from None

            fuzz_start = time.monotonic()
            try:
                await asyncio.to_thread(fuzz)
            except FuzzBudgetExhausted:
                budget_hit = True
            fuzz_seconds = time.monotonic() - fuzz_start
            scripted = await run_scripted_cases(connect)
            flood_peer = await connect("fuzz", "flooder")
            flood_seconds = await flood(flood_peer, 500)
            fuzz_end = time.monotonic()

            # The fuzzed connections are still usable.
            for peer in (main, victim, flood_peer):
                reply = await wait_for_bucket(peer)
                assert reply["ok"] is True, reply
            assert (
                await victim.request(
                    "getProducerStats", {"producerId": registry.others["producer"][2]}
                )
            )["ok"]
            # No peer left behind by the hundreds of fresh connections: alice, bob, victim,
            # fuzzer, order-1, order-2, flooder.
            assert await wait_until(lambda: sfu_server.health()["peers"] == 7, timeout=5), (
                sfu_server.health()
            )

        gaps = {name: frame_gaps(sink, fuzz_start, fuzz_end) for name, sink in sinks.items()}
        counts = {name: sink.frames for name, sink in sinks.items()}
        for name, sink in sinks.items():
            assert await sink.wait_frames(counts[name] + 15, timeout=10), (
                f"{name}: media stopped after the fuzzing"
            )
        print(
            f"\nfuzz: {fuzzer.cases} hypothesis cases in {fuzz_seconds:.1f} s"
            f"{' (stopped by the time budget)' if budget_hit else ''}: {fuzzer.frames} frames,"
            f" {fuzzer.requests} of them requests to answer ({fuzzer.oversized} frames over 1 MiB"
            f" not sent); replies {dict(fuzzer.replies)}; ok by method {dict(fuzzer.ok_methods)}"
            f"\nplus {scripted} scripted out-of-order/duplicate-id cases and a flood of 500"
            f" requests (answered in {flood_seconds:.2f} s); longest video gap next door"
            f" {max(gaps.values()):.2f} s"
        )
        if os.environ.get("FUZZ_DEBUG"):  # the most common error replies
            for error, n in fuzzer.errors.most_common(40):
                print(n, error)
        for name, gap in gaps.items():
            assert gap < MAX_FRAME_GAP, f"{name}: no video for {gap:.1f} s during the fuzzing"
        health = sfu_server.health()
        assert health["status"] == "ok"
        assert "Traceback" not in sfu_server.log()
    finally:
        await alice.client.close()
        await bob.client.close()


# ---- server bugs found by the fuzzer: each its own test ----------------------------


async def test_requests_the_json_parser_chokes_on_are_answered(sfu_server: ServerProcess) -> None:
    """Valid JSON requests with an id that Python's json.loads cannot take (nested
    deeper than its recursion limit, an integer over its 4300-digit limit) still
    get a reply (400 is fine), not silence. The probe's reply, which comes after,
    bounds the wait."""
    frames = {
        "nested 1000 deep (arrays)": Raw.deep(1000, "list").text,
        "nested 1000 deep (objects)": Raw.deep(1000, "object").text,
        "nested 100000 deep": Raw.deep(100_000, "list").text,
        "a 5000-digit integer": "9" * 5000,
    }
    async with raw_peers(sfu_server) as connect:
        peer = await connect("parser", "p")
        for n, value in enumerate(frames.values()):
            await peer.send_raw(
                '{"request":true,"id":'
                + str(n)
                + ',"method":"join","data":{"displayName":"d","device":{"x":'
                + value
                + "}}}"
            )
        await peer.send_request("getRouterRtpCapabilities", request_id="probe")
        replies = {r["id"]: r for r in await peer.responses_until("probe")}
        assert replies.pop("probe")["ok"], "the connection is still usable"
        for reply in replies.values():
            check_reply(reply)
        silent = [what for n, what in enumerate(frames) if n not in replies]
        assert not silent, f"no reply (silence) to requests with {silent}"
    assert "Traceback" not in sfu_server.log()


async def test_a_deeply_nested_device_does_not_break_the_room(sfu_server: ServerProcess) -> None:
    """``join`` echoes ``device`` to the others (newPeer, and the ``peers`` of later
    joins). A device nested just shallower than the parser's limit is parsed, but
    must not make join fail with 500 nor kill the connections of peers who join
    after (json.dumps runs out of recursion on the way out)."""
    outcomes: dict[int, tuple[Any, str]] = {}
    async with raw_peers(sfu_server) as connect:
        for depth in range(940, 990, 3):
            room = f"device-{depth}"
            first = await connect(room, "first")
            assert (await first.request("join", {"displayName": "first", "device": {}}))["ok"]
            deep = await connect(room, "deep")
            nested = Raw.deep(depth, "list").text
            await deep.send_raw(
                '{"request":true,"id":"j","method":"join","data":{"displayName":"d","device":{"d":'
                + nested
                + "}}}"
            )
            await deep.send_request("getRouterRtpCapabilities", request_id="probe")
            replies = {r["id"]: r for r in await deep.responses_until("probe")}
            reply = replies.get("j")
            if reply is None:
                break  # too deep to parse: test_requests_the_json_parser_chokes_on_are_answered
            later = await connect(room, "later")
            try:
                later_reply = await later.request("join", {"displayName": "later", "device": {}})
                later_outcome = "ok" if later_reply["ok"] else f"error {later_reply['errorCode']}"
            except AssertionError as error:  # the connection died
                later_outcome = f"connection dropped ({error})"
            first_alive = (await first.request("getRouterRtpCapabilities"))["ok"]
            outcomes[depth] = (
                reply.get("errorCode", "ok"),
                f"{later_outcome}; first peer alive: {first_alive}",
            )
            for peer in (first, deep, later):
                await peer.close()
    assert outcomes, "no depth was parsed at all"
    # A deep device is refused with a clear 400 (the server caps nesting at 32
    # levels), the room lives on and later joins work.
    bad = {d: o for d, o in outcomes.items() if o != (400, "ok; first peer alive: True")}
    assert not bad, "depth -> (the deep join's reply, a later join): " + "; ".join(
        f"{d}: {o}" for d, o in bad.items()
    )
    assert "Traceback" not in sfu_server.log()


async def test_the_request_size_limit_counts_bytes(sfu_server: ServerProcess) -> None:
    """http.max_request_bytes is in bytes: 40,000 'é' are 80,000 bytes of UTF-8 (and
    62,000 emoji 248,000 bytes), over the 65,536-byte limit -> 413."""
    async with raw_peers(sfu_server) as connect:
        peer = await connect("bytes", "p")
        for n, pad in enumerate(["é" * 40_000, "😀" * 62_000]):
            text = json.dumps(
                {
                    "request": True,
                    "id": n,
                    "method": "getRouterRtpCapabilities",
                    "data": {"pad": pad},
                },
                ensure_ascii=False,
            )
            assert len(text) < MAX_REQUEST_BYTES < len(text.encode())
            await peer.send_raw(text)
            reply = await peer.response(n)
            check_reply(reply)
            assert reply["ok"] is False and reply["errorCode"] == 413, (
                f"a {len(text.encode())}-byte request ({len(text)} characters): {reply}"
            )


async def test_a_frame_over_the_websocket_cap_does_not_hurt_the_room(
    sfu_server: ServerProcess,
) -> None:
    """Over 1 MB (8 x max_request_bytes, the WebSocket's own cap) the server closes the
    socket (1009) instead of answering 413: the other peers and the server live on."""
    async with raw_peers(sfu_server) as connect:
        other = await connect("huge", "other")
        assert (await other.request("join", {"displayName": "o", "device": {}}))["ok"]
        peer = await connect("huge", "p")
        await peer.send_raw(
            '{"request":true,"id":1,"method":"getRouterRtpCapabilities","data":{"x":"'
            + "x" * 2_000_000
            + '"}}'
        )
        try:
            reply = await peer.response(1, timeout=5.0)
        except AssertionError:  # closed
            msg = await peer.wait_closed()
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009, msg
        else:
            assert reply.get("errorCode") == 413, reply
        assert (await other.request("getRouterRtpCapabilities"))["ok"]
    assert sfu_server.health()["status"] == "ok"
    assert "Traceback" not in sfu_server.log()


async def test_resume_without_a_session_gets_404(sfu_server: ServerProcess) -> None:
    """docs/protocol.md: resume with no session to resume (expired or never joined) gets
    404, after which the client joins afresh."""
    async with raw_peers(sfu_server) as connect:
        keeper = await connect("resume", "keeper")  # keeps the room open
        assert (await keeper.request("join", {"displayName": "k", "device": {}}))["ok"]

        never = await connect("resume", "never-joined")
        reply = await never.request("resume", {"sessionToken": "made-up"})
        check_reply(reply)
        never_code = reply.get("errorCode")

        ghost = await connect("resume", "ghost")
        joined = await ghost.request("join", {"displayName": "g", "device": {}})
        token = joined["data"]["sessionToken"]
        await ghost.close()  # a clean goodbye: the session ends at once
        await asyncio.sleep(0.3)
        back = await connect("resume", "ghost")
        reply = await back.request("resume", {"sessionToken": token})
        check_reply(reply)
        assert (never_code, reply["errorCode"]) == (404, 404), (
            f"resume with no session: never joined -> {never_code}, session ended -> {reply}"
        )
        # The client then starts over.
        assert (await back.request("join", {"displayName": "g", "device": {}}))["ok"]


async def test_a_stray_response_with_an_unhashable_id_is_ignored(sfu_server: ServerProcess) -> None:
    """A response nobody asked for is ignored, whatever its id, and the connection stays open."""
    async with raw_peers(sfu_server) as connect:
        other = await connect("stray", "other")
        assert (await other.request("join", {"displayName": "o", "device": {}}))["ok"]
        peer = await connect("stray", "p")
        assert (await peer.request("join", {"displayName": "p", "device": {}}))["ok"]
        for stray_id in ([], {}, [1], {"a": 1}):
            await peer.send_raw(
                json.dumps({"response": True, "id": stray_id, "ok": True, "data": {}})
            )
            reply = await peer.request("getRouterRtpCapabilities")
            assert reply["ok"], f"after a stray response with id {stray_id!r}: {reply}"
        assert other.notifications == [] or all(
            n["method"] != "peerClosed" for n in other.notifications
        ), other.notifications
    assert "Traceback" not in sfu_server.log()


# ---- 2. limits ------------------------------------------------------------------


@small_limits
async def test_request_rate_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        peer = await connect("rate", "p")
        started = time.monotonic()
        for _ in range(30):
            await peer.send_request("getRouterRtpCapabilities")
        await peer.send_request("getRouterRtpCapabilities", request_id="last")
        replies = await peer.responses_until("last", timeout=5.0)
        elapsed = time.monotonic() - started
        assert len(replies) == 31
        for reply in replies:
            check_reply(reply, "rate")
        limited = [r for r in replies if not r["ok"]]
        # A burst of 10, then 5 a second while the 31 are being handled.
        allowed = 10 + 5 * elapsed + 1
        assert 31 - len(limited) <= allowed, f"{31 - len(limited)} of 31 passed in {elapsed:.2f} s"
        assert len(limited) >= 10, f"only {len(limited)} of 31 rate-limited in {elapsed:.2f} s"
        assert all(r["errorCode"] == 429 for r in limited), limited
        reason = limited[0]["errorReason"]
        assert "too many requests" in reason and "5" in reason, reason
        await asyncio.sleep(2.0)  # 10 tokens back
        for _ in range(8):
            reply = await peer.request("getRouterRtpCapabilities")
            assert reply["ok"], f"still limited after 2 s: {reply}"


@small_limits
async def test_producers_per_peer_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        peer = await connect("producers", "p")
        created = await peer.request(
            "createWebRtcTransport", {"producing": True, "consuming": False}
        )
        transport = created["data"]["id"]
        assert (await peer.request("join", {"displayName": "p", "device": {}}))["ok"]
        first = await peer.request(
            "produce", {"transportId": transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS}
        )
        assert first["ok"], first
        reason = await peer.expect_error(
            "produce",
            {"transportId": transport, "kind": "video", "rtpParameters": VIDEO_PARAMS},
            429,
        )
        assert "at most 1 producer" in reason, reason
        # Closing one frees the slot.
        assert (await peer.request("closeProducer", {"producerId": first["data"]["id"]}))["ok"]
        again = await peer.request(
            "produce", {"transportId": transport, "kind": "video", "rtpParameters": VIDEO_PARAMS}
        )
        assert again["ok"], again
    assert sfu_server.health()["producers"] == 0


@small_limits
async def test_transports_per_peer_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        peer = await connect("transports", "p")
        for _ in range(2):
            assert (await peer.request("createWebRtcTransport", {"producing": True}))["ok"]
        reason = await peer.expect_error("createWebRtcTransport", {"consuming": True}, 429)
        assert "at most 2 transports" in reason, reason
        assert (await peer.request("getRouterRtpCapabilities"))["ok"]
        assert sfu_server.health()["transports"] == 2


@small_limits
async def test_peers_per_room_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        first = await connect("full", "first")
        second = await connect("full", "second")
        third = await connect("full", "third")
        for peer in (first, second):
            assert (await peer.request("join", {"displayName": "x", "device": {}}))["ok"]
        reason = await third.expect_error("join", {"displayName": "third", "device": {}}, 429)
        assert "room is full" in reason and "2" in reason, reason
        assert (await third.request("getRouterRtpCapabilities"))["ok"]
        # A seat frees up when a peer leaves.
        await first.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while True:
            reply = await third.request("join", {"displayName": "third", "device": {}})
            if reply["ok"] or loop.time() > deadline:
                break
            await asyncio.sleep(0.3)
        assert reply["ok"], f"the room stayed full after a peer left: {reply}"


@small_limits
async def test_rooms_per_server_limit(sfu_server: ServerProcess) -> None:
    async with raw_peers(sfu_server) as connect:
        one = await connect("room-1", "p")
        two = await connect("room-2", "p")
        # A reply means the room exists; health counts only rooms whose router is made.
        for peer in (one, two):
            assert (await peer.request("getRouterRtpCapabilities"))["ok"]
        third = await connect("room-3", "p")
        msg = await third.wait_closed(5.0)
        assert msg.type == aiohttp.WSMsgType.CLOSE, msg
        assert msg.data == 4029 and third.ws.close_code == 4029, msg
        assert "limit of 2 rooms" in msg.extra, msg.extra
        assert sfu_server.health()["rooms"] == 2
        # Once a room closes, a new one may open.
        await one.close()
        assert await wait_until(lambda: sfu_server.health()["rooms"] == 1, timeout=3)
        fourth = await connect("room-4", "p")
        assert (await fourth.request("getRouterRtpCapabilities"))["ok"]


@pytest.mark.parametrize(
    "server_overrides",
    [{**FUZZ_LIMITS, "media": {"rtc_min_port": 45000, "rtc_max_port": 45009}}],
    ids=["10-ports"],
)
async def test_out_of_udp_ports_is_503_and_recovers(sfu_server: ServerProcess) -> None:
    """Connections that never join are not bounded by max_peers_per_room: with 4
    transports each they can take every UDP port. Then createWebRtcTransport gets
    503, and the ports come back when they leave."""
    async with raw_peers(sfu_server) as connect:
        hogs = [await connect("ports", f"hog-{n}") for n in range(3)]
        replies = [
            await hog.request("createWebRtcTransport", {"producing": True})
            for hog in hogs
            for _ in range(4)
        ]
        for reply in replies:
            check_reply(reply, "createWebRtcTransport")
        created = sum(r["ok"] for r in replies)
        # 10 unless another process on this machine holds some of those ports.
        assert 1 <= created <= 10, replies
        assert {r["errorCode"] for r in replies if not r["ok"]} == {503}
        assert "no free UDP port" in next(r["errorReason"] for r in replies if not r["ok"])
        hog_transports = sum(r["ok"] for r in replies[:4])
        await hogs[0].close()
        assert await wait_until(
            lambda: sfu_server.health()["transports"] == created - hog_transports, timeout=3
        )
        reply = await hogs[2].request("createWebRtcTransport", {"producing": True})
        assert reply["ok"], reply
    assert "Traceback" not in sfu_server.log()


# ---- 3. identity -------------------------------------------------------------------


async def test_a_peer_cannot_touch_another_peers_objects(sfu_server: ServerProcess) -> None:
    alice = await join(sfu_server, "identity", "alice", 440)
    bob = await join(sfu_server, "identity", "bob", 660)
    try:
        assert await bob.client.wait_for_consumers(2, timeout=15)
        assert await alice.client.wait_for_consumers(2, timeout=15)
        sink = bob.sink_for("alice", "video")
        assert await sink.wait_frames(5, timeout=20)
        bob_events: list[str] = []
        for event in ("consumerclosed", "consumerpaused", "peerclosed"):
            bob.client.on(event, lambda *args, event=event: bob_events.append(event))

        alice_transports = [alice.client.send_transport.id, alice.client.recv_transport.id]
        bob_transports = [bob.client.send_transport.id, bob.client.recv_transport.id]
        alice_producers = list(alice.producers.values())
        bob_consumers = [bob.consumer_for("alice", kind).id for kind in ("audio", "video")]
        alice_consumers = [alice.consumer_for("bob", kind).id for kind in ("audio", "video")]

        async with raw_peers(sfu_server) as connect:
            eve = await connect("identity", "eve")
            caps = (await eve.request("getRouterRtpCapabilities"))["data"]
            own = (await eve.request("createWebRtcTransport", {"producing": True}))["data"]["id"]
            assert (
                await eve.request(
                    "join", {"displayName": "eve", "device": {}, "rtpCapabilities": caps}
                )
            )["ok"]
            attempts = 0

            async def forbidden(method: str, data: dict[str, Any]) -> None:
                nonlocal attempts
                reason = await eve.expect_error(method, data, 403)
                assert "another peer" in reason, reason
                attempts += 1

            for transport in alice_transports + bob_transports:
                await forbidden(
                    "connectWebRtcTransport",
                    {"transportId": transport, "dtlsParameters": DTLS_PARAMS},
                )
                await forbidden("restartIce", {"transportId": transport})
                await forbidden("getTransportStats", {"transportId": transport})
                await forbidden(
                    "produce",
                    {"transportId": transport, "kind": "audio", "rtpParameters": AUDIO_PARAMS},
                )
            for producer in alice_producers:
                for method in (
                    "pauseProducer",
                    "closeProducer",
                    "resumeProducer",
                    "getProducerStats",
                ):
                    await forbidden(method, {"producerId": producer})
            for consumer in bob_consumers + alice_consumers:
                for method in (
                    "pauseConsumer",
                    "resumeConsumer",
                    "requestConsumerKeyFrame",
                    "getConsumerStats",
                ):
                    await forbidden(method, {"consumerId": consumer})
                await forbidden("setConsumerPriority", {"consumerId": consumer, "priority": 1})
                await forbidden(
                    "setConsumerPreferredLayers", {"consumerId": consumer, "spatialLayer": 0}
                )
            # Guessed ids are just unknown.
            for method, key in (
                ("pauseProducer", "producerId"),
                ("restartIce", "transportId"),
                ("pauseConsumer", "consumerId"),
            ):
                await eve.expect_error(method, {key: str(uuid.uuid4())}, 404)
            # The same as notifications (no reply possible): silently refused.
            for producer in alice_producers:
                await eve.notify("pauseProducer", {"producerId": producer})
                await eve.notify("closeProducer", {"producerId": producer})
            for consumer in bob_consumers:
                await eve.notify("pauseConsumer", {"consumerId": consumer})
            assert (await eve.request("getTransportStats", {"transportId": own}))[
                "ok"
            ]  # all handled

            # An impostor with alice's peerId and a wrong token.
            impostor = await connect("identity", "alice")
            reason = await impostor.expect_error("resume", {"sessionToken": "guess"}, 403)
            assert "token" in reason.lower(), reason
            await impostor.close()

            # alice and bob did not notice a thing, and alice's media still flows.
            await asyncio.sleep(0.5)
            assert bob_events == [], bob_events
            assert "alice" in bob.client.peers
            for kind in ("audio", "video"):
                assert not bob.consumer_for("alice", kind).paused
            count = sink.frames
            assert await sink.wait_frames(count + 15, timeout=10), "alice's video stopped"
            assert await alice.sink_for("bob", "video").wait_frames(
                alice.sink_for("bob", "video").frames + 15, timeout=10
            )
            stats = await alice.client.request(
                "getProducerStats", {"producerId": alice.producers["video"]}
            )
            assert stats[0]["packetCount"] > 0
            health = sfu_server.health()
            assert health["producers"] == 4 and health["peers"] == 3, health
            print(
                f"\nidentity: {attempts} forbidden attempts, all 403; the victims' media kept flowing"
            )
        assert "Traceback" not in sfu_server.log()
    finally:
        await alice.client.close()
        await bob.client.close()
