"""The process boundary, proven on the real processes: the signalling process
(``python -m sfu``) never loads the media plane, and a media worker
(``python -m sfu.media.worker_process``) and the recorder
(``python -m sfu.recorder.recorder_process``) never load signalling.

A ``sitecustomize`` on ``PYTHONPATH`` (inherited by the workers) writes each
process's ``sys.modules`` when it exits; the test runs a room with two peers
that publish and consume, then stops the server and reads both lists.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from ..conftest import start_server, stop_server
from .helpers import join

# Dumps sorted(sys.modules) to $SFU_TEST_MODULES_DIR/<pid>.txt at exit.
_SITECUSTOMIZE = """
import atexit, os, sys

def _dump_modules():
    path = os.path.join(os.environ["SFU_TEST_MODULES_DIR"], f"{os.getpid()}")
    with open(path + ".tmp", "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
    os.replace(path + ".tmp", path + ".txt")  # whole, or not there

atexit.register(_dump_modules)
"""

MEDIA_PACKAGES = (
    "aiortc",
    "aioice",
    "pylibsrtp",
    "av",
    "sfu.media",
    "sfu.aiortc_adapter",
    "sfu.recorder",
)
SIGNALLING_PACKAGES = ("aiohttp", "sfu.signaling", "sfu.rooms", "sfu.control", "sfu.server")


def _loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules of ``packages`` (a package or any module inside it) among ``modules``."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def _modules_at_exit(directory: Path, pid: int, timeout: float = 15.0) -> set[str]:
    path = directory / f"{pid}.txt"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"process {pid} wrote no module list"
        time.sleep(0.1)
    return set(path.read_text().split())


async def test_signalling_and_media_processes_load_only_their_side(tmp_path: Path) -> None:
    hook, dumps = tmp_path / "hook", tmp_path / "modules"
    hook.mkdir()
    dumps.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    python_path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    server = start_server(
        tmp_path,
        {
            "workers": {"count": 1},
            # The room is recorded: the recorder process runs too.
            "recording": {"directory": str(tmp_path / "recordings"), "auto": True},
        },
        env={"PYTHONPATH": python_path, "SFU_TEST_MODULES_DIR": str(dumps)},
    )
    try:
        health = server.health()
        worker_pids = [w["pid"] for w in health["workers"]]
        # A room at work: join, produce, consume, so that each side loads what it uses.
        alice = await join(server, "boundary", "alice", 440)
        bob = await join(server, "boundary", "bob", 550)
        assert await bob.client.wait_for_consumers(2, timeout=10)
        await asyncio.gather(alice.client.close(), bob.client.close())
    finally:
        stop_server(server)

    signalling = _modules_at_exit(dumps, server.pid)
    assert worker_pids
    for pid in worker_pids:
        worker = _modules_at_exit(dumps, pid)
        assert _loaded(worker, SIGNALLING_PACKAGES) == [], f"worker {pid} loaded signalling"
        assert {"sfu.media.worker", "sfu.media.webrtc_transport", "pylibsrtp"} <= worker
    assert _loaded(signalling, MEDIA_PACKAGES) == [], "the signalling process loaded media"
    others = {int(p.stem) for p in dumps.glob("*.txt")} - {server.pid, *worker_pids}
    recorders = [
        pid for pid in others if "sfu.recorder.track_writer" in _modules_at_exit(dumps, pid)
    ]
    assert len(recorders) == 1, others
    recorder = _modules_at_exit(dumps, recorders[0])
    assert _loaded(recorder, (*SIGNALLING_PACKAGES, "sfu.media")) == [], "the recorder loaded those"
    assert {"sfu.control.router", "sfu.rooms.room", "aiohttp"} <= signalling
