"""``python -m sfu_bench.profile_server OUT [sfu options]``: the server under cProfile.

``sfu bench --profile`` starts the server's signaling process this way, and
profiles its media worker process too, without the server's knowing: it puts
:mod:`sfu_bench.worker_profile` first on the server's ``PYTHONPATH``, whose
``sitecustomize`` calls :func:`profile_process` at start-up in each worker
process (``python -m sfu.media.worker_process``, which inherits the
signaling process's environment).

The profiler counts CPU time of the process's main thread (``time.thread_time``),
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
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["main", "profile_process"]


def profile_process(out: Path) -> Callable[[], None]:
    """Record this process's main thread between SIGUSR1 and SIGUSR2 and write the
    stats to ``out`` at SIGUSR2. Returns the function to call at exit: it stops
    and writes them when the profiler is still recording."""
    profiler = cProfile.Profile(time.thread_time)
    state = {"running": False}

    def start(signum: int, frame: FrameType | None) -> None:
        if not state["running"]:
            state["running"] = True
            profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        if state["running"]:
            profiler.disable()
            state["running"] = False
            profiler.dump_stats(str(out))

    def at_exit() -> None:
        if state["running"]:
            stop(signal.SIGUSR2, None)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return at_exit


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print("usage: python -m sfu_bench.profile_server OUT [sfu options]", file=sys.stderr)
        return 2
    at_exit = profile_process(Path(args[0]))
    from sfu.cli import main as entry

    try:
        return int(entry(args[1:]) or 0)
    finally:
        at_exit()


if __name__ == "__main__":
    raise SystemExit(main())
