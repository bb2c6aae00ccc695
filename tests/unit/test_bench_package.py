"""The benchmark is its own package, ``sfu_bench``: the server never imports it,
and ``sfu bench`` reaches it lazily and says so plainly when it is missing."""

from __future__ import annotations

import subprocess
import sys


def test_the_server_does_not_import_the_bench() -> None:
    code = (
        "import sys\n"
        "import sfu.cli, sfu.server, sfu.workers.worker_process, sfu.client\n"
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
