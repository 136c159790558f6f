"""Every per-tensor fact the report needs, from one pass over the runs' tensor files.

For each tensor, every file that holds a value of it (each run's value, its repeats, the tapped value of a final
output, the isolated runs' values) is opened once and read front to back once, in chunks of `CHUNK` elements;
each chunk feeds every consumer of that file at once: metrics against the reference, a digest for bit-identity
classes, run-to-run spread, observer effect, pairwise distances between final outputs, top-1 labels. The parent
holds one chunk per open file, whatever the model's size, and the files of one tensor at a time. The analyses
(measure/analysis.py) and the gate work on the facts, never on the files.

Final outputs are read from the untapped runs (the numbers a deployment gets), the rest from the tapped ones.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..graph.inputs import as_declared
from ..graph.model import TensorInfo
from ..run.record import VariantRun
from . import metrics

CHUNK = 1 << 20  # elements per read: the chunk size of metrics.compare, so the sums round the same way
ZERO = metrics.Tolerance(0.0, 0.0)


def kind_for(info: Any) -> str:
    """Final outputs are read from the untapped run (what a deployment gets), the rest from the tapped one."""
    return "untapped" if info.is_output else "tapped"


def repeats(run: VariantRun, base: str) -> list[str]:
    """The run kinds that repeat `base` (fresh sessions `base.N`, same-session `base.sameN`)."""
    return sorted(k for k in run.tensors if k.startswith(base + "."))


@dataclass
class TensorFacts:
    """One tensor of the catalogue, across the runs (only gathered when the reference ran)."""

    name: str
    kind: str  # the run kind its values come from
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> metrics against the reference
    produced: list[str] = field(default_factory=list)  # the variants (reference included) that produced a value
    # Bit-identity classes come from two facts: which variants hold the very array the reference holds (same dtype,
    # same bytes: found by the pair's metrics pass), and, for the others when two or more differ from it, a digest
    # of each value. With one variant beside the reference nothing is hashed.
    same_as_reference: dict[str, bool] = field(default_factory=dict)  # variant -> same dtype and bytes
    digests: dict[str, str] = field(default_factory=dict)  # variant -> digest of its value (see above)
    spread: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> max_abs, max_ulp over its repeats
    local: dict[str, dict[str, Any]] = field(default_factory=dict)  # isolated variant -> metrics (tapped values)
    fused: list[str] = field(default_factory=list)  # variants whose optimized graph does not compute it (--tap fused)


@dataclass
class OutputFacts:
    """One final output of one run's untapped run."""

    shape: tuple[int, ...]
    dtype: np.dtype
    top1: np.ndarray | None = None  # class outputs ([N, C] or [N, T, C] per sample): argmax over the last axis
    observer: dict[str, Any] | None = None  # untapped vs tapped value (metrics.compare); None: no tapped value


@dataclass
class RunFacts:
    """One run: its record, its final outputs and their digests per run kind (`untapped` and its repeats)."""

    run: VariantRun
    outputs: dict[str, OutputFacts] = field(default_factory=dict)
    digests: dict[str, dict[str, str]] = field(default_factory=dict)  # run kind -> output -> digest

    @property
    def ok(self) -> bool:
        return self.run.ok

    def outputs_key(self, outputs: Sequence[str], kind: str = "untapped") -> tuple[str | None, ...]:
        """Equal keys = bit-identical final outputs (a missing output is None)."""
        found = self.digests.get(kind, {})
        return tuple(found.get(name) for name in outputs)


@dataclass
class Facts:
    reference: str
    runs: dict[str, RunFacts]  # every run, failed ones included, in run order
    tensors: list[TensorFacts] = field(default_factory=list)  # catalogue order; empty when the reference failed
    # (variant a, variant b), a before b in run order -> output -> compare result of their untapped values
    distances: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    isolated: list[str] = field(default_factory=list)  # the isolated variants that ran


# -- reading ------------------------------------------------------------------------------------------------------

class TensorFileError(ValueError):
    """A run's tensor file cannot be read (missing, not an .npy, truncated): a failure of the run that wrote it,
    which the caller reports as that variant's (assemble.analyse), not an error of the whole comparison."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = Path(path), why


class _Reader:
    """One .npy file, read front to back in flat (C-order) chunks; opened once."""

    def __init__(self, path: Path, declared: str | None = None):
        try:
            self._fh = open(path, "rb")  # closed by close()
        except OSError as exc:
            raise TensorFileError(path, f"cannot be opened ({exc.strerror})") from None
        try:
            version = np.lib.format.read_magic(self._fh)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, self.dtype = header(self._fh)
        except (ValueError, EOFError, OSError) as exc:
            self._fh.close()
            raise TensorFileError(path, f"is not a readable .npy file ({exc})") from None
        except BaseException:
            self._fh.close()
            raise
        if declared:  # bfloat16 and float8 are stored as raw bytes (|V2, |V1): the worker's manifest names them
            self.dtype = as_declared(np.empty(0, self.dtype), declared).dtype
        self.shape: tuple[int, ...] = tuple(shape)
        self.size = math.prod(self.shape)
        self._done = 0
        self._whole: np.ndarray | None = None
        self._buffer: np.ndarray | None = None
        if fortran:  # never written by the workers: read whole, then walk in C order like a memmap's reshape(-1)
            self._whole = self._read(self.size).reshape(self.shape[::-1]).T.reshape(-1)

    def _read(self, n: int, into: np.ndarray | None = None) -> np.ndarray:
        arr = np.empty(n, self.dtype) if into is None else into[:n]
        raw = arr.view(np.uint8)
        try:
            got = self._fh.readinto(raw.data) or 0
        except OSError as exc:
            raise TensorFileError(Path(self._fh.name), f"cannot be read ({exc})") from None
        if got != raw.size:
            raise TensorFileError(Path(self._fh.name), f"is truncated ({self._done + got // self.dtype.itemsize} of "
                                                       f"{self.size} elements)")
        return arr

    def next(self, n: int) -> np.ndarray:
        """The next `n` elements (fewer at the end). The array is valid until the next call: each read goes into
        the same buffer, so that a tensor's pages are faulted in once, not once a chunk."""
        n = min(n, self.size - self._done)
        if self._whole is not None:
            chunk = self._whole[self._done:self._done + n]
        else:
            if self._buffer is None or self._buffer.size < n:
                self._buffer = np.empty(n, self.dtype)
            chunk = self._read(n, self._buffer)
        self._done += n
        return chunk

    def close(self) -> None:
        self._fh.close()


def _digest(reader: _Reader) -> Any:
    h = hashlib.sha256()
    h.update(f"{reader.dtype.str}|{reader.shape}|".encode())
    return h


class _Top1:
    """Argmax over the last axis, fed flat chunks; a row cut by a chunk boundary waits for its end."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape, self.width = shape, shape[-1]
        self.parts: list[np.ndarray] = []
        self.tail = np.empty(0, np.float64)

    def update(self, chunk: np.ndarray) -> None:
        x = np.asarray(chunk, dtype=np.float64)
        if self.tail.size:
            x = np.concatenate([self.tail, x])
        whole = x.size - x.size % self.width
        if whole:
            self.parts.append(x[:whole].reshape(-1, self.width).argmax(axis=-1))
        self.tail = x[whole:].copy()  # x may be the reader's buffer, which the next chunk overwrites

    def result(self) -> np.ndarray:
        labels = np.concatenate(self.parts) if self.parts else np.empty(0, np.intp)
        return labels.reshape(self.shape[:-1])


def _top1_shape(reader: _Reader) -> bool:
    """A per-sample [N, C >= 2] or [N, T, C >= 2] output whose values convert to float64."""
    return len(reader.shape) in (3, 4) and reader.shape[-1] >= 2 and reader.dtype.kind in "biuf"


Key = tuple[int, str]  # (index of the run in the pass, run kind)
Sink = Callable[[dict[str, Any]], None]
File = tuple[str, str]  # a tensor file: its path and the dtype its run's manifest declares


@dataclass
class Known:
    """Results found before gather ran (measure/ahead.py), by the files they were computed from: a pair's
    metrics and whether it is the same array (by reference file, compared file, tolerance), a value's digest."""

    pairs: dict[tuple[File, File, metrics.Tolerance], tuple[dict[str, Any], bool]] = field(default_factory=dict)
    digests: dict[File, str] = field(default_factory=dict)


class _Pass:
    """The consumers of one tensor's files; `run()` opens each file once and feeds every consumer each chunk.
    What `known` holds already is handed to its consumer at once, and its files are not read for it."""

    def __init__(self, runs: Sequence[VariantRun], name: str, known: Known | None = None):
        self.runs, self.name, self.known = runs, name, known
        self.readers: dict[Key, _Reader | None] = {}
        # (reference, compared, accumulator, who hears the metrics, who hears same_bytes)
        self.pairs: list[tuple[Key, Key, metrics.Accumulator, Sink, Callable[[bool], None] | None]] = []
        self.digests: dict[Key, tuple[Any, list[Callable[[str], None]]]] = {}
        self.top1: dict[Key, tuple[_Top1, Callable[[np.ndarray], None]]] = {}

    def reader(self, key: Key) -> _Reader | None:
        if key not in self.readers:
            file = self.file(key)
            self.readers[key] = None if file is None else _Reader(Path(file[0]), file[1])
        return self.readers[key]

    def file(self, key: Key) -> File | None:
        """The file holding this run kind's value of the tensor, with the dtype its manifest declares."""
        run = self.runs[key[0]]
        path = run.path(key[1], self.name)
        return None if path is None else (str(path), run.tensors[key[1]][self.name]["dtype"])

    def compare(self, ref: Key, got: Key, tolerance: metrics.Tolerance, sink: Sink,
                same: Callable[[bool], None] | None = None) -> None:
        """metrics.compare of two values, or {"error": why} when they cannot be compared; `same` hears whether they
        are the same array (dtype and bytes: Accumulator.same_bytes), False when they cannot be compared."""
        if self.known is not None:
            hit = self.known.pairs.get((self.file(ref), self.file(got), tolerance))  # type: ignore[arg-type]
            if hit is not None:
                sink(dict(hit[0]))
                if same is not None:
                    same(hit[1])
                return
        a, b = self.reader(ref), self.reader(got)
        if a is None or b is None:
            sink({"error": "not produced by " + ("the reference" if a is None else "this variant")})
            return
        try:
            acc = metrics.start(a.shape, a.dtype, b.shape, b.dtype, tolerance)
        except metrics.ShapeMismatch as exc:
            sink({"error": str(exc)})
        except TypeError as exc:
            sink(_dtype_error(a.dtype, b.dtype, exc))
        else:
            self.pairs.append((ref, got, acc, sink, same))
            return
        if same is not None:
            same(False)

    def digest(self, key: Key, sink: Callable[[str], None]) -> None:
        hit = None if self.known is None else self.known.digests.get(self.file(key))  # type: ignore[arg-type]
        if hit is not None:
            sink(hit)
            return
        r = self.reader(key)
        if r is not None:
            self.digests.setdefault(key, (_digest(r), []))[1].append(sink)

    def labels(self, key: Key, sink: Callable[[np.ndarray], None]) -> None:
        r = self.reader(key)
        if r is not None and _top1_shape(r):
            self.top1[key] = (_Top1(r.shape), sink)

    def run(self) -> None:
        live = {k: r for k, r in self.readers.items() if r is not None}
        try:
            for start in range(0, max((r.size for r in live.values()), default=0), CHUNK):
                chunks = {k: r.next(CHUNK) for k, r in live.items() if start < r.size}
                for pair in list(self.pairs):
                    ref, got, acc, sink, same = pair
                    try:
                        acc.update(chunks[ref], chunks[got])
                    except TypeError as exc:
                        self.pairs.remove(pair)
                        sink(_dtype_error(acc.ref_dtype, acc.got_dtype, exc))
                        if same is not None:
                            same(False)
                for k, (h, _) in self.digests.items():
                    if k in chunks:
                        h.update(chunks[k].view(np.uint8))
                for k, (top, _) in self.top1.items():
                    if k in chunks:
                        top.update(chunks[k])
        finally:
            self.close()
        for _, _, acc, sink, same in self.pairs:
            sink(acc.result())
            if same is not None:
                same(acc.same_bytes)
        for h, sinks in self.digests.values():
            for put in sinks:
                put(h.hexdigest())
        for top, done in self.top1.values():
            done(top.result())

    def close(self) -> None:
        for r in self.readers.values():
            if r is not None:
                r.close()


def far_apart(ref: VariantRun, got: VariantRun, name: str, kind: str, atol: float, rtol: float) -> bool:
    """Whether one element of `got`'s value of tensor `name` (run kind `kind`) is further than atol + rtol * |ref|
    from `ref`'s, both finite, in float64 as metrics computes max_abs and max_rel. True when the two cannot be
    read as numbers of one size: the metrics' maxima stand then."""
    p = _Pass([ref, got], name)
    try:
        a, b = p.reader((0, kind)), p.reader((1, kind))
        if a is None or b is None or a.size != b.size:
            return True
        with np.errstate(invalid="ignore", over="ignore"):
            for _ in range(0, a.size, CHUNK):
                x, y = a.next(CHUNK).astype(np.float64), b.next(CHUNK).astype(np.float64)
                both = np.isfinite(x) & np.isfinite(y)
                if np.any(both & (np.abs(x - y) > atol + rtol * np.abs(x))):
                    return True
        return False
    except (TypeError, ValueError):  # strings, or a file that cannot be read (gather has reported it)
        return True
    finally:
        p.close()


def _dtype_error(a: np.dtype, b: np.dtype, exc: Exception) -> dict[str, Any]:
    return {"error": f"cannot compare {a} with {b}: {exc}"}


# -- the pass -----------------------------------------------------------------------------------------------------

def gather(catalogue: Iterable[TensorInfo], outputs: Sequence[str], runs: Sequence[VariantRun],
           reference: VariantRun, tolerance: metrics.Tolerance,
           tolerance_for: Callable[[TensorInfo], metrics.Tolerance] | None = None,
           isolated: Sequence[VariantRun] = (), classes: Sequence[str] = (),
           blind: Collection[str] = (), counted: Callable[[int], None] | None = None,
           known: Known | None = None) -> Facts:
    """Read every tensor of `catalogue` and every final output once; return what the analyses need.

    `tolerance_for(info)`, when given, overrides `tolerance` per tensor (a gate policy's per-tensor rules).
    `isolated`: runs of the isolated model (--isolate), compared with the reference's tapped values.
    `classes`: the outputs that are class scores, whose top-1 class per row is kept.
    `blind`: the variants that do not record tensors inside subgraphs: those tensors get no facts for them
    (the report counts them instead); none at all when the reference is one of them.
    `counted(n)`: called after each of the catalogue's tensors, with how many are done (progress).
    `known`: results found ahead (measure/ahead.py), used for the pairs and values they are of."""
    facts = Facts(str(reference.variant), {str(r.variant): RunFacts(r) for r in runs})
    everyone = list(runs) + list(isolated)
    ok = [i for i, r in enumerate(runs) if r.ok]
    ref = next(i for i, r in enumerate(runs) if r is reference)
    iso = [len(runs) + i for i, r in enumerate(isolated) if r.ok]
    facts.isolated = [str(everyone[i].variant) for i in iso]
    names: list[tuple[str, TensorInfo | None]] = []
    if reference.ok:
        names = [(t.name, t) for t in catalogue]
    seen = {n for n, _ in names}
    names += [(o, None) for o in outputs if o not in seen]
    # --tap fused: what each variant that tapped its optimized graph computes there
    computed = {i: set(r.fusion["tapped"]) for i, r in enumerate(runs) if r.fusion.get("mode") == "optimized"}
    # Passes run on a few threads (the kernel, reading and hashing release the GIL); each is planned here, in
    # catalogue order, and at most `threads` + 1 have their files open at once.
    threads = max(1, min(PASS_THREADS, os.cpu_count() or 1))
    pending: deque[tuple[bool, Future[None]]] = deque()
    done = 0
    with ThreadPoolExecutor(threads) as pool:
        for name, info in names:
            p = _Pass(everyone, name, known)
            if info is not None:
                seeing = ok
                if info.scope:  # inside a subgraph: only variants that record them, and only when the reference does
                    seeing = ([] if str(runs[ref].variant) in blind
                              else [i for i in ok if str(runs[i].variant) not in blind])
                fused = [i for i in seeing if i in computed and info.name not in computed[i]]
                facts.tensors.append(_tensor(p, info, ref, seeing, iso if not info.scope else [],
                                             tolerance if tolerance_for is None else tolerance_for(info), fused))
            if name in outputs:
                _output(p, facts, name, ok, name in classes)
            pending.append((info is not None, pool.submit(p.run)))
            while len(pending) > threads or (pending and pending[0][1].done()):
                done += _finish(pending.popleft(), counted, done)
        while pending:
            done += _finish(pending.popleft(), counted, done)
    return facts


PASS_THREADS = 4


def _finish(item: tuple[bool, Future[None]], counted: Callable[[int], None] | None, done: int) -> int:
    """Wait for one pass (its error, if any, is raised here); report progress; 1 if it was a catalogue tensor."""
    catalogued, future = item
    future.result()
    if catalogued and counted is not None:
        counted(done + 1)
    return int(catalogued)


def _tensor(p: _Pass, info: TensorInfo, ref: int, ok: list[int], iso: list[int],
            tolerance: metrics.Tolerance, fused: Sequence[int] = ()) -> TensorFacts:
    """The facts of one catalogue tensor over the runs in `ok`; those in `fused` do not compute it (nothing of
    theirs is read), and when the reference is one of them nothing is compared."""
    kind = kind_for(info)
    tf = TensorFacts(info.name, kind, fused=[str(p.runs[i].variant) for i in fused])
    ok = [i for i in ok if i not in fused]
    tf.produced = [str(p.runs[i].variant) for i in ok if p.runs[i].path(kind, info.name) is not None]
    if ref in fused:  # nothing to compare with: every value is hashed
        for i in ok:
            p.digest((i, kind), _put(tf.digests, str(p.runs[i].variant)))
        return tf
    tf.same_as_reference[str(p.runs[ref].variant)] = True
    hashed = len([i for i in ok if i != ref]) >= 2  # otherwise the pair's same_bytes settles the classes
    for i in ok:
        variant = str(p.runs[i].variant)
        if info.scope and p.runs[i].path(kind, info.name) is None and p.runs[ref].path(kind, info.name) is None:
            continue  # a branch neither ran (the If went the other way, the loop ran no iteration)
        if i != ref:
            tf.metrics[variant] = {}
            p.compare((ref, kind), (i, kind), tolerance, tf.metrics[variant].update,
                      _put(tf.same_as_reference, variant))
            if hashed:
                p.digest((i, kind), _put(tf.digests, variant))
        if repeats(p.runs[i], "untapped"):
            spread = tf.spread[variant] = {"max_abs": 0.0, "max_ulp": 0}
            for k in repeats(p.runs[i], kind):
                p.compare((i, kind), (i, k), ZERO, partial(_widen, spread))
    for i in iso:
        tf.local[str(p.runs[i].variant)] = {}
        p.compare((ref, "tapped"), (i, "tapped"), tolerance, tf.local[str(p.runs[i].variant)].update)
    return tf


def _put(found: dict[str, Any], key: str) -> Callable[[Any], None]:
    def put(value: Any) -> None:
        found[key] = value
    return put


def _widen(spread: dict[str, Any], m: dict[str, Any]) -> None:
    if "error" not in m:
        spread["max_abs"] = max(spread["max_abs"], m["max_abs"])
        spread["max_ulp"] = max(spread["max_ulp"], m["max_ulp"] or 0)


def _output(p: _Pass, facts: Facts, name: str, ok: list[int], scores: bool) -> None:
    for n, i in enumerate(ok):
        run = p.runs[i]
        rf = facts.runs[str(run.variant)]
        r = p.reader((i, "untapped"))
        if r is not None:
            out = rf.outputs[name] = OutputFacts(r.shape, r.dtype)
            if scores:
                p.labels((i, "untapped"), partial(setattr, out, "top1"))
            if p.reader((i, "tapped")) is not None and not run.one_run:  # one run: nothing to compare
                p.compare((i, "untapped"), (i, "tapped"), ZERO, partial(setattr, out, "observer"))
        for k in ["untapped"] + repeats(run, "untapped"):
            p.digest((i, k), _put(rf.digests.setdefault(k, {}), name))
        for j in ok[n + 1:]:
            found = facts.distances.setdefault((str(run.variant), str(p.runs[j].variant)), {})
            p.compare((i, "untapped"), (j, "untapped"), metrics.Tolerance(), _put(found, name))
