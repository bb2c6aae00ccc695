"""Only the optional C extensions; everything else is in pyproject.toml.

``sfu.media._native`` is the forwarding path's per-packet part (receive,
rewrite, send), built from ``sfu/media/native/`` as one translation unit.
``sfu_bench._counter`` is the bench subscribers' packet counting (the
benchmark is its own package, ``sfu_bench``, beside ``sfu``). Both are
optional: without a C compiler the build goes on, and the server and the
bench use the same paths in Python (slower, see the .c files).
"""

from glob import glob

from setuptools import Extension, setup

# module.c #includes the other parts: a change to any of them rebuilds it.
NATIVE_PARTS = sorted(glob("sfu/media/native/*.[ch]"))

setup(
    ext_modules=[
        Extension(
            name,
            sources=[source],
            depends=["sfu/media/_sockaddr.h", *parts],
            extra_compile_args=["-O2"],
            optional=True,
        )
        for name, source, parts in (
            ("sfu.media._native", "sfu/media/native/module.c", NATIVE_PARTS),
            ("sfu_bench._counter", "sfu_bench/_counter.c", []),
        )
    ]
)
