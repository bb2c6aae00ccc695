"""ICE over TCP (RFC 6544 passive candidates, RFC 4571 framing) with a client written here.

The client connects to the transport's TCP candidate, does the ICE check, the
DTLS handshake and SRTP over the framed stream, and publishes Opus. A normal
pymediasoup peer on UDP must hear the tone.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import random
import struct
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aioice import stun

from sfu.aiortc_adapter import DtlsSession, certificate_fingerprints, generate_certificate
from sfu.media.tcp import FrameDecoder, frame

from ..conftest import ServerProcess
from .helpers import dominant_frequency, join

TONE = 600.0


@pytest.fixture
def server_overrides() -> dict[str, dict[str, Any]]:
    return {"media": {"enable_tcp": True}}


def test_rfc4571_framing_round_trip() -> None:
    decoder = FrameDecoder()
    stream = frame(b"abc") + frame(b"") + frame(bytes(1500))
    packets = []
    for i in range(0, len(stream), 7):  # arbitrary TCP segmentation
        packets += decoder.feed(stream[i : i + 7])
    assert packets == [b"abc", b"", bytes(1500)]


def opus_packets(seconds: float) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = fractions.Fraction(1, 48000)
    packets = []
    for n in range(int(seconds / 0.02)):
        t = (np.arange(960) + n * 960) / 48000
        tone = (0.4 * 32767 * np.sin(2 * np.pi * TONE * t)).astype(np.int16)
        frame_ = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame_.sample_rate, frame_.pts = 48000, n * 960
        packets += [bytes(p) for p in encoder.encode(frame_)]
    return packets


class RawProtoo:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.next_id = ws, 0

    async def request(self, method: str, data: dict[str, Any]) -> Any:
        self.next_id += 1
        await self.ws.send_str(
            json.dumps({"request": True, "id": self.next_id, "method": method, "data": data})
        )
        while True:
            message = json.loads((await self.ws.receive(timeout=10)).data)
            if message.get("response") and message["id"] == self.next_id:
                assert message["ok"], message
                return message["data"]


async def test_publishing_over_ice_tcp(sfu_server: ServerProcess) -> None:
    listener = await join(sfu_server, "tcp", "listener", 300, audio=False, video=False)
    session = aiohttp.ClientSession()
    writer = None
    try:
        ws = await session.ws_connect(
            f"{sfu_server.ws_url}/?roomId=tcp&peerId=tcppub", protocols=("protoo",)
        )
        protoo = RawProtoo(ws)
        caps = await protoo.request("getRouterRtpCapabilities", {})
        info = await protoo.request("createWebRtcTransport", {"forceTcp": True, "producing": True})
        assert [c["protocol"] for c in info["iceCandidates"]] == ["tcp"], info["iceCandidates"]
        [candidate] = info["iceCandidates"]
        assert candidate["tcpType"] == "passive"
        await protoo.request("join", {"displayName": "tcp", "device": {}, "rtpCapabilities": caps})

        # ICE: one framed, signed binding request nominating the pair.
        reader, writer = await asyncio.open_connection(candidate["address"], candidate["port"])
        ice = info["iceParameters"]
        check = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        check.attributes.update(
            {
                "USERNAME": f"{ice['usernameFragment']}:tcpc",
                "PRIORITY": 1,
                "ICE-CONTROLLING": 1,
                "USE-CANDIDATE": None,
            }
        )
        check.add_message_integrity(ice["password"].encode())
        writer.write(frame(bytes(check)))
        decoder = FrameDecoder()
        packets: asyncio.Queue[bytes] = asyncio.Queue()

        async def read_frames() -> None:
            while data := await reader.read(65536):
                for packet in decoder.feed(data):
                    packets.put_nowait(packet)

        reading = asyncio.create_task(read_frames())
        response = stun.parse_message(await asyncio.wait_for(packets.get(), 5))
        assert response.message_class == stun.Class.RESPONSE
        assert response.check_message_integrity(ice["password"].encode())

        # DTLS over the same framed stream (we are the DTLS client).
        assert writer is not None
        tcp_writer = writer
        certificate = generate_certificate()
        dtls = DtlsSession(certificate, lambda data: tcp_writer.write(frame(data)))

        async def feed_dtls() -> None:
            while True:
                packet = await packets.get()
                if 19 < packet[0] < 64:
                    dtls.feed(packet)

        feeding = asyncio.create_task(feed_dtls())
        await protoo.request(
            "connectWebRtcTransport",
            {
                "transportId": info["id"],
                "dtlsParameters": {
                    "role": "client",
                    "fingerprints": certificate_fingerprints(certificate),
                },
            },
        )
        assert await asyncio.wait_for(
            dtls.start("client", info["dtlsParameters"]["fingerprints"]), 10
        ), "DTLS over ICE-TCP failed"
        assert dtls.tx_srtp is not None

        ssrc, payload_type = random.getrandbits(32), 111
        produced = await protoo.request(
            "produce",
            {
                "transportId": info["id"],
                "kind": "audio",
                "rtpParameters": {
                    "mid": "0",
                    "codecs": [
                        {
                            "mimeType": "audio/opus",
                            "payloadType": payload_type,
                            "clockRate": 48000,
                            "channels": 2,
                        }
                    ],
                    "encodings": [{"ssrc": ssrc}],
                    "rtcp": {"cname": "tcp"},
                },
            },
        )
        assert await listener.client.wait_for_consumers(1, timeout=10)

        seq, timestamp = random.getrandbits(16), random.getrandbits(32)
        for payload in opus_packets(3.0):
            header = struct.pack("!BBHII", 0x80, payload_type, seq, timestamp, ssrc)
            tcp_writer.write(frame(dtls.tx_srtp.protect(header + payload)))
            seq, timestamp = (seq + 1) & 0xFFFF, (timestamp + 960) & 0xFFFFFFFF
            await asyncio.sleep(0.02)

        stats = await protoo.request("getProducerStats", {"producerId": produced["id"]})
        assert stats[0]["packetCount"] >= 100, stats
        sink = listener.sink_for("tcppub", "audio")
        assert await sink.wait_frames(50, timeout=5)
        frequency = dominant_frequency(sink.audio(1.0)[::2])
        print(
            f"\nICE-TCP publisher: {stats[0]['packetCount']} packets in; the UDP listener hears {frequency:.0f} Hz"
        )
        assert abs(frequency - TONE) < 10
        reading.cancel()
        feeding.cancel()
        await dtls.stop()
    finally:
        if writer is not None:
            writer.close()
        await session.close()
        await listener.client.close()
