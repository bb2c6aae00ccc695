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
            "sfu.media._native",
            sources=["sfu/media/_native.c"],
            depends=["sfu/media/_sockaddr.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "sfu.bench._counter",
            sources=["sfu/bench/_counter.c"],
            depends=["sfu/media/_sockaddr.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
