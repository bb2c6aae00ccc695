"""``python -m sfu.bench``: the same as ``sfu bench``."""

from sfu.bench.cli import main

# Guarded: the load processes are spawned, and spawning re-imports the main module.
if __name__ == "__main__":
    raise SystemExit(main())
