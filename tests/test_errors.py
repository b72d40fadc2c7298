"""Error reporting: one table of bad specs, each with where its first error must point.

Each row is a small spec, the (line, column) of the first error diagnostic, and a
substring its message must contain (case-insensitive); optionally a substring one of its
notes must contain, the number of errors reported, the file the error is in (for imports)
and the end of its span. The positions follow LANGUAGE.md's Errors section: the call's
name when its inputs or result are wrong, the argument when one argument is wrong (a
keyword argument's key), the whole expression for an operator, the name for an undefined
name, the statement for a failed annotation, `assert`, duplicate definition or `import`;
inside a block, with a note naming the call that expanded it; recursion at the call that
closes the cycle.

Rows marked xfail(strict=True) are behaviours believed to be netc bugs; each reason says
what is expected and what netc does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from error_table import Case, check_first_error, row, write_case

NETC = Path(sys.executable).parent / "netc"

# fmt: off
CASES = [
    # ------------------------------------------------------------------ syntax
    row(
        "syntax-missing-paren",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4
            return y
        }
        """,
        3, 5, "expected `)`",
    ),
    row(
        "syntax-bad-token-double-comma",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4,, bias=true)
            return y
        }
        """,
        2, 23, "expected an expression or `)`",
    ),
    row(
        "syntax-unterminated-string",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> upsample(mode="nearest)
            return y
        }
        """,
        2, 28, "unterminated string",
    ),
    row(
        "syntax-unterminated-string-at-eof",
        """
        network n(x: [N, 8]) {
            assert true, "oops
        """,
        2, 18, "unterminated string",
    ),
    row(
        "syntax-stray-character",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4) $ 2
            return y
        }
        """,
        2, 24, "unexpected character '$'",
    ),
    row(
        "syntax-stray-operator-at-top-level",
        """
        @
        network n(x: [N, 8]) { return x }
        """,
        1, 1, "unexpected `@`",
    ),
    row(
        "syntax-top-level-expected-lists-keywords",
        """
        @
        network n(x: [N, 8]) { return x }
        """,
        1, 1, "`network`",
    ),
    row(
        "syntax-missing-equals",
        """
        network n(x: [N, 8]) {
            y x -> relu
            return y
        }
        """,
        2, 7, "expected",
    ),
    row(
        "syntax-unclosed-call-before-brace",
        """
        network n(x: [N, 8]) {
            y = relu(x
        }
        """,
        3, 1, "`)`",
    ),
    row(
        "syntax-operator-missing-operand",
        """
        network n(x: [N, 8]) {
            y = x * * 2
            return y
        }
        """,
        2, 13, "expected an expression",
    ),
    row(
        "syntax-positional-after-keyword",
        """
        network n(x: [N, 8]) {
            y = x -> linear(out=4, true)
            return y
        }
        """,
        2, 28, "positional argument cannot follow a keyword argument",
    ),
    row(
        "syntax-pipe-result-is-not-an-operand",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4) + x
            return y
        }
        """,
        2, 24, "unexpected `+`",
    ),
    row(
        "syntax-only-first-error-reported",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4,, bias=true)
            z = y -> linear(4,, bias=true)
            return z
        }
        """,
        2, 23, "expected an expression", count=1,
    ),
    row(
        "syntax-eof-unclosed-block",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4)
            return y
        """,
        3, 13, "`}`",
    ),
    row(
        "syntax-eof-after-operator",
        """
        network n(x: [N, 8]) {
            y = x +
        """,
        2, 12, "expected an expression",
    ),
    # ------------------------------------------------------------------ unknown callables
    row(
        "unknown-op",
        """
        network n(x: [N, 8]) {
            y = x -> lineer(4)
            return y
        }
        """,
        2, 14, "unknown operator or block `lineer`", note="did you mean `linear`",
    ),
    row(
        "unknown-op-piped-without-parens",
        """
        network n(x: [N, 8]) {
            y = x -> relus
            return y
        }
        """,
        2, 14, "`relus`", note="did you mean `relu`",
    ),
    row(
        "unknown-block",
        """
        block resblock(x) { return x }
        network n(x: [N, 8]) {
            y = resblok(x)
            return y
        }
        """,
        3, 9, "unknown operator or block `resblok`", note="did you mean `resblock`",
    ),
    # ------------------------------------------------------------------ arguments
    row(
        "unknown-keyword-op",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, biass=false)
            return y
        }
        """,
        2, 24, "no argument `biass`", note="did you mean `bias`",
    ),
    row(
        "unknown-keyword-block",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = b(x, widht=4)
            return y
        }
        """,
        3, 14, "no parameter `widht`", note="did you mean `width`",
    ),
    row(
        "missing-argument-op",
        """
        network n(x: [N, 8]) {
            y = x -> linear
            return y
        }
        """,
        2, 14, "missing the argument `out`",
    ),
    row(
        "missing-argument-conv-kernel",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> conv2d(8)
            return y
        }
        """,
        2, 14, "missing the argument `kernel`",
    ),
    row(
        "missing-argument-block",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = x -> b
            return y
        }
        """,
        3, 14, "missing the argument `width`",
    ),
    row(
        "duplicate-keyword-op",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, bias=false, bias=true)
            return y
        }
        """,
        2, 36, "`bias` is given twice",
    ),
    row(
        "duplicate-positional-and-keyword-op",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, out=5)
            return y
        }
        """,
        2, 24, "`out` of linear is given twice",
    ),
    row(
        "duplicate-keyword-block",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = b(x, width=4, width=5)
            return y
        }
        """,
        3, 23, "`width` is given twice",
    ),
    row(
        "duplicate-name-keyword",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, name="a", name="b")
            return y
        }
        """,
        2, 34, "`name` is given twice",
    ),
    row(
        "too-many-positional-op",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, true, 7)
            return y
        }
        """,
        2, 30, "at most 3 positional arguments, got 4",
    ),
    row(
        "too-many-positional-elementwise",
        """
        network n(x: [N, 8]) {
            y = relu(x, x)
            return y
        }
        """,
        2, 17, "relu takes at most 1 positional argument",
    ),
    row(
        "too-many-positional-block",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = b(x, 4, 5)
            return y
        }
        """,
        3, 17, "takes 2 arguments, got 3",
    ),
    # ------------------------------------------------------------------ argument types
    row(
        "type-conv-kernel-float",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> conv2d(8, kernel=2.5)
            return y
        }
        """,
        2, 24, "`kernel` needs an int or a tuple of 2 ints, got the float 2.5",
    ),
    row(
        "type-linear-string",
        """
        network n(x: [N, 8]) {
            y = x -> linear("a")
            return y
        }
        """,
        2, 21, "`out` needs an integer, got the string",
    ),
    row(
        "type-linear-string-direct-call",
        """
        network n(x: [N, 8]) {
            y = linear(x, "a")
            return y
        }
        """,
        2, 19, "`out` needs an integer",
    ),
    row(
        "type-dropout-p-keyword",
        """
        network n(x: [N, 8]) {
            y = x -> dropout(p=1.5)
            return y
        }
        """,
        2, 22, "less than 1",
    ),
    row(
        "type-dropout-p-positional",
        """
        network n(x: [N, 8]) {
            y = x -> dropout(1.5)
            return y
        }
        """,
        2, 22, "less than 1",
    ),
    row(
        "type-upsample-mode",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> upsample(mode="cubic")
            return y
        }
        """,
        2, 23, '"nearest" or "bilinear"',
    ),
    row(
        "type-bias-int",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, bias=1)
            return y
        }
        """,
        2, 24, "`bias` needs true or false",
    ),
    row(
        "type-linear-symbolic-out",
        """
        network n(x: [N, 8]) {
            y = x -> linear(N)
            return y
        }
        """,
        2, 21, "symbolic dimension N",
    ),
    row(
        "type-linear-float-from-division",
        """
        network n(x: [N, 8]) {
            y = x -> linear(8 / 2)
            return y
        }
        """,
        2, 21, "got the float 4.0",
    ),
    row(
        "type-linear-zero",
        """
        network n(x: [N, 8]) {
            y = x -> linear(0)
            return y
        }
        """,
        2, 21, "at least 1",
    ),
    row(
        "type-linear-negative-literal",
        """
        network n(x: [N, 8]) {
            y = x -> linear(-4)
            return y
        }
        """,
        2, 21, "at least 1",
    ),
    row(
        "type-instance-name-not-identifier",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, name="a b")
            return y
        }
        """,
        2, 24, "identifier",
    ),
    row(
        "type-tensor-expected",
        """
        network n(x: [N, 8]) {
            y = relu(3)
            return x
        }
        """,
        2, 14, "expects a tensor",
    ),
    row(
        "type-integer-literal-overflows-int64",
        """
        network n(x: [N, 8]) {
            y = x -> linear(99999999999999999999999)
            return y
        }
        """,
        2, 21, "64 bits",
    ),
    # ------------------------------------------------------------------ undefined names
    row(
        "undefined-name-with-suggestion",
        """
        network n(inputs: [N, 8]) {
            y = input -> relu
            return y
        }
        """,
        2, 9, "undefined name `input`", note="did you mean `inputs`",
    ),
    row(
        "undefined-name-in-operator",
        """
        network n(x: [N, 8]) {
            y = x -> linear(8)
            return y + skip
        }
        """,
        3, 16, "undefined name `skip`",
    ),
    row(
        "undefined-name-block-sees-no-caller-variables",
        """
        block b(x) { return x -> linear(width) }
        network n(x: [N, 8]) {
            width = 3
            return b(x)
        }
        """,
        1, 33, "undefined name `width`", note="expanded from the call at <string>:4:12",
    ),
    row(
        "undefined-name-bound-only-in-branch-not-taken",
        """
        network n(x: [N, 8]) {
            if false { y = x -> relu }
            return y
        }
        """,
        3, 12, "undefined name `y`",
    ),
    # ------------------------------------------------------------------ shapes
    row(
        "shape-add",
        """
        network n(x: [N, 8], y: [N, 4]) {
            z = x + y
            return z
        }
        """,
        2, 9, "cannot add tensors of shapes [N, 8] and [N, 4]", end=(2, 14),
    ),
    row(
        "shape-sub",
        """
        network n(x: [N, 8], y: [N, 4]) {
            return x - y
        }
        """,
        2, 12, "cannot subtract",
    ),
    row(
        "shape-mul",
        """
        network n(x: [N, 8], y: [N, 4]) {
            z = x * y
            return z
        }
        """,
        2, 9, "cannot multiply tensors",
    ),
    row(
        "shape-div",
        """
        network n(x: [2, 8], y: [3, 8]) {
            z = x / y
            return z
        }
        """,
        2, 9, "cannot divide tensors of shapes [2, 8] and [3, 8]",
    ),
    row(
        "shape-add-parenthesized-operand",
        """
        network n(x: [N, 8], y: [N, 4]) {
            z = (x -> relu) + y
            return z
        }
        """,
        2, 9, "cannot add",
    ),
    row(
        "shape-add-parenthesized-right-operand-end",
        """
        network n(x: [N, 8], y: [N, 4]) {
            z = x + (y -> relu)
            return z
        }
        """,
        2, 9, "cannot add", end=(2, 24),
    ),
    row(
        "shape-matmul",
        """
        network n(a: [N, 8, 4], b: [N, 5, 6]) {
            c = a @ b
            return c
        }
        """,
        2, 9, "4 columns against 5 rows",
    ),
    row(
        "shape-matmul-constant",
        """
        network n(a: [N, 8, 4]) {
            c = a @ 2
            return c
        }
        """,
        2, 9, "`@` needs two tensors",
    ),
    row(
        "shape-concat",
        """
        network n(a: [N, 8, 4, 4], b: [N, 8, 5, 5]) {
            c = concat(a, b)
            return c
        }
        """,
        2, 9, "differ on axis 2",
    ),
    row(
        "shape-concat-rank",
        """
        network n(a: [N, 8, 4, 4], b: [N, 8]) {
            c = concat(a, b, axis=1)
            return c
        }
        """,
        2, 9, "concat needs tensors of one rank",
    ),
    row(
        "shape-concat-axis-out-of-range",
        """
        network n(a: [N, 8], b: [N, 8]) {
            c = concat(a, b, axis=2)
            return c
        }
        """,
        2, 22, "axis 2 is out of range",
    ),
    row(
        "shape-linear-symbolic-features",
        """
        network n(x: [N, D]) {
            y = x -> linear(4)
            return y
        }
        """,
        2, 14, "known number of input features",
    ),
    row(
        "shape-conv2d-rank-2-input",
        """
        network n(x: [N, 8]) {
            y = x -> conv2d(8, kernel=3)
            return y
        }
        """,
        2, 14, "conv2d expects an input of rank 4",
    ),
    row(
        "shape-conv2d-symbolic-channels",
        """
        network n(x: [N, C, 8, 8]) {
            y = x -> conv2d(8, kernel=3)
            return y
        }
        """,
        2, 14, "known number of input channels",
    ),
    row(
        "shape-conv2d-groups-keyword",
        """
        network n(x: [N, 6, 8, 8]) {
            y = x -> conv2d(8, kernel=3, groups=4)
            return y
        }
        """,
        2, 34, "groups=4 does not divide the 6 input channels",
    ),
    row(
        "shape-conv2d-groups-positional",
        """
        network n(x: [N, 6, 8, 8]) {
            y = conv2d(x, 8, 3, 1, 0, 1, 4)
            return y
        }
        """,
        2, 34, "groups=4 does not divide",
    ),
    row(
        "shape-split-not-dividing",
        """
        network n(x: [N, 8]) {
            a, b = x -> split(3)
            return a
        }
        """,
        2, 23, "do not divide",
    ),
    row(
        "shape-reshape-tuple-argument",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N, 3))
            return y
        }
        """,
        2, 22, "cannot reshape [N, 8] to [N, 3]",
    ),
    row(
        "shape-mse-loss",
        """
        network n(x: [N, 8], t: [N, 4]) {
            return mse_loss(x, t)
        }
        """,
        2, 12, "one shape",
    ),
    # ------------------------------------------------------------------ dimensions too small
    row(
        "dimension-conv2d-kernel-5-on-3x3",
        """
        network n(x: [N, 3, 3, 3]) {
            y = x -> conv2d(8, kernel=5)
            return y
        }
        """,
        2, 14, "output height -1", note="kernel 5",
    ),
    row(
        "dimension-maxpool-on-1x1",
        """
        network n(x: [N, 3, 1, 1]) {
            y = x -> maxpool2d(2)
            return y
        }
        """,
        2, 14, "output height 0",
    ),
    # ------------------------------------------------------------------ dtypes
    row(
        "dtype-relu-on-int64",
        """
        network n(x: int64[N, 8]) {
            y = x -> relu
            return y
        }
        """,
        2, 14, "float",
    ),
    row(
        "dtype-linear-on-int64",
        """
        network n(x: int64[N, 8]) {
            y = x -> linear(4)
            return y
        }
        """,
        2, 14, "expects a float tensor",
    ),
    row(
        "dtype-embedding-on-float",
        """
        network n(x: [N, 8]) {
            y = x -> embedding(100, 16)
            return y
        }
        """,
        2, 14, "int64",
    ),
    row(
        "dtype-cross-entropy-float-labels",
        """
        network n(x: [N, 10], labels: [N]) {
            return cross_entropy(x, labels)
        }
        """,
        2, 12, "int64 labels",
    ),
    row(
        "dtype-add-int-and-float",
        """
        network n(x: int64[N, 8], y: [N, 8]) {
            return x + y
        }
        """,
        2, 12, "dtypes int64 and float32",
    ),
    row(
        "dtype-float-constant-on-int-tensor",
        """
        network n(x: int64[N, 8]) {
            return x * 0.5
        }
        """,
        2, 16, "the float 0.5",
    ),
    # ------------------------------------------------------------------ annotations
    row(
        "annotation-mismatch",
        """
        network n(x: [N, 8]) {
            y: [N, 5] = x -> linear(4)
            return y
        }
        """,
        2, 5, "annotated [N, 5] but its shape is [N, 4]",
    ),
    row(
        "annotation-rank",
        """
        network n(x: [N, 8]) {
            y: [N, 4, 1] = x -> linear(4)
            return y
        }
        """,
        2, 5, "annotated [N, 4, 1]",
    ),
    row(
        "annotation-span-covers-statement",
        """
        network n(x: [N, 8]) {
            y: [N, 5] = x -> linear(4)
            return y
        }
        """,
        2, 5, "annotated", end=(2, 31),
    ),
    # ------------------------------------------------------------------ assert
    row(
        "assert-with-message",
        """
        network n(x: [N, 8]) {
            assert x.shape[1] == 16, "need 16 features"
            return x
        }
        """,
        2, 5, "need 16 features",
    ),
    row(
        "assert-without-message",
        """
        network n(x: [N, 8]) {
            assert 1 > 2
            return x
        }
        """,
        2, 5, "assertion failed",
    ),
    row(
        "assert-in-block",
        """
        block halve(x, width) {
            assert width % 2 == 0, "width must be even"
            return x -> linear(width // 2)
        }
        network n(x: [N, 8]) {
            return halve(x, 7)
        }
        """,
        2, 5, "width must be even", note="in block `halve`, expanded from the call at <string>:6:12",
    ),
    # ------------------------------------------------------------------ recursion
    row(
        "recursion-direct",
        """
        block f(x) {
            y = f(x)
            return y
        }
        network n(x: [N, 8]) {
            return f(x)
        }
        """,
        2, 9, "recurs", note="expanded from the call at <string>:6:12",
    ),
    row(
        "recursion-mutual",
        """
        block a(x) {
            return b(x)
        }
        block b(x) {
            return x -> a
        }
        network n(x: [N, 8]) {
            return a(x)
        }
        """,
        5, 17, "a -> b -> a", note="in block `b`",
    ),
    # ------------------------------------------------------------------ imports
    row(
        "import-cycle",
        """
        import "a.net"
        network n(x: [N, 8]) {
            return fa(x)
        }
        """,
        1, 1, "import cycle", file="b.net",
        files={
            "a.net": """
                import "b.net"
                block fa(x) { return x }
                """,
            "b.net": """
                import "a.net"
                block fb(x) { return x }
                """,
        },
    ),
    row(
        "import-self",
        """
        import "main.net"
        network n(x: [N, 8]) {
            return x
        }
        """,
        1, 1, "import cycle",
    ),
    row(
        "import-missing-file",
        """
        # a network that imports what is not there
        import "nope.net"
        network n(x: [N, 8]) {
            return x
        }
        """,
        2, 1, "nope.net",
    ),
    row(
        "import-syntax-error-in-imported-file",
        """
        import "bad.net"
        network n(x: [N, 8]) {
            return x
        }
        """,
        3, 1, "unexpected `}`", file="bad.net", note="imported at",
        files={
            "bad.net": """
                block broken(x) {
                    return x ->
                }
                """,
        },
    ),
    row(
        "import-error-inside-imported-block",
        """
        import "lib.net"
        network n(x: [N, 8]) {
            return proj(x)
        }
        """,
        3, 17, "rank 4", file="lib.net", note="in block `proj`, expanded from the call",
        files={
            "lib.net": """
                width = 4
                block proj(x) {
                    return x -> conv2d(width, kernel=3)
                }
                """,
        },
    ),
    row(
        "import-duplicate-definition",
        """
        import "lib.net"
        width = 8
        network n(x: [N, 8]) {
            return x
        }
        """,
        2, 1, "`width` is defined twice", note="lib.net",
        files={
            "lib.net": """
                width = 4
                block proj(x) { return x }
                """,
        },
    ),
    # ------------------------------------------------------------------ repeat
    row(
        "repeat-negative-expression",
        """
        network n(x: [N, 8]) {
            repeat 2 - 3 { x = x -> relu }
            return x
        }
        """,
        2, 12, "non-negative",
    ),
    row(
        "repeat-negative-literal",
        """
        network n(x: [N, 8]) {
            repeat -1 { x = x -> relu }
            return x
        }
        """,
        2, 12, "non-negative",
    ),
    row(
        "repeat-float",
        """
        network n(x: [N, 8]) {
            repeat 2.5 { x = x -> relu }
            return x
        }
        """,
        2, 12, "float 2.5",
    ),
    row(
        "repeat-symbolic-dimension",
        """
        network n(x: [N, 8]) {
            repeat N { x = x -> relu }
            return x
        }
        """,
        2, 12, "symbolic dimension N",
    ),
    row(
        "repeat-shape-entry",
        """
        network n(x: [N, 8]) {
            repeat x.shape[0] { x = x -> relu }
            return x
        }
        """,
        2, 12, "compile time",
    ),
    row(
        "repeat-billion-fails-fast",
        """
        network n(x: [N, 8]) {
            repeat 1000000000 {
                x = x -> relu
            }
            return x
        }
        """,
        2, 12, "too large",
    ),
    row(
        "repeat-billion-in-block",
        """
        block deep(x) {
            repeat 1000000000 { x = x -> linear(8) }
            return x
        }
        network n(x: [N, 8]) {
            return deep(x)
        }
        """,
        2, 12, "too large",
    ),
    row(
        "repeat-billion-in-block-note",
        """
        block deep(x) {
            repeat 1000000000 { x = x -> linear(8) }
            return x
        }
        network n(x: [N, 8]) {
            return deep(x)
        }
        """,
        2, 12, "too large", note="in block `deep`, expanded from the call at <string>:6:12",
    ),
    # ------------------------------------------------------------------ duplicates
    row(
        "duplicate-block",
        """
        block b(x) { return x }
        block b(x) { return x -> relu }
        network n(x: [N, 8]) { return b(x) }
        """,
        2, 1, "`b` is defined twice", note="first definition is at <string>:1:1",
    ),
    row(
        "duplicate-constant",
        """
        k = 3
        k = 4
        network n(x: [N, 8]) { return x -> linear(k) }
        """,
        2, 1, "`k` is defined twice",
    ),
    row(
        "duplicate-constant-and-block",
        """
        b = 3
        block b(x) { return x }
        network n(x: [N, 8]) { return x }
        """,
        2, 1, "`b` is defined twice",
    ),
    row(
        "duplicate-instance-name",
        """
        network n(x: [N, 8]) {
            y = x -> linear(8, name="fc")
            z = y -> linear(8, name="fc")
            return z
        }
        """,
        3, 24, "two instances are named `fc`", note="<string>:2:24",
    ),
    row(
        "duplicate-instance-name-in-repeat",
        """
        network n(x: [N, 8]) {
            repeat 2 {
                x = x -> linear(8, name="fc")
            }
            return x
        }
        """,
        3, 28, "two instances are named `fc`",
    ),
    # ------------------------------------------------------------------ return
    row(
        "return-missing-network",
        """
        network n(x: [N, 8]) {
            y = x -> relu
        }
        """,
        1, 9, "does not end with `return`",
    ),
    row(
        "return-missing-block",
        """
        block b(x) {
            y = x -> relu
        }
        network n(x: [N, 8]) {
            return b(x)
        }
        """,
        1, 7, "block `b` does not end with `return`",
    ),
    row(
        "return-not-last-twice",
        """
        network n(x: [N, 8]) {
            return x
            return x -> relu
        }
        """,
        2, 5, "must be the last statement", count=1,
    ),
    row(
        "return-not-last-inside-if",
        """
        network n(x: [N, 8]) {
            if true { return x }
            return x -> relu
        }
        """,
        2, 15, "must be the last statement",
    ),
    row(
        "return-not-last-followed-by-statement",
        """
        network n(x: [N, 8]) {
            return x
            y = x -> relu
        }
        """,
        2, 5, "must be the last statement", count=1,
    ),
    # ------------------------------------------------------------------ networks
    row(
        "network-several-none-named",
        """
        network a(x: [N, 8]) { return x }
        network b(x: [N, 8]) { return x }
        """,
        2, 9, "choose one",
    ),
    row(
        "network-none",
        """
        block b(x) { return x }
        """,
        1, 1, "no network",
    ),
    # ------------------------------------------------------------------ limits
    row(
        "limit-node-cap",
        """
        network n(x: [N, 8]) {
            repeat 100 {
                if true { x = x -> relu }
            }
            return x
        }
        """,
        3, 28, "more than 50 nodes", limits={"max_nodes": 50},
    ),
    row(
        "limit-node-cap-seen-before-the-repeat-runs",
        """
        network n(x: [N, 8]) {
            repeat 100 {
                x = x -> relu
            }
            return x
        }
        """,
        2, 12, "repeat 100 is too large", note="makes at least 1 nodes", limits={"max_nodes": 50},
    ),
    row(
        "limit-node-cap-in-block",
        """
        block b(x) { return x -> linear(8) -> relu }
        network n(x: [N, 8]) {
            repeat 30 {
                if true { x = b(x) }
            }
            return x
        }
        """,
        1, 39, "more than 50 nodes", limits={"max_nodes": 50},
    ),
    row(
        "limit-node-cap-in-block-note",
        """
        block b(x) { return x -> linear(8) -> relu }
        network n(x: [N, 8]) {
            repeat 30 {
                if true { x = b(x) }
            }
            return x
        }
        """,
        1, 39, "more than 50 nodes", note="in block `b`, expanded from the call at <string>:4:23",
        limits={"max_nodes": 50},
    ),
    row(
        "limit-block-depth-cap",
        """
        block b4(x) { return x -> relu }
        block b3(x) { return b4(x) }
        block b2(x) { return b3(x) }
        block b1(x) { return b2(x) }
        network n(x: [N, 8]) {
            return b1(x)
        }
        """,
        2, 22, "nest more than 3 deep", limits={"max_depth": 3},
    ),
    row(
        "limit-block-depth-cap-note",
        """
        block b4(x) { return x -> relu }
        block b3(x) { return b4(x) }
        block b2(x) { return b3(x) }
        block b1(x) { return b2(x) }
        network n(x: [N, 8]) {
            return b1(x)
        }
        """,
        2, 22, "nest more than 3 deep", note="in block `b3`, expanded from the call at <string>:3:22",
        limits={"max_depth": 3},
    ),
    # ------------------------------------------------------------------ errors inside blocks
    row(
        "block-error-note-names-call",
        """
        block b(x) {
            y = x -> linear(4)
            z = y + x
            return z
        }
        network n(x: [N, 8]) {
            return b(x)
        }
        """,
        3, 9, "cannot add", note="in block `b`, expanded from the call at <string>:7:12",
    ),
    row(
        "block-error-nested-notes",
        """
        block inner(x) {
            return x -> conv2d(8, kernel=3)
        }
        block outer(x) {
            return inner(x)
        }
        network n(x: [N, 8]) {
            y = outer(x)
            return y
        }
        """,
        2, 17, "rank 4", note="in block `outer`, expanded from the call at <string>:8:9",
    ),
    row(
        "block-error-reported-once-for-two-calls",
        """
        block b(x) {
            return x -> conv2d(8, kernel=3)
        }
        network n(x: [N, 8]) {
            y = b(x)
            z = b(x)
            return y + z
        }
        """,
        2, 17, "rank 4", count=1,
    ),
    row(
        "block-error-reported-once-in-repeat",
        """
        block b(x) {
            return x -> conv2d(4, kernel=3)
        }
        network n(x: [N, 8]) {
            repeat 3 { x = b(x) }
            return x
        }
        """,
        2, 17, "rank 4", count=1,
    ),
    # ------------------------------------------------------------------ several errors, no cascades
    row(
        "several-two-undefined-names",
        """
        network n(x: [N, 8]) {
            y = x + foo
            z = bar -> relu
            return y + z
        }
        """,
        2, 13, "undefined name `foo`", count=2,
    ),
    row(
        "several-three-independent-kinds",
        """
        network n(x: [N, 8], t: int64[N]) {
            a = x -> linear(0)
            b = x -> lineer(4)
            c = cross_entropy(x, t -> relu)
            return x
        }
        """,
        2, 21, "at least 1", count=3,
    ),
    row(
        "several-in-block-and-network",
        """
        block b(x) {
            y = x -> linear(4, biass=true)
            return y
        }
        network n(x: [N, 8]) {
            y = b(x)
            z = x + foo
            return z
        }
        """,
        2, 24, "no argument `biass`", count=2,
    ),
    row(
        "no-cascade-undefined-then-used",
        """
        network n(x: [N, 8]) {
            y = undefined_thing -> relu
            z = y -> linear(4)
            w = z + x
            return w
        }
        """,
        2, 9, "undefined name `undefined_thing`", count=1,
    ),
    row(
        "no-cascade-bad-argument-then-used",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, bias=2)
            z = y -> conv2d(3, kernel=1)
            return z
        }
        """,
        2, 24, "`bias` needs true or false", count=1,
    ),
    row(
        "no-cascade-broken-block-result",
        """
        block b(x) {
            return x -> conv2d(4, kernel=3)
        }
        network n(x: [N, 8]) {
            y = b(x)
            z = y + x
            return z -> linear(4)
        }
        """,
        2, 17, "rank 4", count=1,
    ),
    row(
        "no-cascade-undefined-repeat-count",
        """
        network n(x: [N, 8]) {
            repeat cnt { y = x -> relu }
            return y -> linear(4)
        }
        """,
        2, 12, "undefined name `cnt`", count=1,
    ),
    row(
        "no-cascade-undefined-condition",
        """
        network n(x: [N, 8]) {
            if flag { y = x -> relu } else { y = x }
            return y -> linear(4)
        }
        """,
        2, 8, "undefined name `flag`", count=1,
    ),
    row(
        "no-cascade-bad-constant-used-twice",
        """
        k = 1 // 0
        network n(x: [N, 8]) {
            y = x -> linear(k)
            return y -> linear(k)
        }
        """,
        1, 5, "division by zero", count=1,
    ),
]
# fmt: on

CASE_IDS = [p.id for p in CASES]


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("case", CASES)
def test_first_error(case: Case, tmp_path):
    check_first_error(case, tmp_path)


def test_table_covers_every_row_once():
    assert len(CASE_IDS) == len(set(CASE_IDS))


# ---------------------------------------------------------------- the CLI, in process, every row


def _cli_args(case: Case, path: Path) -> list[str]:
    args = ["check", str(path)]
    if "max_nodes" in case.limits:
        args += ["--max-nodes", str(case.limits["max_nodes"])]
    if "max_depth" in case.limits:
        args += ["--max-depth", str(case.limits["max_depth"])]
    return args


def _run_cli_in_process(args, capsys):
    from netc.compiler.cli import main

    # The CLI raises the recursion limit and the thread stack size for its worker thread;
    # put both back so the rest of the test session runs as before.
    limit, stack = sys.getrecursionlimit(), threading.stack_size()
    try:
        code = main(args)
    finally:
        sys.setrecursionlimit(limit)
        threading.stack_size(stack)
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_json_report(stdout: str):
    report = json.loads(stdout)  # exactly one JSON object, nothing else on stdout
    assert isinstance(report, dict)
    assert report["ok"] is False
    assert report["errors"]
    for error in report["errors"]:
        for key in ("file", "line", "column", "end_line", "end_column", "message", "notes"):
            assert key in error, error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["notes"], list)
    return report


# Rows whose bug is that netc reports no error at all: the CLI cannot report one either.
NO_ERROR_ROWS: set[str] = set()


@pytest.mark.parametrize(
    "case", [pytest.param(p.values[0], id=p.id, marks=p.marks if p.id in NO_ERROR_ROWS else ()) for p in CASES]
)
def test_cli_renders_every_row(case: Case, tmp_path, capsys):
    path = write_case(case, tmp_path)
    code, out, err = _run_cli_in_process(_cli_args(case, path) + ["--json"], capsys)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    report = _check_json_report(out)
    assert report["errors"][0]["line"] is not None

    code, out, err = _run_cli_in_process(_cli_args(case, path), capsys)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    assert "error:" in err and "^" in err, err
    assert re.search(r"^\d+ errors?$", err.strip().splitlines()[-1]), err


# ---------------------------------------------------------------- the CLI, as a subprocess

SUBPROCESS_ROWS = [
    "syntax-bad-token-double-comma",
    "syntax-eof-unclosed-block",
    "unknown-op",
    "type-conv-kernel-float",
    "shape-add",
    "annotation-mismatch",
    "recursion-mutual",
    "import-cycle",
    "repeat-billion-fails-fast",
    "limit-node-cap",
    "several-two-undefined-names",
]


@pytest.mark.parametrize("case", [pytest.param(p.values[0], id=p.id) for p in CASES if p.id in SUBPROCESS_ROWS])
def test_cli_subprocess(case: Case, tmp_path):
    path = write_case(case, tmp_path)
    args = [str(NETC), *_cli_args(case, path)]
    proc = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    report = _check_json_report(proc.stdout)
    if case.count is not None:
        assert len(report["errors"]) == case.count

    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "error:" in proc.stderr and "^" in proc.stderr


def test_subprocess_rows_exist():
    assert set(SUBPROCESS_ROWS) <= set(CASE_IDS)
    assert NO_ERROR_ROWS <= set(CASE_IDS)
