"""Text -> syntax tree. Knows the grammar and nothing of shapes, torch or onnx.

The LALR parser runs the `_Builder` callbacks inline as it reduces, so no lark tree is
built and deep nesting does not recurse in Python. Syntax errors are reported in words a
person reads ("expected an expression or `)`"), never as terminal names.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from pathlib import Path

import lark
from lark import Token, v_args

from . import syntax as S
from .diagnostics import NetcError, Span

GRAMMAR = Path(__file__).with_name("grammar.lark")

# How each terminal reads in a message; anonymous string terminals read as themselves.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "the end of the file",
}
_EXPRESSION_START = {
    "NAME",
    "INT",
    "FLOAT",
    "STRING",
    "LPAR",
    "LPAR_EMPTY",
    "MINUS",
    "NOT",
    "TRUE",
    "FALSE",
}


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    return lark.Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        transformer=_Builder.current,
        cache=_cache_path(),
    )


def _cache_path():
    """Lark caches the LALR tables; a per-user file, or none where it cannot be written."""
    import tempfile

    try:
        directory = Path(tempfile.gettempdir())
        probe = directory / "netc-lark-cache.probe"
        probe.touch()
        probe.unlink()
        return str(directory / f"netc-lark-{lark.__version__}-{_grammar_digest()}.cache")
    except OSError:
        return False


def _grammar_digest() -> str:
    import hashlib

    return hashlib.sha256(GRAMMAR.read_bytes()).hexdigest()[:16]


def parse(text: str, file: str = "<string>") -> S.Module:
    """Parses one file; raises NetcError with the first syntax error."""
    builder = _Builder.current
    builder.file = file
    try:
        items = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        notes = _pipe_hint(exc, text)
        raise NetcError(_syntax_message(exc, text), _error_span(exc, text, file), notes=notes, code="syntax")
    except RecursionError:
        raise NetcError("the file is nested too deeply to parse", Span(file, 1, 1, 1, 2), code="syntax")
    return _module(items, file)


def _module(items, file):
    kinds = {S.Import: [], S.Const: [], S.Block: [], S.Network: []}
    for item in items:
        kinds[type(item)].append(item)
    return S.Module(
        file,
        tuple(kinds[S.Import]),
        tuple(kinds[S.Const]),
        tuple(kinds[S.Block]),
        tuple(kinds[S.Network]),
    )


# ---------------------------------------------------------------- syntax errors


def _describe(terminal: str) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    for term in _lark().terminals:
        if term.name == terminal and term.pattern.type == "str":
            return f"`{term.pattern.value}`"
    return terminal.lower()


def _expected_words(expected) -> str:
    expected = set(expected)
    words = []
    if len(expected & _EXPRESSION_START) >= 5:
        expected -= _EXPRESSION_START
        words.append("an expression")
    closing = ("`)`", "`]`", "`}`")  # what closes an open bracket is the likeliest fix: name it first
    words += sorted((_describe(t) for t in expected), key=lambda w: (w.startswith("`"), w not in closing, w))
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["..."]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_message(exc, text) -> str:
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            return "unterminated string"
        return f"unexpected character {char!r}"
    if isinstance(exc, lark.exceptions.UnexpectedEOF):
        return f"unexpected end of file; expected {_expected_words(exc.expected)}"
    token = exc.token
    if token.type == "$END":
        return f"unexpected end of file; expected {_expected_words(exc.expected)}"
    found = f"`{token}`"
    if token.type == "NAME" and token.value in ("import", "block", "network"):
        found = f"`{token}`"
    expected = _expected_words(exc.expected)
    message = f"unexpected {found}"
    if expected:
        message += f"; expected {expected}"
    return message


_AFTER_PIPE = {"*", "/", "//", "%", "@", "**", "+", "-", "==", "!=", "<", "<=", ">", ">=", "[", ".", "and", "or"}
_OPENING, _CLOSING = "([{", ")]}"


def _pipe_hint(exc, text) -> tuple[str, ...]:
    """`x -> softmax(axis=-1) * 2`: the pipe binds loosest, so an operator after a piped
    call is a syntax error; where a `->` precedes the operator at the same nesting level
    in the same statement, say so."""
    token = getattr(exc, "token", None)
    if not isinstance(exc, lark.exceptions.UnexpectedToken) or token is None or str(token) not in _AFTER_PIPE:
        return ()
    depth, i = 0, token.start_pos
    while i > 0:
        i -= 1
        c = text[i]
        if c in _CLOSING:
            depth += 1
        elif c in _OPENING:
            if depth == 0:
                return ()  # the operator is inside a bracket that the pipe is outside of
            depth -= 1
        elif depth == 0 and c == "=" and i > 0 and text[i - 1] in "=!<>":
            i -= 1  # a comparison, not the statement's `=`
        elif depth == 0 and c in ";=,":
            return ()
        elif depth == 0 and c == ">" and text[i - 1 : i + 1] == "->":
            use = {"[": "(x -> f)[...]", ".": "(x -> f).shape"}.get(str(token), f"(x -> f) {token} ...")
            return (f"`->` binds more loosely than `{token}`: wrap the pipe in parentheses to use its result, `{use}`",)
    return ()


def _error_span(exc, text, file) -> Span:
    if isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type != "$END":
        return _token_span(exc.token, file)
    line = getattr(exc, "line", -1)
    column = getattr(exc, "column", -1)
    at_end = isinstance(exc, lark.exceptions.UnexpectedEOF) or (
        isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type == "$END"
    )
    if at_end or line is None or line < 1:  # point just past the last character that is not blank
        lines = text.rstrip().splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    return Span(file, line, column, line, column + 1)


# ---------------------------------------------------------------- tree building


def _token_span(token: Token, file: str) -> Span:
    return Span(file, token.line, token.column, token.end_line, token.end_column)


def _child_span(child, file):
    if isinstance(child, Span):
        return child
    if isinstance(child, Token):
        return _token_span(child, file)
    if isinstance(child, tuple):  # (stmts, end) of a body, or an else/elif clause
        spans = [_child_span(c, file) for c in child if c is not None and not isinstance(c, str)]
        spans = [sp for sp in spans if sp is not None]
        return spans[0].to(spans[-1]) if spans else None
    if isinstance(child, list):
        spans = [_child_span(c, file) for c in child if c is not None]
        spans = [sp for sp in spans if sp is not None]
        return spans[0].to(spans[-1]) if spans else None
    return getattr(child, "span", None)


def _spanned(inline):
    """Like v_args(meta=True), which lark's inline LALR transformer lacks: the callback gets
    the span from its first to its last child in place of `meta`."""

    def wrap(f):
        @v_args(inline=False)
        def callback(self, children):
            spans = [sp for sp in (_child_span(c, self.file) for c in children) if sp is not None]
            span = spans[0].to(spans[-1]) if spans else Span(self.file, 1, 1, 1, 2)
            return f(self, span, *children) if inline else f(self, span, children)

        callback.__name__ = f.__name__
        return callback

    return wrap


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), token[1:-1])


_BINARY_OPS = [
    "add",
    "sub",
    "mul",
    "div",
    "floordiv",
    "mod",
    "matmul",
    "pow",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
]


class _Builder(lark.Transformer):
    """Callbacks named after the grammar's rules and aliases; each returns a syntax node."""

    file = "<string>"

    def _tok(self, token) -> Span:
        return _token_span(token, self.file)

    # ---- file items
    @v_args(inline=True)
    def start(self, *items):
        return list(items)

    @_spanned(inline=True)
    def import_decl(self, meta, _kw, path):
        return S.Import(_unquote(path), meta)

    @_spanned(inline=True)
    def const_decl(self, meta, name, value):
        return S.Const(str(name), value, meta, self._tok(name))

    @_spanned(inline=True)
    def block_def(self, meta, _kw, name, _lpar, params, _rpar, body):
        stmts, end = body
        return S.Block(str(name), tuple(params or ()), stmts, meta, self._tok(name), end)

    @_spanned(inline=True)
    def network_def(self, meta, _kw, name, _lpar, inputs, _rpar, body):
        stmts, end = body
        return S.Network(str(name), tuple(inputs or ()), stmts, meta, self._tok(name), end)

    def block_params(self, params):
        return params

    @_spanned(inline=True)
    def block_param(self, meta, name, default):
        return S.Param(str(name), default, meta)

    def net_inputs(self, inputs):
        return inputs

    @_spanned(inline=True)
    def net_input(self, meta, name, dtype, shape):
        dtype_span = self._tok(dtype) if dtype is not None else None
        return S.Input(str(name), str(dtype) if dtype else None, dtype_span, shape, meta)

    def shape_lit(self, dims):
        return tuple(d for d in dims if d is not None and not isinstance(d, Token))

    @_spanned(inline=False)
    def body(self, meta, children):
        *stmts, rbrace = children
        return tuple(s for s in stmts if s is not None), self._tok(rbrace)

    # ---- statements
    def empty_stmt(self, _):
        return None

    @_spanned(inline=False)
    def assign(self, meta, children):
        *names, value = children
        spans = tuple(self._tok(n) for n in names)
        return S.Assign(meta, tuple(str(n) for n in names), spans, value)

    @_spanned(inline=True)
    def annotated(self, meta, name, shape, value):
        return S.Annotated(meta, str(name), self._tok(name), shape, value)

    @_spanned(inline=True)
    def repeat_stmt(self, meta, _kw, count, var, body):
        return S.Repeat(meta, count, str(var) if var else None, body[0])

    @_spanned(inline=False)
    def if_stmt(self, meta, children):
        _kw, cond, body, *rest = children
        last = rest.pop() if rest else None  # the optional else clause, or None
        orelse = last[1] if last is not None else None
        branches = [(cond, body[0])] + [(c, b) for _, c, b in rest]
        return S.If(meta, tuple(branches), orelse)

    @v_args(inline=True)
    def elif_clause(self, cond, body):
        return ("elif", cond, body[0])

    @v_args(inline=True)
    def else_clause(self, body):
        return ("else", body[0])

    @_spanned(inline=True)
    def assert_stmt(self, meta, _kw, cond, message):
        return S.Assert(meta, cond, message)

    @_spanned(inline=False)
    def return_stmt(self, meta, children):
        return S.Return(meta, tuple(children[1:]))

    # ---- expressions
    @_spanned(inline=True)
    def pipe(self, meta, value, name, args):
        positional, keywords, _ = args if args is not None else ((), (), None)
        return S.Call(meta, str(name), self._tok(name), (value, *positional), keywords, piped=value)

    @_spanned(inline=True)
    def call(self, meta, name, args):
        positional, keywords, _ = args
        return S.Call(meta, str(name), self._tok(name), positional, keywords)

    def call_args(self, args):
        end = self._tok(args[-1])  # the `)`: a call's span ends with it
        args = [a for a in args if a is not None and not isinstance(a, Token)]
        positional = tuple(a for a in args if not isinstance(a, S.Keyword))
        keywords = tuple(a for a in args if isinstance(a, S.Keyword))
        first_keyword = next((i for i, a in enumerate(args) if isinstance(a, S.Keyword)), len(args))
        for a in args[first_keyword:]:
            if not isinstance(a, S.Keyword):
                raise NetcError("a positional argument cannot follow a keyword argument", a.span, code="syntax")
        return positional, keywords, end

    @v_args(inline=True)
    def keyword(self, key, value):
        return S.Keyword(str(key), self._tok(key), value)

    @_spanned(inline=True)
    def attribute(self, meta, value, attr):
        return S.Attribute(meta, value, str(attr), self._tok(attr))

    @_spanned(inline=True)
    def index(self, meta, value, _lsqb, items, _rsqb):
        return S.Index(meta, value, items)

    def subscripts(self, items):
        return tuple(items)

    @v_args(inline=True)
    def ellipsis(self, token):
        return S.EllipsisLit(self._tok(token))

    @_spanned(inline=False)
    def slice(self, meta, children):
        colons = [i for i, c in enumerate(children) if isinstance(c, Token)]
        start = children[0] if colons[0] == 1 else None
        rest = children[colons[0] + 1 :]
        stop = rest[0] if rest and not isinstance(rest[0], Token) else None
        step = children[colons[1] + 1] if len(colons) > 1 and colons[1] + 1 < len(children) else None
        return S.Slice(meta, start, stop, step)

    @_spanned(inline=True)
    def neg(self, meta, _minus, operand):
        return S.Unary(meta, "neg", operand)

    @_spanned(inline=True)
    def not_op(self, meta, operand):
        return S.Unary(meta, "not", operand)

    @_spanned(inline=True)
    def or_op(self, meta, left, right):
        return S.Binary(meta, "or", left, right)

    @_spanned(inline=True)
    def and_op(self, meta, left, right):
        return S.Binary(meta, "and", left, right)

    @_spanned(inline=True)
    def name(self, meta, token):
        return S.Name(self._tok(token), str(token))

    @v_args(inline=True)
    def int_lit(self, token):
        return S.Literal(self._tok(token), int(token))

    @v_args(inline=True)
    def float_lit(self, token):
        return S.Literal(self._tok(token), float(token))

    @v_args(inline=True)
    def str_lit(self, token):
        return S.Literal(self._tok(token), _unquote(token))

    @_spanned(inline=False)
    def true_lit(self, meta, _):
        return S.Literal(meta, True)

    @_spanned(inline=False)
    def false_lit(self, meta, _):
        return S.Literal(meta, False)

    @_spanned(inline=False)
    def tuple_lit(self, meta, items):
        if len(items) == 1 and isinstance(items[0], Token):  # `()`
            return S.TupleLit(self._tok(items[0]), ())
        return S.TupleLit(meta, tuple(i for i in items if i is not None and not isinstance(i, Token)))

    @_spanned(inline=True)
    def paren(self, meta, _lpar, inner, _rpar):
        """`(e)` is e, with a span that takes in the parentheses (errors point at all of it)."""
        return dataclasses.replace(inner, span=meta)


def _binary(op):
    @_spanned(inline=False)
    def build(self, meta, children):
        left, right = (c for c in children if not isinstance(c, Token))
        return S.Binary(meta, op, left, right)

    return build


for _op in _BINARY_OPS:
    setattr(_Builder, _op, _binary(_op))

_Builder.current = _Builder()
