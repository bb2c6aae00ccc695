"""Only the optional C extension; everything else is in pyproject.toml.

``sfu.media._native`` is the per-consumer send of the forwarding path. It is
optional: without a C compiler the build goes on and the server uses the same
path in Python (slower, see sfu/media/_native.c).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sfu.media._native",
            sources=["sfu/media/_native.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
