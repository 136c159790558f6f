"""Rebuild the example ONNX models and the digits test set, reproducibly.

Run from the repository root:  python models/build.py   (or python -m models.build)

Writes models/{cnn,transformer,digits_cnn}.onnx and models/digits_test.npz,
then checks each ONNX file against its torch module in onnxruntime.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: make `models.zoo` importable
    sys.path.insert(0, str(HERE.parent))

from models import zoo  # noqa: E402

OPSET = 17
# onnxruntime 1.31 rejects ir_version > 13; 10 is the newest that every backend
# this repo targets can read.
MAX_IR_VERSION = 10
PRODUCER = "infercmp models/build.py"
TEST_SAMPLES = 64
ATOL = 1e-5

# (input name, output name, dynamic_axes, keep BatchNormalization as its own node)
SPECS = {
    "cnn": ("image", "probs", None, True),
    "transformer": ("tokens", "hidden", None, False),
    "digits_cnn": ("image", "logits", {"image": {0: "batch"}, "logits": {0: "batch"}}, False),
}


def export(model: torch.nn.Module, name: str) -> bytes:
    input_name, output_name, dynamic_axes, keep_bn = SPECS[name]
    # The eval-mode exporter folds BatchNorm into the preceding Conv, which would
    # hide BN from a layer-by-layer comparison. PRESERVE on an eval-mode module
    # still exports inference-mode BN but skips that fusion; constant folding
    # must then be off, or the exporter warns that it may corrupt parameters.
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False is deprecated in torch 2.9+ and warns, but the dynamo
        # exporter needs onnxscript, which this project does not depend on.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (zoo.example_input(name),),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            training=mode,
            do_constant_folding=not keep_bn,
        )
    return finalize(onnx.load_from_string(buf.getvalue()), name)


def finalize(m: onnx.ModelProto, name: str) -> bytes:
    m.ir_version = min(m.ir_version, MAX_IR_VERSION)
    # Pin every free-text field so the bytes depend only on the model.
    m.producer_name = PRODUCER
    m.producer_version = f"torch {torch.__version__.split('+')[0]}"
    m.domain = ""
    m.model_version = 0
    m.doc_string = ""
    m.graph.name = name
    m.graph.doc_string = ""
    del m.metadata_props[:]
    for node in m.graph.node:
        node.doc_string = ""
    name_folded_initializers(m.graph)
    # Recompute value_info with onnx's own inference rather than keeping the
    # exporter's, so every intermediate has a type/shape from one source.
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(m, full_check=True)
    return m.SerializeToString(deterministic=True)


def name_folded_initializers(graph: onnx.GraphProto) -> None:
    # Constant folding stores each Linear weight transposed under a counter
    # name (onnx::MatMul_99); name it after its consumer so reports are readable.
    init_names = {t.name for t in graph.initializer}
    renames: dict[str, str] = {}
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp in init_names and inp.startswith("onnx::") and inp not in renames:
                scope = node.name.rsplit("/", 1)[0].strip("/").replace("/", ".")
                new = f"{scope}.weight_t" if node.op_type == "MatMul" and i == 1 else f"{node.name}_in{i}"
                assert new not in init_names, new
                renames[inp] = new
    for t in graph.initializer:
        t.name = renames.get(t.name, t.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]


def train_digits(epochs: int = 12, batch_size: int = 32) -> tuple[torch.nn.Module, float]:
    """Train DigitsCNN on the fixed split; returns the eval-mode model and full test accuracy."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    # One thread fixes the reduction order, so the trained weights (and thus
    # the .onnx bytes) come out identical on every run on the same machine.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        x_tr, y_tr, x_te, y_te = (torch.from_numpy(a) for a in zoo.load_digits_split())
        model = zoo.make_digits_cnn().train()
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            for idx in torch.randperm(len(x_tr), generator=g).split(batch_size):
                opt.zero_grad()
                loss_fn(model(x_tr[idx]), y_tr[idx]).backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)
    return model, acc


def save_npz_deterministic(path: Path, **arrays: np.ndarray) -> None:
    # np.savez stamps each zip member with the current time; re-pack the same
    # members with a fixed timestamp so the file is byte-for-byte reproducible.
    raw = io.BytesIO()
    np.savez(raw, **arrays)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    path.write_bytes(out.getvalue())


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def verify(models: dict[str, torch.nn.Module]) -> bool:
    ok = True
    for name, model in models.items():
        x = zoo.example_input(name)
        with torch.no_grad():
            want = model(x).numpy()
        sess = ort_session(HERE / f"{name}.onnx")
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        diff = float(np.abs(got - want).max())
        good = got.shape == want.shape and diff <= ATOL
        ok &= good
        print(f"  {name:12s} ort vs torch on {tuple(x.shape)}: max|diff| = {diff:.2e}"
              f"  {'OK' if good else 'FAIL'}")

    data = np.load(HERE / "digits_test.npz")
    image, label = data["image"], data["label"]
    with torch.no_grad():
        torch_pred = models["digits_cnn"](torch.from_numpy(image)).argmax(1).numpy()
    sess = ort_session(HERE / "digits_cnn.onnx")
    ort_pred = sess.run(None, {"image": image})[0].argmax(1)
    torch_acc, ort_acc = (torch_pred == label).mean(), (ort_pred == label).mean()
    good = torch_acc == ort_acc and bool((torch_pred == ort_pred).all())
    ok &= good
    print(f"  digits_cnn   accuracy on digits_test.npz (N={len(label)}): "
          f"torch {torch_acc:.4f}, ort {ort_acc:.4f}  {'OK' if good else 'FAIL'}")
    return ok


def main() -> int:
    t0 = time.perf_counter()
    models = {"cnn": zoo.make_cnn(), "transformer": zoo.make_transformer()}
    t_train = time.perf_counter()
    models["digits_cnn"], test_acc = train_digits()
    t_train = time.perf_counter() - t_train
    _, _, x_te, y_te = zoo.load_digits_split()
    print(f"digits_cnn trained in {t_train:.1f} s; test accuracy {test_acc:.4f} "
          f"on all {len(y_te)} held-out samples")

    outputs = {f"{name}.onnx": export(model, name) for name, model in models.items()}
    for fname, data in outputs.items():
        (HERE / fname).write_bytes(data)
    save_npz_deterministic(HERE / "digits_test.npz",
                           image=np.ascontiguousarray(x_te[:TEST_SAMPLES], dtype=np.float32),
                           label=np.ascontiguousarray(y_te[:TEST_SAMPLES], dtype=np.int64))

    for fname in [*outputs, "digits_test.npz"]:
        data = (HERE / fname).read_bytes()
        print(f"  wrote models/{fname:16s} {len(data):8d} B  sha256 {hashlib.sha256(data).hexdigest()}")
    print("checks:")
    ok = verify(models)
    print(f"{'all checks passed' if ok else 'SOME CHECKS FAILED'} ({time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
