"""The operator registry. Importing this package registers every op."""

from . import elementwise, internal, layers, structure  # noqa: F401  (registration side effects)
from .registry import REGISTRY, Arg, ArgError, NoGrad, OpDef, ShapeError

# Ops a spec may call by name; operators (`+`, `@`, ...), sources (inputs, constants) and the
# compiler's internal ops are not.
CALLABLE = {
    name: op for name, op in REGISTRY.items() if op.kind not in ("binary", "operator", "source") and not op.hidden
}

__all__ = ["CALLABLE", "REGISTRY", "Arg", "ArgError", "NoGrad", "OpDef", "ShapeError"]
