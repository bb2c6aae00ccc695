"""``python -m sfu_bench``: the same as ``sfu bench``."""

from sfu_bench.cli import main

# Guarded: the load processes are spawned, and spawning re-imports the main module.
if __name__ == "__main__":
    raise SystemExit(main())
