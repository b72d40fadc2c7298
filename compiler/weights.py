"""A network's weights as numpy arrays: fresh ones drawn as torch.nn would, or ones read from a file.

Weights are a `dict[str, numpy.ndarray]` keyed by the full parameter or buffer name,
`f"{node.name}.{local}"`, which is exactly the `state_dict()` key of the PyTorch module netc
emits. Both functions return the graph's parameters and buffers in one fixed order: nodes in
graph order, then each node's parameters, then its buffers. Every array has the graph's shape
and dtype, is C-contiguous and native-endian.

Nothing here imports torch unless a `.pt`/`.pth` file is read: `netc check` must stay cheap.
Reading a file never runs code from it: `.pt` goes through `torch.load(weights_only=True)`
only, `.npz` through `numpy.load(allow_pickle=False)`, and `.safetensors` holds no code at all.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import sys
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from netc.dsl.diagnostics import InternalError, NetcError

from .dims import shape_text
from .ir import Graph, TensorType

SUFFIXES = (".pt", ".pth", ".safetensors", ".npz")
# The one tensor torch.nn itself leaves out of hand-made state_dicts often enough to forgive:
# it only counts training steps, and 0 is what a fresh module holds.
OPTIONAL_BUFFERS = ("num_batches_tracked",)
MAX_PROBLEMS = 20  # lines of one error; a file with every name wrong would otherwise print thousands
_NAME_WIDTH = 100  # a name from a hostile file is shown at most this long


def expected_tensors(graph: Graph) -> dict[str, TensorType]:
    """Every parameter and buffer of `graph` by full name: nodes in graph order, then each
    node's parameters, then its buffers (the order of the emitted module's `state_dict()`)."""
    out: dict[str, TensorType] = {}
    for node in graph.nodes():
        for local, t in (*node.params.items(), *node.buffers.items()):
            if local not in node.shared:  # stored once, under the owner's name
                out[node.param_name(local)] = t
    return out


# ---------------------------------------------------------------- initial weights


def initial_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh weights for every parameter and buffer of `graph`, keyed and ordered as
    `expected_tensors(graph)`.

    Each tensor follows its op's `Init` rule (the registry's record of how torch.nn
    initializes that layer): the same distributions as torch.nn, not the same numbers. All
    tensors come from one `numpy.random.default_rng(seed)` in that fixed order, so a seed
    always gives the same weights and the function is pure. Float tensors are drawn directly
    in their dtype; int64 buffers (num_batches_tracked) are constants.

    Raises InternalError if an op's init rule does not cover one of its tensors (a netc bug).
    """
    return Drawing(graph, seed).arrays()


class Drawing:
    """`initial_weights`, drawn when and where they are needed: `tensors` holds every
    constant as an array and every random tensor as a `Planned` one (shape and dtype, no
    values yet); `arrays()` draws them all. A model writer draws each planned tensor into
    a small buffer just before writing it (`Planned.draw`), so resnet50's 100 MB of weights
    never sit in memory: fresh pages cost this machine about as much as drawing them.

    The values are exactly those of one generator drawing tensor after tensor:
    - Consecutive tensors drawn alike (uniform or normal, one dtype) share one buffer in
      `arrays()`, and numpy's generators continue a stream across calls exactly.
    - A uniform draw's place in the stream is known in advance (PCG64 gives each float32
      half of a 64-bit output, keeping the other half for the next, and each float64 a
      whole one), so uniform tensors are drawn in pieces, in any order and on two threads,
      each piece by a generator advanced to its place (`_generator_at`). A normal draw
      consumes a varying count: from the first one on, the rest is drawn in order, once.
    - Scaling each tensor to its rule follows the draw, piece by piece.
    """

    PIECE = 1 << 20  # values a piece: small enough for two threads to share the work evenly
    THREADED = 1 << 22  # values from which arrays() draws on two threads

    def __init__(self, graph: Graph, seed: int = 0):
        from .ops import REGISTRY  # the registry imports the op modules; only drawing needs them

        # One number for every generator made: None becomes fresh entropy once (each piece
        # would otherwise get its own), and a seed numpy refuses is refused here.
        self.seed = np.random.SeedSequence(seed).entropy
        tensors: dict[str, np.ndarray | Planned] = {}
        self.tensors = tensors
        runs: list[list] = []  # [kind, dtype, [Planned], the stream position where the run starts]
        run = [None, None, None, None]
        dtypes = {"float32": np.dtype("float32"), "float64": np.dtype("float64")}
        for node in graph.nodes():
            if not node.params and not node.buffers:
                continue
            op = REGISTRY[node.op]
            if op.init is None:
                raise InternalError(f"op {node.op!r} has parameters but no init rule")
            rules = op.init(node)
            for local, t in (*node.params.items(), *node.buffers.items()):
                if local in node.shared:
                    continue
                rule = rules.get(local)
                if rule is None:
                    raise InternalError(f"op {node.op!r}: the init rule does not cover {local!r}")
                name, kind, dtype = node.param_name(local), rule.kind, t.dtype
                if kind == "constant":
                    value = int(rule.value) if dtype == "int64" else rule.value
                    tensors[name] = np.full(tuple(t.shape), value, dtype=dtype)
                    continue
                if kind == "uniform":
                    factor = rule.bound
                elif kind == "normal":
                    factor = rule.std
                else:
                    raise InternalError(f"unknown init kind {kind!r}")
                if dtype not in dtypes:
                    raise InternalError(f"a {kind} init rule for a {dtype} tensor")
                if run[0] != kind or run[1] != dtype:
                    run = [kind, dtype, [], None]
                    runs.append(run)
                run[2].append(planned := Planned(self, name, kind, dtypes[dtype], tuple(t.shape), factor))
                tensors[name] = planned
        # A run's start is known up to the first normal run (its draws consume a varying
        # count); its tensors' places are known only before it.
        position: tuple[int, int | None] | None = (0, None)  # see _advance
        for run in runs:
            run[3] = position
            kind, dtype, members, _ = run
            if kind == "normal":
                position = None
            for planned in members:
                planned.position = position
                if position is not None:
                    position = _advance(position, dtype, planned.size)
        self._runs = runs
        self._arrays: dict[str, np.ndarray] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Every tensor drawn (once: later calls return the same arrays)."""
        if self._arrays is None:
            self._arrays = self._draw_all()
        return self._arrays

    def _draw_all(self) -> dict[str, np.ndarray]:
        out = dict(self.tensors)
        pieces: list[tuple] = []  # (position or None, [(kind, buffer, start, end, scales)])
        ordered: list[tuple] = []  # the runs from the first normal one on, drawn in order
        values = 0
        for kind, dtype, members, position in self._runs:
            buffer = np.empty(sum(p.size for p in members), dtype=dtype)
            offset, scales = 0, []  # [start, end, factor]: neighbours scaled alike are one slice
            last = None
            for planned in members:
                size = planned.size
                out[planned.name] = buffer[offset : offset + size].reshape(planned.shape)
                factor = planned.factor
                if last is not None and factor == last[2] and (factor or _sign(factor) == _sign(last[2])):
                    last[1] = offset + size  # a zero's sign matters: 2 * -0.0 scales to -0.0
                else:
                    scales.append(last := [offset, offset + size, factor])
                offset += size
            values += buffer.size
            if kind == "normal" or ordered:
                if not ordered:  # the first normal run: its start is still known
                    pieces.append((position, ordered))
                ordered.append((kind, buffer, 0, buffer.size, scales))
                continue
            for start in range(0, buffer.size, self.PIECE):
                end = min(start + self.PIECE, buffer.size)
                pieces.append((position, [(kind, buffer, start, end, scales)]))
                position = _advance(position, dtype, end - start)
        pieces.reverse()  # popped from the end: in stream order
        if values < self.THREADED:
            _draw_pieces(self.seed, pieces, None)
        else:
            import threading

            lock, errors = threading.Lock(), []

            def helper():
                try:
                    _draw_pieces(self.seed, pieces, lock)
                except BaseException as exc:  # raised again below, on the thread that asked
                    errors.append(exc)

            thread = threading.Thread(target=helper, name="netc-weights", daemon=True)
            thread.start()
            try:
                _draw_pieces(self.seed, pieces, lock)
            finally:
                thread.join()
            if errors:
                raise errors[0]
        for name, value in self.tensors.items():  # a planned tensor changed since (folded) is its own
            if isinstance(value, Planned) and value.transforms:
                out[name] = value.materialize()
        return out


class Planned:
    """A random tensor of a `Drawing`, not drawn yet: what numpy code reading only `shape`,
    `dtype`, `size`, `nbytes` and `ndim` needs, and `np.asarray(planned)` draws it (all of
    its Drawing at once, then kept). `then(fn)` is the tensor `fn(values)` (the ONNX
    optimizer folds batchnorm into a convolution's weights so), still not drawn."""

    __slots__ = ("drawing", "name", "kind", "dtype", "shape", "factor", "position", "transforms", "size", "nbytes")

    def __init__(self, drawing, name, kind, dtype, shape, factor, position=None, transforms=()):
        self.drawing, self.name, self.kind, self.dtype, self.shape = drawing, name, kind, dtype, shape
        self.factor, self.position, self.transforms = factor, position, transforms
        self.size = math.prod(shape)
        self.nbytes = self.size * dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"Planned({self.name!r}, {self.kind}, {self.dtype}, {self.shape})"

    def then(self, fn) -> Planned:
        """This tensor with `fn` applied to its values (`fn(array)` returns the result, and
        may change `array` in place)."""
        return Planned(
            self.drawing, self.name, self.kind, self.dtype, self.shape, self.factor, self.position,
            (*self.transforms, fn),
        )  # fmt: skip

    def __array__(self, dtype=None, copy=None):
        values = self.materialize()
        if dtype is not None:
            return values.astype(dtype, copy=bool(copy))
        return values.copy() if copy else values  # without a copy: the Drawing's own array

    def materialize(self) -> np.ndarray:
        values = self.drawing.arrays()[self.name]
        if self.transforms:
            values = self._transformed(values.copy())
        return values

    def draw(self, rng: np.random.Generator | None, out: np.ndarray) -> np.ndarray:
        """The values drawn into `out` (C-contiguous, this shape and dtype) by `rng`, a
        generator at `position` (where `position` is None, the Drawing draws all);
        returns them (`out`, or a new array where a transform made one)."""
        if self.position is None:
            return self.materialize()
        flat = out.reshape(-1)
        _draw(rng, self.kind, flat)
        _scale(self.kind, flat, self.factor)
        return self._transformed(out)

    def _transformed(self, values: np.ndarray) -> np.ndarray:
        for fn in self.transforms:
            values = fn(values)
        return values


def drawn_in_order(planned: list[Planned]):
    """The values of each tensor of `planned`, in order, each drawn just before it is
    wanted into one of two buffers: a second thread draws the next tensor while the caller
    writes this one (numpy draws and file writes both let go of the interpreter lock). A
    value yielded is valid until the next one is asked for."""
    import queue
    import threading

    if not planned:
        return
    biggest = max(p.nbytes for p in planned)
    free: queue.Queue = queue.Queue()
    for _ in range(2):
        free.put(np.empty(biggest, np.uint8))
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()

    def produce():
        rng, at = None, None  # the generator, and where in which stream it stands
        try:
            for p in planned:
                buffer = free.get()
                if stop.is_set():
                    return
                if p.position is not None and at != (p.drawing, p.position):
                    rng = _generator_at(p.drawing.seed, p.position)
                out = buffer[: p.nbytes].view(p.dtype).reshape(p.shape)
                values = p.draw(rng, out)
                if p.position is not None:
                    at = (p.drawing, _advance(p.position, p.dtype.name, p.size))
                ready.put((buffer, values))
        except BaseException as exc:  # raised again by the consumer
            ready.put((None, exc))

    thread = threading.Thread(target=produce, name="netc-weights", daemon=True)
    thread.start()
    try:
        for _ in planned:
            buffer, values = ready.get()
            if buffer is None:
                raise values
            yield values
            free.put(buffer)
    finally:
        stop.set()
        free.put(np.empty(0, np.uint8))  # wakes a producer waiting for a buffer, to stop
        thread.join()


def _sign(x: float) -> float:
    return math.copysign(1.0, x)


def _draw_pieces(seed: int, pieces: list, lock) -> None:
    """Draws pieces (see Drawing._draw_all) until none is left; with a lock, sharing the list
    with another thread."""
    while True:
        if lock is None:
            if not pieces:
                return
            position, parts = pieces.pop()
        else:
            with lock:
                if not pieces:
                    return
                position, parts = pieces.pop()
        rng = _generator_at(seed, position)
        for kind, buffer, start, end, scales in parts:
            _draw(rng, kind, buffer[start:end])
            # In place, a slice of like tensors at a time: a residual MLP's thousands of
            # weights and biases share one bound, so they take two numpy calls, not two each.
            for first, last, factor in scales:
                if last > start and first < end:
                    _scale(kind, buffer[max(first, start) : min(last, end)], factor)


def _draw(rng: np.random.Generator, kind: str, out: np.ndarray) -> None:
    """Standard values of `kind` into `out`: uniform on [0, 1), or normal."""
    if kind == "uniform":
        rng.random(dtype=out.dtype, out=out)
    else:
        rng.standard_normal(dtype=out.dtype, out=out)


def _scale(kind: str, values: np.ndarray, factor: float) -> None:
    """Standard values to their rule, in place: uniform on [-factor, factor], or normal
    with standard deviation `factor`."""
    if kind == "uniform":
        values *= 2 * factor
        values -= factor
    elif factor != 1.0:
        values *= factor


def _advance(position: tuple[int, int | None], dtype: str, count: int) -> tuple[int, int | None]:
    """The stream position after `count` uniform values of `dtype`. A position is (outputs of
    PCG64 used, the output whose upper half waits to be the next float32, or None): numpy
    draws a float32 from half of a 64-bit output, keeping the other half for the next one,
    and a float64 from a whole output, leaving any kept half waiting."""
    steps, kept = position
    if dtype == "float64":
        return steps + count, kept
    if kept is not None and count:
        count, kept = count - 1, None
    if count:
        steps += (count + 1) // 2
        kept = steps - 1 if count % 2 else None
    return steps, kept


def _generator_at(seed: int, position: tuple[int, int | None]) -> np.random.Generator:
    """`numpy.random.default_rng(seed)` after the draws that bring it to `position`."""
    steps, kept = position
    bits = np.random.PCG64(seed)
    if kept is None:
        bits.advance(steps)
        return np.random.Generator(bits)
    bits.advance(kept)
    upper = int(bits.random_raw()) >> 32
    bits.advance(steps - kept - 1)  # advancing forgets a kept half: it is put back below
    state = bits.state
    state["has_uint32"], state["uinteger"] = 1, upper
    bits.state = state
    return np.random.Generator(bits)


# ---------------------------------------------------------------- loading


def load_weights(source, graph: Graph) -> dict[str, np.ndarray]:
    """The weights in `source`, checked against `graph` and keyed and ordered as
    `expected_tensors(graph)`.

    `source` is a path (str or os.PathLike) or a mapping of names to numpy arrays or torch
    tensors. A path is read by its suffix, case-insensitively:

    - `.pt`, `.pth`: a state_dict saved with `torch.save` (its zip format, the default since
      PyTorch 1.6), read only with `torch.load(path, map_location="cpu", weights_only=True)`.
      Needs torch: raises MissingExtra without it.
    - `.safetensors`: read with `safetensors.numpy.load_file`.
    - `.npz`: read with `numpy.load(path, allow_pickle=False)`.

    Every parameter and buffer of the graph must be present, except `num_batches_tracked`
    buffers, which default to 0; every name must be one of the graph's; every shape and dtype
    must equal the graph's (nothing is cast). Byte order and memory layout are normalized:
    the arrays returned are native-endian and C-contiguous, and may share memory with the
    arrays of a mapping passed in.

    Raises NetcError (code "weights") for an unreadable file (missing, a directory, empty,
    truncated, not in the format its suffix says, or asking to run code) and for weights that
    do not match the graph; a mismatch lists every problem, one line each, up to
    MAX_PROBLEMS. Raises TypeError if `source` is neither a path nor a mapping.
    """
    if isinstance(source, Mapping):
        origin = ""
        raw = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(os.fsdecode(os.fspath(source)))
        origin = f"{path}: "
        raw = _read_file(path)
    else:
        raise TypeError(f"load_weights needs a path or a dict of arrays, got {type(source).__name__}")
    return _check(raw, graph, origin)


def _fail(message: str, notes=()) -> NetcError:
    return NetcError(message, notes=notes, code="weights")


def _read_file(path: Path) -> Mapping:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        supported = ", ".join(SUFFIXES)
        raise _fail(f"{path}: cannot read weights from a {suffix or 'suffix-less'} file; netc reads {supported}")
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise _fail(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise _fail(f"{path}: cannot read the file: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(f"{path}: is a directory, not a weights file")
    if not stat.S_ISREG(info.st_mode):
        # A pipe or a device would block or never end.
        raise _fail(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise _fail(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    if info.st_size == 0:
        raise _fail(f"{path}: the file is empty")
    if suffix in (".pt", ".pth"):
        return _read_torch(path, head)
    if suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_npz(path, head)


def _not_a_zip(path: Path, head: bytes, kind: str) -> NetcError:
    """Why a file that should be a zip archive (torch.save's format, .npz) is not one."""
    if head.startswith(b"PK"):
        what = "a damaged or truncated zip archive"
    elif head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        # A bare pickle: reading it would mean unpickling, which can run any code it names.
        what = "a bare pickle, which netc never unpickles"
    elif head.startswith(b"\x93NUMPY"):
        what = "a single .npy array, not a set of named arrays"
    else:
        what = "not a zip archive"
    return _fail(f"{path}: not {kind}: the file is {what}")


def _read_torch(path: Path, head: bytes) -> Mapping:
    try:
        import torch
    except ImportError as exc:
        from .api import MissingExtra

        raise MissingExtra("PyTorch is not installed: pip install 'netc[torch]'") from exc
    # Only the zip format: torch's legacy format is a bare pickle stream, indistinguishable
    # from any other pickle until it is unpickled.
    if not (head.startswith(b"PK") and zipfile.is_zipfile(path)):
        raise _not_a_zip(path, head, "a PyTorch file written by torch.save")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _fail(
            f"{path}: cannot read it as a PyTorch state_dict: {_torch_reason(exc)}",
            notes=("netc loads .pt files with torch.load(weights_only=True) and never runs code from them",),
        ) from None
    if not isinstance(data, Mapping):
        raise _fail(f"{path}: holds a {type(data).__name__}, not a state_dict (a dict of names to tensors)")
    return data


def _torch_reason(exc: Exception) -> str:
    """The one useful line of torch.load's message. The rest is C++ source locations and advice
    to retry with weights_only=False, which is exactly what must not be done with a stranger's file."""
    skip = ("weights only load failed", "weights_only", "re-running", "please file an issue", "check the documentation")
    for line in str(exc).splitlines():
        line = re.sub(r"^\[enforce fail at [^\]]*\][\s.]*", "", line.strip())
        line = re.sub(r"\s*\(Could this error message be improved\?.*", "", line)
        line = line.removeprefix("WeightsUnpickler error:").strip()
        if line and not any(s in line.lower() for s in skip):
            return line.split(". ")[0].rstrip(".")[:200]
    return type(exc).__name__


def _read_safetensors(path: Path) -> Mapping:
    from safetensors.numpy import load_file  # a dependency, but only this format needs it

    try:
        return load_file(str(path))
    except Exception as exc:
        raise _fail(f"{path}: not a valid safetensors file: {_reason(exc)}") from None


class _Lazy:
    """An archive member read on demand, so a bad member is reported under its own name."""

    def __init__(self, archive, name: str):
        self.archive, self.name = archive, name


def _read_npz(path: Path, head: bytes) -> Mapping:
    # numpy.load picks the format by the leading bytes, not by the zip directory: both must agree.
    if not (head.startswith(b"PK") and zipfile.is_zipfile(path)):
        raise _not_a_zip(path, head, "a .npz archive")
    archive = None
    try:
        archive = np.load(path, allow_pickle=False)
        names = list(archive.files)
    except Exception as exc:
        if archive is not None:
            archive.close()
        raise _fail(f"{path}: not a valid .npz archive: {_reason(exc)}") from None
    # Members are read inside _check, then the archive is closed there.
    return {name: _Lazy(archive, name) for name in names}


def _reason(exc: Exception) -> str:
    """An exception's first line, bounded: a hostile file chooses what a library echoes back."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _show(name) -> str:
    """A name as a message shows it: in backticks, or repr'd if it is odd, and never huge."""
    if isinstance(name, str) and name.isprintable() and name and len(name) <= _NAME_WIDTH:
        return f"`{name}`"
    text = repr(name)
    return text if len(text) <= _NAME_WIDTH else text[: _NAME_WIDTH - 3] + "..."


def _kind(value) -> str:
    kind = type(value).__name__
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"


def _as_array(value):
    """(array, None), or (None, the reason it is not an array) for one value of a weights mapping.

    Torch tensors are converted only when torch is already imported: a tensor cannot exist
    otherwise, and a mapping of numpy arrays must not pay for importing torch.
    """
    if isinstance(value, _Lazy):
        try:
            value = value.archive[value.name]
        except ValueError as exc:
            if "object arrays" in str(exc).lower():
                return None, "is an object array (Python objects, which need pickle), not numbers"
            return None, f"cannot be read: {_reason(exc)}"
        except Exception as exc:
            return None, f"cannot be read: {_reason(exc)}"
        if not isinstance(value, np.ndarray):
            return None, "is not a .npy array inside the archive"
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value), None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value, None
    return None, f"is {_kind(value)}, not an array or tensor"


def _dtype_name(value) -> str:
    if isinstance(value, np.ndarray):
        return value.dtype.name
    return str(value.dtype).removeprefix("torch.")


def _check(raw: Mapping, graph: Graph, origin: str) -> dict[str, np.ndarray]:
    try:
        return _match(raw, graph, origin)
    finally:
        archives = {id(v.archive): v.archive for v in raw.values() if isinstance(v, _Lazy)}
        for archive in archives.values():
            archive.close()


def _match(raw: Mapping, graph: Graph, origin: str) -> dict[str, np.ndarray]:
    expected = expected_tensors(graph)
    problems: list[str] = []
    out: dict[str, np.ndarray] = {}
    missing = [name for name in expected if name not in raw]
    for name, t in expected.items():
        shape, dtype = tuple(t.shape), t.dtype
        if name not in raw:
            if name.rsplit(".", 1)[-1] in OPTIONAL_BUFFERS:
                out[name] = np.zeros(shape, dtype=dtype)
            else:
                problems.append(f"missing {_show(name)} ({dtype}, shape {shape_text(shape)})")
            continue
        value, why = _as_array(raw[name])
        if why is not None:
            problems.append(f"{_show(name)} {why}")
            continue
        try:
            found_shape, found_dtype = tuple(value.shape), _dtype_name(value)
        except Exception as exc:  # a nested or otherwise exotic tensor has no plain shape
            problems.append(f"{_show(name)} cannot be read: {_reason(exc)}")
            continue
        bad = False
        if found_shape != shape:
            problems.append(f"{_show(name)} has shape {shape_text(found_shape)}, expected {shape_text(shape)}")
            bad = True
        if found_dtype != dtype:
            problems.append(f"{_show(name)} has dtype {found_dtype}, expected {dtype}")
            bad = True
        if bad:
            continue
        array, why = _to_numpy(value)
        if why is not None:
            problems.append(f"{_show(name)} {why}")
            continue
        out[name] = array
    for name in raw:
        if isinstance(name, str) and name in expected:
            continue
        line = f"unexpected {_show(name)}: network `{graph.name}` has no tensor of that name"
        # Suggestions only for the lines shown: difflib over a hostile file's million names would hang.
        if isinstance(name, str) and len(problems) < MAX_PROBLEMS and len(name) <= _NAME_WIDTH:
            close = difflib.get_close_matches(name, missing, n=1) or difflib.get_close_matches(name, expected, n=1)
            if close:
                line += f" (did you mean {_show(close[0])}?)"
            elif isinstance(raw[name], Mapping):
                line += " (it holds a dict: save the model's state_dict itself, not a checkpoint around it)"
        problems.append(line)
    if problems:
        count = len(problems)
        shown = problems[:MAX_PROBLEMS]
        if count > MAX_PROBLEMS:
            shown.append(f"and {count - MAX_PROBLEMS} more")
        head = f"{origin}the weights do not match network `{graph.name}` ({count} problem{'s' * (count != 1)}):"
        raise _fail("\n".join([head, *(f"  {line}" for line in shown)]))
    return out


def _to_numpy(value):
    """(a native-endian C-contiguous numpy array, None), or (None, why it cannot be one)."""
    if not isinstance(value, np.ndarray):
        try:
            value = value.detach().cpu().numpy()
        except Exception as exc:
            return None, f"cannot be converted to a numpy array: {_reason(exc)}"
    if not (value.flags.c_contiguous and value.flags.aligned and value.dtype.isnative):
        value = value.astype(value.dtype.newbyteorder("="), order="C")
    return value, None
