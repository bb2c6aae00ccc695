"""Start-up and networking settings: announced IP, port range, TLS, listen IP."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from sfu.certs import write_self_signed

from ..conftest import REPO, ServerProcess, free_tcp_port, start_server, stop_server


async def protoo_request(
    server: ServerProcess,
    peer: str,
    method: str,
    data: dict[str, Any] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{server.ws_url}/?roomId=deploy&peerId={peer}",
            protocols=("protoo",),
            ssl=ssl_context if ssl_context is not None else True,
        ) as ws,
    ):
        await ws.send_str(
            json.dumps({"request": True, "id": 1, "method": method, "data": data or {}})
        )
        while True:
            message: dict[str, Any] = json.loads((await ws.receive(timeout=5)).data)
            if message.get("response"):
                return message


def socket_addresses(pid: int) -> set[str]:
    """Local addresses of every TCP/UDP socket the process has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table in ("tcp", "udp", "tcp6", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                hex_ip = fields[1].split(":")[0]
                if len(hex_ip) == 8:
                    addresses.add(".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    addresses.add(f"ipv6:{hex_ip}")
    return addresses


async def test_announced_ip_from_the_environment_and_listen_ip_binds_nothing_else(
    tmp_path: Path,
) -> None:
    server = start_server(
        tmp_path, env={"SFU_ANNOUNCED_IP": "127.0.0.9", "SFU_LISTEN_IP": "127.0.0.1"}
    )
    try:
        reply = await protoo_request(server, "a", "createWebRtcTransport", {"producing": True})
        [candidate] = reply["data"]["iceCandidates"]
        assert candidate["address"] == candidate["ip"] == "127.0.0.9", candidate
        assert socket_addresses(server.pid) == {"127.0.0.1"}, socket_addresses(server.pid)
        assert "announced as 127.0.0.9" in server.log()
    finally:
        stop_server(server)


async def test_exhausted_port_range_is_a_clear_error_and_the_server_goes_on(tmp_path: Path) -> None:
    base = free_tcp_port()  # any number; UDP ports base..base+1 are tried
    server = start_server(tmp_path, {"media": {"rtc_min_port": base, "rtc_max_port": base + 1}})
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"{server.ws_url}/?roomId=ports&peerId=p", protocols=("protoo",)
            ) as ws,
        ):
            replies = []
            for i in range(3):
                await ws.send_str(
                    json.dumps(
                        {
                            "request": True,
                            "id": i,
                            "method": "createWebRtcTransport",
                            "data": {"producing": True},
                        }
                    )
                )
                replies.append(json.loads((await ws.receive(timeout=5)).data))
        assert [r["ok"] for r in replies] == [True, True, False], replies
        assert replies[2]["errorCode"] == 503
        assert f"{base}-{base + 1}" in replies[2]["errorReason"], replies[2]
        assert (await protoo_request(server, "q", "getRouterRtpCapabilities"))["ok"]
    finally:
        stop_server(server)


def run_sfu(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sfu", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_bad_tls_settings_stop_start_up_naming_the_problem(tmp_path: Path) -> None:
    cert, key = write_self_signed("127.0.0.1", tmp_path / "a")
    other_cert, _ = write_self_signed("127.0.0.1", tmp_path / "b")
    cases = {
        "missing cert": (
            {"SFU_TLS_CERT": str(tmp_path / "nope.pem"), "SFU_TLS_KEY": str(key)},
            "tls.cert",
            "no such file",
        ),
        "key without cert": ({"SFU_TLS_KEY": str(key)}, "tls.cert", "must be set too"),
        "mismatched pair": (
            {"SFU_TLS_CERT": str(other_cert), "SFU_TLS_KEY": str(key)},
            "tls.key",
            "is not the key of",
        ),
        "not PEM": (
            {"SFU_TLS_CERT": str(tmp_path / "junk.pem"), "SFU_TLS_KEY": str(key)},
            "tls.cert",
            "cannot load",
        ),
    }
    (tmp_path / "junk.pem").write_text("not a certificate")
    for name, (env, key_name, words) in cases.items():
        result = run_sfu("--port", str(free_tcp_port()), env=env)
        assert result.returncode == 2, (name, result.stderr)
        assert key_name in result.stderr, (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
    assert cert.exists()


async def test_https_and_wss_with_sfu_certs(tmp_path: Path) -> None:
    result = run_sfu("certs", "--host", "127.0.0.1", "--out", str(tmp_path / "certs"))
    assert result.returncode == 0, result.stderr
    cert, key = tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem"
    server = start_server(
        tmp_path, env={"SFU_TLS_CERT": str(cert), "SFU_TLS_KEY": str(key)}, scheme="https"
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.http_url}/health", ssl=context) as response,
        ):
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        reply = await protoo_request(server, "tls", "getRouterRtpCapabilities", ssl_context=context)
        assert reply["ok"]
        assert reply["data"]["codecs"]
        assert "https://127.0.0.1" in server.log()
    finally:
        stop_server(server)


async def test_json_logs_carry_room_and_peer_ids(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"log": {"format": "json"}})
    try:
        reply = await protoo_request(server, "jsonpeer", "getRouterRtpCapabilities")
        assert reply["ok"]
    finally:
        stop_server(server)
    lines = [line for line in server.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    connected = [e for e in entries if "peer jsonpeer connected" in e["message"]]
    assert connected
    assert connected[0]["room_id"] == "deploy"
    assert connected[0]["peer_id"] == "jsonpeer"


def test_knobs_in_the_config_file_reach_the_server(tmp_path: Path) -> None:
    # [media] native_send and [server] event_loop, once only SFU_* variables.
    server = start_server(
        tmp_path,
        overrides={"media": {"native_send": False}, "server": {"event_loop": "asyncio"}},
    )
    try:
        assert server.health()["nativeSend"] is False
    finally:
        stop_server(server)
