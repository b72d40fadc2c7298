"""Values the elaborator computes with: compile-time constants, tensors, and poison.

Compile-time values are Python ints, floats, bools, strs, tuples and `dims.Dim`s.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import TensorType, Value


@dataclass(frozen=True)
class Tensor:
    """A tensor value during elaboration: an output of a graph node and its type."""

    value: Value
    type: TensorType


@dataclass(frozen=True)
class Multi:
    """The several results of a call (`a, b = split_heads(x)`); not a tuple value."""

    values: tuple


class _Poison:
    """The value of an expression whose error was already reported: anything computed from
    it is poison too, and reports nothing, so one mistake gives one error."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "POISON"


POISON = _Poison()


def is_poison(*values) -> bool:
    return any(v is POISON for v in values)
