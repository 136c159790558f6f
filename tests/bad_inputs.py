"""The bad-input corpus: every class of bad input the command line must refuse cleanly, built by code (no binary
files in the repository). tests/test_bad_inputs.py runs each case and checks the exit code, the one-line message,
that no input changed and that nothing was left behind.

`python tests/bad_inputs.py FOLDER [BUNDLE]` writes each case's files into a folder of its own under FOLDER and
prints its command line (the bundle cases need BUNDLE, a capture of m/model.onnx).

A case is (name, command-line arguments, exit code, phrases of the error line). The arguments name files of the
base set, which `base()` writes into a folder:

    m/model.onnx, m/weights.bin   a small model (x[1,4] -> MatMul(w) -> Relu -> y) with its weight as external data
    feeds.npz, policy.toml        good feeds and a good policy
    base.icmp, other.icmp         good bundles of the model (base() needs one captured bundle to copy)
    dyn.onnx                      a model with a dynamic dimension `batch`

and the bad files each case builds with its own function.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import dynamic_model, small_model  # noqa: E402


def base(folder: Path, bundle: Path | None) -> None:
    """The good files every case starts from (a captured bundle of m/model.onnx is copied when given)."""
    (folder / "m").mkdir(parents=True)
    onnx.save_model(small_model(), str(folder / "m" / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(dynamic_model(), str(folder / "dyn.onnx"))
    np.savez(folder / "feeds.npz", x=np.ones((1, 4), np.float32))
    (folder / "policy.toml").write_text("[defaults]\natol = 1e-4\n")
    if bundle is not None:
        shutil.copyfile(bundle, folder / "base.icmp")
        shutil.copyfile(bundle, folder / "other.icmp")


# -- bad files ------------------------------------------------------------------------------------------------------

def _rewrite(src: Path, dst: Path, replace: dict[str, bytes | None] = {}, add: dict[str, bytes] = {},  # noqa: B006
             deflate: tuple[str, ...] = ()) -> None:
    """Copy a bundle, replacing (bytes) or dropping (None) members, adding others (names as given, even unsafe)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data,
                              zipfile.ZIP_DEFLATED if info.filename in deflate else info.compress_type)
        for name, data in add.items():
            zinfo = zipfile.ZipInfo(name)  # ZipInfo keeps `../` and leading `/` as given
            zout.writestr(zinfo, data)


def _meta(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("meta.json"))


def _declare_size(path: Path, member: str, size: int) -> None:
    """Change the uncompressed size the central directory declares for `member` (a forged zip)."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack("<H", data[pos + 28:pos + 30])[0]
        if data[pos + 46:pos + 46 + name_len] == member.encode():
            data[pos + 24:pos + 28] = struct.pack("<I", size)
            path.write_bytes(bytes(data))
            return
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{member} not in {path}")


def unsafe_name(f: Path, name: str) -> Path:
    out = f / "unsafe.icmp"
    _rewrite(f / "base.icmp", out, add={name: b"\x93NUMPY"})
    return out


def dtype_lie(f: Path) -> Path:
    meta = _meta(f / "base.icmp")
    entry = next(iter(meta["runs"][0]["tensors"]["untapped"].values()))
    entry["dtype"] = "float64"
    out = f / "dtype.icmp"
    _rewrite(f / "base.icmp", out, {"meta.json": json.dumps(meta).encode()})
    return out


def options_list(f: Path) -> Path:
    meta = _meta(f / "base.icmp")
    meta["runs"][0]["options"] = ["opt=all"]
    out = f / "options.icmp"
    _rewrite(f / "base.icmp", out, {"meta.json": json.dumps(meta).encode()})
    return out


def meta_bomb(f: Path) -> Path:
    """meta.json that deflates to 130 MiB: 130 KB in the file, refused before it is decompressed."""
    meta = json.dumps(_meta(f / "base.icmp")).encode()
    out = f / "bomb.icmp"
    _rewrite(f / "base.icmp", out, {"meta.json": None})
    info = zipfile.ZipInfo("meta.json")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out, "a") as zf, zf.open(info, "w", force_zip64=True) as fh:
        fh.write(meta)
        block = b" " * (1 << 20)
        for _ in range(130):
            fh.write(block)
    return out


def forged_size(f: Path) -> Path:
    """A deflated member declaring a size no deflate stream of its length can produce."""
    member = next(iter(_meta(f / "base.icmp")["feeds"].values()))["file"]
    out = f / "forged.icmp"
    _rewrite(f / "base.icmp", out, deflate=(member,))
    _declare_size(out, member, 1 << 31)
    return out


def duplicate_member(f: Path) -> Path:
    member = next(iter(_meta(f / "base.icmp")["feeds"].values()))["file"]
    with zipfile.ZipFile(f / "base.icmp") as zf:
        data = zf.read(member)
    out = f / "twice.icmp"
    shutil.copyfile(f / "base.icmp", out)
    import warnings

    with warnings.catch_warnings(), zipfile.ZipFile(out, "a") as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": the point of this file
        zf.writestr(member, data)
    return out


def truncated_npz(f: Path) -> Path:
    data = (f / "feeds.npz").read_bytes()
    (f / "cut.npz").write_bytes(data[: len(data) // 2])
    return f / "cut.npz"


def bad_crc_npz(f: Path) -> Path:
    out = f / "crc.npz"
    data = bytearray((f / "feeds.npz").read_bytes())
    with zipfile.ZipFile(f / "feeds.npz") as zf:
        info = zf.getinfo("x.npy")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 2] ^= 0x10
    out.write_bytes(bytes(data))
    return out


def csv_npz(f: Path) -> Path:
    (f / "table.npz").write_text("x0,x1,x2,x3\n1,2,3,4\n")
    return f / "table.npz"


def empty_npz(f: Path) -> Path:
    (f / "empty.npz").write_bytes(b"")
    return f / "empty.npz"


def absurd_npy(f: Path) -> Path:
    """An .npy whose header declares 10**12 float32 elements, followed by 16 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    (f / "huge.npy").write_bytes(buf.getvalue() + b"\0" * 16)
    return f / "huge.npy"


def folder_npz(f: Path) -> Path:
    (f / "feeds_dir.npz").mkdir()
    return f / "feeds_dir.npz"


def a_file(f: Path) -> Path:
    (f / "plain").write_text("a file")
    return f / "plain"


def user_folder(f: Path) -> Path:
    """A folder holding the user's own files (here the model's): never a --workdir."""
    return f / "m"


def ulp_policy(f: Path) -> Path:
    (f / "ulp.toml").write_text(f"[defaults]\nmax_ulp = {2**64}\n")
    return f / "ulp.toml"


def sequence_input(f: Path) -> Path:
    """A model whose input is a sequence of tensors."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "g",
                              [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(f / "seq.onnx"))
    return f / "seq.onnx"


def links(f: Path) -> None:
    os.link(f / "m" / "model.onnx", f / "hard.onnx")
    (f / "sym.onnx").symlink_to("m/model.onnx")


# -- the cases -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str | Callable[[Path], object], ...]  # strings (paths relative to the corpus folder) or builders
    code: int
    needles: tuple[str, ...]
    needs_bundle: bool = False
    runs: bool = field(default=False)  # runs workers before failing


M = "m/model.onnx"
RUN = ("compare", M, "-b", "ort", "--tap", "outputs")


def C(name: str, args: tuple, code: int, *needles: str, bundle: bool = False, runs: bool = False) -> Case:
    return Case(name, args, code, needles, bundle, runs)


CASES = [
    # 1. outputs never replace inputs
    C("json onto the model", RUN + ("--json", M), 2, "--json m/model.onnx is the model", "refusing to overwrite"),
    C("html onto the model", RUN + ("--html", M), 2, "--html m/model.onnx is the model"),
    C("junit onto the model", RUN + ("--junit", M), 2, "--junit m/model.onnx is the model"),
    C("json onto a symlink to the model", (lambda f: links(f),) + RUN + ("--json", "sym.onnx"), 2, "is the model"),
    C("json onto a hard link to the model", (lambda f: links(f),) + RUN + ("--json", "hard.onnx"), 2,
      "is the model"),
    C("json onto the external data", RUN + ("--json", "m/weights.bin"), 2, "the model's external data"),
    C("json onto the feeds", RUN + ("--inputs", "feeds.npz", "--json", "feeds.npz"), 2, "is --inputs"),
    C("json and html on one file", RUN + ("--json", "r.out", "--html", "r.out"), 2, "also written by --json"),
    C("two reports on stdout", RUN + ("--json", "-", "--junit", "-"), 2, "both write to standard output"),
    C("capture over the model", ("capture", M, "-b", "ort", "-o", M, "--force"), 2, "--out m/model.onnx is the model"),
    C("capture to stdout", ("capture", M, "-b", "ort", "-o", "-"), 2, "a bundle is a binary file"),
    C("check json onto the baseline", ("check", M, "--baseline", "base.icmp", "--json", "base.icmp"), 2,
      "--json base.icmp is --baseline", bundle=True),
    C("check json onto the policy", ("check", M, "--baseline", "base.icmp", "--policy", "policy.toml", "--json",
                                     "policy.toml"), 2, "is --policy", bundle=True),
    C("check json onto the .prev", ("check", M, "--baseline", "base.icmp", "--update-baseline", "--json",
                                    "base.icmp.prev"), 2,
      "--json base.icmp.prev is also written by --update-baseline's .prev", bundle=True),
    C("check json onto the old model", ("check", M, "--against", "dyn.onnx", "--json", "dyn.onnx"), 2,
      "is --against"),
    C("diff json onto a bundle", ("diff", "base.icmp", "other.icmp", "--json", "base.icmp"), 2, "is a bundle",
      bundle=True),
    C("workdir holding user files", RUN + ("--workdir", user_folder), 2, "--workdir", "infercmp did not create"),
    C("workdir is a file", RUN + ("--workdir", a_file), 2, "--workdir", "is a file, not a folder"),
    C("json is a folder", RUN + ("--json", "m"), 2, "--json m is a folder"),
    C("json under a file", RUN + ("--json", lambda f: a_file(f) / "r.json"), 2, "is a file, not a folder"),
    # 6. numbers are checked where they come in, naming the flag
    C("negative atol", RUN + ("--atol", "-1"), 2, "--atol must be a finite number >= 0", "-1"),
    C("nan atol", RUN + ("--atol", "nan"), 2, "--atol must be a finite number >= 0", "nan"),
    C("infinite rtol", RUN + ("--rtol", "inf"), 2, "--rtol must be a finite number >= 0"),
    C("zero timeout", RUN + ("--timeout", "0"), 2, "--timeout must be a number of seconds > 0"),
    C("negative timeout", RUN + ("--timeout", "-1"), 2, "--timeout must be a number of seconds > 0"),
    C("negative max-ulp", RUN + ("--max-ulp", "-5"), 2, "--max-ulp must be an integer from 0 to 2**64 - 1"),
    C("max-ulp over 64 bits", RUN + ("--max-ulp", str(2**64)), 2, "--max-ulp"),
    C("negative seed", RUN + ("--seed", "-1"), 2, "--seed must be an integer >= 0"),
    C("no samples", RUN + ("--samples", "0"), 2, "--samples must be an integer >= 1"),
    C("negative jobs", RUN + ("--jobs", "-1"), 2, "--jobs must be an integer >= 0"),
    C("no repeat", RUN + ("--repeat", "0"), 2, "--repeat must be an integer >= 1"),
    C("capture zero timeout", ("capture", M, "-b", "ort", "-o", "c.icmp", "--timeout", "0"), 2, "--timeout"),
    C("check negative seed", ("check", M, "--against", "dyn.onnx", "--seed", "-1"), 2, "--seed"),
    C("diff nan atol", ("diff", "base.icmp", "other.icmp", "--atol", "nan"), 2, "--atol", bundle=True),
    C("policy ULP of 2**64", ("check", M, "--baseline", "base.icmp", "--policy", ulp_policy), 2,
      "max_ulp = 18446744073709551616 is over", bundle=True),
    C("sweep of 300 variants", ("compare", M, "-b", "ort:threads=" + "|".join(map(str, range(300)))), 2,
      "expand to 300 runs, over the limit of 256 without --yes"),
    # 7. bundles are read as docs/gate.md promises
    C("member ../../x", ("inspect", lambda f: unsafe_name(f, "../../x.npy")), 2, "'../../x.npy' is outside the",
      bundle=True),
    C("member /abs/x", ("inspect", lambda f: unsafe_name(f, "/abs/x.npy")), 2, "is outside the bundle layout",
      bundle=True),
    C("member twice", ("inspect", duplicate_member), 2, "appears twice", bundle=True),
    C("declared dtype differs", ("inspect", dtype_lie), 2, "holds float32, meta.json says float64", bundle=True),
    C("options as a list", ("inspect", options_list), 2, "runs[0].options must be an object, not an array",
      bundle=True),
    C("deflate bomb meta.json", ("inspect", meta_bomb), 2, "meta.json declares", "over the limit", bundle=True),
    C("forged member size", ("inspect", forged_size), 2, "more than deflate can produce", bundle=True),
    C("bundle is a folder", ("inspect", "m"), 2, "is a folder, not a .icmp file"),
    C("baseline with a bad member", ("check", M, "--baseline", lambda f: unsafe_name(f, "../x.npy")), 2,
      "outside the bundle layout", bundle=True),
    # 8. files that are not what they should be
    C("truncated npz", RUN + ("--inputs", truncated_npz), 2, "cut.npz", "is corrupt"),
    C("bad CRC npz", RUN + ("--inputs", bad_crc_npz), 2, "crc.npz", "is corrupt", "CRC"),
    C("CSV called .npz", RUN + ("--inputs", csv_npz), 2, "is not an .npz or .npy file", "x0,x1"),
    C("empty npz", RUN + ("--inputs", empty_npz), 2, "is empty"),
    C("folder as inputs", RUN + ("--inputs", folder_npz), 2, "--inputs", "is a folder, not an .npz or .npy file"),
    C("absurd npy header", RUN + ("--inputs", absurd_npy), 2, "huge.npy: its header declares 1000000000000x4 float32"),
    C("absurd --shape", ("compare", "dyn.onnx", "-b", "ort", "--shape", "batch=1000000000000", "--shape", "z=2x3"), 2,
      "the random feeds need", "of memory"),
    C("absurd --samples", ("compare", M, "-b", "ort", "--samples", "100000000000"), 2, "the random feeds need"),
    C("json onto a full device", RUN + ("--json", "/dev/full"), 2, "cannot write /dev/full: no space left",
      runs=True),
    C("a sequence input", ("compare", sequence_input, "-b", "ort"), 2, "input 's' is a sequence, not a tensor"),
]


def materialize(case: Case, folder: Path) -> list[str]:
    """Build the case's bad files in `folder` (which holds base()); its command line, paths relative to it."""
    args: list[str] = []
    for a in case.args:
        if callable(a):
            made = a(folder)
            if made is not None:
                args.append(os.path.relpath(made, folder))
        else:
            args.append(a)
    return args


if __name__ == "__main__":
    out = Path(sys.argv[1])  # one folder per case below it
    good = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else None  # a bundle of m/model.onnx, for those cases
    out.mkdir(parents=True, exist_ok=False)
    for n, case in enumerate(CASES):
        if case.needs_bundle and good is None:
            print(f"{case.name}: skipped (give a bundle of m/model.onnx as the second argument)")
            continue
        folder = out / f"{n:02d}-{case.name.replace(' ', '-').replace('/', '_')}"
        folder.mkdir()
        base(folder, good)
        args = materialize(case, folder)
        print(f"{case.name}: (cd {folder} && infercmp {' '.join(args)})  -> exit {case.code}")
