"""The control layer's ``observer`` emitters (mediasoup's): what is made and what closes,
on a real worker (in this process) behind a real channel."""

from __future__ import annotations

from typing import Any

from sfu.config import MediaConfig
from sfu.control.worker import Worker

OPUS = {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}
AUDIO_PARAMETERS: dict[str, Any] = {
    "codecs": [
        {"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2},
    ],
    "encodings": [{"ssrc": 1111}],
}


async def test_observers_see_each_object_made_and_the_close_cascade() -> None:
    worker = Worker(0, MediaConfig(), in_process=True)
    await worker.start()
    seen: list[tuple[str, str]] = []

    def watch(kind: str, handle: Any) -> None:
        handle.observer.on("close", lambda: seen.append(("close", kind)))

    try:
        worker.observer.on("newrouter", lambda router: seen.append(("newrouter", router.id)))
        router = await worker.create_router(media_codecs=[OPUS])
        watch("router", router)
        router.observer.on("newtransport", lambda t: seen.append(("newtransport", t.id)))
        sending = await router.create_webrtc_transport()
        receiving = await router.create_webrtc_transport()
        watch("receiving", receiving)
        sending.observer.on("newproducer", lambda p: seen.append(("newproducer", p.id)))
        receiving.observer.on("newconsumer", lambda c: seen.append(("newconsumer", c.id)))
        producer = await sending.produce(kind="audio", rtp_parameters=AUDIO_PARAMETERS)
        # ORTC runs here, so canConsume needs no worker.
        assert router.can_consume(producer.id, router.rtp_capabilities)
        consumer = await receiving.consume(
            producer_id=producer.id, rtp_capabilities=router.rtp_capabilities
        )
        assert consumer.rtp_parameters.mid == "0"
        watch("producer", producer)
        watch("consumer", consumer)
        assert seen == [
            ("newrouter", router.id),
            ("newtransport", sending.id),
            ("newtransport", receiving.id),
            ("newproducer", producer.id),
            ("newconsumer", consumer.id),
        ]
        seen.clear()

        router.close()
        # Children first (transports in the order they were made), each once: the
        # consumer goes with its transport, not again when its producer closes.
        assert seen == [
            ("close", "producer"),
            ("close", "consumer"),
            ("close", "receiving"),
            ("close", "router"),
        ]
        assert consumer.closed
        assert producer.closed
        assert not worker.routers
    finally:
        await worker.close()
