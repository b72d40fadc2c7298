"""The operator registry. Importing this package registers every op."""

from . import elementwise, layers, structure  # noqa: F401  (registration side effects)
from .registry import REGISTRY, Arg, ArgError, OpDef, ShapeError

# Ops a spec may call by name; operators (`+`, `@`, ...) and sources (inputs, constants) are not.
CALLABLE = {name: op for name, op in REGISTRY.items() if op.kind not in ("binary", "operator", "source")}

__all__ = ["CALLABLE", "REGISTRY", "Arg", "ArgError", "OpDef", "ShapeError"]
