"""Helpers for end-to-end tests with real pymediasoup peers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from sfu.client import PatternVideoTrack, RemoteConsumer, SfuClient, ToneAudioTrack, TrackSink

from ..conftest import LOOPBACK, ServerProcess

VIDEO_SIZE = (320, 240)


@dataclass
class Participant:
    client: SfuClient
    tone: float
    producers: dict[str, str] = field(default_factory=dict)  # kind -> producer id
    sinks: dict[str, TrackSink] = field(default_factory=dict)  # consumer id -> sink

    def sink_for(self, peer_id: str, kind: str) -> TrackSink:
        for consumer_id, sink in self.sinks.items():
            remote = self.client.consumers.get(consumer_id)
            if remote is not None and remote.peer_id == peer_id and remote.kind == kind:
                return sink
        raise KeyError(f"{self.client.peer_id} has no {kind} consumer of {peer_id}")

    def consumer_for(self, peer_id: str, kind: str) -> RemoteConsumer:
        for remote in self.client.consumers.values():
            if remote.peer_id == peer_id and remote.kind == kind:
                return remote
        raise KeyError(f"{self.client.peer_id} has no {kind} consumer of {peer_id}")


async def join(
    server: ServerProcess, room: str, peer_id: str, tone: float, *, audio: bool = True, video: bool = True
) -> Participant:
    client = SfuClient(server.ws_url, room, peer_id, display_name=peer_id, ice_addresses=LOOPBACK)
    participant = Participant(client, tone)

    def on_consumer(remote: RemoteConsumer) -> None:
        participant.sinks[remote.id] = TrackSink(remote.track).start()

    client.on("newconsumer", on_consumer)
    await client.join()
    if audio:
        participant.producers["audio"] = await client.produce(ToneAudioTrack(frequency=tone))
    if video:
        participant.producers["video"] = await client.produce(PatternVideoTrack(*VIDEO_SIZE, fps=15))
    return participant


def dominant_frequency(samples: np.ndarray, sample_rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[int(np.argmax(spectrum))])


async def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll a cheap condition with a bounded timeout (for server-side state we cannot await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)
    return True
