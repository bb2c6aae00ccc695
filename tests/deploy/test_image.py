"""The container image, for real: Dockerfile -> image -> running server -> media.

Builds the image with Podman (``--format docker``, so HEALTHCHECK is kept) from
local base images: ``debian:bookworm-slim`` made with debootstrap, and
``node:20-bookworm-slim``, the same file system plus this machine's Node.
Both are cached in Podman's image store, and the build's layers with them, so
a warm run only rebuilds what changed.

Containers cannot be started on this machine (crun cannot set rlimits), so the
test exports the image's file system and runs its entrypoint under ``chroot``
as the image's user, with the image's environment. The server listens on
127.0.0.1 in the test session's loopback-only network namespace, and two
pymediasoup peers see and hear each other through it.

Only the provisioning (apt-get, debootstrap, the build's package downloads
from Debian, PyPI and npm) runs in the network namespace pytest was started
in. Skipped, saying why, only when Podman or debootstrap cannot be installed.

    pytest -m image          this test alone
    pytest -m "not image"    everything else
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ISOLATION, REPO, free_tcp_port
from ..e2e.helpers import close_all, join
from ..e2e.test_room_media import TONES, assert_decodes_from
from ..e2e.test_single_port import server_ports

IMAGE = "sfu-test"
DEBIAN_BASE = "debian:bookworm-slim"
NODE_BASE = "node:20-bookworm-slim"
SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bumped when ensure_base_images changes, so that cached base images are remade.
BASE_RECIPE = "3"
BASE_LABEL = "sfu.test-base-recipe"

# Run under `unshare --mount`, so that /proc and /dev are unmounted when the
# command ends, whatever happens; chroots into the exported image (the
# environment is the image's, so this machine's tools come by full path):
#   sh -c LAUNCH launch MOUNT CHROOT ROOT USER:GROUP WORKDIR COMMAND...
LAUNCH = """set -eu
mount=$1 chroot=$2 root=$3 userspec=$4 workdir=$5
shift 5
"$mount" -t proc proc "$root/proc"
"$mount" --bind /dev "$root/dev"
exec "$chroot" --userspec="$userspec" "$root" /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "$@"
"""


_PYTEST: list[pytest.Config] = []  # set while the fixtures run


def say(message: str) -> None:
    """A line in the test run's output, even while output is captured."""
    if not _PYTEST:
        print(f"[image] {message}", file=sys.stderr, flush=True)
        return
    capture = _PYTEST[0].pluginmanager.get_plugin("capturemanager")
    reporter = _PYTEST[0].pluginmanager.get_plugin("terminalreporter")
    assert capture is not None
    assert reporter is not None
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(f"[image] {message}")


# ------------------------------------------------------------------ commands


def _netns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def outside() -> list[str]:
    """A prefix that runs a command in the network namespace pytest was
    started in (the one of its nearest ancestor outside ours), for downloads."""
    if not ISOLATION["netns"]:
        return []
    own = _netns("self")
    pid = os.getppid()
    while pid > 1:
        namespace = _netns(pid)
        if namespace is not None and namespace != own:
            return ["nsenter", f"--net=/proc/{pid}/ns/net", "--"]
        pid = _parent(pid)
    raise RuntimeError("no ancestor of pytest outside its loopback-only network namespace")


def run(
    command: list[str], *, timeout: float, log: Path | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded time; fail with the end of its output."""
    started = time.monotonic()
    output: Any = log.open("w") if log is not None else subprocess.PIPE
    try:
        result = subprocess.run(
            command,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
    finally:
        if log is not None:
            output.close()
    if result.returncode != 0:
        text = log.read_text(errors="replace") if log else f"{result.stdout}\n{result.stderr}"
        raise AssertionError(
            f"exit {result.returncode} after {time.monotonic() - started:.0f} s: "
            f"{' '.join(command)}\n{text[-4000:]}"
        )
    return result


# ------------------------------------------------------------------ provisioning


def ensure_tools() -> str | None:
    """Install podman and debootstrap if missing; why not, if they cannot be."""
    missing = [
        tool
        for tool in ("podman", "debootstrap", "nsenter", "unshare", "chroot")
        if shutil.which(tool) is None
    ]
    if not missing:
        return None
    if os.geteuid() != 0:
        return f"{', '.join(missing)} not installed, and apt-get needs root"
    if shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed, and there is no apt-get"
    say(f"installing {', '.join(missing)} with apt-get")
    apt = [*outside(), "apt-get", "-o", "DPkg::Lock::Timeout=300"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run([*apt, "update", "-qq"], timeout=600, env=environment)
        run([*apt, "install", "-y", "-qq", "podman", "debootstrap"], timeout=900, env=environment)
    except (AssertionError, OSError, RuntimeError) as error:
        return f"apt-get install podman debootstrap failed: {error}"
    still = [tool for tool in missing if shutil.which(tool) is None]
    return f"still missing after apt-get: {', '.join(still)}" if still else None


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses for the main suite (read at
    run time from /etc/apt, so no host name is written anywhere)."""
    sources = Path("/etc/apt")
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for block in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in block.splitlines():
                    if ":" in line and not line.startswith(("#", " ")):
                        name, _, value = line.partition(":")
                        fields[name.strip().lower()] = value.strip()
                if (
                    "deb" in fields.get("types", "").split()
                    and SUITE in fields.get("suites", "").split()
                    and fields.get("enabled", "yes").lower() != "no"
                ):
                    for uri in fields.get("uris", "").split():
                        if uri.startswith(("http://", "https://")):
                            return uri
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
                if (
                    len(words) >= 3
                    and words[0] == "deb"
                    and words[2] == SUITE
                    and words[1].startswith(("http://", "https://"))
                ):
                    return words[1]
    raise AssertionError(f"no Debian mirror for {SUITE} in /etc/apt/sources.list(.d)")


def image_exists(name: str) -> bool:
    return (
        subprocess.run(["podman", "image", "exists", name], timeout=60, check=False).returncode == 0
    )


def base_image_current(name: str) -> bool:
    if not image_exists(name):
        return False
    labels = inspect(name)["Config"].get("Labels") or {}
    return bool(labels.get(BASE_LABEL) == BASE_RECIPE)


# Like the official slim images: no documentation, manuals or translations,
# and no apt package caches.
DPKG_SLIM = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
"""
APT_CLEAN = """Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def slim(rootfs: Path) -> None:
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(DPKG_SLIM)
    (rootfs / "etc/apt/apt.conf.d/slim").write_text(APT_CLEAN)
    share = rootfs / "usr/share"
    for folder in ("man", "groff", "info", "lintian", "locale"):
        for path in (share / folder).glob("*"):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in (share / "doc").glob("*/*"):
        if path.name != "copyright":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for leftovers in ("var/cache/apt", "var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftovers).glob("*"):
            if path.is_file():
                path.unlink()


def install_host_ca(rootfs: Path) -> None:
    """This machine's CA bundle, as the bundle (what npm and pip are pointed at)
    and as single certificates in /usr/local/share/ca-certificates, so that it
    survives the update-ca-certificates run of a later apt-get install."""
    bundle = HOST_CA_BUNDLE.read_text()
    (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/ssl/certs/ca-certificates.crt").write_text(bundle)
    local = rootfs / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    end = "-----END CERTIFICATE-----"
    certificates = [part.strip() + f"\n{end}\n" for part in bundle.split(end) if "BEGIN" in part]
    for index, certificate in enumerate(certificates):
        (local / f"host-{index:03d}.crt").write_text(certificate[certificate.index("-----BEGIN") :])


def podman_import(rootfs: Path, name: str, *changes: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        flags = [arg for change in changes for arg in ("--change", change)]
        run(["podman", "import", *flags, "-", name], timeout=600, stdin=tar.stdout)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait(60) == 0, f"tar of {rootfs} failed"


def ensure_base_images(workdir: Path) -> str:
    """debian:bookworm-slim and node:20-bookworm-slim in Podman's store, made
    here when missing (or made by an older recipe): debootstrap (minbase),
    slimmed like the official images, with this machine's CA bundle (for the
    build's downloads through this machine's network); plus Node for the
    client stage."""
    if base_image_current(DEBIAN_BASE) and base_image_current(NODE_BASE):
        return "cached"
    stale = [inspect(name)["Id"] for name in (DEBIAN_BASE, NODE_BASE) if image_exists(name)]
    started = time.monotonic()
    rootfs = workdir / "rootfs"
    mirror = debian_mirror()
    say(f"debootstrap --variant=minbase {SUITE} (the mirror apt uses here)")
    run(
        [*outside(), "debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
        timeout=1200,
        log=workdir / "debootstrap.log",
    )
    slim(rootfs)
    install_host_ca(rootfs)
    label = f"LABEL {BASE_LABEL}={BASE_RECIPE}"
    podman_import(rootfs, DEBIAN_BASE, f"ENV PATH={BASE_PATH}", 'CMD ["bash"]', label)

    # Node: this machine's node binary and npm, where the official image has them.
    node = Path(shutil.which("node") or "node").resolve()
    npm = node.parent.parent / "lib" / "node_modules" / "npm"
    assert node.is_file(), (node, npm)
    assert (npm / "bin" / "npm-cli.js").is_file(), (node, npm)
    version = run([str(node), "--version"], timeout=30).stdout.strip()
    if not version.startswith("v20."):
        say(f"warning: this machine's Node is {version}, not 20")
    shutil.copy2(node, rootfs / "usr/local/bin/node")
    shutil.copytree(npm, rootfs / "usr/local/lib/node_modules/npm", symlinks=True)
    for name, target in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
        (rootfs / "usr/local/bin" / name).symlink_to(f"../lib/node_modules/npm/bin/{target}")
    podman_import(
        rootfs,
        NODE_BASE,
        f"ENV PATH={BASE_PATH}",
        f"ENV NODE_VERSION={version.lstrip('v')}",
        'CMD ["node"]',
        label,
    )
    shutil.rmtree(rootfs)
    for image in stale:  # untagged now; kept while cached build layers still use them
        subprocess.run(["podman", "rmi", image], capture_output=True, timeout=120, check=False)
    return f"built in {time.monotonic() - started:.0f} s"


def inspect(name: str) -> dict[str, Any]:
    result = run(["podman", "image", "inspect", name], timeout=60)
    return dict(json.loads(result.stdout)[0])


def build_image(workdir: Path) -> dict[str, Any]:
    previous = inspect(IMAGE)["Id"] if image_exists(IMAGE) else None
    say("podman build (cached layers are reused)")
    run(
        [
            *outside(),
            "podman",
            "build",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--format",
            "docker",
            "--pull=never",
            "-t",
            IMAGE,
            str(REPO),
        ],
        timeout=1800,
        log=workdir / "build.log",
        cwd=REPO,
    )
    image = inspect(IMAGE)
    if previous is not None and previous != image["Id"]:
        # The previous build of the test image, now untagged (its layers stay cached).
        subprocess.run(["podman", "rmi", previous], capture_output=True, timeout=120, check=False)
    return image


def export_image(rootfs: Path) -> None:
    container = run(["podman", "create", IMAGE], timeout=120).stdout.strip()
    try:
        rootfs.mkdir()
        export = subprocess.Popen(["podman", "export", container], stdout=subprocess.PIPE)
        try:
            run(["tar", "-C", str(rootfs), "-x"], timeout=600, stdin=export.stdout)
        finally:
            assert export.stdout is not None
            export.stdout.close()
            assert export.wait(60) == 0, "podman export failed"
    finally:
        subprocess.run(
            ["podman", "rm", "-f", container], capture_output=True, timeout=120, check=False
        )


# ------------------------------------------------------------------ the image


@dataclass
class ImageServer:
    """The server running from the exported image (what tests/e2e/helpers.join needs)."""

    process: subprocess.Popen[bytes]
    http_port: int
    udp_port: int
    log_path: Path
    env: dict[str, str]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}"

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self.get("/health")[1]))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(
    rootfs: Path, config: dict[str, Any], command: list[str], env: dict[str, str], **kwargs: Any
) -> subprocess.Popen[bytes]:
    """``command`` inside the exported image, as the image's user, with the
    image's environment plus ``env``."""
    image_env = dict(item.split("=", 1) for item in config.get("Env") or [])
    tools = [shutil.which(tool) for tool in ("unshare", "sh", "mount", "chroot")]
    assert all(tools), tools
    unshare, sh, mount, chroot = (str(tool) for tool in tools)
    return subprocess.Popen(
        [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "--",
            sh,
            "-c",
            LAUNCH,
            "launch",
            mount,
            chroot,
            str(rootfs),
            config["User"],
            config.get("WorkingDir") or "/",
            *command,
        ],
        env={**image_env, **env},
        **kwargs,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [mount for mount in mounts if mount.startswith(prefix)]


@dataclass
class BuiltImage:
    config: dict[str, Any]  # the image's Config: User, Env, Entrypoint...
    healthcheck: dict[str, Any]  # Test, Interval...
    rootfs: Path  # its file system, exported
    size_mb: float
    timings: str


@pytest.fixture
def built_image(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[BuiltImage]:
    """The image built from this checkout and exported into ``tmp_path/rootfs``."""
    _PYTEST[:] = [pytestconfig]
    try:
        started = time.monotonic()
        reason = ensure_tools()
        if reason is not None:
            say(f"SKIPPED: {reason}")
            pytest.skip(reason)
        base = ensure_base_images(tmp_path)
        built = time.monotonic()
        image = build_image(tmp_path)
        build_seconds = time.monotonic() - built
        rootfs = tmp_path / "rootfs"
        export_image(rootfs)
        size_mb = image["Size"] / 1e6
        timings = (
            f"base images {base}, build {build_seconds:.0f} s, "
            f"export {time.monotonic() - built - build_seconds:.0f} s"
        )
        say(
            f"image {IMAGE}: {size_mb:.0f} MB; {timings}; {time.monotonic() - started:.0f} s so far"
        )
        # Podman shows HEALTHCHECK beside Config; Docker inside it.
        healthcheck = image.get("Healthcheck") or image["Config"].get("Healthcheck") or {}
        yield BuiltImage(image["Config"], healthcheck, rootfs, size_mb, timings)
    finally:
        for mount in sorted(mounts_under(tmp_path), reverse=True):  # none expected: see LAUNCH
            subprocess.run(["umount", "-l", mount], timeout=60, check=False)
        shutil.rmtree(tmp_path / "rootfs", ignore_errors=True)
        _PYTEST.clear()


@pytest.fixture
def image_server(built_image: BuiltImage, tmp_path: Path) -> Iterator[ImageServer]:
    """The image's entrypoint, run as the image's user on 127.0.0.1, up and healthy."""
    config = built_image.config
    http_port, udp_port = free_tcp_port(), free_udp_port()
    env = {
        "SFU_LISTEN_IP": "127.0.0.1",
        "SFU_ANNOUNCED_IP": "127.0.0.1",
        "SFU_HTTP_PORT": str(http_port),
        "SFU_UDP_PORT": str(udp_port),
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = launch(
            built_image.rootfs,
            config,
            [*config["Entrypoint"], *(config.get("Cmd") or [])],
            env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ImageServer(process, http_port, udp_port, log_path, env)
    try:
        started = time.monotonic()
        while True:
            assert process.poll() is None, f"the server exited at start-up:\n{server.log()}"
            try:
                assert server.health()["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() - started < 60, f"no /health after 60 s:\n{server.log()}"
                time.sleep(0.2)
        say(f"server up {time.monotonic() - started:.1f} s after start")
        yield server
    finally:
        code = stop(process)
        if code != 0 or "Traceback" in server.log():
            print(f"--- server log (exit {code}) ---\n{server.log()}")


def run_healthcheck(built_image: BuiltImage, server: ImageServer) -> tuple[int, str]:
    """The image's HEALTHCHECK command, run in the image next to the server."""
    test = built_image.healthcheck["Test"]
    assert test[0] == "CMD", test
    check = launch(
        built_image.rootfs,
        built_image.config,
        test[1:],
        server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = check.communicate(timeout=30)[0]
    finally:
        stop(check)
    return check.returncode, output.decode(errors="replace")


def process_uid(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return line.split()[1]
    raise AssertionError(f"no Uid in /proc/{pid}/status")


@pytest.mark.image
@pytest.mark.timeout(3000)
async def test_image_builds_and_serves_client_and_media(
    built_image: BuiltImage, image_server: ImageServer
) -> None:
    started = time.monotonic()
    config, server = built_image.config, image_server

    # The image's metadata: HEALTHCHECK on /health, a non-root user, the ports.
    assert "/app/docker/healthcheck.py" in built_image.healthcheck.get("Test", []), built_image
    uid, _, gid = config["User"].partition(":")
    assert uid.isdigit(), config["User"]
    assert int(uid) != 0, config["User"]
    assert gid.isdigit(), config["User"]
    assert {"3000/tcp", "40000/udp"} <= set(config.get("ExposedPorts") or {}), config
    assert config["Entrypoint"] == ["/app/docker/entrypoint.sh"], config

    # The server: its user, its addresses, single-port mode, the HEALTHCHECK.
    assert process_uid(server.process.pid) == uid
    log = server.log()
    assert f"SFU listening on http://127.0.0.1:{server.http_port}" in log, log
    assert f"UDP {server.udp_port} (single port)" in log, log
    code, output = run_healthcheck(built_image, server)
    assert code == 0, f"HEALTHCHECK: exit {code}: {output}"
    assert "ok" in output, f"HEALTHCHECK: exit {code}: {output}"

    # The browser client, built in the image's Node stage.
    dist = built_image.rootfs / "app" / "client" / "dist"
    status, page = server.get("/")
    assert status == 200
    assert page == (dist / "index.html").read_bytes()
    assert b"/static/app.js" in page
    status, script = server.get("/static/app.js")
    assert status == 200
    assert len(script) > 10_000
    assert script == (dist / "app.js").read_bytes()

    # Media: two pymediasoup peers decode each other's video and audio, all
    # through the one UDP port.
    peers = [await join(server, "image", pid, TONES[pid]) for pid in ("p1", "p2")]  # type: ignore[arg-type]
    try:
        for peer in peers:
            assert await peer.client.wait_for_consumers(2, timeout=20), list(peer.client.consumers)
        for receiver, sender in ((peers[0], peers[1]), (peers[1], peers[0])):
            await assert_decodes_from(receiver, sender.client.peer_id)
        for peer in peers:
            assert server_ports(peer) == {server.udp_port}
        health = server.health()
        assert health["transports"] == 4, health
        assert health["rtpPacketsSent"] > 0, health
    finally:
        await close_all(*peers)

    assert stop(server.process) == 0, (
        f"exit {server.process.returncode} on SIGTERM:\n{server.log()}"
    )
    assert "Traceback" not in server.log(), server.log()
    say(
        f"image {IMAGE}, {built_image.size_mb:.0f} MB ({built_image.timings}): "
        f"client and media checked in {time.monotonic() - started:.0f} s"
    )
