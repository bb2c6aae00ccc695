"""The benchmark is its own package, ``sfu_bench``: the server never imports it,
``sfu bench`` reaches it lazily and says so plainly when it is missing, and its
worker profiling hook acts in a media worker process only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sfu_bench import worker_profile
from sfu_bench.worker_profile import sitecustomize


def test_the_server_does_not_import_the_bench() -> None:
    code = (
        "import sys\n"
        "import sfu.cli, sfu.server, sfu.media.worker_process, sfu.client\n"
        "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] == 'sfu_bench') or 0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sfu_bench_without_the_package_says_so() -> None:
    code = (
        "import sys\n"
        "class NotInstalled:  # finds no sfu_bench, as if it were not installed\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'sfu_bench':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
        "from sfu.cli import main\n"
        "sys.exit(main(['bench', '--quick']))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2
    assert "sfu_bench package) is not installed" in run.stderr
    assert "Traceback" not in run.stderr


def test_sfu_bench_help_reaches_the_bench() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sfu", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout.startswith("usage: sfu bench")


def test_worker_profile_environment_and_worker_detection(tmp_path: Path) -> None:
    env = worker_profile.environment(tmp_path / "w.prof", {"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(":") == [worker_profile.SITE_DIRECTORY, "/elsewhere"]
    assert env[worker_profile.PROFILE_VARIABLE] == str(tmp_path / "w.prof")
    assert (Path(worker_profile.SITE_DIRECTORY) / "sitecustomize.py").is_file()
    python = "/usr/bin/python3"
    assert sitecustomize._is_worker([python, "-m", "sfu.media.worker_process", "--fd", "3"])
    assert not sitecustomize._is_worker([python, "-m", "sfu", "--config", "x.toml"])
    assert not sitecustomize._is_worker([python, "-m", "sfu_bench.profile_server", "out"])
    assert not sitecustomize._is_worker([python, "-m"])
    assert not sitecustomize._is_worker([python, "script.py"])
