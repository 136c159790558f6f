"""IR versions: the lowest one a model's opsets need, and the model serialized with it for a runtime that reads
fewer.

The onnx package can write a newer IR version than the installed runtime reads. Whether a copy must be lowered is
decided by the runtime itself (its backend tries the model and reads the limit from the refusal), never by a
version number written here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import stored

_MIN_IR = 7  # the oldest IR version any supported runtime reads


def needed_ir_version(model_proto: Any) -> int:
    """The lowest IR version that the model's default-domain opset needs (never above the model's own)."""
    import onnx

    opset = next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    needed = min((row[1] for row in onnx.helper.VERSION_TABLE if row[2] >= opset), default=model_proto.ir_version)
    return max(_MIN_IR, min(model_proto.ir_version, needed))


def lowered(path: str | Path, limit: int) -> tuple[bytes, int, int]:
    """The model at `path` serialized with the lowest IR version its opsets need, in memory (nothing is written:
    the model's own bytes with a trailing field that overrides its IR version), and (old IR version, new one).
    Raises ValueError when even that exceeds `limit`."""
    import onnx

    data = Path(path).read_bytes()
    head = onnx.ModelProto()
    head.ParseFromString(stored.skim(path))
    old, new = head.ir_version, needed_ir_version(head)
    if new > limit:
        raise ValueError(f"the model's opset needs IR version {new}; the runtime reads at most {limit}")
    # protobuf: a scalar field that appears again later in the message overrides the earlier value
    return data + onnx.ModelProto(ir_version=new).SerializeToString(), old, new
