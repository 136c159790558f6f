"""IR versions: the lowest one a model's opsets need, and a copy written with it for a runtime that reads fewer.

The onnx package can write a newer IR version than the installed runtime reads. Whether a copy must be lowered is
decided by the runtime itself (its backend tries the model and reads the limit from the refusal), never by a
version number written here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

_MIN_IR = 7  # the oldest IR version any supported runtime reads


def needed_ir_version(model_proto: Any) -> int:
    """The lowest IR version that the model's default-domain opset needs (never above the model's own)."""
    import onnx

    opset = next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    needed = min((row[1] for row in onnx.helper.VERSION_TABLE if row[2] >= opset), default=model_proto.ir_version)
    return max(_MIN_IR, min(model_proto.ir_version, needed))


def write_lowered(path: str | Path, limit: int) -> tuple[Path, int, int]:
    """Write a copy of `path` with the lowest IR version its opsets need, beside it (so that external data files
    resolve), and return (copy, old IR version, new IR version). Raises ValueError when even that exceeds
    `limit`."""
    import onnx

    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    old, new = proto.ir_version, needed_ir_version(proto)
    if new > limit:
        raise ValueError(f"the model's opset needs IR version {new}; the runtime reads at most {limit}")
    proto.ir_version = new
    copy = path.with_name(f"{path.stem}.ir{new}{path.suffix}")
    onnx.save(proto, str(copy))
    return copy, old, new
