"""Only the optional C extensions; everything else is in pyproject.toml.

``sfu.media._native`` is the per-consumer send of the forwarding path.
``sfu_bench._counter`` is the bench subscribers' packet counting (the
benchmark is its own package, ``sfu_bench``, beside ``sfu``). Both are
optional: without a C compiler the build goes on, and the server and the
bench use the same paths in Python (slower, see the two .c files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            name,
            sources=[source],
            depends=["sfu/media/_sockaddr.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
        for name, source in (
            ("sfu.media._native", "sfu/media/_native.c"),
            ("sfu_bench._counter", "sfu_bench/_counter.c"),
        )
    ]
)
