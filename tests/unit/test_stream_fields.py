"""The receive statistics' fields are declared once, as fastpath.STREAM_FIELDS:
the C struct's member table and the _native.pyi stub must say the same, and
the pure-Python fallback's slots are made from it."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

from sfu.media import fastpath
from sfu.media.fastpath import STREAM_FIELDS, PythonStreamState
from sfu.media.rtp_stream import RtpStreamRecv

STUB = Path(fastpath.__file__).with_name("_native.pyi")


def stub_fields(class_name: str) -> tuple[str, ...]:
    """The annotated attributes of a class of the stub, in order."""
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return tuple(
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            )
    raise AssertionError(f"{class_name} is not in {STUB}")


def test_the_stub_declares_the_stream_fields() -> None:
    assert stub_fields("RtpStreamState") == STREAM_FIELDS


def test_the_c_struct_has_the_stream_fields() -> None:
    native = pytest.importorskip("sfu.media._native")
    members = tuple(
        name
        for name, value in vars(native.RtpStreamState).items()
        if isinstance(value, (types.MemberDescriptorType, types.GetSetDescriptorType))
        and not name.startswith("__")
    )
    assert members == STREAM_FIELDS


def test_the_python_fallback_takes_its_slots_from_them() -> None:
    assert PythonStreamState.__slots__ == STREAM_FIELDS


def test_a_new_stream_sets_every_field() -> None:
    # An unset slot (or the C struct's object member) would raise AttributeError.
    stream = RtpStreamRecv(1234, 90000)
    values = {name: getattr(stream, name) for name in STREAM_FIELDS}
    assert values["ssrc"] == 1234
    assert values["clock_rate"] == 90000
    assert values["missing"] == {}
