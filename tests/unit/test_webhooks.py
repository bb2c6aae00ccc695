"""Webhook settings, signing, and delivery (order, retries, drops) against a
real aiohttp receiver on 127.0.0.1, with the retry pauses recorded instead of slept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from livekit.api import TokenVerifier, WebhookReceiver
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from sfu.config import load_config
from sfu.config.model import WebhooksConfig
from sfu.errors import ConfigError
from sfu.livekit.webhooks import Webhooks, encode_event, retry_delay, sign

from ..conftest import free_tcp_port

KEY = "APIunit"
SECRET = "unit-secret-" + "q" * 40
ENV = {"SFU_API_KEY": KEY, "SFU_API_SECRET": SECRET}


# ------------------------------------------------------------------ settings


def test_environment_sets_urls_and_key() -> None:
    config = load_config(
        None,
        {
            **ENV,
            "SFU_WEBHOOK_URLS": "http://a.test/h, https://b.test/h",
            "SFU_WEBHOOK_API_KEY": KEY,
        },
    )
    assert config.webhooks.urls == ("http://a.test/h", "https://b.test/h")
    assert config.webhooks.api_key == KEY


def test_file_sets_urls(tmp_path: Path) -> None:
    path = tmp_path / "sfu.toml"
    path.write_text(f'[webhooks]\nurls = ["http://127.0.0.1:9/h"]\napi_key = "{KEY}"\n')
    assert load_config(path, ENV).webhooks.urls == ("http://127.0.0.1:9/h",)


def test_unknown_key_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"webhooks\.api_key: \"nope\" is not one of the \[auth\]"
    ):
        load_config(
            None, {**ENV, "SFU_WEBHOOK_URLS": "http://a.test/h", "SFU_WEBHOOK_API_KEY": "nope"}
        )


def test_urls_without_any_key_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"webhooks\.api_key"):
        load_config(None, {"SFU_WEBHOOK_URLS": "http://a.test/h"})


def test_bad_url_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sfu.toml"
    path.write_text('[webhooks]\nurls = ["ftp://x"]\n')
    with pytest.raises(ConfigError, match="an http:// or https:// URL"):
        load_config(path, ENV)


# ------------------------------------------------------------------ signing


def test_signature_is_what_livekit_api_accepts() -> None:
    room = models.Room(name="r", sid="RM_x")
    body = encode_event(WebhookEvent(event="room_started", room=room, id="EV_1", created_at=5))
    received = WebhookReceiver(TokenVerifier(KEY, SECRET)).receive(
        body.decode(), sign(body, KEY, SECRET)
    )
    assert received.event == "room_started"
    assert received.room.sid == "RM_x"
    # A body changed on the way does not pass.
    with pytest.raises(Exception, match="hash mismatch"):
        WebhookReceiver(TokenVerifier(KEY, SECRET)).receive(
            body.decode().replace("RM_x", "RM_y"), sign(body, KEY, SECRET)
        )


def test_retry_delays_double_up_to_a_cap() -> None:
    assert [retry_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


# ------------------------------------------------------------------ delivery


class Endpoint:
    def __init__(self) -> None:
        self.statuses: list[int] = []  # answered in turn; 200 once used up
        self.received: list[tuple[str, str]] = []  # (event, room name), 2xx only
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        event = WebhookReceiver(TokenVerifier(KEY, SECRET)).receive(
            await request.text(), request.headers["Authorization"]
        )
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.received.append((event.event, event.room.name))
            self.got.set()
        return web.Response(status=status)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    endpoint = Endpoint()
    app = web.Application()
    app.router.add_post("/", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", endpoint.port).start()
    yield endpoint
    await runner.cleanup()


def notifier(urls: tuple[str, ...], pauses: list[float], **settings: int) -> Webhooks:
    async def record(delay: float) -> None:
        pauses.append(delay)

    return Webhooks(WebhooksConfig(urls=urls, api_key=KEY, **settings), SECRET, sleep=record)


async def test_retries_keep_order_and_deliver_once(endpoint: Endpoint) -> None:
    pauses: list[float] = []
    hooks = notifier((endpoint.url,), pauses)
    endpoint.statuses = [500, 503]
    for name in ("room_started", "participant_joined", "room_finished"):
        hooks.emit(name, models.Room(name="a"), room_key="a")
    await hooks.close(10)
    assert endpoint.received == [
        ("room_started", "a"),
        ("participant_joined", "a"),
        ("room_finished", "a"),
    ]
    assert pauses == [0.5, 1.0]
    assert hooks.counts["room_started", "delivered"] == 1
    assert hooks.pending == 0


async def test_gives_up_after_max_attempts(endpoint: Endpoint) -> None:
    pauses: list[float] = []
    hooks = notifier((endpoint.url,), pauses, max_attempts=3)
    endpoint.statuses = [500, 500, 500]
    hooks.emit("room_started", models.Room(name="a"), room_key="a")
    hooks.emit("room_finished", models.Room(name="a"), room_key="a")
    await hooks.close(10)
    assert endpoint.received == [("room_finished", "a")]
    assert hooks.counts["room_started", "failed"] == 1
    assert pauses == [0.5, 1.0]


async def test_full_queue_drops_and_counts_without_blocking(endpoint: Endpoint) -> None:
    hooks = notifier((endpoint.url,), [], max_pending=2)
    for room in ("a", "b", "c", "d"):
        hooks.emit("room_started", models.Room(name=room), room_key=room)
    assert hooks.counts["room_started", "dropped"] == 2
    assert hooks.describe()["dropped"] == 2
    await hooks.close(10)
    assert sorted(endpoint.received) == [("room_started", "a"), ("room_started", "b")]


async def test_close_is_bounded_with_a_dead_receiver() -> None:
    dead = f"http://127.0.0.1:{free_tcp_port()}/"
    hooks = Webhooks(WebhooksConfig(urls=(dead,), api_key=KEY), SECRET)  # real pauses
    hooks.emit("room_started", models.Room(name="a"), room_key="a")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await hooks.close(0.3)
    assert loop.time() - started < 5
    assert hooks.counts["room_started", "failed"] == 1
    assert hooks.pending == 0
