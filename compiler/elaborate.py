"""Program -> Graph: expand one network into operator nodes with shapes.

Requires: a loaded Program (parsed, imports resolved, names unique).
Ensures: a Graph whose nodes are in elaboration (topological) order, every node's output
types inferred by its op's rule, names as LANGUAGE.md's Naming section says. Errors are
collected, not raised one at a time: a failed statement binds poison and elaboration goes
on, so every independent error is reported once.

Elaboration runs compile-time code, so it is bounded (compiler/limits.py), each cap checked
as it proceeds: nodes (a call's tensor results counted one by one), steps (one per statement
and per expression evaluated, plus the length of every tuple or string made and of every
error message written, so that time stays linear in what a spec does), block call depth,
and the size of derived dimensions (dims.py). A `repeat` whose count times a lower bound on
its body's cost exceeds what is left is refused before its first pass.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace

from netc.dsl import syntax as S
from netc.dsl.diagnostics import Diagnostic, InternalError, NetcError, Span

from . import dims as D
from . import templates
from .builder import Builder
from .dims import Dim
from .ir import DTYPES, FLOAT_DTYPES, Graph, Node, TensorType, Value
from .limits import FREE_STEPS, MAX_RANK, STEPS_PER_NODE, Limits
from .loader import Program
from .ops import CALLABLE, REGISTRY, ArgError, OpDef, ShapeError
from .ops.registry import REQUIRED, axes_arg, describe, dims_arg, is_int, short
from .ops.structure import FULL_SLICE, split_count
from .symbolic import FrameTrace, Lit, Op, Tracer
from .values import POISON, Multi, Tensor, is_poison

DEFAULT_MAX_NODES = Limits.max_nodes
DEFAULT_MAX_DEPTH = Limits.max_depth
INT_LIMIT = 2**63  # compile-time ints stay within int64, as shapes must

# The steps one error costs (raising, describing, deduplicating it), and one already
# reported: the same error again and again (a failing statement in a loop) teaches nothing.
_ERROR_STEPS, _REPEATED_ERROR_STEPS = 200, 500
RESULT_COUNTS = {"split": split_count}  # ops whose shape rule decides their number of results
_OPERATOR_NODES = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "matmul": "matmul"}
_SYMBOLS = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "matmul": "@",
    "pow": "**", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
}  # fmt: skip


# Compile-time functions (LANGUAGE.md 1.1), and what to use on a tensor instead.
COMPILE_TIME_FUNCTIONS = ("min", "max", "round", "int", "len")
_TENSOR_FIX = {
    "min": "on tensors use `clamp(x, max=...)`, or `where(a < b, a, b)` for two tensors",
    "max": "on tensors use `clamp(x, min=...)`, or `where(a > b, a, b)` for two tensors",
    "round": "a tensor's values are known only at run time",
    "int": 'on a tensor use `cast(x, "int64")`',
    "len": "a tensor's size on an axis is `x.shape[0]`",
}
# Operators PyTorch users reach for under another name.
PYTORCH_NAMES = {
    "transpose": "netc has no `transpose`: reorder axes with `permute(x, (0, 2, 1))`, the order as one tuple",
    "view": "use `reshape(x, (N, -1))`, the shape as one tuple",
    "cat": "use `concat(a, b, axis=1)`",
    "unsqueeze": "use `reshape` with the new axis of size 1: `reshape(x, (N, 1, C))`",
    "squeeze": "use `reshape` without the axis of size 1, or index it: `x[:, 0]`",
}


class FatalError(NetcError):
    """An error after which elaboration cannot go on (a limit was reached)."""


class _StopBody(Exception):
    """A failed `assert`: the rest of its block or network body is not elaborated."""


@dataclass
class Frame:
    """One block instance (or the network body): its variables and naming state."""

    path: tuple[str, ...]
    vars: dict
    expansions: tuple[tuple[str, Span], ...] = ()  # (block, call span), outermost first
    counters: dict = field(default_factory=dict)
    taken: dict = field(default_factory=dict)  # local instance name -> span
    # In an instance made by a block call with `share=`: (its path, the shared instance's
    # path, the `share` key's span); nested instances inherit it
    sharing: tuple | None = None
    trace: FrameTrace = field(default_factory=FrameTrace)  # how its compile-time values were written

    def notes(self) -> tuple[str, ...]:
        return tuple(
            f"in block `{block}`, expanded from the call at {span}" for block, span in reversed(self.expansions)
        )


_CONST_FRAME_PATH = ("<constants>",)


def elaborate(program: Program, network: str | None = None, limits: Limits | None = None) -> Graph:
    return Elaborator(program, limits or Limits()).run(network)


class Elaborator:
    def __init__(self, program: Program, limits: Limits):
        self.program = program
        self.limits = limits
        self.errors: list[Diagnostic] = []
        self._reported: set = set()
        self.graph: Graph | None = None
        self.steps = 0
        self.max_steps = limits.max_steps
        self.allowed = limits.steps_allowed(0)  # grows as nodes are made (Limits.steps_allowed)
        self.stack: list[str] = []  # block names being expanded
        self._consts: dict = {}
        self._const_busy: list[str] = []
        self._bad_blocks: set = set()
        self._hint: str | None = None  # the variable the current statement binds
        self.extra_results = 0  # tensor results beyond the first of each node: they count as nodes
        self._costs: dict[int, tuple] = {}  # id(statement list) -> (it, its lower-bound cost)
        self._block_costs: dict[str, tuple[int, int]] = {}
        self._sizes: dict[int, tuple] = {}  # id(tuple) -> (it, its item count, nested ones included)
        self._suggestions: dict[tuple, tuple] = {}  # (undefined name, frame, names in it) -> notes
        self.trace = Tracer(self._consts, frozenset(program.blocks))  # how compile-time values were written
        # Block templates (compiler/templates.py): every node and block instance made, in
        # order, and the first call of each block by its key
        self._made: list[str] = []
        self._made_instances: list[tuple[str, ...]] = []
        self._templates: dict[tuple, object] = {}  # key -> SEEN, a Template, or None (not copied)

    # ------------------------------------------------------------ entry

    def run(self, name: str | None) -> Graph:
        net = self._pick(name)
        self.graph = Graph(net.name)
        self.builder = Builder(self.graph)
        try:
            with D.caps(self.limits.max_dim_terms, self.limits.max_dim_degree):
                self._bad_blocks = self._check_returns()
                for const_name, const in self.program.consts.items():
                    self._const(const_name, const.name_span)
                self._network(net)
        except FatalError as exc:
            for d in exc.diagnostics:
                self.errors.append(d)
        except RecursionError:
            self.errors.append(Diagnostic("the spec nests too deeply to elaborate", net.name_span, code="limit"))
        if self.errors:
            exc = NetcError(self.errors)
            exc.steps = self.steps  # the work done before giving up (tests bound it)
            raise exc
        return self.graph

    def _pick(self, name):
        nets = self.program.networks
        if not nets:
            span = Span(self.program.main.file, 1, 1, 1, 2)
            raise NetcError("no network to compile: the file defines none", span, code="network")
        if name is None:
            if len(nets) > 1:
                names = ", ".join(n.name for n in nets)
                raise NetcError(
                    f"the file defines {len(nets)} networks ({names}); choose one with --network",
                    nets[1].name_span,
                    code="network",
                )
            return nets[0]
        for net in nets:
            if net.name == name:
                return net
        names = ", ".join(n.name for n in nets)
        raise NetcError(
            f"no network named `{name}`; the file defines {names}",
            nets[0].name_span,
            code="network",
        )

    # ------------------------------------------------------------ diagnostics

    def _tick(self, steps: int, span: Span | None):
        """Counts `steps` of work; past the budget, a fatal error at `span`."""
        self.steps += steps
        if self.steps <= self.allowed:
            return
        self.allowed = self.limits.steps_allowed(self._nodes_used())
        if self.steps > self.allowed:
            self.steps = self.allowed  # the work charged past the budget is never done
            raise FatalError(
                f"elaboration takes more than {self.allowed} steps (the limit; it follows --max-nodes)",
                span,
                code="limit",
            )

    def _record(self, exc: NetcError, frame: Frame | None):
        notes = frame.notes() if frame else ()
        for d in exc.diagnostics:
            key = (d.span, d.message)
            repeated = key in self._reported
            self._tick((_REPEATED_ERROR_STEPS if repeated else _ERROR_STEPS) + len(d.message) // 16, d.span)
            if repeated:
                continue
            self._reported.add(key)
            self.errors.append(Diagnostic(d.message, d.span, d.notes + notes, d.severity, d.code))

    def _check_returns(self) -> set:
        """Every block and network ends with its only `return`; reported once per definition."""
        bad = set()
        defs = list(self.program.blocks.values()) + list(self.program.networks)
        for d in defs:
            kind = "block" if isinstance(d, S.Block) else "network"
            strays = list(_returns(d.body[:-1] if d.body else ()))
            ends = bool(d.body) and isinstance(d.body[-1], S.Return)
            if not ends and not any(isinstance(s, S.Return) for s in d.body):
                strays += list(_returns(d.body[-1:]))  # a return nested as the last statement
                if not strays:
                    self.errors.append(
                        Diagnostic(f"{kind} `{d.name}` does not end with `return`", d.name_span, code="return")
                    )
                    bad.add(d.name)
            for stray in strays:
                self.errors.append(
                    Diagnostic(
                        f"`return` must be the last statement of {kind} `{d.name}`",
                        stray.span,
                        code="return",
                    )
                )
                bad.add(d.name)
        return bad

    # ------------------------------------------------------------ networks and blocks

    def _network(self, net: S.Network):
        self._net = net
        if net.name in self._bad_blocks:
            return
        frame = Frame((), {})
        for inp in net.inputs:
            self._input(inp, frame)
        outputs = self._body(net.body, frame)
        if is_poison(outputs):
            return
        ret = net.body[-1]
        used = set()
        for k, (expr, value) in enumerate(zip(ret.values, outputs)):
            if value is POISON:
                continue
            if not isinstance(value, Tensor):
                self._record(
                    NetcError(f"a network output must be a tensor, got {describe(value)}", expr.span),
                    frame,
                )
                continue
            out_name = expr.id if isinstance(expr, S.Name) and expr.id not in used else f"output_{k}"
            used.add(out_name)
            self.graph.outputs.append((out_name, value.value))

    def _input(self, inp: S.Input, frame: Frame):
        dtype = inp.dtype or "float32"
        if dtype not in DTYPES:
            self._record(
                NetcError(f"unknown dtype `{dtype}`; expected float32, float64, int64 or bool", inp.dtype_span),
                frame,
            )
            dtype = "float32"
        if len(inp.shape) > MAX_RANK:
            self._record(NetcError(f"an input has at most {MAX_RANK} axes, got {len(inp.shape)}", inp.span), frame)
            return self._bind(frame, inp.name, POISON)
        shape = []
        for expr in inp.shape:
            if isinstance(expr, S.Name) and expr.id not in self.program.consts:
                d = frame.vars.get(expr.id)
                if d is None or not isinstance(d, Dim):
                    d = D.symbol(expr.id)
                    frame.vars[expr.id] = d
                shape.append(d)
                continue
            try:
                value = self._eval(expr, self._const_frame())
            except NetcError as exc:
                self._record(exc, frame)
                value = POISON
            if value is POISON:
                return self._bind(frame, inp.name, POISON)
            if not is_int(value) or value < 1:
                self._record(
                    NetcError(
                        f"an input dimension must be a positive integer or a name, got {describe(value)}",
                        expr.span,
                    ),
                    frame,
                )
                return self._bind(frame, inp.name, POISON)
            shape.append(value)
        if inp.name in frame.vars and isinstance(frame.vars[inp.name], Tensor):
            self._record(NetcError(f"input `{inp.name}` is declared twice", inp.span), frame)
            return
        node = self._add(
            Node(
                inp.name,
                "input",
                (),
                {"type": TensorType(tuple(shape), dtype)},
                (TensorType(tuple(shape), dtype),),
                span=inp.span,
            )
        )
        frame.vars[inp.name] = Tensor(Value(node.name), node.outputs[0])
        self.graph.inputs.append(node.name)

    def _body(self, body, frame: Frame):
        """Runs the statements before the final `return`; returns the returned values."""
        errors_before = len(self.errors)
        try:
            self._exec(body[:-1], frame)
        except _StopBody:
            return POISON
        self._hint = None
        self.trace.statement(frame, body[-1])
        values = []
        for expr in body[-1].values:
            try:
                values.append(self._eval(expr, frame))
            except FatalError as exc:
                raise _located(exc, frame) from None
            except NetcError as exc:
                self._record(exc, frame)
                values.append(POISON)
        if len(self.errors) > errors_before and frame.expansions:
            return POISON  # a broken block instance yields poison, not half a result
        return values

    # ------------------------------------------------------------ statements

    def _exec(self, stmts, frame: Frame):
        for stmt in stmts:
            self._tick(1, stmt.span)
            if isinstance(stmt, S.Assign) and len(stmt.targets) == 1:
                self._hint = stmt.targets[0]
            else:
                self._hint = stmt.target if isinstance(stmt, S.Annotated) else None
            self.trace.statement(frame, stmt)
            try:
                self._stmt(stmt, frame)
            except FatalError as exc:
                raise _located(exc, frame) from None
            except NetcError as exc:
                try:
                    self._record(_located_at(exc, stmt.span), frame)
                except FatalError as fatal:
                    raise _located(fatal, frame) from None
                if isinstance(stmt, S.Assert):
                    raise _StopBody() from None  # later statements may rely on what it asserts
                for name in self._assigned(stmt):
                    frame.vars[name] = POISON

    def _stmt(self, stmt, frame: Frame):
        if isinstance(stmt, S.Assign):
            value = self._eval(stmt.value, frame)
            if len(stmt.targets) == 1:
                if isinstance(value, Multi):
                    raise NetcError(
                        f"this call returns {len(value.values)} values; unpack them: `{', '.join(['_'] * len(value.values))} = ...`",
                        _at_call(stmt.value),
                    )
                self.trace.bind(frame, stmt.targets[0], stmt.value, value)
                return self._bind(frame, stmt.targets[0], value)
            if value is POISON:
                for target in stmt.targets:
                    self._bind(frame, target, POISON)
                return
            got = len(value.values) if isinstance(value, Multi) else 1
            if got != len(stmt.targets):
                raise NetcError(
                    f"cannot unpack {got} value{'s' * (got != 1)} into {len(stmt.targets)} names",
                    _at_call(stmt.value),
                )
            for target, v in zip(stmt.targets, value.values):
                self.trace.bind(frame, target, None, v)
                self._bind(frame, target, v)
        elif isinstance(stmt, S.Annotated):
            value = self._eval(stmt.value, frame)
            self.trace.bind(frame, stmt.target, stmt.value, value)
            self._bind(frame, stmt.target, value)
            if not is_poison(value):
                self._annotation(stmt, value, frame)
        elif isinstance(stmt, S.Repeat):
            self._repeat(stmt, frame)
        elif isinstance(stmt, S.If):
            for taken, (cond_expr, body) in enumerate(stmt.branches):
                cond = self._condition(cond_expr, frame)
                if cond is POISON:
                    for name in self._assigned(stmt):
                        frame.vars[name] = POISON
                    return
                if cond:
                    self.trace.enter_branch(frame, stmt, taken)
                    self._exec(body, frame)
                    return self.trace.exit_branch(frame)
            if stmt.orelse is not None:
                self.trace.enter_branch(frame, stmt, len(stmt.branches))
                self._exec(stmt.orelse, frame)
                self.trace.exit_branch(frame)
        elif isinstance(stmt, S.Assert):
            cond = self._condition(stmt.cond, frame)
            if cond is POISON or cond:
                return
            message = "assertion failed"
            if stmt.message is not None:
                text = self._eval(stmt.message, frame)
                message = text if isinstance(text, str) else f"assertion failed: {describe(text)}"
            raise NetcError(message, stmt.span, code="assert")
        elif isinstance(stmt, S.Return):  # only where _check_returns already reported it
            return

    def _bind(self, frame: Frame, name: str, value):
        frame.vars[name] = value

    def _condition(self, expr, frame):
        value = self._eval(expr, frame)
        if value is POISON or isinstance(value, bool):
            return value
        if isinstance(value, Tensor):
            raise NetcError(
                f"a condition must be known at compile time, but this is {describe(value)}, known only at run time",
                expr.span,
                notes=(
                    "to choose per element, use `where(cond, a, b)` (or `relu`, `clamp`); "
                    "`if` and `assert` decide once, at compile time",
                ),
                code="type",
            )
        raise NetcError(f"a condition must be true or false, got {describe(value)}", expr.span, code="type")

    def _repeat(self, stmt: S.Repeat, frame: Frame):
        count = self._eval(stmt.count, frame)
        if count is POISON:
            for name in self._assigned(stmt):
                frame.vars[name] = POISON
            return
        if isinstance(count, Dim):
            raise NetcError(
                f"a repeat count must be an integer known at compile time, got {describe(count)}",
                stmt.count.span,
                code="type",
            )
        if not is_int(count) or count < 0:
            raise NetcError(
                f"a repeat count must be a non-negative integer, got {describe(count)}",
                stmt.count.span,
                notes=("a tensor is known only at run time; a repeat count is unrolled at compile time",)
                if isinstance(count, Tensor)
                else (),
                code="type",
            )
        steps, nodes = self._cost(stmt.body, self._scope_names(frame))
        steps += 1  # a pass is a step, its body empty or not
        used = self._nodes_used()
        free = FREE_STEPS + STEPS_PER_NODE * used - self.steps  # and the nodes a pass makes allow more
        too_large = count * nodes > self.limits.max_nodes - used or count * steps > self.max_steps - self.steps
        if too_large or count * (steps - STEPS_PER_NODE * nodes) > free:
            raise FatalError(
                f"repeat {count} is too large: elaboration is limited to {FREE_STEPS} steps and {STEPS_PER_NODE} "
                f"more for each node made (at most {self.max_steps}), and to {self.limits.max_nodes} nodes "
                "(see --max-nodes)",
                stmt.count.span,
                notes=(f"one pass of its body takes at least {steps} steps and makes at least {nodes} nodes",),
                code="limit",
            )
        loop = self.trace.enter_repeat(frame, stmt)
        for i in range(count):
            self._tick(1, stmt.span)
            if stmt.var:
                frame.vars[stmt.var] = i
            self.trace.iteration(frame, loop, i)
            self._exec(stmt.body, frame)
        self.trace.exit_repeat(frame, loop)

    # ------------------------------------------------------------ static costs

    def _assigned(self, stmt) -> set:
        """The names `stmt` may bind, its nested statements included (memoized: a failing
        statement in a loop would otherwise walk its body on every pass)."""
        known = self._costs.get(id(stmt))
        if known is None or known[0] is not stmt:
            known = (stmt, _assigned([stmt]))
            self._costs[id(stmt)] = known
        return known[1]

    def _scope_names(self, frame: Frame) -> frozenset:
        """The names the definition running in `frame` may bind: a repeat count written as
        one of them is not the file-level constant of that name."""
        if frame.expansions:
            block = self.program.blocks[frame.expansions[-1][0]]
            own, body = {p.name for p in block.params}, block.body
        else:
            net = self._net
            own = {i.name for i in net.inputs} | {e.id for i in net.inputs for e in i.shape if isinstance(e, S.Name)}
            body = net.body
        key = ("scope", id(body))
        known = self._costs.get(key)
        if known is None or known[0] is not body:
            known = (body, frozenset(own | _assigned(body)))
            self._costs[key] = known
        return known[1]

    def _cost(self, stmts, shadowed: frozenset) -> tuple[int, int]:
        """A lower bound on the (steps, nodes) that one run of `stmts` takes when it
        succeeds: its statements and expressions, the op calls and the bodies of the block
        calls it surely makes, times the counts of the repeats whose counts are known before
        it runs (a literal, or a file-level constant). `if` bodies count nothing."""
        key = ("cost", id(stmts))
        known = self._costs.get(key)
        if known is not None and known[0] is stmts:
            return known[1]
        steps = nodes = 0
        for stmt in stmts:
            exprs: list = []
            if isinstance(stmt, (S.Assign, S.Annotated)):
                exprs = [stmt.value]
            elif isinstance(stmt, S.Repeat):
                exprs = [stmt.count]
                count = self._static_count(stmt.count, shadowed)
                if count:
                    inner = self._cost(stmt.body, shadowed)
                    steps, nodes = steps + count * (inner[0] + 1), nodes + count * inner[1]
            elif isinstance(stmt, S.If):
                exprs = [stmt.branches[0][0]]
            elif isinstance(stmt, S.Assert):
                exprs = [stmt.cond]
            else:
                continue  # a return: run by _body, not _exec
            steps += 1
            for expr in exprs:
                s, n = self._expr_cost(expr)
                steps, nodes = steps + s, nodes + n
        self._costs[key] = (stmts, (steps, nodes))
        return steps, nodes

    def _static_count(self, expr, shadowed: frozenset) -> int:
        if isinstance(expr, S.Literal) and is_int(expr.value):
            return max(0, expr.value)
        if isinstance(expr, S.Name) and expr.id not in shadowed and is_int(self._consts.get(expr.id)):
            return max(0, self._consts[expr.id])
        return 0

    def _expr_cost(self, expr) -> tuple[int, int]:
        """Steps and nodes an expression surely takes: each syntax node is a step, each op
        call a node, each block call its body's cost; the right side of `and`/`or` may not run."""
        steps = nodes = 0
        pending = [expr]
        while pending:
            e = pending.pop()
            steps += 1
            if isinstance(e, S.Call):
                if e.func in self.program.blocks:
                    s, n = self._block_cost(e.func)
                    steps, nodes = steps + s, nodes + n
                elif e.func in CALLABLE:
                    nodes += 1
                pending += list(e.args) + [kw.value for kw in e.keywords]
            elif isinstance(e, S.Binary):
                pending += [e.left] if e.op in ("and", "or") else [e.left, e.right]
            elif isinstance(e, S.Unary):
                pending.append(e.operand)
            elif isinstance(e, S.TupleLit):
                pending += list(e.items)
            elif isinstance(e, S.Attribute):
                pending.append(e.value)
            elif isinstance(e, S.Index):
                pending += [e.value, *e.items]
            elif isinstance(e, S.Slice):
                pending += [b for b in (e.start, e.stop, e.step) if b is not None]
        return steps, nodes

    def _block_cost(self, name: str) -> tuple[int, int]:
        if name in self._block_costs:
            return self._block_costs[name]
        self._block_costs[name] = (0, 0)  # a recursive call (an error of its own) adds nothing
        block = self.program.blocks[name]
        shadowed = frozenset({p.name for p in block.params} | _assigned(block.body))
        steps, nodes = self._cost(block.body, shadowed)
        if block.body and isinstance(block.body[-1], S.Return):
            for expr in block.body[-1].values:
                s, n = self._expr_cost(expr)
                steps, nodes = steps + s, nodes + n
        self._block_costs[name] = (steps, nodes)
        return steps, nodes

    def _nodes_used(self) -> int:
        return len(self.graph) + self.extra_results

    def _annotation(self, stmt: S.Annotated, value, frame: Frame):
        if not isinstance(value, Tensor):
            raise NetcError(f"a shape annotation needs a tensor, got {describe(value)}", stmt.span, code="type")
        want = []
        for expr in stmt.shape:
            if isinstance(expr, S.Name) and expr.id == "_" and "_" not in frame.vars:
                want.append(None)
                continue
            d = self._eval(expr, frame)
            if d is POISON:
                return
            if not D.is_dim(d):
                raise NetcError(f"a shape entry must be a dimension, got {describe(d)}", expr.span, code="type")
            most = D.at_most(d)
            if most is not None and most < 1:  # 0, -3, -N: never the size of an axis
                raise NetcError(f"a shape entry must be a positive size, got {short(d)}", expr.span, code="shape")
            want.append(d)
        actual = value.type.shape
        wanted = "[" + ", ".join("_" if d is None else str(d) for d in want) + "]"
        if len(want) != len(actual) or any(w is not None and D.provably_unequal(w, a) for w, a in zip(want, actual)):
            self._record(
                NetcError(
                    f"shape mismatch: `{stmt.target}` is annotated {wanted} but its shape is {D.shape_text(actual)}",
                    stmt.span,
                    code="shape",
                ),
                frame,
            )

    # ------------------------------------------------------------ expressions

    def _eval(self, expr, frame: Frame):
        self.steps += 1  # _tick, inlined: this is the hottest line of elaboration
        if self.steps > self.allowed:
            self._tick(0, expr.span)
        if isinstance(expr, S.Literal):
            return _checked_int(expr.value, expr.span)
        if isinstance(expr, S.Name):
            return self._lookup(expr, frame)
        if isinstance(expr, S.Call):
            return self._call(expr, frame)
        if isinstance(expr, S.Binary):
            return self._binary(expr, frame)
        if isinstance(expr, S.Unary):
            return self._unary(expr, frame)
        if isinstance(expr, S.TupleLit):
            items = tuple(self._eval(item, frame) for item in expr.items)
            for item, sub in zip(items, expr.items):
                if isinstance(item, (Tensor, Multi)):
                    raise NetcError("a tuple holds compile-time values, not tensors", sub.span, code="type")
            if is_poison(*items):
                return POISON
            self._tick(self._size(items), expr.span)  # a tuple of tuples costs all it holds
            return items
        if isinstance(expr, S.Attribute):
            value = self._eval(expr.value, frame)
            if value is POISON:
                return POISON
            if expr.attr != "shape":
                raise NetcError(
                    f"unknown attribute `{expr.attr}`; a tensor has only `.shape`",
                    expr.attr_span,
                    code="name",
                )
            if not isinstance(value, Tensor):
                raise NetcError(f"`.shape` needs a tensor, got {describe(value)}", expr.value.span, code="type")
            return tuple(value.type.shape)
        if isinstance(expr, S.Index):
            return self._index(expr, frame)
        raise InternalError(f"no evaluation rule for {type(expr).__name__}")

    def _size(self, value) -> int:
        """The work a compile-time value stands for: a tuple's items, nested tuples' items
        included (measured once per tuple: parts may be shared, `t = (t, t)`), a string's
        characters, a dimension's terms in units of 16; 1 for anything else."""
        if isinstance(value, str):
            return 1 + len(value)
        if isinstance(value, Dim):
            return 1 + value.size // 16
        if not isinstance(value, tuple):
            return 1
        known = self._sizes.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        size = 1 + sum(self._size(item) for item in value)
        self._sizes[id(value)] = (value, size)
        return size

    def _lookup(self, expr: S.Name, frame: Frame):
        if expr.id in frame.vars:
            return frame.vars[expr.id]
        if expr.id in self.program.consts:
            return self._const(expr.id, expr.span)
        key = (expr.id, frame.path, len(frame.vars))  # a frame's names only grow: same count, same names
        notes = self._suggestions.get(key)
        if notes is None:
            candidates = list(frame.vars) + list(self.program.consts)
            self._tick(len(candidates), expr.span)  # a suggestion reads every name in scope
            notes = self._suggestions[key] = _suggest(expr.id, candidates)
        if expr.id in self.program.blocks or expr.id in CALLABLE:
            notes = (f"`{expr.id}` is an operator or block: call it, or pipe into it with `->`",)
        raise NetcError(f"undefined name `{expr.id}`", expr.span, notes=notes, code="name")

    def _const_frame(self) -> Frame:
        return Frame(_CONST_FRAME_PATH, {})

    def _const(self, name: str, span: Span):
        if name in self._consts:
            return self._consts[name]
        if name in self._const_busy:
            cycle = " -> ".join(self._const_busy[self._const_busy.index(name) :] + [name])
            raise NetcError(f"constant `{name}` is defined in terms of itself: {cycle}", span, code="name")
        const = self.program.consts[name]
        self._const_busy.append(name)
        try:
            value = self._eval(const.value, self._const_frame())
        except NetcError as exc:
            if isinstance(exc, FatalError):
                raise
            self._record(exc, None)
            value = POISON
        finally:
            self._const_busy.pop()
        self._consts[name] = value  # no op makes a tensor from nothing: constants stay compile-time
        return value

    def _index(self, expr: S.Index, frame: Frame):
        base = self._eval(expr.value, frame)
        if base is POISON:
            return POISON
        _one_value(base, _at_call(expr.value))
        if isinstance(base, Tensor):
            return self._tensor_index(expr, base, frame)
        if expr.index is None:
            bad = next((i for i in expr.items if isinstance(i, (S.Slice, S.EllipsisLit))), expr.items[-1])
            raise NetcError(
                f"only a tensor takes slices, `...` or several indices; {describe(base)} takes one integer index",
                bad.span,
                code="type",
            )
        index = self._eval(expr.index, frame)
        if index is POISON:
            return POISON
        if not isinstance(base, tuple):
            raise NetcError(f"only a tuple can be indexed, got {describe(base)}", expr.value.span, code="type")
        if not is_int(index):
            raise NetcError(f"an index must be an integer, got {describe(index)}", expr.index.span, code="type")
        if not -len(base) <= index < len(base):
            raise NetcError(
                f"index {index} is out of range for a tuple of {len(base)} items",
                expr.index.span,
                code="type",
            )
        return base[index]

    def _tensor_index(self, expr: S.Index, base: Tensor, frame: Frame):
        """`x[:, 0]`, `x[..., 1:3]`: NumPy basic indexing, normalized to one entry per axis."""
        rank = base.type.rank
        ellipses = [item for item in expr.items if isinstance(item, S.EllipsisLit)]
        if len(ellipses) > 1:
            raise NetcError("an index may hold `...` only once", ellipses[1].span, code="type")
        explicit = len(expr.items) - len(ellipses)
        if explicit > rank:
            extra = [item for item in expr.items if not isinstance(item, S.EllipsisLit)][rank]
            raise NetcError(
                f"too many indices: {explicit} for a tensor of rank {rank} ({base.type})",
                extra.span,
                code="shape",
            )
        entries, spans, written = [], {}, []  # written: how the spec wrote each entry (symbolic.py)
        full = Op("tuple", (Lit(None),) * 3)
        for item in expr.items:
            if isinstance(item, S.EllipsisLit):
                for _ in range(rank - explicit):
                    spans[f"axis{len(entries)}"] = item.span
                    entries.append(FULL_SLICE)
                    written.append(full)
                continue
            spans[f"axis{len(entries)}"] = item.span
            if isinstance(item, S.Slice):
                parts = (item.start, item.stop, item.step)
                bounds = [None if b is None else self._index_bound(b, frame) for b in parts]
                if POISON in bounds:
                    return POISON
                step = bounds[2]
                if step is not None and (not is_int(step) or step < 1):
                    raise NetcError(
                        f"a slice step must be a positive integer (as in torch), got {describe(step)}",
                        item.step.span,
                        code="type",
                    )
                bounds[2] = None if step == 1 else step
                entries.append(tuple(bounds))
                written.append(Op("tuple", tuple(self._written(b, v, frame) for b, v in zip(parts, bounds))))
            else:
                value = self._index_bound(item, frame)
                if value is POISON:
                    return POISON
                entries.append(value)
                written.append(self._written(item, value, frame))
        entries += [FULL_SLICE] * (rank - len(entries))
        written += [full] * (rank - len(written))
        return self._node(
            REGISTRY["getitem"],
            [base],
            {"index": tuple(entries)},
            frame,
            expr.span,
            "getitem",
            arg_spans=spans,
            exprs={"index": Op("tuple", tuple(written))},
        )

    def _written(self, expr, value, frame: Frame):
        """How the spec wrote an index entry, for backends that write code in its terms."""
        if expr is None or value is None:
            return Lit(None)
        return self.trace.expr(frame, expr) or Lit(value)

    def _index_bound(self, expr, frame: Frame):
        """An index or slice bound: a compile-time int or dimension."""
        value = self._eval(expr, frame)
        if value is POISON or D.is_dim(value):
            return value
        if isinstance(value, Tensor):
            raise NetcError(
                "a tensor cannot index a tensor: index with compile-time integers, "
                "or pick entries with `index_select(x, ids, axis=...)`",
                expr.span,
                code="type",
            )
        raise NetcError(
            f"an index must be an integer or a dimension, got {describe(value)}", _at_call(expr), code="type"
        )

    def _unary(self, expr: S.Unary, frame: Frame):
        value = self._eval(expr.operand, frame)
        if value is POISON:
            return POISON
        if expr.op == "not":
            if isinstance(value, Tensor):
                raise NetcError(
                    "`not` works on compile-time values only; on a bool tensor use `logical_not(x)`",
                    expr.span,
                    code="type",
                )
            if not isinstance(value, bool):
                raise NetcError(
                    f"`not` needs true or false, got {describe(value)}",
                    expr.operand.span,
                    code="type",
                )
            return not value
        if isinstance(value, Tensor):
            return self._node(REGISTRY["neg"], [value], {}, frame, expr.span, "neg")
        if isinstance(value, Dim):
            try:
                return D.mul(value, -1)
            except D.DimTooLarge as exc:
                raise _located_at(exc, expr.span) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NetcError(f"cannot negate {describe(value)}", expr.span, code="type")
        return _checked_int(-value, expr.span)

    def _binary(self, expr: S.Binary, frame: Frame):
        op = expr.op
        left = self._eval(expr.left, frame)
        if op in ("and", "or"):
            if left is POISON:
                return POISON
            if isinstance(left, Tensor):
                raise NetcError(
                    f"`{op}` works on compile-time values only; on bool tensors use `logical_{op}(a, b)`",
                    expr.span,
                    code="type",
                )
            if not isinstance(left, bool):
                raise NetcError(f"`{op}` needs true or false, got {describe(left)}", expr.left.span, code="type")
            if (op == "and" and not left) or (op == "or" and left):
                return left
            right = self._eval(expr.right, frame)
            if isinstance(right, Tensor):
                raise NetcError(
                    f"`{op}` works on compile-time values only; on bool tensors use `logical_{op}(a, b)`",
                    expr.span,
                    code="type",
                )
            if right is not POISON and not isinstance(right, bool):
                raise NetcError(
                    f"`{op}` needs true or false, got {describe(right)}",
                    expr.right.span,
                    code="type",
                )
            return right
        right = self._eval(expr.right, frame)
        if is_poison(left, right):
            return POISON
        _one_value(left, _at_call(expr.left))
        _one_value(right, _at_call(expr.right))
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self._tensor_binary(expr, left, right, frame)
        sizes = self._size(left) + self._size(right)
        self._tick(sizes - 2, expr.span)  # comparing or joining tuples and strings reads them
        try:
            result = _const_binary(op, left, right, expr)
        except D.DimTooLarge as exc:
            raise _located_at(exc, expr.span) from None
        if isinstance(result, tuple):  # a joined tuple: its size is its parts', no need to walk it
            self._sizes[id(result)] = (result, sizes - 1)
        return result

    def _tensor_binary(self, expr: S.Binary, left, right, frame: Frame):
        op = expr.op
        if op in ("floordiv", "mod"):
            raise NetcError(
                f"`{_SYMBOLS[op]}` works on compile-time values only, not on tensors",
                expr.span,
                code="type",
            )
        if op == "pow":
            if not isinstance(left, Tensor) or isinstance(right, Tensor):
                raise NetcError("`**` on a tensor needs a constant exponent: `x ** 2`", expr.span, code="type")
            if isinstance(right, bool) or not isinstance(right, (int, float)):
                raise NetcError(
                    f"the exponent must be a number, got {describe(right)}",
                    expr.right.span,
                    code="type",
                )
            exponent = float(right)
            if left.type.dtype not in FLOAT_DTYPES:  # as torch: int64 ** 2 is int64, ** 0.5 is no int
                if not is_int(right) or right < 0:
                    raise NetcError(
                        f"`**` on an {left.type.dtype} tensor needs a non-negative integer exponent, "
                        f"got {describe(right)}",
                        expr.right.span,
                        code="dtype",
                    )
                exponent = right
            exprs = {"exponent": self.trace.expr(frame, expr.right)}
            return self._node(REGISTRY["pow"], [left], {"exponent": exponent}, frame, expr.span, "pow", exprs=exprs)
        if op == "matmul" and not (isinstance(left, Tensor) and isinstance(right, Tensor)):
            raise NetcError("`@` needs two tensors", expr.span, code="type")
        tensor = left if isinstance(left, Tensor) else right
        operands = []
        for side, sub in ((left, expr.left), (right, expr.right)):
            operands.append(side if isinstance(side, Tensor) else self._scalar(side, tensor, sub, frame))
        try:
            return self._node(REGISTRY[_OPERATOR_NODES.get(op, op)], operands, {}, frame, expr.span, op)
        except NetcError as exc:
            if op in ("add", "sub") and isinstance(left, Tensor) and isinstance(right, Tensor):
                hint = _projection_hint(expr, left.type.shape, right.type.shape)
                if hint:
                    d = exc.diagnostic
                    raise NetcError(d.message, d.span, notes=d.notes + (hint,), code=d.code)
            raise

    def _scalar(self, value, tensor: Tensor, expr, frame: Frame) -> Tensor:
        """A constant operand of a tensor operator: a 0-d tensor of the tensor's dtype."""
        if isinstance(value, Dim):
            raise NetcError(
                f"{describe(value)} cannot be a tensor operand: it is only known at run time",
                expr.span,
                code="type",
            )
        dtype = tensor.type.dtype
        if dtype == "bool":
            if not isinstance(value, bool):
                raise NetcError(
                    f"the other operand is a bool tensor, so this side must be true or false, got {describe(value)}",
                    expr.span,
                    code="type",
                )
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NetcError(
                f"a tensor operator needs a tensor or a number, got {describe(value)}",
                expr.span,
                code="type",
            )
        elif isinstance(value, float) and dtype not in FLOAT_DTYPES:
            raise NetcError(
                f"the float {value!r} cannot take the dtype {dtype} of the other operand",
                expr.span,
                code="dtype",
            )
        value = float(value) if dtype in FLOAT_DTYPES else value if dtype == "bool" else int(value)
        attrs, exprs = {"value": value, "dtype": dtype}, {"value": self.trace.expr(frame, expr)}
        return self._node(REGISTRY["constant"], [], attrs, frame, expr.span, "constant", exprs=exprs)

    # ------------------------------------------------------------ calls

    def _call(self, expr: S.Call, frame: Frame):
        # A block may take the name of a built-in (LANGUAGE.md 1.1): in its file and the
        # files importing it, the name means the block.
        if expr.func in self.program.blocks:
            kind = "block"
        elif expr.func in COMPILE_TIME_FUNCTIONS:
            return self._compile_time_call(expr, frame)
        elif expr.func in CALLABLE:
            kind = "op"
        else:
            candidates = list(CALLABLE) + list(self.program.blocks) + list(COMPILE_TIME_FUNCTIONS)
            self._tick(len(candidates), expr.func_span)
            notes = (PYTORCH_NAMES[expr.func],) if expr.func in PYTORCH_NAMES else _suggest(expr.func, candidates)
            raise NetcError(
                f"unknown operator or block `{expr.func}`",
                expr.func_span,
                notes=notes,
                code="name",
            )
        positional = [self._eval(a, frame) for a in expr.args]
        keywords = {}
        instance_name, name_span = None, None
        share = None  # (the instance name, the `share` key's span)
        for kw in expr.keywords:
            given = (kw.key == "name" and instance_name is not None) or (kw.key == "share" and share is not None)
            if kw.key in keywords or given:
                raise NetcError(f"argument `{kw.key}` is given twice", kw.key_span, code="argument")
            value = self._eval(kw.value, frame)
            if kw.key == "share" and not (kind == "block" and self._has_param(expr.func, "share")):
                if value is not POISON and (not isinstance(value, str) or not value.isidentifier()):
                    raise NetcError(
                        f"`share` must name an earlier instance (an identifier string), got {describe(value)}",
                        kw.key_span,
                        code="argument",
                    )
                share = (value, kw.key_span)
                continue
            if kw.key == "name":
                if value is not POISON and (not isinstance(value, str) or not value.isidentifier()):
                    raise NetcError(
                        f"`name` must be an identifier string, got {describe(value)}",
                        kw.key_span,
                        code="argument",
                    )
                instance_name, name_span = value, kw.key_span
                continue
            keywords[kw.key] = (value, kw)
        if is_poison(instance_name, share and share[0], *positional, *(v for v, _ in keywords.values())):
            return POISON
        for value, arg in zip(positional, expr.args):
            _one_value(value, _at_call(arg))
        for value, kw in keywords.values():
            _one_value(value, kw.key_span)
        if share and share[0] == instance_name:
            raise NetcError(f"`share`: `{instance_name}` is this call itself", share[1], code="share")
        if kind == "op":
            return self._op_call(
                CALLABLE[expr.func], expr, positional, keywords, instance_name, name_span, frame, share=share
            )
        return self._block_call(
            self.program.blocks[expr.func],
            expr,
            positional,
            keywords,
            instance_name,
            name_span,
            frame,
            share=share,
        )

    def _compile_time_call(self, expr: S.Call, frame: Frame):
        """`min`, `max`, `round`, `int`, `len`: Python's, on compile-time values only."""
        func = expr.func
        if expr.keywords:
            kw = expr.keywords[0]
            raise NetcError(f"`{func}` takes no keyword arguments", kw.key_span, code="argument")
        values = [self._eval(a, frame) for a in expr.args]
        if is_poison(*values):
            return POISON
        for value, arg in zip(values, expr.args):
            _one_value(value, _at_call(arg))
        items, spans = values, [a.span for a in expr.args]
        if func in ("min", "max"):
            if len(values) == 1 and isinstance(values[0], tuple):  # min((1, 2)), as Python
                items, spans = list(values[0]), spans * len(values[0])
            if not items or (len(values) < 2 and not isinstance(values[0], tuple)):
                raise NetcError(
                    f"`{func}` needs two or more numbers, or one tuple of them", expr.func_span, code="argument"
                )
        elif len(values) != 1:
            raise NetcError(
                f"`{func}` takes one argument, got {len(values)}",
                expr.args[1].span if len(values) > 1 else expr.func_span,
                code="argument",
            )
        for value, span in zip(items, spans):
            if isinstance(value, Tensor):
                raise NetcError(
                    f"`{func}` works on compile-time values, not on tensors",
                    span,
                    notes=(_TENSOR_FIX[func],),
                    code="type",
                )
            if isinstance(value, Dim):
                raise NetcError(
                    f"`{func}` needs a compile-time value, but {describe(value)} is only known at run time",
                    span,
                    code="type",
                )
            wrong = not _number(value) if func != "len" else not isinstance(value, (tuple, str))
            if wrong:
                want = "a tuple or a string" if func == "len" else "numbers"
                raise NetcError(f"`{func}` needs {want}, got {describe(value)}", span, code="type")
        self._tick(sum(self._size(v) for v in items), expr.span)
        if func == "len":
            return len(items[0])
        if func == "round":
            return _checked_int(round(items[0]), expr.span)
        if func == "int":
            return _checked_int(int(items[0]), expr.span)
        return (min if func == "min" else max)(items)

    def _op_call(self, op: OpDef, expr: S.Call, positional, keywords, instance_name, name_span, frame, share=None):
        bound: dict = {}
        spans: dict = {}
        args = op.args
        if args and args[0].variadic:
            bound[args[0].name] = positional
            spans[args[0].name] = [a.span for a in expr.args]
            if not positional:
                raise NetcError(f"{op.name} needs at least one tensor", expr.func_span, code="argument")
        else:
            room = next((i for i, a in enumerate(args) if a.keyword_only), len(args))
            if len(positional) > room:
                raise _too_many(op, expr, positional, room)
            for arg, value, sub in zip(args, positional, expr.args):
                bound[arg.name], spans[arg.name] = value, sub.span
        names = {a.name: a for a in args}
        for key, (value, kw) in keywords.items():
            if key not in names or names[key].variadic:
                notes = _suggest(key, [a.name for a in args if not a.variadic] + ["name"], "arguments")
                if key == "dim":
                    notes = ("PyTorch's `dim` is `axis` (one axis) or `axes` (several) in netc",) + notes
                raise NetcError(f"{op.name} has no argument `{key}`", kw.key_span, notes=notes, code="argument")
            if key in bound:
                raise NetcError(f"argument `{key}` of {op.name} is given twice", kw.key_span, code="argument")
            bound[key], spans[key] = value, kw.key_span
        tensors, attrs = [], {}
        for arg in args:
            if arg.name not in bound:
                if arg.default is REQUIRED:
                    what = "input" if arg.tensor else "argument"
                    raise NetcError(
                        f"{op.name} is missing the {what} `{arg.name}`",
                        expr.func_span,
                        code="argument",
                    )
                attrs[arg.name] = arg.default if arg.default is None else arg.check(arg.default)
                continue
            value = bound[arg.name]
            if arg.scalar and _number(value):  # `where(m, x, 0.0)`: the number takes the other side's dtype
                others = (bound.get(a.name) for a in args if a.scalar and isinstance(bound.get(a.name), Tensor))
                other = next(others, None)
                if other is not None:
                    source = keywords[arg.name][1].value if arg.name in keywords else expr.args[args.index(arg)]
                    value = self._scalar(value, other, source, frame)
            if arg.tensor:
                items = value if arg.variadic else [value]
                item_spans = spans[arg.name] if arg.variadic else [spans[arg.name]]
                for item, span in zip(items, item_spans):
                    if not isinstance(item, Tensor):
                        raise NetcError(
                            f"{op.name} expects a tensor as `{arg.name}`, got {describe(item)}",
                            span,
                            code="type",
                        )
                tensors += items
                continue
            self._tick(self._size(value) - 1, spans[arg.name])  # validating a tuple reads all of it
            try:
                attrs[arg.name] = arg.check(value)
            except ArgError as exc:
                raise NetcError(f"{op.name}: `{arg.name}` {exc}", spans[arg.name], code="argument")
        exprs = self.trace.op_exprs(frame, expr, op.args)
        self._check_results(op, tensors, attrs, expr.func_span)
        # A shape rule blames an argument at its span, but a wrong tensor passed
        # positionally is a wrong input: at the call (LANGUAGE.md's Errors).
        blamed = {k: v for k, v in spans.items() if k in keywords or not names[k].tensor}
        try:
            result = self._node(
                op, tensors, attrs, frame, expr.func_span, op.name, instance_name, name_span, blamed, exprs, share
            )
        except D.DimTooLarge as exc:
            raise _located_at(exc, expr.func_span) from None
        return self._results(op, result, expr.func_span)

    def _check_results(self, op: OpDef, tensors, attrs, span: Span):
        """An op whose shape rule decides its number of results (split) is counted before
        the rule makes them: each result counts as a node."""
        count = RESULT_COUNTS[op.name]([t.type for t in tensors], attrs) if op.name in RESULT_COUNTS else None
        left = self.limits.max_nodes - self._nodes_used()
        if count is not None and count > left:
            raise FatalError(
                f"{op.name} would make {count} results, more than the {left} nodes left under the limit "
                f"of {self.limits.max_nodes} (see --max-nodes)",
                span,
                code="limit",
            )

    def _results(self, op: OpDef, result, span: Span):
        """The value of an op call: its results beyond the first counted as nodes, a
        one-part split one value, no tensor of more than MAX_RANK axes."""
        values = result.values if isinstance(result, Multi) else (result,)
        self.extra_results += len(values) - 1
        for value in values:
            if value.type.rank > MAX_RANK:
                raise NetcError(
                    f"{op.name} makes a tensor of {value.type.rank} axes; a tensor has at most {MAX_RANK}",
                    span,
                    code="shape",
                )
        return values[0] if len(values) == 1 else result

    def _local_name(self, frame: Frame, func: str, instance_name, name_span, call_span) -> str:
        if instance_name is None:
            k = frame.counters.get(func, 0)
            frame.counters[func] = k + 1
            local, where = f"{func}_{k}", call_span
        else:
            local, where = instance_name, name_span
        if local in frame.taken:
            raise NetcError(
                f"two instances are named `{local}` in one scope",
                where,
                notes=(f"the first is at {frame.taken[local]}",),
                code="name",
            )
        frame.taken[local] = where
        return local

    def _node(self, op: OpDef, tensors, attrs, frame: Frame, span: Span, func: str,
              instance_name=None, name_span=None, arg_spans=None, exprs=None, share=None):  # fmt: skip
        owner = self._share_owner(frame, share, None) if share else None
        local = self._local_name(frame, func, instance_name, name_span, span)
        self._check_room(span)
        try:
            node = self.builder.make(
                op,
                [t.value for t in tensors],
                attrs,
                ".".join(frame.path + (local,)),
                span=span,
                scope=frame.path,
                call_sites=tuple(s for _, s in frame.expansions),
                var=self._hint,
            )
        except ShapeError as exc:
            where = span
            if exc.arg and arg_spans and exc.arg in arg_spans and not isinstance(arg_spans[exc.arg], list):
                where = arg_spans[exc.arg]
            raise NetcError(exc.message, where, notes=exc.notes, code="shape")
        for t in node.outputs:
            if any(isinstance(d, int) and d >= INT_LIMIT for d in t.shape):
                self.graph.g.remove_node(node.name)
                raise NetcError(f"{op.name} makes a dimension too large: {D.shape_text(t.shape)}", span, code="shape")
        if share or frame.sharing:
            try:
                node = self._share_params(node, frame, share, owner)
            except NetcError:
                self.graph.g.remove_node(node.name)
                raise
        self.graph.provenance[node.name] = self.trace.provenance(frame, exprs)
        self._made.append(node.name)
        results = tuple(Tensor(Value(node.name, i), t) for i, t in enumerate(node.outputs))
        return results[0] if op.n_outputs == 1 else Multi(results)

    def _share_owner(self, frame: Frame, share, block: str | None):
        """The node name (an op call) or instance path (a block call) that `share=` names:
        an earlier instance of the same scope, of the same kind. None where that instance
        failed (its error is reported already)."""
        target, span = share
        if target not in frame.taken:
            later = target in self._named_in(frame, span)
            raise NetcError(
                f"`share`: `{target}` is made later; `share` names an earlier instance"
                if later
                else f"`share`: no earlier instance named `{target}` in this scope",
                span,
                notes=("`share` names an instance made before this call in the same block (or network) body",),
                code="share",
            )
        path = frame.path + (target,)
        kind = self.graph.instances.get(path)
        name = ".".join(path)
        if block is None and kind is not None:
            raise NetcError(
                f"`share`: `{target}` is an instance of block `{kind}`; an operator call shares a layer",
                span,
                code="share",
            )
        if block is not None and kind is None and name in self.graph.g:
            raise NetcError(
                f"`share`: `{target}` is a {self.graph.node(name).op} layer, not an instance of block `{block}`",
                span,
                code="share",
            )
        if block is not None and kind is not None and kind != block:
            raise NetcError(
                f"`share`: `{target}` is an instance of block `{kind}`, not of `{block}`",
                span,
                code="share",
            )
        if block is not None:
            return path if kind is not None else None
        return name if name in self.graph.g else None

    def _has_param(self, block: str, name: str) -> bool:
        """A block of version 1.0 may have a parameter named as a 1.1 keyword (`share`):
        its calls still pass that argument."""
        return any(p.name == name for p in self.program.blocks[block].params)

    def _named_in(self, frame: Frame, span: Span) -> set:
        """The `name="..."` strings the calls of the body running in `frame` write."""
        body = self.program.blocks[frame.expansions[-1][0]].body if frame.expansions else self._net.body
        key = ("named", id(body))
        known = self._costs.get(key)
        if known is None or known[0] is not body:
            names, pending = set(), []
            for stmt in _walk(body):
                pending += [getattr(stmt, a) for a in ("value", "count", "cond") if hasattr(stmt, a)]
                pending += list(getattr(stmt, "values", ()))
                pending += [cond for cond, _ in getattr(stmt, "branches", ())]
            while pending:
                e = pending.pop()
                self._tick(1, span)
                if isinstance(e, S.Call):
                    names.update(
                        kw.value.value for kw in e.keywords if kw.key == "name" and isinstance(kw.value, S.Literal)
                    )
                    pending += list(e.args) + [kw.value for kw in e.keywords]
                elif isinstance(e, S.Binary):
                    pending += [e.left, e.right]
                elif isinstance(e, S.Unary):
                    pending.append(e.operand)
                elif isinstance(e, S.TupleLit):
                    pending += list(e.items)
                elif isinstance(e, (S.Attribute, S.Index)):
                    pending.append(e.value)
            known = self._costs[key] = (body, names)
        return known[1]

    def _share_params(self, node: Node, frame: Frame, share, owner) -> Node:
        """`node` with its parameters and buffers taken from the instance it shares (its own
        `share=`, or the block instance around it that shares another)."""
        if share:
            span, rel, target = share[1], None, share[0]
            if not node.params and not node.buffers:
                raise NetcError(f"`share`: {node.op} has no parameters to share", span, code="share")
        else:
            sharer, owner_path, span = frame.sharing
            rel = node.name[len(".".join(sharer)) + 1 :]
            owner, target = ".".join(owner_path + (rel,)), ".".join(owner_path[-1:])
        if owner is None:
            return node
        if not node.params and not node.buffers:
            return node
        found = self.graph.node(owner) if owner in self.graph.g else None
        shared = {}
        for local, t in (*node.params.items(), *node.buffers.items()):
            what = ".".join(part for part in (rel, local) if part)  # a `param`'s one tensor is named ""
            theirs = None if found is None else found.params.get(local, found.buffers.get(local))
            if theirs != t:
                label = f"`{what}`" if what else "tensor"
                has = f"its {label} is {theirs}" if theirs is not None else f"it has no {label}"
                raise NetcError(
                    f"`share`: this call needs the parameter {label} {t}, but `{target}` cannot give it: {has}",
                    span,
                    code="share",
                )
            shared[local] = found.param_name(local)
        node = replace(node, shared=shared)
        self.graph.g.nodes[node.name]["node"] = node
        return node

    def _room_for(self, template) -> bool:
        """Whether copying `template` stays within the node and step limits; where it would
        not, the call is elaborated, which reports the limit where it is reached."""
        used = self._nodes_used()
        total = used + len(template.nodes) + template.extra_results
        return total < self.limits.max_nodes and self.steps + template.steps <= self.limits.steps_allowed(used)

    def _check_room(self, span: Span | None):
        if self._nodes_used() >= self.limits.max_nodes:
            raise FatalError(
                f"the network has more than {self.limits.max_nodes} nodes (the limit; see --max-nodes)",
                span,
                code="limit",
            )

    def _add(self, node: Node) -> Node:
        self._check_room(node.span)
        return self.graph.add(node)

    def _block_call(
        self, block: S.Block, expr: S.Call, positional, keywords, instance_name, name_span, frame, share=None
    ):
        if block.name in self.stack:
            cycle = " -> ".join(self.stack[self.stack.index(block.name) :] + [block.name])
            raise NetcError(f"block `{block.name}` recurs: {cycle}", expr.func_span, code="recursion")
        if len(self.stack) >= self.limits.max_depth:
            raise FatalError(
                f"block calls nest more than {self.limits.max_depth} deep",
                expr.func_span,
                code="limit",
            )
        params = block.params
        if len(positional) > len(params):
            raise NetcError(
                f"block `{block.name}` takes {len(params)} argument{'s' * (len(params) != 1)}, got {len(positional)}",
                expr.args[len(params)].span,
                code="argument",
            )
        bound = {p.name: v for p, v in zip(params, positional)}
        names = [p.name for p in params]
        for key, (value, kw) in keywords.items():
            if key not in names:
                raise NetcError(
                    f"block `{block.name}` has no parameter `{key}`",
                    kw.key_span,
                    notes=_suggest(key, names, "parameters"),
                    code="argument",
                )
            if key in bound:
                raise NetcError(
                    f"argument `{key}` of `{block.name}` is given twice",
                    kw.key_span,
                    code="argument",
                )
            bound[key] = value
        for p in params:
            if p.name in bound:
                continue
            if p.default is None:
                raise NetcError(
                    f"block `{block.name}` is missing the argument `{p.name}`",
                    expr.func_span,
                    code="argument",
                )
            bound[p.name] = self._eval(p.default, self._const_frame())
        owner = self._share_owner(frame, share, block.name) if share else None
        local = self._local_name(frame, block.name, instance_name, name_span, expr.func_span)
        if block.name in self._bad_blocks:
            return POISON
        inner = Frame(frame.path + (local,), bound, frame.expansions + ((block.name, expr.func_span),))
        inner.sharing = (inner.path, owner, share[1]) if owner else frame.sharing
        if owner:
            self.graph.shares[inner.path] = owner
        self.graph.instances[inner.path] = block.name
        self.graph.instance_args[inner.path] = {
            v.value: name for name, v in reversed(bound.items()) if isinstance(v, Tensor)
        }  # reversed: where one tensor is passed twice, the first parameter names it
        self.graph.calls[inner.path] = self.trace.block_call(frame, inner, block, expr, bound)
        self._made_instances.append(inner.path)
        key = None
        if templates.ENABLED and not owner and not frame.sharing:
            key = templates.call_key(block.name, expr, inner.expansions, bound)
        template = self._templates.get(key) if key is not None else None
        if isinstance(template, templates.Template) and self._room_for(template):
            values = template.copy(
                self.graph, inner.path, bound, self.trace.loops_made, self._made, self._made_instances
            )
            self.steps += template.steps
            self.extra_results += template.extra_results
            self.trace.loops_made += template.loops
        else:
            made, instances, steps = len(self._made), len(self._made_instances), self.steps
            extra, loops, errors = self.extra_results, self.trace.loops_made, len(self.errors)
            arguments = dict(bound)  # the body's variables join `bound` (the frame's vars)
            self.stack.append(block.name)
            hint = self._hint
            try:
                values = self._body(block.body, inner)
            finally:
                self.stack.pop()
                self._hint = hint
            if values is POISON:
                return POISON
            if key is not None and len(self.errors) == errors:
                # A call made once (an unrolled network's every line) is not worth recording:
                # the second call with a key records it, the third and later copy it.
                if key not in self._templates:
                    self._templates[key] = templates.SEEN
                elif self._templates[key] is templates.SEEN:
                    self._templates[key] = templates.Template.record(
                        self.graph,
                        expr,
                        inner.path,
                        arguments,
                        self._made[made:],
                        self._made_instances[instances:],
                        values,
                        self.steps - steps,
                        self.extra_results - extra,
                        loops,
                        self.trace.loops_made - loops,
                    )
        self.trace.returned(self.graph, inner.path, values)
        return values[0] if len(values) == 1 else Multi(tuple(values))


# ---------------------------------------------------------------- compile-time arithmetic


def _number(value) -> bool:
    return isinstance(value, (int, float, Dim)) and not isinstance(value, bool)


def _checked_int(value, span):
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT:
        raise NetcError("integer overflow: compile-time integers must fit in 64 bits", span, code="type")
    if isinstance(value, float) and not math.isfinite(value):
        raise NetcError("the result is not a finite number", span, code="type")
    return value


def _const_binary(op: str, a, b, expr: S.Binary):
    symbol = _SYMBOLS[op]
    span = expr.span
    if op in ("eq", "ne"):
        same = _equal(a, b)
        if same is None:
            raise NetcError(
                f"cannot decide at compile time whether {short(a)} {symbol} {short(b)}: it depends on run-time sizes",
                span,
                code="type",
            )
        return same if op == "eq" else not same
    if op in ("lt", "le", "gt", "ge"):
        if isinstance(a, Dim) or isinstance(b, Dim):
            difference = D.difference(a, b) if D.is_dim(a) and D.is_dim(b) else None
            if not isinstance(difference, int):
                raise NetcError(f"cannot decide at compile time whether {a} {symbol} {b}", span, code="type")
            a, b = difference, 0
        comparable = (_number(a) and _number(b)) or (type(a) is type(b) and isinstance(a, (str, tuple)))
        if not comparable:
            raise NetcError(f"cannot compare {describe(a)} and {describe(b)} with `{symbol}`", span, code="type")
        try:
            return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
        except TypeError:
            raise NetcError(f"cannot compare {describe(a)} and {describe(b)} with `{symbol}`", span, code="type")
    if op == "add" and type(a) is type(b) and isinstance(a, (tuple, str)):
        return a + b
    if not (_number(a) and _number(b)):
        bad = a if not _number(a) else b
        raise NetcError(f"`{symbol}` needs numbers, got {describe(bad)}", span, code="type")
    if op == "matmul":
        raise NetcError("`@` needs two tensors", span, code="type")
    if isinstance(a, Dim) or isinstance(b, Dim):
        return _dim_binary(op, a, b, span)
    try:
        if op == "add":
            return _checked_int(a + b, span)
        if op == "sub":
            return _checked_int(a - b, span)
        if op == "mul":
            return _checked_int(a * b, span)
        if op == "div":
            return _checked_int(a / b, span)
        if op == "floordiv":
            return _checked_int(a // b, span)
        if op == "mod":
            return a % b
        if op == "pow":
            return _checked_int(_power(a, b, span), span)
    except ZeroDivisionError:
        raise NetcError("division by zero", span, code="type")
    except OverflowError:
        raise NetcError("the result is too large", span, code="type")
    raise InternalError(f"no rule for the operator {symbol}")


def _equal(a, b):
    """True or False where provable, None where it depends on run-time sizes."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) != len(b):
            return False
        results = [_equal(x, y) for x, y in zip(a, b)]
        if False in results:
            return False
        return None if None in results else True
    if isinstance(a, Dim) or isinstance(b, Dim):
        if not (D.is_dim(a) and D.is_dim(b)):
            return False
        if D.equal(a, b):
            return True
        return False if D.provably_unequal(a, b) else None
    return a == b


def _power(a, b, span):
    if is_int(a) and is_int(b) and b >= 0:
        if abs(a) > 1 and b * math.log2(abs(a)) >= 63:
            raise NetcError("integer overflow: compile-time integers must fit in 64 bits", span, code="type")
        return a**b
    if a == 0 and b < 0:
        raise ZeroDivisionError
    result = float(a) ** float(b)
    if isinstance(result, complex):
        base = f"({a})" if a < 0 else str(a)
        raise NetcError(f"{base} ** {b} is not a real number", span, code="type")
    return result


def _dim_binary(op, a, b, span):
    """Arithmetic on dimensions gives a derived dimension; it stays integral."""
    if isinstance(a, float) or isinstance(b, float) or op in ("div", "pow"):
        raise NetcError(
            f"`{_SYMBOLS[op]}` on a dimension gives no dimension; use `+ - * // %` with integers",
            span,
            code="type",
        )
    if op == "add":
        return D.add(a, b)
    if op == "sub":
        return D.sub(a, b)
    if op == "mul":
        return D.mul(a, b)
    if isinstance(b, int) and b <= 0:
        raise NetcError(f"`{_SYMBOLS[op]}` on a dimension needs a positive divisor, got {b}", span, code="type")
    return D.floordiv(a, b) if op == "floordiv" else D.mod(a, b)


# ---------------------------------------------------------------- helpers


def _projection_hint(expr: S.Binary, a: tuple, b: tuple) -> str | None:
    """For a residual add whose sides differ in channels (and maybe stride), name the
    1x1 projection conv that would make the skip side match."""
    if len(a) != 4 or len(b) != 4 or not all(isinstance(d, int) for d in a[1:] + b[1:]):
        return None
    skip_expr, skip, main = (expr.right, b, a) if isinstance(expr.right, S.Name) else (expr.left, a, b)
    if skip[1] == main[1] or not isinstance(skip_expr, S.Name):
        return None
    if skip[2] % main[2] or skip[3] % main[3] or skip[2] // main[2] != skip[3] // main[3]:
        return None
    stride = skip[2] // main[2]
    conv = f"conv2d({main[1]}, kernel=1" + (f", stride={stride}" if stride != 1 else "") + ")"
    return f"`{skip_expr.id}` has {skip[1]} channels; a projection {conv} would match"


_SUGGEST_LENGTH = 64


def _suggest(name: str, candidates, what: str = "") -> tuple[str, ...]:
    if len(name) > _SUGGEST_LENGTH:  # difflib is quadratic in the length of the names it compares
        return ()
    candidates = sorted({c for c in candidates if len(c) <= _SUGGEST_LENGTH})
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return (f"did you mean `{close[0]}`?",) if close else ()


def _at_call(expr) -> Span:
    """Where a call's result is at fault: its name (LANGUAGE.md: "at the call")."""
    return expr.func_span if isinstance(expr, S.Call) else expr.span


def _too_many(op: OpDef, expr: S.Call, positional, room: int) -> NetcError:
    """More positional arguments than `op` takes: say so at the first extra one, with what a
    PyTorch habit would have meant (`permute(0, 2, 1)`, `batchnorm(64)`)."""
    message = op.too_many or (
        f"{op.name} takes at most {room} positional argument{'s' * (room != 1)}, got {len(positional)}"
    )
    notes = []
    keyword_only = [a.name for a in op.args if a.keyword_only]
    if keyword_only:
        names = ", ".join(f"`{n}`" for n in keyword_only)
        verb = "is" if len(keyword_only) == 1 else "are"
        notes.append(f"{names} {verb} keyword-only: write `{keyword_only[0]}=...`")
    last = op.args[room - 1] if room else None
    rest = positional[room - 1 :]
    if last is not None and last.check in (axes_arg, dims_arg) and all(D.is_dim(v) for v in rest):
        what = "the shape, one size per axis" if last.check is dims_arg else "the order of the axes"
        notes.append(f"pass the axes as one tuple ({what}): `{op.name}(({', '.join(short(v) for v in rest)}))`")
    return NetcError(message, expr.args[room].span, notes=tuple(notes), code="argument")


def _one_value(value, span: Span):
    """A call's several results cannot stand where one value is needed."""
    if isinstance(value, Multi):
        raise NetcError(f"this call returns {len(value.values)} values, not one", span, code="type")


def _walk(stmts):
    """Every statement, nested bodies included; iterative, so deep nesting cannot overflow."""
    pending = list(reversed(stmts))
    while pending:
        stmt = pending.pop()
        yield stmt
        if isinstance(stmt, S.Repeat):
            pending.extend(reversed(stmt.body))
        elif isinstance(stmt, S.If):
            nested = [s for _, body in stmt.branches for s in body] + list(stmt.orelse or ())
            pending.extend(reversed(nested))


def _assigned(stmts) -> set:
    """Every name a statement list may bind (for poisoning after an undecidable branch)."""
    names = set()
    for stmt in _walk(stmts):
        if isinstance(stmt, S.Assign):
            names.update(stmt.targets)
        elif isinstance(stmt, S.Annotated):
            names.add(stmt.target)
        elif isinstance(stmt, S.Repeat) and stmt.var:
            names.add(stmt.var)
    return names


def _located_at(exc: NetcError, span: Span) -> NetcError:
    """`exc`, its diagnostics that name no position put at `span` (a derived dimension past
    its cap is raised deep in the arithmetic, which knows no position)."""
    if all(d.span is not None for d in exc.diagnostics):
        return exc
    return NetcError([d if d.span is not None else replace(d, span=span) for d in exc.diagnostics])


def _located(exc: FatalError, frame: Frame) -> FatalError:
    """Adds the block expansions around a fatal error, once, where it was raised."""
    if not getattr(exc, "located", False):
        exc.diagnostics = [replace(d, notes=d.notes + frame.notes()) for d in exc.diagnostics]
        exc.located = True
    return exc


def _returns(stmts):
    return [stmt for stmt in _walk(stmts) if isinstance(stmt, S.Return)]
