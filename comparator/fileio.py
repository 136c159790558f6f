"""Atomic writes and pickle-free array files."""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over the target only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; reports and bundles are meant to be shared
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _encode(obj: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats are written as the strings "nan", "inf", "-inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _encode(obj.item())
    return obj


def dumps(obj: Any, open_levels: int = 3) -> str:
    """JSON with the outer `open_levels` levels of objects and arrays one member a line (readable, diffable per
    tensor) and everything deeper on one line, written by json's C encoder: an indented dump would run the pure
    Python one, 10x slower on a report of thousands of tensors."""
    return _layout(_encode(obj), open_levels, "\n")


def _layout(obj: Any, levels: int, newline: str) -> str:
    if levels <= 0 or not isinstance(obj, (dict, list)) or not obj:
        return json.dumps(obj, allow_nan=False, separators=(", ", ": "))
    inner = newline + " "
    if isinstance(obj, dict):
        members = [f"{json.dumps(k)}: {_layout(v, levels - 1, inner)}" for k, v in obj.items()]
        return "{" + inner + ("," + inner).join(members) + newline + "}"
    members = [_layout(v, levels - 1, inner) for v in obj]
    return "[" + inner + ("," + inner).join(members) + newline + "]"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, dumps(obj) + "\n")


def save_npz(path: str | os.PathLike[str], arrays: dict[str, Any]) -> None:
    """Like np.savez(path, **arrays), but any key works: np.savez would take a key named `file` or
    `allow_pickle` for its own parameter. Written without pickle."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
