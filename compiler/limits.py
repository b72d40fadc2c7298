"""The budgets a spec cannot exceed, one per resource it controls.

Compiling runs the spec's compile-time code, reads the files it imports and builds what it
describes, so every resource a spec can make grow is capped, checked as the work proceeds,
and reported as a located `limit` error that names the limit and its command-line flag.
Each field of `Limits` is a keyword of `compile_file` / `compile_string` and a flag of the
CLI (`max_nodes` is `--max-nodes`); docs/language.md's Limits section is the user's table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import dims as D


@dataclass(frozen=True)
class Limits:
    # nodes in the graph, each call's tensor results counted (a split into k parts is k)
    max_nodes: int = 1_000_000
    max_depth: int = 64  # block calls nested in one another
    max_nesting: int = 100  # statements nested in `repeat` and `if` bodies
    max_source_bytes: int = 2_000_000  # bytes of one file, and of all files together
    max_imports: int = 10_000  # files read besides the main one
    max_dim_terms: int = D.DEFAULT_MAX_TERMS  # leaves of one derived dimension's expression
    max_dim_degree: int = D.DEFAULT_MAX_DEGREE  # symbols multiplied together in one

    @property
    def max_steps(self) -> int:
        """Statements and expressions evaluated, at most: about 5 per node in real specs."""
        return 20 * self.max_nodes + 100_000

    def steps_allowed(self, nodes: int) -> int:
        """The steps allowed once `nodes` nodes are made: FREE_STEPS of compile-time work,
        and STEPS_PER_NODE more for every node, up to max_steps. Work that makes nothing
        stops within seconds; a network's compile-time work grows with the network."""
        return min(self.max_steps, FREE_STEPS + STEPS_PER_NODE * nodes)


FREE_STEPS = 1_000_000  # a few seconds of compile-time work that makes no node
STEPS_PER_NODE = 20


LIMIT_NAMES = tuple(f.name for f in fields(Limits))

MAX_RANK = 64  # not a budget but PyTorch's: "only tensors with up to 64 dims are supported"


def flag(name: str) -> str:
    """The CLI flag of a limit: max_nodes -> --max-nodes."""
    return "--" + name.replace("_", "-")
