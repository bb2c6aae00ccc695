"""The consumer's per-packet rewrite, in C and in Python, side by side.

``sfu.media._native.RtpRewriter`` must behave exactly as
``sfu.media.rtp_rewriter.RtpRewriter``: the same operations, fed to both,
must send the same packets and leave the same state. Hypothesis drives them
through wrap-arounds, late and reordered packets, syncs and pauses.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.media import fastpath
from sfu.media.rtp_rewriter import HISTORY_SIZE, MAX_LATE_PACKETS, SYNC_TRAIL, RtpRewriter, send_all

native = pytest.importorskip("sfu.media._native")

FIELDS = (
    "active",
    "needs_sync",
    "sync_seq",
    "seq_offset",
    "ts_offset",
    "max_out_seq",
    "last_out_ts",
    "last_send_time",
    "packets_sent",
    "bytes_sent",
    "packets_dropped_late",
)


def pair(ssrc: int = 0xDEADBEEF) -> tuple[list[list[tuple[Any, ...]]], list[Any]]:
    """A C and a Python rewriter, each recording what it sends."""
    sent: list[list[tuple[Any, ...]]] = [[], []]
    rewriters = [native.RtpRewriter(ssrc), RtpRewriter(ssrc)]
    for record, rewriter in zip(sent, rewriters, strict=True):

        def send(*fields: Any, record: list[Any] = record) -> None:
            record.append((*fields[:5], bytes(fields[5])))

        rewriter.use_sender(send)
        rewriter.active = True
    return sent, rewriters


def start(rewriter: Any, seq: int, offset_seq: int = 0, offset_ts: int = 0) -> None:
    rewriter.needs_sync = False
    rewriter.sync_seq = seq
    rewriter.seq_offset = offset_seq
    rewriter.ts_offset = offset_ts
    rewriter.max_out_seq = (seq - offset_seq - 1) & 0xFFFF


def state(rewriter: Any) -> dict[str, Any]:
    return {name: getattr(rewriter, name) for name in FIELDS}


operation = st.one_of(
    st.tuples(
        st.just("send"),
        # seq step: forward, reordered, late, far; and jumps that cross the
        # sequence space in a few steps
        st.integers(-150, 150) | st.integers(1000, 3000),
        st.integers(0, 2**32 - 1),
        st.integers(0, 40),
    ),
    st.tuples(st.just("sync"), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.just(0)),
    st.tuples(st.just("resync"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("active"), st.integers(0, 1), st.just(0), st.just(0)),
    st.tuples(st.just("sent"), st.integers(-2, 0x10001), st.just(0), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    first_seq=st.integers(0, 0xFFFF),
    operations=st.lists(operation, max_size=120),
)
def test_c_and_python_rewriters_agree(first_seq: int, operations: list[tuple[Any, ...]]) -> None:
    sent, rewriters = pair()
    for rewriter in rewriters:
        start(rewriter, first_seq)
    seq = first_seq
    now = 1000.0
    for kind, a, b, c in operations:
        now += 0.01
        if kind == "send":
            seq = (seq + a) & 0xFFFF
            tail = bytes([c]) * c
            results = [r.send(0x80 | (c & 1) << 4, 96, tail, seq, b, now) for r in rewriters]
            assert results[0] == results[1]
        elif kind == "sync":
            for rewriter in rewriters:
                start(rewriter, a, offset_seq=(a * 7) & 0xFFFF, offset_ts=b)
        elif kind == "resync":
            for rewriter in rewriters:
                rewriter.needs_sync = True
        elif kind == "active":
            for rewriter in rewriters:
                rewriter.active = bool(a)
        elif 0 <= a <= 0xFFFF:
            assert rewriters[0].sent(a) == rewriters[1].sent(a)
        assert state(rewriters[0]) == state(rewriters[1])
    assert sent[0] == sent[1]


def test_rewrites_seq_and_timestamp_and_keeps_the_tail() -> None:
    sent, rewriters = pair(ssrc=0x01020304)
    for rewriter in rewriters:
        start(rewriter, 100, offset_seq=90, offset_ts=1000)
        assert rewriter.send(0x90, 0xE5, b"tail", 100, 500, 1.0) is False
        assert rewriter.send(0x80, 0x65, b"more", 101, 1500, 2.0) is False
    expected = [
        (0x90, 0xE5, 10, (500 - 1000) & 0xFFFFFFFF, 0x01020304, b"tail"),
        (0x80, 0x65, 11, 500, 0x01020304, b"more"),
    ]
    assert sent[0] == sent[1] == expected
    for rewriter in rewriters:
        assert rewriter.sent(10) == (0x90, 0xE5, (500 - 1000) & 0xFFFFFFFF, b"tail")
        assert rewriter.sent(10 + HISTORY_SIZE) is None  # another packet's slot number
        assert (rewriter.packets_sent, rewriter.bytes_sent) == (2, 32)
        assert (rewriter.max_out_seq, rewriter.last_out_ts, rewriter.last_send_time) == (
            11,
            500,
            2.0,
        )


def test_late_and_pre_sync_packets_are_dropped() -> None:
    sent, rewriters = pair()
    for rewriter in rewriters:
        start(rewriter, 1000)
        for seq in range(1000, 1000 + MAX_LATE_PACKETS + 10):
            rewriter.send(0x80, 96, b"x", seq, seq, 0.0)
        # older than the sync point: dropped without counting as late
        rewriter.send(0x80, 96, b"x", 999, 0, 0.0)
        newest = 1000 + MAX_LATE_PACKETS + 9
        rewriter.send(0x80, 96, b"x", newest - MAX_LATE_PACKETS, 0, 0.0)  # just in time
        rewriter.send(0x80, 96, b"x", newest - MAX_LATE_PACKETS - 1, 0, 0.0)  # too late
        assert rewriter.packets_dropped_late == 1
        assert rewriter.packets_sent == MAX_LATE_PACKETS + 11
    assert sent[0] == sent[1]


def test_a_long_stream_is_never_taken_for_packets_before_the_sync() -> None:
    # "Older than the sync point" is modulo 2^16: with a fixed sync point,
    # every packet from half the sequence space on looked older, and a
    # consumer that never resynced dropped everything for 32768 packets
    # (minutes of video) at a time. Here: three wraps, every packet sent.
    sent, rewriters = pair()
    first = 65000
    count = 3 * 0x10000 + 1000
    for rewriter in rewriters:
        start(rewriter, first, offset_seq=first)
        for n in range(count):
            rewriter.send(0x80, 96, b"x", (first + n) & 0xFFFF, n * 960, float(n))
        assert rewriter.packets_sent == count
        assert rewriter.packets_dropped_late == 0
        assert rewriter.sync_seq == (first + count - 1 - SYNC_TRAIL) & 0xFFFF
        # still dropped: just before the (trailing) sync point, and late
        for seq in (rewriter.sync_seq - 1, first + count - MAX_LATE_PACKETS - 2):
            rewriter.send(0x80, 96, b"x", seq & 0xFFFF, 0, 0.0)
        assert rewriter.packets_sent == count
    assert sent[0] == sent[1]
    assert [fields[2] for fields in sent[0][:3]] == [0, 1, 2]
    assert len({fields[2] for fields in sent[0]}) == 0x10000


def test_inactive_or_unsynced_sends_nothing_and_asks_for_a_sync() -> None:
    sent, rewriters = pair()
    for rewriter in rewriters:
        assert rewriter.send(0x80, 96, b"x", 1, 1, 0.0) is True  # new: needs a sync
        rewriter.active = False
        assert rewriter.send(0x80, 96, b"x", 1, 1, 0.0) is False
    assert sent == [[], []]


def test_no_sender_sends_nothing_and_close_drops_the_history() -> None:
    for rewriter in pair()[1]:
        start(rewriter, 5)
        rewriter.use_sender(None)
        tail = bytes(bytearray(b"a shared tail"))
        references = sys.getrefcount(tail)
        assert rewriter.send(0x80, 96, tail, 5, 0, 0.0) is False
        assert rewriter.packets_sent == 1
        assert rewriter.sent(5) is not None
        rewriter.close()
        assert rewriter.sent(5) is None
        assert not rewriter.active
        assert sys.getrefcount(tail) == references


def test_bad_arguments_raise_type_errors() -> None:
    rewriter = native.RtpRewriter(1)
    start(rewriter, 1)
    rewriter.active = True
    with pytest.raises(TypeError):
        rewriter.send(0x80, 96, "not bytes", 1, 1, 0.0)
    with pytest.raises(TypeError):
        rewriter.send(0x80, 96, b"x", 1)
    with pytest.raises(TypeError):
        rewriter.use_sender(42)
    # a failing Python sender's error reaches the caller (the consumer then fails)
    rewriter.use_sender(lambda *fields: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        rewriter.send(0x80, 96, b"x", 2, 1, 0.0)


def test_new_rewriter_follows_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(fastpath.new_rewriter(1), native.RtpRewriter)
    monkeypatch.setattr(fastpath, "native", None)
    assert isinstance(fastpath.new_rewriter(1), RtpRewriter)


def test_a_sender_may_replace_itself_during_the_call() -> None:
    # A Python sender that drops itself (as a transport's close does) while the
    # C rewriter is calling it: no crash, the call completes, later packets go nowhere.
    for rewriter in pair()[1]:
        start(rewriter, 1)
        calls: list[int] = []

        def send(*fields: Any, rewriter: Any = rewriter, calls: list[int] = calls) -> None:
            rewriter.use_sender(None)
            calls.append(fields[2])

        rewriter.use_sender(send)
        del send
        assert rewriter.send(0x80, 96, b"x", 1, 0, 0.0) is False
        assert rewriter.send(0x80, 96, b"x", 2, 0, 0.0) is False
        assert calls == [1]
        assert rewriter.packets_sent == 2


def test_a_cycle_through_a_history_tail_is_collected() -> None:
    import gc
    import weakref

    class Tail(bytearray):
        rewriter: Any = None

    rewriter = native.RtpRewriter(1)
    start(rewriter, 5)
    rewriter.active = True
    tail = Tail(b"abc")
    tail.rewriter = rewriter
    rewriter.send(0x80, 96, tail, 5, 5, 1.0)
    alive = weakref.ref(tail)
    del tail, rewriter
    gc.collect()
    assert alive() is None


def test_an_uninitialised_sender_is_refused() -> None:
    blank = native.SrtpSender.__new__(native.SrtpSender)
    with pytest.raises(ValueError, match="not initialised"):
        blank.send_fields(0x80, 96, 1, 1, 1, b"x")
    with pytest.raises(ValueError, match="not initialised"):
        native.RtpRewriter(1).use_sender(blank.send_fields)


class Boom(Exception):
    pass


def layout(kind: str, sent: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Five rewriters of one kind: sending, paused, needing a sync, failing, sending."""
    make = native.RtpRewriter if kind == "c" else RtpRewriter
    rewriters = tuple(make(ssrc) for ssrc in range(1, 6))

    def record(*fields: Any) -> None:
        sent.append((*fields[:5], bytes(fields[5])))

    def fail(*fields: Any) -> None:
        raise Boom(f"ssrc {fields[4]}")

    for rewriter in rewriters:
        rewriter.use_sender(record)
        rewriter.active = True
        start(rewriter, 100)
    rewriters[1].active = False
    rewriters[2].needs_sync = True
    rewriters[3].use_sender(fail)
    return rewriters


@pytest.mark.parametrize("rewriter_kind", ["c", "python"])
@pytest.mark.parametrize("function", [native.send_all, send_all], ids=["c", "python"])
def test_send_all_is_send_of_each_rewriter_and_contains_failures(
    function: Any, rewriter_kind: str
) -> None:
    sent: list[tuple[Any, ...]] = []
    rewriters = layout(rewriter_kind, sent)
    pending = function(rewriters, 0x80, 96, b"tail", 100, 5000, 1.0)
    # the others were sent to, in order, after the failure too
    assert sent == [(0x80, 96, 100, 5000, ssrc, b"tail") for ssrc in (1, 5)]
    assert pending is not None
    assert [index for index, _ in pending] == [2, 3]
    assert pending[0][1] is None  # must sync
    error = pending[1][1]
    assert isinstance(error, Boom)
    assert str(error) == "ssrc 4"
    assert error.__traceback__ is not None
    # nothing to follow up: None, not an empty list
    for rewriter in rewriters:
        rewriter.needs_sync = False
        rewriter.use_sender(None)
    assert function(rewriters, 0x80, 96, b"tail", 101, 5960, 1.02) is None
    assert [r.packets_sent for r in rewriters] == [2, 0, 1, 2, 2]


def test_send_all_in_c_and_python_agree_on_random_layouts() -> None:
    sent: list[list[tuple[Any, ...]]] = [[], []]
    layouts = [layout("c", sent[0]), layout("python", sent[1])]
    functions = [native.send_all, send_all]
    for n in range(300):
        seq = (100 + n * 37) & 0xFFFF  # forward, then late, and wrapping
        results = [
            function(rewriters, 0x90, 97, bytes([n & 0xFF]) * 3, seq, n * 3000, float(n))
            for function, rewriters in zip(functions, layouts, strict=True)
        ]
        c, python = ([(i, type(e)) for i, e in result or []] for result in results)
        assert c == python
        for c_rewriter, python_rewriter in zip(*layouts, strict=True):
            assert state(c_rewriter) == state(python_rewriter)
    assert sent[0] == sent[1]
    assert sent[0]


def test_send_all_lets_interrupts_through_and_refuses_bad_arguments() -> None:
    rewriter = native.RtpRewriter(1)
    rewriter.active = True
    start(rewriter, 1)

    def interrupt(*fields: Any) -> None:
        raise KeyboardInterrupt

    rewriter.use_sender(interrupt)
    with pytest.raises(KeyboardInterrupt):
        native.send_all((rewriter,), 0x80, 96, b"x", 1, 1, 0.0)
    rewriter.use_sender(None)
    with pytest.raises(TypeError):
        native.send_all([rewriter], 0x80, 96, b"x", 1, 1, 0.0)  # a tuple, not a list
    with pytest.raises(TypeError):
        native.send_all((rewriter,), 0x80, 96, "not bytes", 2, 1, 0.0)
    with pytest.raises(TypeError):
        native.send_all((rewriter,), 0x80, 96, b"x", None, 1, 0.0)
    with pytest.raises(TypeError):
        native.send_all((rewriter,), 0x80, 96, b"x", 2)
    assert rewriter.packets_sent == 1  # only the interrupted one counted before the send
    # anything else in the tuple is called through its own send
    other = RtpRewriter(2)
    other.active = True  # and new: it asks for a sync
    pending = native.send_all((object(), other), 0x80, 96, b"x", 2, 1, 0.0)
    assert pending is not None
    assert len(pending) == 2
    assert pending[0][0] == 0
    assert isinstance(pending[0][1], AttributeError)
    assert pending[1] == (1, None)
