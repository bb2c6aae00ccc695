"""Run by Python's ``site`` at start-up when this directory is on ``PYTHONPATH``
(see :mod:`sfu_bench.worker_profile`): profiles a media worker process."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path


def _is_worker(argv: list[str]) -> bool:
    from sfu_bench.worker_profile import WORKER_MODULE

    return "-m" in argv and argv[argv.index("-m") + 1 :][:1] == [WORKER_MODULE]


def _start() -> None:
    from sfu_bench.worker_profile import PROFILE_VARIABLE

    out = os.environ.get(PROFILE_VARIABLE)
    if not out or not _is_worker(sys.orig_argv):
        return
    from sfu_bench.profile_server import profile_process

    atexit.register(profile_process(Path(out)))


_start()
