"""The hostile-signaling fuzzer: a library for tests/e2e/test_hostile_signaling.py.

What it sends: values the server must survive (:class:`Raw` JSON text,
:class:`Huge` strings, :class:`Ref` ids resolved at send time through a
:class:`Registry`), known and odd method names, nasty strings, well-formed
RTP/DTLS parameters to mutate, and :func:`fuzz_strategies`, hypothesis'
strategy for one example. What checks the answers: :class:`Fuzzer` (one
example's frames, then a probe; every request answered exactly once, with
:func:`check_reply`), :func:`run_scripted_cases` (out-of-order calls and
duplicate ids, exact codes) and :func:`flood`. Plus the raw protoo clients
(:func:`raw_peers`) and helpers the tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from hypothesis import strategies as st

from sfu.client import TrackSink

from ..conftest import ServerProcess
from .helpers import RawPeer

MAX_REQUEST_BYTES = 65536  # http.max_request_bytes (the default)
# The server's WebSocket drops frames over this (close 1009), see
# test_hostile_signaling.py's test_a_frame_over_the_websocket_cap_does_not_hurt_the_room;
# the fuzzer stays under it.
WEBSOCKET_CAP = max(8 * MAX_REQUEST_BYTES, 1 << 20)
# Codes a failure may carry (docs/protocol.md); 500 never.
DOCUMENTED_ERRORS = {400, 403, 404, 406, 409, 413, 429, 503}
# Nesting the fuzzer generates: past the server's cap (32) and past what
# Python's JSON parser accepts (~975), both of which must still be answered.
FUZZ_MAX_DEPTH = 1500


# ---- raw protoo clients and reply checks ----------------------------------------


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
    assert isinstance(code, int), f"{what}: errorCode {code!r}"
    assert not isinstance(code, bool), f"{what}: errorCode {code!r}"
    assert code in DOCUMENTED_ERRORS, f"{what}: errorCode {code} (never 500): {message}"
    assert isinstance(reason, str), f"{what}: empty errorReason: {message}"
    assert reason.strip(), f"{what}: empty errorReason: {message}"


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

    kind: str  # transport, producer, consumer, dataProducer, dataConsumer
    own: bool
    index: int


class Registry:
    """Ids the fuzzer may name: its own, the victim's (another peer in the room),
    closed ones, made-up ones."""

    def __init__(self) -> None:
        kinds = ("transport", "producer", "consumer", "dataProducer", "dataConsumer")
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
    "getDataProducerStats",
    "getDataConsumerStats",
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
        st.sampled_from(["transport", "producer", "consumer", "dataProducer", "dataConsumer"]),
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
        "sctpStreamParameters": st.one_of(
            st.builds(lambda i: {"streamId": i, "ordered": True}, st.integers(0, 1023)),
            st.builds(
                lambda i, r: {"streamId": i, "ordered": False, "maxRetransmits": r},
                st.integers(0, 1023),
                st.integers(0, 10),
            ),
        ),
        "label": st.text(max_size=20),
        "protocol": st.text(max_size=20),
        "dataProducerId": ref("dataProducer"),
        "dataConsumerId": ref("dataConsumer"),
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
        "sctpStreamParameters": st.one_of(
            valid["sctpStreamParameters"],
            st.fixed_dictionaries(
                {},
                optional={
                    "streamId": st.integers(-5, 70000) | json_values,
                    "ordered": st.booleans() | json_values,
                    "maxRetransmits": st.integers(-5, 70000) | json_values,
                    "maxPacketLifeTime": st.integers(-5, 70000) | json_values,
                },
            ),
            json_values,
        ),
        "label": st.text(max_size=300) | json_values,
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
        "produceData": ["transportId", "sctpStreamParameters", "label", "protocol", "appData"],
        "getDataProducerStats": ["dataProducerId"],
        "getDataConsumerStats": ["dataConsumerId"],
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
            assert sent.get(key), (
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
            if response["ok"] and method == "produceData":
                self.registry.add("dataProducer", response["data"].get("id"), own=peer is self.main)
        missing = expected - got
        assert not missing, f"no reply (silence) to ids {sorted(missing)} of frames {frames!r}"
        assert not peer.ws.closed, f"the server closed the connection after {frames!r}"


# ---- scripted cases and floods ---------------------------------------------------


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
            assert reply["ok"] is False, f"{method} {data!r}: {reply}"
            assert reply["errorCode"] == code, f"{method} {data!r}: {reply}"
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
