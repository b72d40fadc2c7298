"""Error messages: a row for every message template the compiler can produce.

tests/test_errors.py is organized by kind of error; this table completes it template by
template. Each row is a minimal spec, the (line, column) of its first error diagnostic and a
substring of that error's message (case-insensitive). The positions follow LANGUAGE.md's
Errors section: the call's name when a call's inputs or result are wrong, the argument when
one argument is wrong (a keyword argument's key), the whole expression for an operator (its
operand when only that operand is wrong, as test_errors.py's rows have it), the name for an
undefined name, the statement for a failed annotation, `assert`, duplicate definition or
`import`. Rows for files and imports are compiled from tmp_path with `compile_file`; `{tmp}`
in their message stands for tmp_path. Errors that name no source position (a file that
cannot be read) have line and column None.

`test_every_template_has_a_row` reads the compiler's sources, extracts every message
template (the string literal given to NetcError, FatalError, ShapeError, ArgError or
Diagnostic) and checks that its longest literal fragment appears in the expected message of
some row of this file or of tests/test_errors.py; the only exceptions are listed, with the
reason, in UNREACHABLE and ONLY_THROUGH_A_BUG below.

Rows marked xfail(strict=True) are behaviours believed to be netc bugs; each reason says
what is expected and what netc does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from error_table import DIRECTORY, Case, check_first_error, import_chain, nested, row
from netc.compiler import compile_file

ROOT = Path(__file__).resolve().parents[1]

# fmt: off
CASES = [
    # ------------------------------------------------------------------ networks and inputs
    row(
        "network-named-not-found",
        """
        network a(x: [N, 8]) { return x }
        network b(x: [N, 8]) { return x }
        """,
        1, 9, "no network named `m`; the file defines a, b", network="m",
    ),
    row(
        "network-output-not-a-tensor",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4)
            return y, 3
        }
        """,
        3, 15, "a network output must be a tensor, got the int 3",
    ),
    row(
        "input-unknown-dtype",
        """
        network n(x: float16[N, 8]) { return x }
        """,
        1, 14, "unknown dtype `float16`; expected float32, float64, int64 or bool",
    ),
    row(
        "input-dimension-zero",
        """
        network n(x: [N, 0]) { return x }
        """,
        1, 18, "an input dimension must be a positive integer or a name, got the int 0",
    ),
    row(
        "input-dimension-float",
        """
        network n(x: [N, 2.5]) { return x }
        """,
        1, 18, "an input dimension must be a positive integer or a name, got the float 2.5",
    ),
    row(
        "input-declared-twice",
        """
        network n(x: [N, 8], x: [N, 4]) { return x }
        """,
        1, 22, "input `x` is declared twice",
    ),
    # ------------------------------------------------------------------ statements
    row(
        "unpack-call-with-several-results-into-one-name",
        """
        network n(x: [N, 8]) {
            y = split(x, 4)
            return y
        }
        """,
        2, 9, "this call returns 2 values; unpack them: `_, _ = ...`",
    ),
    row(
        "unpack-two-values-into-three-names",
        """
        network n(x: [N, 8]) {
            a, b, c = split(x, 4)
            return a
        }
        """,
        2, 15, "cannot unpack 2 values into 3 names",
    ),
    row(
        "unpack-one-value-into-two-names",
        """
        network n(x: [N, 8]) {
            a, b = relu(x)
            return a
        }
        """,
        2, 12, "cannot unpack 1 value into 2 names",
    ),
    row(
        "condition-not-a-bool",
        """
        network n(x: [N, 8]) {
            if 1 { y = x } else { y = x -> relu }
            return y
        }
        """,
        2, 8, "a condition must be true or false, got the int 1",
    ),
    row(
        "annotation-of-a-constant",
        """
        network n(x: [N, 8]) {
            y: [N, 8] = 3
            return x
        }
        """,
        2, 5, "a shape annotation needs a tensor, got the int 3",
    ),
    row(
        "annotation-entry-not-a-dimension",
        """
        network n(x: [N, 8]) {
            y: [N, "a"] = x
            return y
        }
        """,
        2, 12, 'a shape entry must be a dimension, got the string "a"',
    ),
    row(
        "assert-message-not-a-string",
        """
        network n(x: [N, 8]) {
            assert false, 3
            return x
        }
        """,
        2, 5, "assertion failed: the int 3",
    ),
    # ------------------------------------------------------------------ limits
    row(
        "limit-steps-of-nested-repeats",
        """
        network n(x: [N, 8]) {
            t = (1,)
            repeat 30 { t = t + t }
            return x
        }
        """,
        3, 21, "elaboration takes more than 100200 steps (the limit; it follows --max-nodes)",
        limits={"max_nodes": 10},
    ),
    row(
        "limit-expression-nesting",
        "network n(x: [N, 8]) {\n    return x" + " + x" * 3000 + "\n}\n",
        1, 9, "the spec nests too deeply to elaborate", recursion_limit=1000,
    ),
    row(
        "limit-dimension-too-large",
        """
        network n(x: [N, 8, 8, 8]) {
            y = x -> upsample(scale=4611686018427387904)
            return y
        }
        """,
        2, 14, "upsample makes a dimension too large: [N, 8, 36893488147419103232, 36893488147419103232]",
    ),
    # ------------------------------------------------------------------ budgets (issue 12; compiler/limits.py)
    row(
        "limit-split-results-count-as-nodes",
        """
        network n(x: [2, 100000000]) {
            y = x -> split(1)
            return x
        }
        """,
        2, 14, "split would make 100000000 results, more than the 999999 nodes left under the limit of 1000000 (see --max-nodes)",
    ),
    row(
        "limit-split-results-under-a-small-cap",
        """
        network n(x: [2, 64]) {
            parts = x -> split((32, 32))
            y = x -> split(4)
            return x
        }
        """,
        2, 18, "split would make 2 results, more than the 1 nodes left", limits={"max_nodes": 2},
    ),
    row(
        "limit-dimension-degree",
        """
        network n(x: [N, 2]) {
            a = N
            repeat 40 { a = a * a }
            return x
        }
        """,
        3, 21, "a derived dimension grows past degree 64 (the limit; see --max-dim-degree)",
    ),
    row(
        "limit-dimension-terms",
        """
        network n(x: [N, 2]) {
            a = N
            repeat 64 { a = (a + a) // 3 + (a // 5) * (a % 7) }
            return x
        }
        """,
        3, 21, "a derived dimension grows past 256 terms (the limit; see --max-dim-terms)",
    ),
    row(
        "limit-dimension-terms-flag",
        """
        network n(x: [N, 2]) {
            a = N + N * N + 1
            return x
        }
        """,
        2, 9, "grows past 3 terms (the limit; see --max-dim-terms)", limits={"max_dim_terms": 3},
    ),
    row(
        "limit-dimension-degree-in-a-shape-rule",
        """
        network n(x: [A, B, C, D]) {
            y = x -> flatten(0)
            return y
        }
        """,
        2, 14, "grows past degree 3 (the limit; see --max-dim-degree)", limits={"max_dim_degree": 3},
    ),
    row(
        "limit-dimension-coefficient-overflow",
        """
        network n(x: [N, 2]) {
            a = N * 4611686018427387904
            b = a * 4
            return x
        }
        """,
        3, 9, "integer overflow: a dimension's integers must fit in 64 bits",
    ),
    row(
        "limit-dimension-degree-linear-chain",
        """
        network n(x: [N, 2]) {
            a = N
            repeat 20000 { a = a * N + N }
            return x
        }
        """,
        3, 24, "a derived dimension grows past degree 64",
    ),
    row(
        "limit-statement-nesting-flag",
        """
        network n(x: [N, 8]) {
            repeat 1 {
                if true {
                    x = x -> relu
                }
            }
            return x
        }
        """,
        4, 13, "statements nest more than 2 deep (the limit; see --max-nesting)", limits={"max_nesting": 2},
    ),
    row(
        "limit-statement-nesting-in-an-import",
        """
        import "lib.net"
        network n(x: [N, 8]) { return x }
        """,
        2, 16, "statements nest more than 1 deep", note="imported at", file="lib.net",
        files={"lib.net": "block b(x) {\n    repeat 1 { x = x -> relu }\n    return x\n}\n"},
        limits={"max_nesting": 1},
    ),
    row(
        "limit-tuple-doubling",
        """
        network n(x: [N, 8]) {
            t = ((1,), (1,))
            repeat 64 { t = (t, t) }
            return x
        }
        """,
        3, 21, "elaboration takes more than 1000020 steps (the limit; it follows --max-nodes)",
    ),
    row(
        "limit-string-doubling",
        """
        network n(x: [N, 8]) {
            s = "ab"
            repeat 64 { s = s + s }
            return x
        }
        """,
        3, 21, "elaboration takes more than 1000020 steps (the limit; it follows --max-nodes)",
    ),
    row(
        "limit-repeat-count-times-block-nodes",
        """
        blocks = 1000000
        block res(x) { return x + (x -> linear(8) -> relu) }
        network n(x: [N, 8]) {
            repeat blocks { x = res(x) }
            return x
        }
        """,
        4, 12, "repeat 1000000 is too large", note="makes at least 2 nodes",
    ),
    row(
        "limit-repeat-nested-constant-count",
        """
        blocks = 2000
        network n(x: [N, 8]) {
            repeat blocks { repeat blocks { x = x -> relu } }
            return x
        }
        """,
        3, 12, "repeat 2000 is too large", note="makes at least 2000 nodes",
    ),
    row(
        "limit-source-bytes-of-a-string",
        """
        network n(x: [N, 8]) { return x }
        """,
        None, None, "the spec is larger than 10 bytes (the limit; see --max-source-bytes)",
        limits={"max_source_bytes": 10},
    ),
    row(
        "limit-source-bytes-of-the-main-file",
        None, None, None, "cannot read {tmp}/big.net: it is larger than 10 bytes (the limit; see --max-source-bytes)",
        files={"big.net": "network n(x: [N, 8]) { return x }\n"}, target="big.net", limits={"max_source_bytes": 10},
    ),
    row(
        "limit-source-bytes-of-all-files",
        """
        import "lib.net"
        network n(x: [N, 8]) { return x }
        """,
        1, 1, 'cannot import "lib.net": the files read add up to more than 100 bytes (the limit; see --max-source-bytes)',
        files={"lib.net": "c = 1\n" + "# padding\n" * 20}, limits={"max_source_bytes": 100},
    ),
    row(
        "limit-imported-files",
        """
        import "m0.net"
        network n(x: [N, 8]) { return x }
        """,
        1, 1, 'cannot import "m2.net": more than 2 files are imported (the limit; see --max-imports)',
        files=import_chain(4), file="m1.net", limits={"max_imports": 2},
    ),
    row(
        "import-a-device",
        """
        import "/dev/zero"
        network n(x: [N, 8]) { return x }
        """,
        1, 1, 'cannot import "/dev/zero": it is not a regular file (a device, FIFO or socket)',
    ),
    row(
        "import-a-path-with-a-nul-byte",
        'import "a\0b"\nnetwork n(x: [N, 8]) { return x }\n',
        1, 1, 'cannot import "a\\x00b": the path contains a NUL byte',
    ),
    row(
        "input-rank-past-64",
        "network n(x: [" + ", ".join(["1"] * 65) + "]) { return x }\n",
        1, 11, "an input has at most 64 axes, got 65",
    ),
    row(
        "reshape-rank-past-64",
        "network n(x: [N, 8]) { return x -> reshape((" + "1, " * 64 + "-1)) }\n",
        1, 44, "reshape to 65 axes: a tensor has at most 64",
    ),
    row(
        "embedding-rank-past-64",
        "network n(ids: int64[" + ", ".join(["2"] * 64) + "]) { return ids -> embedding(4, 2) }\n",
        1, 231, "embedding makes a tensor of 65 axes; a tensor has at most 64",
    ),
    row(
        "pow-int64-fractional-exponent",
        """
        network n(ids: int64[N, 4]) {
            y = ids ** 0.5
            return y
        }
        """,
        2, 16, "`**` on an int64 tensor needs a non-negative integer exponent, got the float 0.5",
    ),
    row(
        "annotation-negative-size",
        """
        network n(x: [N, 4]) {
            y: [-N, 4] = x
            return y
        }
        """,
        2, 9, "a shape entry must be a positive size, got -N",
    ),
    row(
        "reshape-negative-symbolic-size",
        """
        network n(x: [N, 4]) {
            y = x -> reshape((-N, -1))
            return y
        }
        """,
        2, 22, "reshape needs positive sizes, got -N",
    ),
    row(
        "flatten-of-a-scalar",
        """
        network n(x: [N, 8]) {
            s = x -> sum((0, 1))
            y = s -> flatten
            return y
        }
        """,
        3, 14, "flatten: start 1 is out of range for a scalar (only 0 or -1 flattens one)",
    ),
    row(
        "groupnorm-one-value-per-group",
        """
        network n(x: [1, 8]) {
            y = x -> groupnorm(8)
            return y
        }
        """,
        2, 24, "groupnorm: groups=8 leaves one value per group in an input of shape [1, 8]; it needs more than one",
    ),
    row(
        "divide-dtypes",
        """
        network n(x: [N, 4], ids: int64[N, 4]) {
            y = x / ids
            return y
        }
        """,
        2, 9, "cannot divide tensors of dtypes float32 and int64",
    ),
    row(
        "divide-shapes",
        """
        network n(x: [N, 4], z: [N, 3]) {
            y = x / z
            return y
        }
        """,
        2, 9, "cannot divide tensors of shapes [N, 4] and [N, 3]",
    ),
    row(
        "broadcast-two-sizes-at-least-2-apart",
        """
        network n(x: [N, 4]) {
            a = concat(x, x, axis=0)
            b = concat(x, x, x, axis=0)
            return a + b
        }
        """,
        4, 12, "cannot add tensors of shapes [2 * N, 4] and [3 * N, 4]",
    ),
    row(
        "broadcast-int-against-a-larger-size",
        """
        network n(x: [5, 4], z: [N, 4]) {
            y = concat(z, z, z, z, z, z, axis=0)
            return x + y
        }
        """,
        3, 12, "cannot add tensors of shapes [5, 4] and [6 * N, 4]",
    ),
    # ------------------------------------------------------------------ constants, attributes, indexing
    row(
        "constant-cycle",
        """
        a = b
        b = a
        network n(x: [N, 8]) { return x -> linear(a) }
        """,
        2, 5, "constant `a` is defined in terms of itself: a -> b -> a",
    ),
    row(
        "tuple-holding-a-tensor",
        """
        network n(x: [N, 8]) {
            y = (x, 1)
            return x
        }
        """,
        2, 10, "a tuple holds compile-time values, not tensors",
    ),
    row(
        "attribute-unknown",
        """
        network n(x: [N, 8]) {
            y = x.size
            return x
        }
        """,
        2, 11, "unknown attribute `size`; a tensor has only `.shape`",
    ),
    row(
        "attribute-shape-of-a-constant",
        """
        network n(x: [N, 8]) {
            k = 3
            y = k.shape
            return x
        }
        """,
        3, 9, "`.shape` needs a tensor, got the int 3",
    ),
    row(
        "index-a-tensor",
        """
        network n(x: [N, 8], ids: int64[K]) {
            y = x[ids]
            return y
        }
        """,
        2, 11,
        "a tensor cannot index a tensor: index with compile-time integers, or pick entries with "
        "`index_select(x, ids, axis=...)`",
    ),
    row(
        "index-an-int",
        """
        network n(x: [N, 8]) {
            k = 3
            y = x -> linear(k[0])
            return y
        }
        """,
        3, 21, "only a tuple can be indexed, got the int 3",
    ),
    row(
        "index-not-an-int",
        """
        network n(x: [N, 8]) {
            y = x -> linear(x.shape["a"])
            return y
        }
        """,
        2, 29, 'an index must be an integer, got the string "a"',
    ),
    row(
        "index-out-of-range",
        """
        network n(x: [N, 8]) {
            y = x -> linear(x.shape[2])
            return y
        }
        """,
        2, 29, "index 2 is out of range for a tuple of 2 items",
    ),
    # ------------------------------------------------------------------ compile-time operators
    row(
        "not-of-an-int",
        """
        network n(x: [N, 8]) {
            y = not 3
            return x
        }
        """,
        2, 13, "`not` needs true or false, got the int 3",
    ),
    row(
        "negate-a-string",
        """
        network n(x: [N, 8]) {
            y = x -> linear(-"a")
            return y
        }
        """,
        2, 21, 'cannot negate the string "a"',
    ),
    row(
        "and-left-not-a-bool",
        """
        network n(x: [N, 8]) {
            y = 3 and true
            return x
        }
        """,
        2, 9, "`and` needs true or false, got the int 3",
    ),
    row(
        "and-right-not-a-bool",
        """
        network n(x: [N, 8]) {
            y = true and 3
            return x
        }
        """,
        2, 18, "`and` needs true or false, got the int 3",
    ),
    row(
        "arithmetic-on-a-string",
        """
        network n(x: [N, 8]) {
            y = x -> linear("a" - 1)
            return y
        }
        """,
        2, 21, '`-` needs numbers, got the string "a"',
    ),
    row(
        "matmul-of-constants",
        """
        network n(x: [N, 8]) {
            y = x -> linear(2 @ 3)
            return y
        }
        """,
        2, 21, "`@` needs two tensors",
    ),
    row(
        "float-overflow-to-infinity",
        """
        k = 1e308 * 10
        network n(x: [N, 8]) { return x }
        """,
        1, 5, "the result is not a finite number",
    ),
    row(
        "float-power-too-large",
        """
        network n(x: [N, 8]) {
            y = x -> linear(10.0 ** 400)
            return y
        }
        """,
        2, 21, "the result is too large",
    ),
    row(
        "int-power-overflow",
        """
        network n(x: [N, 8]) {
            y = x -> linear(2 ** 64)
            return y
        }
        """,
        2, 21, "integer overflow: compile-time integers must fit in 64 bits",
    ),
    row(
        "bug-power-of-negative-base-message",
        """
        network n(x: [N, 8]) {
            y = x -> linear((-8) ** 0.5)
            return y
        }
        """,
        2, 21, "(-8) ** 0.5 is not a real number",
    ),
    row(
        "compare-undecidable-equality",
        """
        network n(x: [N, 8], y: [M, 8]) {
            assert N == M, "same batch"
            return x
        }
        """,
        2, 12, "cannot decide at compile time whether N == M: it depends on run-time sizes",
    ),
    row(
        "compare-undecidable-order",
        """
        network n(x: [N, 8], y: [M, 8]) {
            assert N < M
            return x
        }
        """,
        2, 12, "cannot decide at compile time whether N < M",
    ),
    row(
        "compare-int-and-string",
        """
        network n(x: [N, 8]) {
            assert 1 < "a"
            return x
        }
        """,
        2, 12, 'cannot compare the int 1 and the string "a" with `<`',
    ),
    row(
        "compare-tuples-of-mixed-items",
        """
        network n(x: [N, 8]) {
            assert (1, "a") < ("a", 1)
            return x
        }
        """,
        2, 12, 'cannot compare the tuple (1, "a") and the tuple ("a", 1) with `<`',
    ),
    row(
        "dimension-true-division",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N / 2, 16))
            return y
        }
        """,
        2, 23, "`/` on a dimension gives no dimension; use `+ - * // %` with integers",
    ),
    row(
        "dimension-floor-division-by-zero",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N // 0, 8))
            return y
        }
        """,
        2, 23, "`//` on a dimension needs a positive divisor, got 0",
    ),
    row(
        "dimension-modulo-negative",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N % -2, 8))
            return y
        }
        """,
        2, 23, "`%` on a dimension needs a positive divisor, got -2",
    ),
    # ------------------------------------------------------------------ tensor operators
    row(
        "tensor-floor-division",
        """
        network n(x: [N, 8], y: [N, 8]) {
            z = x // y
            return z
        }
        """,
        2, 9, "`//` works on compile-time values only, not on tensors",
    ),
    row(
        "tensor-comparison",
        """
        network n(x: [N, 8]) {
            z = x // x
            return z
        }
        """,
        2, 9, "`//` works on compile-time values only, not on tensors",
    ),
    row(
        "tensor-as-exponent",
        """
        network n(x: [N, 8]) {
            y = 2 ** x
            return y
        }
        """,
        2, 9, "`**` on a tensor needs a constant exponent: `x ** 2`",
    ),
    row(
        "tensor-power-string-exponent",
        """
        network n(x: [N, 8]) {
            y = x ** "a"
            return y
        }
        """,
        2, 14, 'the exponent must be a number, got the string "a"',
    ),
    row(
        "tensor-operand-symbolic-dimension",
        """
        network n(x: [N, 8]) {
            z = x * N
            return z
        }
        """,
        2, 13, "the symbolic dimension N cannot be a tensor operand: it is only known at run time",
    ),
    row(
        "tensor-operand-string",
        """
        network n(x: [N, 8]) {
            z = x * "a"
            return z
        }
        """,
        2, 13, 'a tensor operator needs a tensor or a number, got the string "a"',
    ),
    row(
        "tensor-operand-several-values",
        """
        network n(x: [N, 8]) {
            y = split(x, 4) + x
            return x
        }
        """,
        2, 9, "this call returns 2 values, not one",
    ),
    row(
        "matmul-dtypes",
        """
        network n(a: [N, 8, 4], b: float64[N, 4, 8]) {
            c = a @ b
            return c
        }
        """,
        2, 9, "cannot multiply matrices of dtypes float32 and float64",
    ),
    row(
        "matmul-scalar",
        """
        network n(x: [N, 8]) {
            s = x -> sum((0, 1))
            c = s @ x
            return c
        }
        """,
        3, 9, "`@` needs tensors with at least one axis",
    ),
    row(
        "matmul-batch-axes",
        """
        network n(a: [2, 8, 4], b: [3, 4, 8]) {
            c = a @ b
            return c
        }
        """,
        2, 9, "cannot broadcast the batch axes of [2, 8, 4] and [3, 4, 8]",
    ),
    # ------------------------------------------------------------------ calls
    row(
        "argument-with-several-values",
        """
        network n(x: [N, 8]) {
            y = relu(split(x, 4))
            return y
        }
        """,
        2, 14, "this call returns 2 values, not one",
    ),
    row(
        "variadic-op-without-tensors",
        """
        network n(x: [N, 8]) {
            y = concat(axis=0)
            return x
        }
        """,
        2, 9, "concat needs at least one tensor",
    ),
    row(
        "block-argument-positional-and-keyword",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = b(x, 4, width=4)
            return y
        }
        """,
        3, 17, "argument `width` of `b` is given twice",
    ),
    # ------------------------------------------------------------------ argument values (`<op>: `<arg>` ...`)
    row(
        "argument-int-symbolic",
        """
        network n(x: [N, 8]) {
            y = x -> softmax(axis=N)
            return y
        }
        """,
        2, 22, "softmax: `axis` needs an integer, got the symbolic dimension N, which is only known at run time",
    ),
    row(
        "argument-int-given-a-bool",
        """
        network n(x: [N, 8]) {
            y = x -> softmax(axis=true)
            return y
        }
        """,
        2, 22, "softmax: `axis` needs an integer, got the bool true",
    ),
    row(
        "argument-int-below-minimum",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> upsample(scale=0)
            return y
        }
        """,
        2, 23, "upsample: `scale` must be at least 1, got 0",
    ),
    row(
        "argument-number-given-a-string",
        """
        network n(x: [N, 8]) {
            y = x -> leaky_relu("a")
            return y
        }
        """,
        2, 25, 'leaky_relu: `slope` needs a number, got the string "a"',
    ),
    row(
        "argument-number-below-minimum",
        """
        network n(x: [N, 8]) {
            y = x -> batchnorm(eps=-1.0)
            return y
        }
        """,
        2, 24, "batchnorm: `eps` must be at least 0.0, got -1.0",
    ),
    row(
        "argument-number-not-below-bound",
        """
        network n(x: [N, 8]) {
            y = x -> dropout(p=1.0)
            return y
        }
        """,
        2, 22, "dropout: `p` must be less than 1.0, got 1.0",
    ),
    row(
        "argument-bool-given-a-string",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, bias="yes")
            return y
        }
        """,
        2, 24, 'linear: `bias` needs true or false, got the string "yes"',
    ),
    row(
        "argument-choice-given-an-int",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> upsample(mode=3)
            return y
        }
        """,
        2, 23, 'upsample: `mode` must be "nearest" or "bilinear", got the int 3',
    ),
    row(
        "argument-per-axis-wrong-count",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> conv2d(8, kernel=(3, 3, 3))
            return y
        }
        """,
        2, 24, "conv2d: `kernel` needs an int or a tuple of 2 ints, got the tuple (3, 3, 3)",
    ),
    row(
        "argument-per-axis-float-item",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> maxpool2d((2, 2.5))
            return y
        }
        """,
        2, 24, "maxpool2d: `kernel` needs an int or a tuple of 2 ints, got the tuple (2, 2.5)",
    ),
    row(
        "argument-per-axis-below-minimum",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> conv2d(8, kernel=0)
            return y
        }
        """,
        2, 24, "conv2d: `kernel` must be at least 1, got the int 0",
    ),
    row(
        "argument-padding-unknown-string",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> conv2d(8, kernel=3, padding="valid")
            return y
        }
        """,
        2, 34, 'conv2d: `padding` needs an int, a tuple of 2 ints or "same", got the string "valid"',
    ),
    row(
        "argument-axes-given-a-string",
        """
        network n(x: [N, 8]) {
            y = x -> mean("a")
            return y
        }
        """,
        2, 19, 'mean: `axes` needs an axis or a tuple of axes, got the string "a"',
    ),
    row(
        "argument-axes-empty",
        """
        network n(x: [N, 8]) {
            y = x -> mean(())
            return y
        }
        """,
        2, 19, "mean: `axes` needs an axis or a tuple of axes, got the tuple ()",
    ),
    row(
        "argument-shape-given-a-string",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N, "a"))
            return y
        }
        """,
        2, 22, 'reshape: `shape` needs a tuple of dimensions, got the tuple (N, "a")',
    ),
    row(
        "argument-split-size-zero",
        """
        network n(x: [N, 8]) {
            a, b = x -> split(0)
            return a
        }
        """,
        2, 23, "split: `sizes` must be at least 1, got 0",
    ),
    row(
        "argument-split-sizes-with-a-string",
        """
        network n(x: [N, 8]) {
            a, b = x -> split((4, "a"))
            return a
        }
        """,
        2, 23, 'split: `sizes` needs a part size or a tuple of part sizes, got the tuple (4, "a")',
    ),
    # ------------------------------------------------------------------ shape and dtype rules of ops
    row(
        "linear-on-a-scalar",
        """
        network n(x: [N, 8]) {
            s = x -> sum((0, 1))
            y = s -> linear(4)
            return y
        }
        """,
        3, 14, "linear expects an input with at least one axis, got a scalar",
    ),
    row(
        "conv2d-groups-output-channels",
        """
        network n(x: [N, 8, 8, 8]) {
            y = x -> conv2d(6, kernel=3, groups=4)
            return y
        }
        """,
        2, 34, "conv2d: groups=4 does not divide the 6 output channels",
    ),
    row(
        "conv2d-same-padding-with-stride",
        """
        network n(x: [N, 8, 8, 8]) {
            y = x -> conv2d(6, kernel=3, stride=2, padding="same")
            return y
        }
        """,
        2, 44, 'conv2d: padding="same" needs stride 1',
    ),
    row(
        "conv-transpose2d-groups",
        """
        network n(x: [N, 6, 8, 8]) {
            y = x -> conv_transpose2d(8, kernel=3, groups=4)
            return y
        }
        """,
        2, 44, "conv_transpose2d: groups=4 must divide the 6 input and 8 output channels",
    ),
    row(
        "conv-transpose2d-output-padding",
        """
        network n(x: [N, 8, 8, 8]) {
            y = x -> conv_transpose2d(4, kernel=3, stride=2, output_padding=2)
            return y
        }
        """,
        2, 54, "conv_transpose2d: output_padding must be smaller than stride, got 2 and 2",
    ),
    row(
        "layernorm-more-dims-than-rank",
        """
        network n(x: [N, 8]) {
            y = x -> layernorm(dims=3)
            return y
        }
        """,
        2, 24, "layernorm cannot normalize the last 3 axes of a tensor of rank 2",
    ),
    row(
        "groupnorm-groups",
        """
        network n(x: [N, 6, 8, 8]) {
            y = x -> groupnorm(4)
            return y
        }
        """,
        2, 24, "groupnorm: groups=4 does not divide the 6 channels",
    ),
    row(
        "concat-scalars",
        """
        network n(x: [N, 8]) {
            s = x -> sum((0, 1))
            y = concat(s, s)
            return y
        }
        """,
        3, 9, "concat cannot join scalars",
    ),
    row(
        "concat-dtypes",
        """
        network n(x: [N, 8], y: int64[N, 8]) {
            z = concat(x, y)
            return z
        }
        """,
        2, 9, "concat needs operands of one dtype, got float32 and int64",
    ),
    row(
        "split-symbolic-axis",
        """
        network n(x: [N, 8]) {
            a, b = x -> split(4, axis=0)
            return a
        }
        """,
        2, 17, "split into parts of 4 needs a known size on axis 0, got N",
    ),
    row(
        "split-parts-sum",
        """
        network n(x: [N, 8]) {
            a, b = x -> split((3, 4))
            return a
        }
        """,
        2, 23, "split: the parts 3, 4 add up to 7, but axis 1 has size 8",
    ),
    row(
        "split-scalar",
        """
        network n(x: [N, 8]) {
            s = x -> sum((0, 1))
            a, b = s -> split(1)
            return a
        }
        """,
        3, 17, "split cannot split a scalar",
    ),
    row(
        "reshape-two-holes",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((-1, -1))
            return y
        }
        """,
        2, 22, "reshape allows one -1 in the shape",
    ),
    row(
        "reshape-zero-size",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N, 0))
            return y
        }
        """,
        2, 22, "reshape needs positive sizes, got 0",
    ),
    row(
        "reshape-hole-not-dividing",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N, -1, 3))
            return y
        }
        """,
        2, 22, "cannot reshape [N, 8] to [N, -1, 3]: 3 does not divide the 8 remaining elements",
    ),
    row(
        "permute-not-an-order",
        """
        network n(x: [N, 8]) {
            y = x -> permute((0, 0))
            return y
        }
        """,
        2, 22, "permute needs an order of the 2 axes of [N, 8], got (0, 0)",
    ),
    row(
        "pool-padding-over-half-the-kernel",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> maxpool2d(2, padding=2)
            return y
        }
        """,
        2, 27, "maxpool2d: padding 2 is more than half the kernel 2",
    ),
    row(
        "softmax-of-a-scalar",
        """
        network n(x: [N, 8]) {
            s = x -> sum((0, 1))
            y = s -> softmax
            return y
        }
        """,
        3, 14, "softmax needs a tensor with at least one axis",
    ),
    row(
        "reduce-axis-listed-twice",
        """
        network n(x: [N, 8]) {
            y = x -> sum((1, -1))
            return y
        }
        """,
        2, 18, "sum: an axis is listed twice in [1, -1]",
    ),
    row(
        "cross-entropy-logits-rank",
        """
        network n(x: [N, 8, 3], t: int64[N]) {
            y = cross_entropy(x, t)
            return y
        }
        """,
        2, 9, "cross_entropy expects logits [N, K], got [N, 8, 3]",
    ),
    row(
        "cross-entropy-labels-shape",
        """
        network n(x: [N, 8], t: int64[N, 1]) {
            y = cross_entropy(x, t)
            return y
        }
        """,
        2, 9, "cross_entropy expects labels [N] for logits [N, 8], got [N, 1]",
    ),
    # ------------------------------------------------------------------ full messages of templates
    # test_errors.py exercises these templates with a shorter substring; these rows pin the
    # whole message.
    row(
        "full-conv2d-groups-input-channels",
        """
        network n(x: [N, 6, 8, 8]) {
            y = x -> conv2d(8, kernel=3, groups=4)
            return y
        }
        """,
        2, 34, "conv2d: groups=4 does not divide the 6 input channels",
    ),
    row(
        "full-linear-symbolic-features",
        """
        network n(x: [N, D]) {
            y = x -> linear(4)
            return y
        }
        """,
        2, 14, "linear needs a known number of input features (the last axis), but it is D (symbolic)",
    ),
    row(
        "full-relu-on-int64",
        """
        network n(x: int64[N, 8]) {
            y = x -> relu
            return y
        }
        """,
        2, 14, "relu expects a float tensor, got int64",
    ),
    row(
        "full-linear-on-int64",
        """
        network n(x: int64[N, 8]) {
            y = x -> linear(4)
            return y
        }
        """,
        2, 14, "linear expects a float tensor as input, got int64",
    ),
    row(
        "full-embedding-on-float",
        """
        network n(x: [N, 8]) {
            y = x -> embedding(100, 16)
            return y
        }
        """,
        2, 14, "embedding expects int64 ids, got float32",
    ),
    row(
        "full-cross-entropy-float-labels",
        """
        network n(x: [N, 10], labels: [N]) {
            return cross_entropy(x, labels)
        }
        """,
        2, 12, "cross_entropy expects int64 labels, got float32",
    ),
    row(
        "full-split-not-dividing",
        """
        network n(x: [N, 8]) {
            a, b = x -> split(3)
            return a
        }
        """,
        2, 23, "split: parts of 3 do not divide axis 1 of size 8",
    ),
    row(
        "full-mse-loss-shapes",
        """
        network n(x: [N, 8], t: [N, 4]) {
            return mse_loss(x, t)
        }
        """,
        2, 12, "mse_loss needs prediction and target of one shape, got [N, 8] and [N, 4]",
    ),
    row(
        "full-mse-loss-dtypes",
        """
        network n(x: [N, 8], t: int64[N, 8]) {
            return mse_loss(x, t)
        }
        """,
        2, 12, "mse_loss needs operands of one dtype, got float32 and int64",
    ),
    row(
        "full-conv2d-rank",
        """
        network n(x: [N, 8]) {
            y = x -> conv2d(8, kernel=3)
            return y
        }
        """,
        2, 14, "conv2d expects an input of rank 4 (N, C, H, W), got shape [N, 8]",
    ),
    row(
        "full-conv2d-output-too-small",
        """
        network n(x: [N, 3, 3, 3]) {
            y = x -> conv2d(8, kernel=5)
            return y
        }
        """,
        2, 14, "conv2d would make the output height -1: the input is too small",
        note="input height 3, kernel 5, stride 1, padding 0, dilation 1",
    ),
    row(
        "full-concat-axis-out-of-range",
        """
        network n(a: [N, 8], b: [N, 8]) {
            c = concat(a, b, axis=2)
            return c
        }
        """,
        2, 22, "axis 2 is out of range for a tensor of rank 2",
    ),
    row(
        "full-concat-rank",
        """
        network n(a: [N, 8, 4, 4], b: [N, 8]) {
            c = concat(a, b)
            return c
        }
        """,
        2, 9, "concat needs tensors of one rank, got [N, 8, 4, 4] and [N, 8]",
    ),
    row(
        "full-concat-other-axes",
        """
        network n(a: [N, 8, 4, 4], b: [N, 8, 5, 5]) {
            c = concat(a, b)
            return c
        }
        """,
        2, 9, "concat along axis 1 needs equal sizes on the other axes; [N, 8, 4, 4] and [N, 8, 5, 5] differ on axis 2 (4 vs 5)",
    ),
    row(
        "full-concat-sizes-that-cannot-all-hold",  # N = 2 on axis 0 and N = 1 on axis 1: found by the differential test
        """
        network n(a: [N, 1, 1], b: [2, N, 1]) {
            c = concat(a, b, axis=2)
            return c
        }
        """,
        2, 9, "concat along axis 2 needs equal sizes on the other axes, and no size makes them all equal: "
        "[N, 1, 1], [2, N, 1] (1 vs N cannot hold with the others)",
    ),
    row(
        "full-reshape-counts-differ",
        """
        network n(x: [N, 8]) {
            y = x -> reshape((N, 3))
            return y
        }
        """,
        2, 22, "cannot reshape [N, 8] to [N, 3]: the element counts differ",
    ),
    row(
        "full-dtype-add",
        """
        network n(x: int64[N, 8], y: [N, 8]) {
            return x + y
        }
        """,
        2, 12, "cannot add tensors of dtypes int64 and float32",
    ),
    row(
        "full-float-constant-on-int-tensor",
        """
        network n(x: int64[N, 8]) {
            return x * 0.5
        }
        """,
        2, 16, "the float 0.5 cannot take the dtype int64 of the other operand",
    ),
    row(
        "full-linear-out-zero",
        """
        network n(x: [N, 8]) {
            y = x -> linear(0)
            return y
        }
        """,
        2, 21, "linear: `out` must be at least 1, got 0",
    ),
    row(
        "full-linear-out-float",
        """
        network n(x: [N, 8]) {
            y = x -> linear(8 / 2)
            return y
        }
        """,
        2, 21, "linear: `out` needs an integer, got the float 4.0",
    ),
    row(
        "full-bias-int",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, bias=1)
            return y
        }
        """,
        2, 24, "linear: `bias` needs true or false, got the int 1",
    ),
    row(
        "full-tensor-expected",
        """
        network n(x: [N, 8]) {
            y = relu(3)
            return x
        }
        """,
        2, 14, "relu expects a tensor as `x`, got the int 3",
    ),
    row(
        "full-name-not-identifier",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, name="a b")
            return y
        }
        """,
        2, 24, '`name` must be an identifier string, got the string "a b"',
    ),
    row(
        "full-too-many-positional-elementwise",
        """
        network n(x: [N, 8]) {
            y = relu(x, x)
            return y
        }
        """,
        2, 17, "relu takes at most 1 positional argument, got 2",
    ),
    row(
        "full-repeat-symbolic",
        """
        network n(x: [N, 8]) {
            repeat N { x = x -> relu }
            return x
        }
        """,
        2, 12, "a repeat count must be an integer known at compile time, got the symbolic dimension N",
    ),
    row(
        "full-repeat-negative",
        """
        network n(x: [N, 8]) {
            repeat -1 { x = x -> relu }
            return x
        }
        """,
        2, 12, "a repeat count must be a non-negative integer, got the int -1",
    ),
    row(
        "full-repeat-too-large",
        """
        network n(x: [N, 8]) {
            repeat 1000000000 { x = x -> relu }
            return x
        }
        """,
        2, 12, "repeat 1000000000 is too large: elaboration is limited to 1000000 steps and 20 more for each node "
        "made (at most 20100000), and to 1000000 nodes (see --max-nodes)",
    ),
    row(
        "full-network-several",
        """
        network a(x: [N, 8]) { return x }
        network b(x: [N, 8]) { return x }
        """,
        2, 9, "the file defines 2 networks (a, b); choose one with --network",
    ),
    row(
        "full-network-none",
        """
        block b(x) { return x }
        """,
        1, 1, "no network to compile: the file defines none",
    ),
    row(
        "full-node-cap",
        """
        network n(x: [N, 8]) {
            repeat 100 {
                if true { x = x -> relu }
            }
            return x
        }
        """,
        3, 28, "the network has more than 50 nodes (the limit; see --max-nodes)", limits={"max_nodes": 50},
    ),
    row(
        "full-import-missing",
        """
        import "nope.net"
        network n(x: [N, 8]) { return x }
        """,
        1, 1, 'cannot import "nope.net": no such file',
    ),
    row(
        "full-annotation-mismatch",
        """
        network n(x: [N, 8]) {
            y: [N, 5] = x -> linear(4)
            return y
        }
        """,
        2, 5, "shape mismatch: `y` is annotated [N, 5] but its shape is [N, 4]",
    ),
    row(
        "full-unknown-keyword-op",
        """
        network n(x: [N, 8]) {
            y = x -> linear(4, biass=false)
            return y
        }
        """,
        2, 24, "linear has no argument `biass`", note="did you mean `bias`",
    ),
    row(
        "full-missing-block-argument",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = x -> b
            return y
        }
        """,
        3, 14, "block `b` is missing the argument `width`",
    ),
    row(
        "full-missing-op-input",
        """
        network n(x: [N, 8]) {
            y = mse_loss(x)
            return x
        }
        """,
        2, 9, "mse_loss is missing the input `target`",
    ),
    row(
        "full-positional-after-keyword",
        """
        network n(x: [N, 8]) {
            y = x -> linear(out=4, true)
            return y
        }
        """,
        2, 28, "a positional argument cannot follow a keyword argument",
    ),
    row(
        "full-recursion",
        """
        block f(x) {
            y = f(x)
            return y
        }
        network n(x: [N, 8]) {
            return f(x)
        }
        """,
        2, 9, "block `f` recurs: f -> f", note="in block `f`, expanded from the call at <string>:6:12",
    ),
    row(
        "full-block-depth-cap",
        """
        block b3(x) { return x -> relu }
        block b2(x) { return b3(x) }
        block b1(x) { return b2(x) }
        network n(x: [N, 8]) {
            return b1(x)
        }
        """,
        2, 22, "block calls nest more than 2 deep", limits={"max_depth": 2},
    ),
    row(
        "full-unknown-keyword-block",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = b(x, widht=4)
            return y
        }
        """,
        3, 14, "block `b` has no parameter `widht`", note="did you mean `width`",
    ),
    row(
        "full-too-many-positional-block",
        """
        block b(x, width) { return x -> linear(width) }
        network n(x: [N, 8]) {
            y = b(x, 4, 5)
            return y
        }
        """,
        3, 17, "block `b` takes 2 arguments, got 3",
    ),
    row(
        "full-return-not-last",
        """
        network n(x: [N, 8]) {
            return x
            y = x -> relu
        }
        """,
        2, 5, "`return` must be the last statement of network `n`",
    ),
    row(
        "full-import-cycle",
        """
        import "a.net"
        network n(x: [N, 8]) { return x }
        """,
        1, 1, "import cycle: a.net -> b.net -> a.net", file="b.net",
        files={"a.net": 'import "b.net"\n', "b.net": 'import "a.net"\n'},
    ),
    row(
        "full-matmul-shapes",
        """
        network n(a: [N, 8, 4], b: [N, 5, 6]) {
            c = a @ b
            return c
        }
        """,
        2, 9, "cannot multiply matrices of shapes [N, 8, 4] and [N, 5, 6]: 4 columns against 5 rows",
    ),
    # ------------------------------------------------------------------ definitions
    row(
        "parameter-listed-twice",
        """
        block b(x, x) { return x }
        network n(x: [N, 8]) { return b(x, x) }
        """,
        1, 12, "parameter `x` is listed twice",
    ),
    row(
        "parameter-without-default-after-default",
        """
        block b(x, k=1, m) { return x }
        network n(x: [N, 8]) { return b(x, 1, 2) }
        """,
        1, 17, "parameter `m` without a default follows a parameter with one",
    ),
    # ------------------------------------------------------------------ files and imports
    row(
        "file-missing",
        None,
        None, None, "no such file: {tmp}/missing.net", target="missing.net",
    ),
    row(
        "file-is-a-directory",
        None,
        None, None, "{tmp}/lib.net is a directory, not a .net file", files={"lib.net": DIRECTORY},
        target="lib.net",
    ),
    row(
        "file-not-utf8",
        None,
        None, None, "cannot read {tmp}/main.net: 'utf-8' codec can't decode byte 0xff",
        files={"main.net": b"\xff\xfe network n(x: [N, 8]) { return x }\n"},
    ),
    row(
        "import-a-directory",
        """
        import "lib"
        network n(x: [N, 8]) { return x }
        """,
        1, 1, 'cannot import "lib": ', files={"lib": DIRECTORY},
    ),
    # ------------------------------------------------------------------ suspected bugs
    row(
        "bug-unpack-piped-call-into-one-name",
        """
        network n(x: [N, 8]) {
            y = x -> split(4)
            return y
        }
        """,
        2, 14, "this call returns 2 values; unpack them",
    ),
    row(
        "bug-unpack-piped-call-into-three-names",
        """
        network n(x: [N, 8]) {
            a, b, c = x -> split(4)
            return a
        }
        """,
        2, 20, "cannot unpack 2 values into 3 names",
    ),
    row(
        "bug-keyword-argument-with-several-values",
        """
        network n(x: [N, 8]) {
            y = linear(x, out=split(x, 4))
            return y
        }
        """,
        2, 19, "this call returns 2 values, not one",
    ),
    row(
        "bug-index-several-values",
        """
        network n(x: [N, 8]) {
            y = split(x, 4)[0]
            return y
        }
        """,
        2, 9, "2 values",
    ),
    row(
        "bug-condition-several-values",
        """
        network n(x: [N, 8]) {
            if split(x, 4) { x = x -> relu }
            return x
        }
        """,
        2, 8, "2 values",
    ),
    row(
        "bug-repeat-count-several-values",
        """
        network n(x: [N, 8]) {
            repeat split(x, 4) { x = x -> relu }
            return x
        }
        """,
        2, 12, "2 values",
    ),
    row(
        "bug-network-output-several-values",
        """
        network n(x: [N, 8]) {
            return split(x, 4)
        }
        """,
        2, 12, "2 values",
    ),
    row(
        "bug-annotation-several-values",
        """
        network n(x: [N, 8]) {
            y: [N, 4] = split(x, 4)
            return x
        }
        """,
        2, 5, "2 values",
    ),
    row(
        "bug-shape-of-several-values",
        """
        network n(x: [N, 8]) {
            y = split(x, 4).shape
            return x
        }
        """,
        2, 9, "2 values",
    ),
    # ------------------------------------------------------------------ language 1.1: indexing
    row(
        "v11-index-out-of-range",
        """
        network n(x: [N, 4, 6]) {
            y = x[:, 4]
            return y
        }
        """,
        2, 14, "index 4 is out of range for axis 1 of size 4 (valid: -4 to 3)",
    ),
    row(
        "v11-index-negative-out-of-range",
        """
        network n(x: [N, 4, 6]) {
            y = x[..., -7]
            return y
        }
        """,
        2, 16, "index -7 is out of range for axis 2 of size 6",
    ),
    row(
        "v11-index-empty-slice",
        """
        network n(x: [N, 4, 6]) {
            y = x[:, 3:1]
            return y
        }
        """,
        2, 14, "the slice 3:1 of axis 1 (size 4) is empty",
    ),
    row(
        "v11-index-two-ellipses",
        """
        network n(x: [N, 4, 6]) {
            y = x[..., 0, ...]
            return y
        }
        """,
        2, 19, "an index may hold `...` only once",
    ),
    row(
        "v11-index-too-many",
        """
        network n(x: [N, 4]) {
            y = x[0, 1, 2]
            return y
        }
        """,
        2, 17, "too many indices: 3 for a tensor of rank 2 ([N, 4])",
    ),
    row(
        "v11-index-step-zero",
        """
        network n(x: [N, 4]) {
            y = x[:, ::0]
            return y
        }
        """,
        2, 16, "a slice step must be a positive integer (as in torch), got the int 0",
    ),
    row(
        "v11-index-step-negative",
        """
        network n(x: [N, 4]) {
            y = x[:, ::-1]
            return y
        }
        """,
        2, 16, "a slice step must be a positive integer (as in torch), got the int -1",
    ),
    row(
        "v11-index-float",
        """
        network n(x: [N, 4]) {
            y = x[:, 1.5]
            return y
        }
        """,
        2, 14, "an index must be an integer or a dimension, got the float 1.5",
    ),
    row(
        "v11-index-tuple-slice",
        """
        network n(x: [N, 4]) {
            s = x.shape[1:]
            return x
        }
        """,
        2, 17, "only a tensor takes slices, `...` or several indices; the tuple (N, 4) takes one integer index",
    ),
    # ------------------------------------------------------------------ language 1.1: bool tensors
    row(
        "v11-tensor-if",
        """
        network n(x: [N, 4]) {
            if x > 0 {
                x = x -> relu
            }
            return x
        }
        """,
        2, 8, "a condition must be known at compile time, but this is a tensor of shape bool[N, 4], known only at run time",
        note="where(cond, a, b)",
    ),
    row(
        "v11-tensor-assert",
        """
        network n(x: [N, 4]) {
            assert (x -> sum((0, 1))) > 0.0
            return x
        }
        """,
        2, 12, "a condition must be known at compile time",
    ),
    row(
        "v11-tensor-repeat",
        """
        network n(x: [N, 4]) {
            repeat x { x = x -> relu }
            return x
        }
        """,
        2, 12, "a repeat count must be a non-negative integer, got a tensor", note="a tensor is known only at run time",
    ),
    row(
        "v11-tensor-and",
        """
        network n(x: [N, 4]) {
            m = x > 0 and x < 1
            return m
        }
        """,
        2, 9, "`and` works on compile-time values only; on bool tensors use `logical_and(a, b)`",
    ),
    row(
        "v11-tensor-or-right",
        """
        network n(x: [N, 4]) {
            m = false or x < 1
            return m
        }
        """,
        2, 9, "`or` works on compile-time values only; on bool tensors use `logical_or(a, b)`",
    ),
    row(
        "v11-tensor-not",
        """
        network n(x: [N, 4]) {
            m = not x > 0
            return m
        }
        """,
        2, 13, "`not` works on compile-time values only; on a bool tensor use `logical_not(x)`",
    ),
    row(
        "v11-bool-tensor-number",
        """
        network n(m: bool[N, 4]) {
            y = m == 1
            return y
        }
        """,
        2, 14, "the other operand is a bool tensor, so this side must be true or false, got the int 1",
    ),
    row(
        "v11-bool-arithmetic",
        """
        network n(a: bool[N, 4], b: bool[N, 4]) {
            y = a + b
            return y
        }
        """,
        2, 9, "cannot add bool tensors: use logical_and, logical_or or logical_not, or cast(x, \"float32\") first",
    ),
    row(
        "v11-bool-matmul",
        """
        network n(a: bool[4, 4], b: bool[4, 4]) {
            y = a @ b
            return y
        }
        """,
        2, 9, "cannot multiply bool matrices: cast(x, \"float32\") first",
    ),
    row(
        "v11-bool-negation",
        """
        network n(a: bool[4, 4]) {
            y = -a
            return y
        }
        """,
        2, 9, "neg expects a float tensor, got bool",
    ),
    row(
        "v11-compare-dtypes",
        """
        network n(a: [4], b: int64[4]) {
            y = a < b
            return y
        }
        """,
        2, 9, "cannot compare tensors of dtypes float32 and int64 with `<`",
    ),
    row(
        "v11-compare-bools-ordered",
        """
        network n(a: bool[4], b: bool[4]) {
            y = a < b
            return y
        }
        """,
        2, 9, "`<` needs numbers, got bool tensors",
    ),
    row(
        "v11-compare-shapes",
        """
        network n(a: [4], b: [5]) {
            y = a == b
            return y
        }
        """,
        2, 9, "cannot compare tensors of shapes [4] and [5]",
    ),
    # ------------------------------------------------------------------ language 1.1: compile-time functions
    row(
        "v11-min-of-tensor",
        """
        network n(x: [N, 4]) {
            y = min(x, 1.0)
            return y
        }
        """,
        2, 13, "`min` works on compile-time values, not on tensors", note="clamp(x, max=...)",
    ),
    row(
        "v11-len-of-tensor",
        """
        network n(x: [N, 4]) {
            k = len(x)
            return x
        }
        """,
        2, 13, "`len` works on compile-time values, not on tensors", note="x.shape[0]",
    ),
    row(
        "v11-max-of-dimension",
        """
        network n(x: [N, 4]) {
            k = max(N, 4)
            return x
        }
        """,
        2, 13, "`max` needs a compile-time value, but the symbolic dimension N is only known at run time",
    ),
    row(
        "v11-min-one-number",
        """
        network n(x: [N, 4]) {
            k = min(4)
            return x
        }
        """,
        2, 9, "`min` needs two or more numbers, or one tuple of them",
    ),
    row(
        "v11-round-two-arguments",
        """
        network n(x: [N, 4]) {
            k = round(2.5, 1)
            return x
        }
        """,
        2, 20, "`round` takes one argument, got 2",
    ),
    row(
        "v11-int-keyword",
        """
        network n(x: [N, 4]) {
            k = int(x=2.5)
            return x
        }
        """,
        2, 13, "`int` takes no keyword arguments",
    ),
    row(
        "v11-int-of-string",
        """
        network n(x: [N, 4]) {
            k = int("3")
            return x
        }
        """,
        2, 13, "`int` needs numbers, got the string \"3\"",
    ),
    row(
        "v11-len-of-int",
        """
        network n(x: [N, 4]) {
            k = len(3)
            return x
        }
        """,
        2, 13, "`len` needs a tuple or a string, got the int 3",
    ),
    # ------------------------------------------------------------------ language 1.1: PyTorch habits
    row(
        "v11-batchnorm-channels",
        """
        network n(x: [N, 3, 8, 8]) {
            y = x -> batchnorm(64)
            return y
        }
        """,
        2, 24, "batchnorm takes no positional argument besides its input: the channels come from the input",
        note="`eps`, `momentum` are keyword-only",
    ),
    row(
        "v11-groupnorm-eps",
        """
        network n(x: [N, 64, 8, 8]) {
            y = x -> groupnorm(32, 64)
            return y
        }
        """,
        2, 28, "groupnorm takes one positional argument besides its input, the number of groups: the channels",
        note="`eps` is keyword-only",
    ),
    row(
        "v11-layernorm-eps",
        """
        network n(x: [N, 8]) {
            y = x -> layernorm(1, 1e-6)
            return y
        }
        """,
        2, 27, "layernorm takes one positional argument besides its input, `dims`",
    ),
    row(
        "v11-layernorm-size",
        """
        network n(x: [N, 16, 768]) {
            y = x -> layernorm(768)
            return y
        }
        """,
        2, 24, "layernorm cannot normalize the last 768 axes of a tensor of rank 3",
        note="the argument counts axes, not their size",
    ),
    row(
        "v11-permute-loose-axes",
        """
        network n(x: [N, 8, 4]) {
            y = x -> permute(0, 2, 1)
            return y
        }
        """,
        2, 25, "permute takes at most 2 positional arguments, got 4", note="pass the axes as one tuple",
    ),
    row(
        "v11-reshape-loose-shape",
        """
        network n(x: [N, 8, 4]) {
            y = x -> reshape(N, -1)
            return y
        }
        """,
        2, 25, "reshape takes at most 2 positional arguments, got 3", note="pass the axes as one tuple",
    ),
    row(
        "v11-dim-keyword",
        """
        network n(x: [N, 8]) {
            y = x -> softmax(dim=1)
            return y
        }
        """,
        2, 22, "softmax has no argument `dim`", note="`axis` (one axis) or `axes` (several)",
    ),
    row(
        "v11-transpose",
        """
        network n(x: [N, 8, 4]) {
            y = x -> transpose(1, 2)
            return y
        }
        """,
        2, 14, "unknown operator or block `transpose`", note="permute",
    ),
    row(
        "v11-pipe-then-operator",
        """
        network n(x: [N, 8]) {
            y = x -> softmax(axis=-1) * 2
            return y
        }
        """,
        2, 31, "unexpected `*`", note="wrap the pipe in parentheses",
    ),
    row(
        "limit-nested-if-statements",
        nested("if true", 1200),
        102, 1, "statements nest more than 100 deep (the limit; see --max-nesting)", recursion_limit=1000,
    ),
    row(
        "limit-nested-repeat-statements",
        nested("repeat 1", 1200),
        102, 1, "statements nest more than 100 deep (the limit; see --max-nesting)", recursion_limit=1000,
    ),
    # ------------------------------------------------------------------ attention, recurrent, share=
    row(
        "share-itself",
        """
        network n(a: [N, 4]) {
            x = a -> linear(4, name="l", share="l")
            return x
        }
        """,
        2, 34, '`share`: `l` is this call itself',
    ),
    row(
        "share-not-identifier",
        """
        network n(a: [N, 4]) {
            x = a -> linear(4, share=3)
            return x
        }
        """,
        2, 24, '`share` must name an earlier instance (an identifier string), got the int 3',
    ),
    row(
        "share-missing",
        """
        network n(a: [N, 4]) {
            x = a -> linear(4, share="w")
            return x
        }
        """,
        2, 24, '`share`: no earlier instance named `w` in this scope',
    ),
    row(
        "share-later",
        """
        network n(a: [N, 4]) {
            x = a -> linear(4, share="w")
            y = a -> linear(4, name="w")
            return x + y
        }
        """,
        2, 24, '`share`: `w` is made later; `share` names an earlier instance',
    ),
    row(
        "share-op-names-block",
        """
        block f(x) {
            return x -> linear(4)
        }
        block g(x) {
            return x -> linear(4)
        }
        network n(a: [N, 4]) {
            x = f(a, name="e")
            return x -> linear(4, share="e")
        }
        """,
        9, 27, '`share`: `e` is an instance of block `f`; an operator call shares a layer',
    ),
    row(
        "share-block-names-layer",
        """
        block f(x) {
            return x -> linear(4)
        }
        block g(x) {
            return x -> linear(4)
        }
        network n(a: [N, 4]) {
            x = a -> linear(4, name="l")
            return f(x, share="l")
        }
        """,
        9, 17, '`share`: `l` is a linear layer, not an instance of block `f`',
    ),
    row(
        "share-other-block",
        """
        block f(x) {
            return x -> linear(4)
        }
        block g(x) {
            return x -> linear(4)
        }
        network n(a: [N, 4]) {
            x = f(a, name="e")
            return g(x, share="e")
        }
        """,
        9, 17, '`share`: `e` is an instance of block `f`, not of `g`',
    ),
    row(
        "share-no-parameters",
        """
        network n(a: [N, 4]) {
            x = a -> linear(4, name="l")
            return relu(x, share="l")
        }
        """,
        3, 20, '`share`: relu has no parameters to share',
    ),
    row(
        "share-parameter-shape",
        """
        network n(a: [N, 4]) {
            x = a -> linear(5, name="l")
            return x -> linear(5, share="l")
        }
        """,
        3, 27, '`share`: this call needs the parameter `weight` [5, 5], but `l` cannot give it: its `weight` is [5, 4]',
    ),
    row(
        "share-parameter-missing",
        """
        network n(ids: int64[N]) {
            e = ids -> embedding(6, 4, name="wte")
            return e -> linear(6, share="wte")
        }
        """,
        3, 27, 'this call needs the parameter `bias` [6], but `wte` cannot give it: it has no `bias`',
    ),
    row(
        "attention-dtypes",
        """
        network n(q: [N, 5, 4], k: float64[N, 5, 4]) {
            return attention(q, k, k)
        }
        """,
        2, 12, 'attention needs q, k and v of one dtype, got float32, float64 and float64',
    ),
    row(
        "attention-embedding",
        """
        network n(q: [N, 5, 4], k: [N, 5, 3]) {
            return attention(q, k, k)
        }
        """,
        2, 12, 'attention needs q and k with one embedding size (the last axis), got [N, 5, 4] and [N, 5, 3]',
    ),
    row(
        "attention-length",
        """
        network n(q: [N, 5, 4], v: [N, 6, 4]) {
            return attention(q, q, v)
        }
        """,
        2, 12, 'attention needs k and v with one sequence length (axis -2), got [N, 5, 4] and [N, 6, 4]',
    ),
    row(
        "attention-batch",
        """
        network n(q: [2, 5, 4], k: [3, 5, 4]) {
            return attention(q, k, k)
        }
        """,
        2, 12, 'attention cannot broadcast the batch axes of q [2, 5, 4], k [3, 5, 4] and v [3, 5, 4]',
    ),
    row(
        "attention-rank",
        """
        network n(q: [4], k: [5, 4]) {
            return attention(q, k, k)
        }
        """,
        2, 12, 'attention expects `q` with at least two axes [..., L, E], got [4]',
    ),
    row(
        "attention-mask-and-causal",
        """
        network n(q: [N, 5, 4], m: [5, 5]) {
            return attention(q, q, q, mask=m, causal=true)
        }
        """,
        2, 39, 'attention takes a `mask` or causal=true, not both',
    ),
    row(
        "attention-mask-dtype",
        """
        network n(q: [N, 5, 4], m: int64[5, 5]) {
            return attention(q, q, q, mask=m)
        }
        """,
        2, 31, 'attention needs a bool mask (true attends) or a float32 one (added to the scores), got int64',
    ),
    row(
        "attention-mask-shape",
        """
        network n(q: [N, 5, 4], m: [5, 6]) {
            return attention(q, q, q, mask=m)
        }
        """,
        2, 31, "attention: the mask of shape [5, 6] does not broadcast to the scores' shape [N, 5, 5] [..., T, S]",
    ),
    row(
        "lstm-state-dtype",
        """
        network n(x: [N, 5, 3], h: float64[1, N, 4]) {
            out, hn, cn = lstm(x, 4, h0=h)
            return out
        }
        """,
        2, 30, "lstm needs `h0` of the input's dtype float32, got float64",
    ),
    row(
        "gru-state-shape",
        """
        network n(x: [N, 5, 3], h: [1, N, 4]) {
            out, hn = gru(x, 4, bidirectional=true, h0=h)
            return out
        }
        """,
        2, 45, 'gru needs `h0` of shape [2, N, 4] [directions * layers, N, hidden], got [1, N, 4]',
    ),
    row(
        "lstm-layers-huge",
        """
        network n(x: [N, 5, 3]) {
            out, hn, cn = lstm(x, 4, layers=1000000000000)
            return out
        }
        """,
        2, 30, "lstm: layers=1000000000000 is more than the 10,000 stacked layers netc builds",
    ),
    # ------------------------------------------------------------------ language 1.1: new operators
    row(
        "clamp-int",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return clamp(ids, min=0.0)
        }
        """,
        2, 12, 'clamp expects a float tensor, got int64',
    ),
    row(
        "clamp-no-bound",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return clamp(x)
        }
        """,
        2, 12, 'clamp needs a bound: min=, max= or both',
    ),
    row(
        "where-float-condition",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return where(x, x, x)
        }
        """,
        2, 12, 'where expects a bool condition, got float32 (a comparison such as `x > 0` makes one)',
    ),
    row(
        "where-dtypes",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return where(m, x, cast(m, "int64"))
        }
        """,
        2, 12, 'where needs choices of one dtype, got float32 and int64',
    ),
    row(
        "where-broadcast",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return where(m, x, y)
        }
        """,
        2, 12, 'where: cannot broadcast the condition [N, 5] and the choices [N, 5] and [N, 3]',
    ),
    row(
        "masked-fill-float-mask",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return masked_fill(x, x, 0.0)
        }
        """,
        2, 12, 'masked_fill expects a bool mask, got float32: compare to make one (`m != 0`) or `cast(m, "bool")`',
    ),
    row(
        "masked-fill-value-dtype",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return masked_fill(cast(x, "int64"), m, 1.5)
        }
        """,
        2, 45, 'masked_fill: the value 1.5 does not fit the dtype int64',
    ),
    row(
        "masked-fill-broadcast",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return masked_fill(y, m, 0.0)
        }
        """,
        2, 12, 'masked_fill: the mask [N, 5] does not broadcast to the input [N, 3]',
    ),
    row(
        "tril-rank",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return tril(ids)
        }
        """,
        2, 12, 'tril expects a tensor with at least two axes, got shape [K]',
    ),
    row(
        "logical-float",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return logical_not(x)
        }
        """,
        2, 12, 'logical_not expects bool tensors, got float32 (a comparison such as `x > 0` makes one)',
    ),
    row(
        "logical-broadcast",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return logical_and(m, y > 0.0)
        }
        """,
        2, 12, 'logical_and: cannot broadcast shapes [N, 5] and [N, 3]',
    ),
    row(
        "param-symbolic",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return x + param((1, N))
        }
        """,
        2, 22, "param: `shape` holds compile-time ints, but N is a symbolic dimension, known only at run time: a parameter's size is fixed when the network is built",
    ),
    row(
        "param-size-zero",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return x + param((0, 5))
        }
        """,
        2, 22, 'param: `shape` needs a tuple of sizes of at least 1, got the tuple (0, 5)',
    ),
    row(
        "pool-ceil-mode-symbolic",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return maxpool2d(img, 2, stride=3, ceil_mode=true)
        }
        """,
        2, 40, 'maxpool2d: ceil_mode with stride 3 > kernel 2 - padding 0 needs a known input size, got H',
    ),
    row(
        "full-value-dtype",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return full((2,), 1.5, dtype="int64")
        }
        """,
        2, 23, 'full: the value 1.5 does not fit the dtype int64',
    ),
    row(
        "arange-negative",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return arange(-1)
        }
        """,
        2, 19, 'arange needs a size of at least 0, got -1',
    ),
    row(
        "arange-bool",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return arange(3, dtype="bool")
        }
        """,
        2, 22, 'arange makes numbers: dtype "int64", "float32" or "float64", not "bool"',
    ),
    row(
        "expand-fewer-axes",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return expand(x, (5,))
        }
        """,
        2, 22, 'expand to (5) has fewer axes than the input [N, 5]',
    ),
    row(
        "expand-new-axis-keeps",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return expand(x, (-1, -1, 5))
        }
        """,
        2, 22, 'expand: -1 keeps an axis, but axis 0 is new',
    ),
    row(
        "expand-negative",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return expand(x, (-2, 5))
        }
        """,
        2, 22, 'expand needs sizes of at least 0 or -1, got -2',
    ),
    row(
        "expand-size",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return expand(x, (N, 3))
        }
        """,
        2, 22, 'cannot expand [N, 5] to (N, 3): axis 1 has size 5, and only an axis of size 1 expands',
    ),
    row(
        "roll-shifts-kind",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return roll(x, "a", 1)
        }
        """,
        2, 20, 'roll: `shifts` needs an int or a tuple of ints, got the string "a"',
    ),
    row(
        "roll-counts",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return roll(x, (1, 2), 1)
        }
        """,
        2, 20, 'roll needs one shift per axis, got 2 shifts and 1 axes',
    ),
    row(
        "roll-axis-twice",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return roll(x, (1, 2), (1, -1))
        }
        """,
        2, 28, 'roll: an axis is listed twice in (1, -1)',
    ),
    row(
        "index-select-ids-dtype",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return index_select(x, cast(ids, "float32"))
        }
        """,
        2, 12, 'index_select expects int64 ids, got float32',
    ),
    row(
        "index-select-ids-rank",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return index_select(x, cast(x, "int64"))
        }
        """,
        2, 12, 'index_select expects 1-d ids, got shape [N, 5]',
    ),
    row(
        "index-select-scalar",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return index_select(sum(x, (0, 1)), ids)
        }
        """,
        2, 12, 'index_select cannot select from a scalar',
    ),
    row(
        "ones-negative",
        """
        network n(x: [N, 5], y: [N, 3], ids: int64[K], m: bool[N, 5], img: [N, 3, H, W]) {
            return ones((-1, 3))
        }
        """,
        2, 17, 'ones: `shape` needs sizes of at least 0, got (-1, 3)',
    ),
]
# fmt: on

CASE_IDS = [p.id for p in CASES]


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("case", CASES)
def test_first_error(case: Case, tmp_path):
    check_first_error(case, tmp_path)


def test_table_ids_are_unique():
    assert len(CASE_IDS) == len(set(CASE_IDS))


# ---------------------------------------------------------------- every template has a row

# Where the templates are: the front end and the compiler, but not the CLI (its one message
# is a fallback for a RecursionError escaping compile_file) or the pass that reports unused
# layers (warnings only, tested elsewhere).
SOURCE_DIRS = ("dsl", "compiler")
NOT_SCANNED = {"compiler/cli.py", "compiler/prune.py"}
CONSTRUCTORS = {"NetcError", "FatalError", "ShapeError", "ArgError", "Diagnostic"}

# Templates no spec can produce: dead code in netc. Keyed by the template, `{}` for each
# placeholder.
UNREACHABLE = {
    # parser.parse: lark's LALR parser and the inline syntax-tree callbacks do not recurse,
    # so no nesting in a file reaches this guard; it stays as a defence.
    "the file is nested too deeply to parse": "dsl/parser.py parse",
    # The backward graph's messages: `netc check` never derives gradients. They are raised by
    # `netc grad` and --backward; tests/test_backward.py and tests/test_grad_spatial.py
    # assert them where an input reaches them (symbolic adaptive pooling, bilinear upsample).
    "cannot derive the gradient of {} (`{}`): {}": "compiler/autodiff.py (every op has a rule or NoGrad)",
    "cannot derive the gradient of adaptive_avgpool2d to size {} on an input of size {}: its bins are known "
    "only where the output size is 1 or divides a known input size": "tests/test_backward.py",
    "cannot derive the gradient of bilinear upsample on an input of size {}: its interpolation weights are "
    "built at compile time, which needs known height and width": "tests/test_grad_spatial.py",
    "cannot derive the gradient of {} (`{}`): its sequence length (axis 1 of the input, {}) is symbolic, and "
    "the backward graph unrolls the steps, so it needs a known length; torch.autograd differentiates the "
    "emitted nn module": "tests/test_backward.py (lstm_classifier)",
    "the gradient of concat along an axis of symbolic size is not supported": "compiler/ops/structure.py",
    "the gradient of cross_entropy needs a known number of classes": "compiler/ops/structure.py",
    # Internal ops' shape rules: the gradient rules build them only with what they accept.
    "onehot expects int64 labels, got {}": "compiler/ops/internal.py",
    "conv_weight_grad needs known channels, got {} and {}": "compiler/ops/internal.py",
    # getitem's attributes are normalized by the elaborator to one entry per axis.
    "an index of {} axes for a tensor of rank {}": "compiler/ops/structure.py",
    # The CLI's guard against Python recursion; elaboration bounds nesting before it (--max-depth).
    "{}: the spec nests too deeply to compile": "compiler/cli.py",
}

# Templates that only a behaviour this table marks as a bug produces: template -> the row.
ONLY_THROUGH_A_BUG: dict[str, str] = {}


def test_a_long_import_chain_compiles(tmp_path):
    """Imports are followed with an explicit stack: a chain deeper than Python's recursion
    limit compiles."""
    for name, content in import_chain(1500).items():
        (tmp_path / name).write_text(content)
    main = tmp_path / "main.net"
    main.write_text('import "m0.net"\nnetwork n(x: [N, 8]) { return x }\n')
    assert compile_file(main).name == "n"


def _templates() -> dict[str, list]:
    """Every message template in the sources: its text ({} for a placeholder) -> its parts
    (literal strings, and None for each placeholder)."""
    found = {}
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() in NOT_SCANNED:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name not in CONSTRUCTORS:
                    continue
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    parts = [first.value]
                elif isinstance(first, ast.JoinedStr):
                    parts = [v.value if isinstance(v, ast.Constant) else None for v in first.values]
                else:
                    continue  # a message built elsewhere (a variable)
                found["".join("{}" if p is None else p for p in parts)] = parts
    return found


def _expected_messages() -> list[str]:
    """The expected message of every row of this table and of tests/test_errors.py."""
    messages = [p.values[0].message for p in CASES]
    tree = ast.parse((ROOT / "tests" / "test_errors.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "row" and len(node.args) >= 5:
            message = node.args[4]
            if isinstance(message, ast.Constant) and isinstance(message.value, str):
                messages.append(message.value)
    return messages


def _exercised(parts, messages) -> bool:
    """The template's longest literal fragment is in some expected message; a template
    with no fragment of 8 characters must match an expected message as a pattern."""
    fragment = max((p for p in parts if p), key=len, default="")
    if len(fragment.strip()) >= 8:
        return any(fragment.lower() in m.lower() for m in messages)
    pattern = "".join(".*" if p is None else re.escape(p) for p in parts)
    return any(re.search(pattern, m, re.I) for m in messages)


def test_every_template_has_a_row():
    templates = _templates()
    assert len(templates) > 100, "the template scan found too little; has the source layout changed?"
    messages = _expected_messages()
    assert len(messages) > 200
    missing = [
        text
        for text, parts in templates.items()
        if text not in UNREACHABLE and text not in ONLY_THROUGH_A_BUG and not _exercised(parts, messages)
    ]
    assert not missing, "templates with no row:\n" + "\n".join(missing)


def test_allowlists_are_current():
    templates = _templates()
    for text in list(UNREACHABLE) + list(ONLY_THROUGH_A_BUG):
        assert text in templates, f"no longer a template: {text}"
    marked = {p.id for p in CASES if any(m.name == "xfail" for m in p.marks)}
    for row_id in ONLY_THROUGH_A_BUG.values():
        assert row_id in marked, row_id
