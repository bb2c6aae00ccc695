"""Which library for the typed RTP model: pydantic v2 or msgspec, measured.

``python -m sfu_bench.models_bench [--runs N]`` (msgspec comes with the ``bench`` extra, for
its column; the server does not depend on it).

Per library, side by side in one run (the median of ``--runs`` runs, each the
mean over a batch of calls):

- join:    parse and validate a Chrome ``rtpCapabilities`` (mediasoup-client's
           device.rtpCapabilities: opus, VP8/VP9/H264 x2 with RTX, 7 extensions);
- produce: parse and validate a ``produce`` request's ``rtpParameters`` (VP8 with
           RTX, three simulcast encodings, six header extensions, rtcpFeedback);
- dump:    a consumer's ``rtpParameters`` back to a camelCase wire dict;
- import:  importing the library and defining the models, in a fresh interpreter.

These stand in for join time and signalling throughput: a join parses one
capabilities object, a produce one parameters object, and each consumer made is
one dump. (The hand-written validators ``ortc`` had before the model, measured
here when the library was chosen, are gone: ORTC validates with the pydantic model.)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

Json = dict[str, Any]

# ----------------------------------------------------------------- realistic inputs

_VIDEO_FEEDBACK = [
    {"type": "goog-remb", "parameter": ""},
    {"type": "ccm", "parameter": "fir"},
    {"type": "nack", "parameter": ""},
    {"type": "nack", "parameter": "pli"},
]
_URIS = {
    "mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
    "rid": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "rrid": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "abs": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "orientation": "urn:3gpp:video-orientation",
    "toffset": "urn:ietf:params:rtp-hdrext:toffset",
}


def chrome_rtp_capabilities() -> Json:
    """What Chrome (mediasoup-client, handler Chrome111) sends in ``join``."""
    video = [
        ("video/VP8", {}),
        ("video/VP9", {"profile-id": 2}),
        (
            "video/H264",
            {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "4d001f"},
        ),
        (
            "video/H264",
            {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f"},
        ),
    ]
    codecs: list[Json] = [
        {
            "mimeType": "audio/opus",
            "kind": "audio",
            "preferredPayloadType": 100,
            "clockRate": 48000,
            "channels": 2,
            "parameters": {"minptime": 10, "useinbandfec": 1},
            "rtcpFeedback": [],
        },
    ]
    for index, (mime, parameters) in enumerate(video):
        pt = 101 + 2 * index
        codecs.append(
            {
                "mimeType": mime,
                "kind": "video",
                "preferredPayloadType": pt,
                "clockRate": 90000,
                "parameters": parameters,
                "rtcpFeedback": [dict(fb) for fb in _VIDEO_FEEDBACK],
            }
        )
        codecs.append(
            {
                "mimeType": "video/rtx",
                "kind": "video",
                "preferredPayloadType": pt + 1,
                "clockRate": 90000,
                "parameters": {"apt": pt},
                "rtcpFeedback": [],
            }
        )
    extensions = [
        ("audio", "mid", 1),
        ("video", "mid", 1),
        ("audio", "abs", 4),
        ("video", "abs", 4),
        ("audio", "level", 10),
        ("video", "orientation", 11),
        ("video", "toffset", 12),
    ]
    return {
        "codecs": codecs,
        "headerExtensions": [
            {
                "kind": kind,
                "uri": _URIS[name],
                "preferredId": ext_id,
                "preferredEncrypt": False,
                "direction": "sendrecv",
            }
            for kind, name, ext_id in extensions
        ],
    }


def chrome_simulcast_produce() -> Json:
    """A ``produce`` request's rtpParameters: Chrome's VP8 webcam in three layers."""
    extensions = [
        ("mid", 4),
        ("rid", 10),
        ("rrid", 11),
        ("abs", 2),
        ("orientation", 13),
        ("toffset", 14),
    ]
    return {
        "mid": "1",
        "codecs": [
            {
                "mimeType": "video/VP8",
                "payloadType": 96,
                "clockRate": 90000,
                "parameters": {},
                "rtcpFeedback": [dict(fb) for fb in _VIDEO_FEEDBACK],
            },
            {
                "mimeType": "video/rtx",
                "payloadType": 97,
                "clockRate": 90000,
                "parameters": {"apt": 96},
                "rtcpFeedback": [],
            },
        ],
        "headerExtensions": [
            {"uri": _URIS[name], "id": ext_id, "encrypt": False, "parameters": {}}
            for name, ext_id in extensions
        ],
        "encodings": [
            {
                "active": True,
                "rid": f"r{i}",
                "scaleResolutionDownBy": scale,
                "maxBitrate": bitrate,
                "scalabilityMode": "L1T3",
                "dtx": False,
            }
            for i, (scale, bitrate) in enumerate([(4, 500000), (2, 1000000), (1, 5000000)])
        ],
        "rtcp": {"cname": "kQ2mM3ec8fRkx+Ad", "reducedSize": True},
    }


def consumer_rtp_parameters() -> Json:
    """What ``newConsumer`` carries for that producer: one encoding, fresh SSRCs."""
    produce = chrome_simulcast_produce()
    return {
        "mid": "2",
        "codecs": [{**codec, "payloadType": 101 + i} for i, codec in enumerate(produce["codecs"])],
        "headerExtensions": [
            {**ext, "id": ext_id}
            for ext, ext_id in zip(produce["headerExtensions"][3:], (4, 11, 12), strict=True)
        ],
        "encodings": [
            {
                "ssrc": 1737421312,
                "rtx": {"ssrc": 3913184271},
                "scalabilityMode": "L3T3",
                "maxBitrate": 5000000,
            }
        ],
        "rtcp": {"cname": "kQ2mM3ec8fRkx+Ad", "reducedSize": True},
    }


# ----------------------------------------------------------------- the libraries


class Library:
    """One way of parsing and dumping: three callables and an import statement."""

    def __init__(
        self,
        name: str,
        parse_capabilities: Callable[[Json], Any],
        parse_parameters: Callable[[Json], Any],
        dump: Callable[[Any], Json],
        import_statement: str,
    ) -> None:
        self.name = name
        self.parse_capabilities = parse_capabilities
        self.parse_parameters = parse_parameters
        self.dump = dump
        self.import_statement = import_statement


def pydantic_library() -> Library:
    from sfu.models import RtpCapabilities, RtpParameters

    return Library(
        "pydantic",
        RtpCapabilities.from_wire,
        RtpParameters.from_wire,
        RtpParameters.to_wire,
        "import sfu.models",
    )


def msgspec_library() -> Library | None:
    try:
        import msgspec  # noqa: F401
    except ImportError:
        return None
    from sfu_bench import models_bench_msgspec as models

    return Library(
        "msgspec",
        models.parse_capabilities,
        models.parse_parameters,
        models.dump,
        "import sfu_bench.models_bench_msgspec",
    )


# ----------------------------------------------------------------- measuring


def per_call_us(function: Callable[[Any], Any], argument: Any, runs: int, batch: int) -> float:
    """Median over ``runs`` of the mean time of one call in a batch, in microseconds."""
    function(argument)  # warm up (first-call caches)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(batch):
            function(argument)
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return statistics.median(samples)


def import_ms(statement: str, runs: int) -> float:
    """Median wall time of ``statement`` in a fresh interpreter, in milliseconds."""
    code = (
        f"import time; start = time.perf_counter(); {statement}; print(time.perf_counter() - start)"
    )
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        * 1000
        for _ in range(runs)
    ]
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sfu_bench.models_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--batch", type=int, default=2000, help="calls per run")
    args = parser.parse_args(argv)

    libraries = [lib for lib in (pydantic_library(), msgspec_library()) if lib]
    capabilities, produce = chrome_rtp_capabilities(), chrome_simulcast_produce()
    consumer = consumer_rtp_parameters()
    print(f"median of {args.runs} runs, {args.batch} calls each; Python {sys.version.split()[0]}")
    print(f"{'':14}{'join µs':>10}{'produce µs':>12}{'dump µs':>10}{'import ms':>11}")
    for lib in libraries:
        parsed_consumer = lib.parse_parameters(consumer)
        if lib.dump(parsed_consumer) != consumer:
            raise SystemExit(f"{lib.name}: the consumer parameters do not round-trip")
        figures = (
            per_call_us(lib.parse_capabilities, capabilities, args.runs, args.batch),
            per_call_us(lib.parse_parameters, produce, args.runs, args.batch),
            per_call_us(lib.dump, parsed_consumer, args.runs, args.batch),
        )
        imported = import_ms(lib.import_statement, args.runs)
        print(
            f"{lib.name:14}{figures[0]:10.1f}{figures[1]:12.1f}{figures[2]:10.1f}{imported:11.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
