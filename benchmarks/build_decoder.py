"""Build a decoder-only transformer of 2.3 GB of float32 weights, stored as ONNX external data, reproducibly and
offline (seeded weights, no download): the multi-GB case of the benchmarks.

    python benchmarks/build_decoder.py [--out <bench cache>/decoder] [--layers 24] [--width 1408]

24 pre-norm blocks (LayerNormalization, 11-head causal self-attention written out as MatMul/Softmax, a 4x MLP
with a sigmoid-approximated GELU, residual adds), a final norm and a 4,096-way output projection, on a [1, 32,
WIDTH] input. Weights are written straight to OUT/decoder.data, one tensor at a time, so building never holds
more than the largest tensor; OUT/decoder.onnx holds the graph and the references. Same arguments, same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

SEQ, VOCAB, HEAD = 32, 4096, 128


class Weights:
    """Initializers written to one external data file as they are made."""

    def __init__(self, folder: Path, seed: int):
        self.path = folder / "decoder.data"
        self.fh = self.path.open("wb")
        self.seed = seed
        self.tensors: list[onnx.TensorProto] = []

    def add(self, name: str, shape: tuple[int, ...], scale: float | None = None, fill: float | None = None,
            dtype: type = np.float32) -> str:
        if fill is not None:
            value = np.full(shape, fill, dtype)
        else:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
            rng = np.random.default_rng([self.seed, key])
            value = (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(dtype)
        t = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(value.dtype), dims=shape)
        offset = self.fh.tell()
        self.fh.write(value.tobytes())
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.path.name), ("offset", str(offset)), ("length", str(value.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        self.tensors.append(t)
        return name

    def small(self, name: str, value: np.ndarray) -> str:
        self.tensors.append(onnx.numpy_helper.from_array(value, name))
        return name

    def close(self) -> None:
        self.fh.close()


def build(out: Path, layers: int = 24, width: int = 1408, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    heads = width // HEAD
    w = Weights(out, seed)
    nodes: list[onnx.NodeProto] = []

    def node(op: str, inputs: list[str], name: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    split = w.small("split_heads", np.array([1, SEQ, heads, HEAD], np.int64))
    merge = w.small("merge_heads", np.array([1, SEQ, width], np.int64))
    scale = w.small("scale", np.array(HEAD ** -0.5, np.float32))
    gelu_k = w.small("gelu_k", np.array(1.702, np.float32))
    mask = w.small("causal_mask", np.triu(np.full((SEQ, SEQ), -1e4, np.float32), 1)[None, None])
    x = "x"
    for i in range(layers):
        p = f"l{i}"
        h = node("LayerNormalization", [x, w.add(f"{p}.ln1.g", (width,), fill=1.0),
                                        w.add(f"{p}.ln1.b", (width,), fill=0.0)], f"{p}/ln1", axis=-1)
        q, k, v = (node("MatMul", [h, w.add(f"{p}.w{c}", (width, width), width ** -0.5)], f"{p}/{c}")
                   for c in "qkv")
        q = node("Transpose", [node("Reshape", [q, split], f"{p}/q_split")], f"{p}/q_heads", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, split], f"{p}/k_split")], f"{p}/k_heads", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, split], f"{p}/v_split")], f"{p}/v_heads", perm=[0, 2, 1, 3])
        s = node("Add", [node("Mul", [node("MatMul", [q, k], f"{p}/scores"), scale], f"{p}/scaled"), mask],
                 f"{p}/masked")
        a = node("MatMul", [node("Softmax", [s], f"{p}/attn", axis=-1), v], f"{p}/context")
        a = node("Reshape", [node("Transpose", [a], f"{p}/context_t", perm=[0, 2, 1, 3]), merge], f"{p}/merged")
        a = node("MatMul", [a, w.add(f"{p}.wo", (width, width), width ** -0.5)], f"{p}/o")
        x = node("Add", [x, a], f"{p}/res1")
        h = node("LayerNormalization", [x, w.add(f"{p}.ln2.g", (width,), fill=1.0),
                                        w.add(f"{p}.ln2.b", (width,), fill=0.0)], f"{p}/ln2", axis=-1)
        h = node("Add", [node("MatMul", [h, w.add(f"{p}.w1", (width, 4 * width), width ** -0.5)], f"{p}/up"),
                         w.add(f"{p}.b1", (4 * width,), 0.02)], f"{p}/up_b")
        g = node("Sigmoid", [node("Mul", [h, gelu_k], f"{p}/gelu_in")], f"{p}/gelu_gate")
        h = node("Mul", [h, g], f"{p}/gelu")
        h = node("Add", [node("MatMul", [h, w.add(f"{p}.w2", (4 * width, width), (4 * width) ** -0.5)],
                              f"{p}/down"), w.add(f"{p}.b2", (width,), 0.02)], f"{p}/down_b")
        x = node("Add", [x, h], f"{p}/res2")
    h = node("LayerNormalization", [x, w.add("final.g", (width,), fill=1.0), w.add("final.b", (width,), fill=0.0)],
             "final_ln", axis=-1)
    node("MatMul", [h, w.add("lm_head", (width, VOCAB), width ** -0.5)], "logits")
    w.close()
    graph = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                [1, SEQ, width])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, SEQ, VOCAB])],
                              w.tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="build_decoder")
    model.ir_version = 8
    path = out / "decoder.onnx"
    path.write_bytes(model.SerializeToString(deterministic=True))
    onnx.checker.check_model(str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from comparator import caches

    ap.add_argument("--out", type=Path, default=caches.folder("bench") / "decoder")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = build(args.out, args.layers, args.width, args.seed)
    size = (args.out / "decoder.data").stat().st_size
    print(f"{path}: {size / 2**30:.2f} GiB of weights in {args.out / 'decoder.data'}")


if __name__ == "__main__":
    main()
