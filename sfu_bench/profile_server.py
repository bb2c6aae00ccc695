"""``python -m sfu_bench.profile_server OUT [sfu options]``: the server under cProfile.

``python -m sfu_bench.profile_server OUT --module MODULE [args]`` profiles
``MODULE.main(args)`` instead: a media worker process, when the signaling
process starts its workers with ``SFU_WORKER_PROFILE`` set.

The profiler counts CPU time of the server's main thread (``time.thread_time``),
not wall-clock time, so that waiting for epoll and being preempted on a busy
machine do not show up as work. It records only between SIGUSR1 and SIGUSR2,
which ``sfu bench --profile`` sends at the start and the end of the measuring
window: start-up imports and joins stay out. The stats are written to OUT at
SIGUSR2 (or at exit), in the format of ``python -m cProfile -o``; read them
with ``python -m pstats OUT``.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print("usage: python -m sfu_bench.profile_server OUT [sfu options]", file=sys.stderr)
        return 2
    out = Path(args[0])
    profiler = cProfile.Profile(time.thread_time)
    state = {"running": False, "dumped": False}

    def start(signum: int, frame: FrameType | None) -> None:
        if not state["running"]:
            state["running"] = True
            profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        if state["running"]:
            profiler.disable()
            state["running"] = False
            profiler.dump_stats(str(out))
            state["dumped"] = True

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    if len(args) > 2 and args[1] == "--module":
        import importlib

        entry = importlib.import_module(args[2]).main
        rest = args[3:]
    else:
        from sfu.cli import main as entry

        rest = args[1:]
    try:
        return int(entry(rest) or 0)
    finally:
        if state["running"]:
            stop(signal.SIGUSR2, None)


if __name__ == "__main__":
    raise SystemExit(main())
