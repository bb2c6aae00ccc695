"""Only the optional C extensions; everything else is in pyproject.toml.

``sfu.media._native`` is the per-consumer send of the forwarding path.
``sfu.bench._counter`` is the bench subscribers' packet counting. Both are
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
            ("sfu.bench._counter", "sfu/bench/_counter.c"),
        )
    ]
)
