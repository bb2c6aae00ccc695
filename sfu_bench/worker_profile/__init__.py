"""cProfile in the server's media worker processes, for ``sfu bench --profile``.

The server has no profiling hook: the bench starts it with this directory
first on ``PYTHONPATH`` (:func:`environment`), so that Python runs
:mod:`sitecustomize <sfu_bench.worker_profile.sitecustomize>` from here at
start-up in the server's processes. In a media worker process it profiles
the process into ``SFU_BENCH_WORKER_PROFILE`` with
:func:`sfu_bench.profile_server.profile_process`; elsewhere it does nothing.

The path is the same for every worker process: the bench profiles a server
with one worker. This ``sitecustomize`` shadows any other one on the path
(a distribution's), in the profiled server only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PROFILE_VARIABLE", "WORKER_MODULE", "environment"]

PROFILE_VARIABLE = "SFU_BENCH_WORKER_PROFILE"
# What the signaling process runs as each media worker (sfu/control/worker.py).
WORKER_MODULE = "sfu.media.worker_process"
SITE_DIRECTORY = str(Path(__file__).resolve().parent)


def environment(profile: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) for a server whose media
    workers write their cProfile stats to ``profile``."""
    env = dict(os.environ if base is None else base)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = SITE_DIRECTORY + (os.pathsep + path if path else "")
    env[PROFILE_VARIABLE] = str(profile)
    return env
