"""TrackWriter: the recorder's jitter buffer, NACKs, keyframe waits and pauses, on real files."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from sfu.recorder.track_writer import MAX_WAIT_VIDEO, NACK_INTERVAL, TrackWriter
from sfu.recording.messages import TrackRequest

VP8_KEYFRAME = (
    b"\x10"  # VP8 payload descriptor: start of partition 0
    + b"\x00\x00\x00\x9d\x01\x2a"  # frame tag (key frame) and start code
    + (320).to_bytes(2, "little")
    + (240).to_bytes(2, "little")
    + bytes(40)
)
VP8_DELTA = b"\x10" + b"\x01\x00\x00" + bytes(40)


class Harness:
    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.now = 1000.0
        self.nacks: list[list[int]] = []
        self.plis = 0
        request = TrackRequest(
            trackId="t1",
            peerId="p1",
            kind=kind,
            mimeType="audio/opus" if kind == "audio" else "video/VP8",
            clockRate=48000 if kind == "audio" else 90000,
            channels=2 if kind == "audio" else 1,
            payloadType=100,
            ssrc=1234,
            rtxSsrc=None,
            rtxPayloadType=None,
        )
        self.writer = TrackWriter(
            request,
            tmp_path,
            clock=lambda: self.now,
            send_nack=lambda ssrc, seqs: self.nacks.append(seqs),
            send_pli=self.pli,
        )

    def pli(self, ssrc: int) -> None:
        self.plis += 1

    def packets(self) -> list[tuple[int, bool]]:
        """(milliseconds, keyframe) of every packet in the closed file."""
        self.writer.close()
        with av.open(str(self.writer.path)) as container:
            return [
                (round(p.pts * p.time_base * 1000), p.is_keyframe)
                for p in container.demux(container.streams[0])
                if p.pts is not None and p.time_base is not None
            ]


def test_a_gap_is_nacked_at_once_and_again_then_filled_by_a_retransmission(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, "audio")
    for seq in (65530, 65531, 65532, 65534, 65535):  # 65533 lost; the numbers wrap next
        h.writer.receive(seq, seq * 960 % 2**32, False, b"\xfc\xff\xfe", rtx=False)
    assert h.nacks == [[65533]]
    assert h.writer.stats.frames == 3  # nothing past the gap is written yet
    h.now += NACK_INTERVAL
    h.writer.tick()
    assert h.nacks == [[65533], [65533]]
    h.writer.receive(0, 65536 * 960 % 2**32, False, b"\xfc\xff\xfe", rtx=False)
    h.writer.receive(65533, 65533 * 960 % 2**32, False, b"\xfc\xff\xfe", rtx=True)
    assert h.writer.stats.frames == 7
    assert h.writer.stats.lost == 0
    assert [pts for pts, _ in h.packets()] == [i * 20 for i in range(7)]


def test_video_starts_at_a_keyframe_and_waits_for_one_after_a_lost_packet(tmp_path: Path) -> None:
    h = Harness(tmp_path, "video")
    assert h.plis == 1  # asked at once
    h.writer.receive(1, 0, True, VP8_DELTA, rtx=False)  # not a keyframe: skipped
    h.writer.receive(2, 3000, True, VP8_KEYFRAME, rtx=False)
    h.writer.receive(3, 6000, True, VP8_DELTA, rtx=False)
    # 4 is lost for good; 5 is a delta frame that cannot be decoded without it.
    h.writer.receive(5, 12000, True, VP8_DELTA, rtx=False)
    assert h.nacks == [[4]]
    h.now += MAX_WAIT_VIDEO
    h.writer.tick()
    assert h.writer.stats.lost == 1
    assert h.plis == 2  # a keyframe asked for
    h.writer.receive(6, 15000, True, VP8_KEYFRAME, rtx=False)
    assert h.packets() == [(0, True), (33, False), (133, True)]


def test_a_pause_leaves_a_gap_in_the_timestamps(tmp_path: Path) -> None:
    h = Harness(tmp_path, "audio")
    h.writer.receive(10, 0, False, b"\xfc\xff\xfe", rtx=False)
    h.writer.set_paused(True, 1.0)
    h.now += 2.0
    h.writer.set_paused(False, 3.0)
    # The consumer keeps its timestamps continuous across the pause.
    h.writer.receive(11, 960, False, b"\xfc\xff\xfe", rtx=False)
    assert h.writer.stats.pauses == [{"at": 1.0, "resumedAt": 3.0}]
    assert h.packets() == [(0, True), (2000, True)]


def test_the_median_sender_report_places_the_stream(tmp_path: Path) -> None:
    h = Harness(tmp_path, "audio")
    h.writer.receive(1, 48000, False, b"\xfc\xff\xfe", rtx=False)
    h.writer.sender_report_received(2000.0, 48000)  # timestamp 48000 (1 s) sent at 2000 s
    assert h.writer.start_time() == pytest.approx(2000.0)
    h.writer.sender_report_received(2001.6, 96000)  # a sender 600 ms late
    h.writer.sender_report_received(2002.0, 144000)
    h.writer.sender_report_received(2002.4, 192000)  # 600 ms early (a resync)
    assert h.writer.start_time() == pytest.approx(2000.0)
    assert h.writer.report_spread() == pytest.approx(1.2)
