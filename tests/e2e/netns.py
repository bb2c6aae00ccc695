"""A second network namespace for end-to-end tests: a client host behind a shaped link.

The test session already runs in a namespace of its own with only loopback
(tests/conftest.py). :class:`ClientHost` adds a veth pair from it to a new
namespace, held open by a ``sleep`` process, with addresses from 198.18.0.0/15
(set aside for network tests, RFC 2544) that this test assigns inside them.
``tc tbf`` on the server's end limits what the server sends to the client.
Nothing here reaches any other interface or host.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

_pair_index = itertools.count(1)


def available() -> str | None:
    """Why these tests cannot run here, or None."""
    for tool in ("ip", "tc", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) for veth and tc"
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=10)


class ClientHost:
    """A namespace joined to the test's by a veth pair.

    ``server_ip`` is the test namespace's end (where the server announces),
    ``client_ip`` the client's. ``rate_kbit`` shapes server -> client with tbf.
    """

    def __init__(self, rate_kbit: int | None = None) -> None:
        index = next(_pair_index)
        self.server_if = f"sfus{index}"
        self.client_if = f"sfuc{index}"
        self.server_ip = f"198.18.{index}.1"
        self.client_ip = f"198.18.{index}.2"
        self.rate_kbit = rate_kbit
        self._holder: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ClientHost:
        self._holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
        try:
            pid = str(self._holder.pid)
            _run(
                "ip", "link", "add", self.server_if, "type", "veth", "peer", "name", self.client_if
            )
            _run("ip", "link", "set", self.client_if, "netns", pid)
            _run("ip", "addr", "add", f"{self.server_ip}/30", "dev", self.server_if)
            _run("ip", "link", "set", self.server_if, "up")
            inside = ("nsenter", "-t", pid, "-n")
            _run(*inside, "ip", "addr", "add", f"{self.client_ip}/30", "dev", self.client_if)
            _run(*inside, "ip", "link", "set", self.client_if, "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
            if self.rate_kbit is not None:
                # A queue of about 200 ms at the link's rate, as a home router keeps.
                _run(
                    "tc", "qdisc", "add", "dev", self.server_if, "root", "tbf",
                    "rate", f"{self.rate_kbit}kbit", "burst", "4kb", "latency", "200ms",
                )  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        return self

    def run_python(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``python args...`` inside the client namespace."""
        assert self._holder is not None
        return subprocess.Popen(
            ["nsenter", "-t", str(self._holder.pid), "-n", sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            ["ip", "link", "del", self.server_if], capture_output=True, timeout=10, check=False
        )
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait(5)
            self._holder = None
