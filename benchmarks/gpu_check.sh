#!/usr/bin/env bash
# The torch backend on a CUDA GPU: cudnn_benchmark x cudnn_deterministic x tf32 (8 variants) on models/cnn.onnx
# and ResNet-50 (seeded weights, built from the onnx wheel's light model), each variant run --repeat 5 times,
# against the CPU float64 oracle (ref:dtype=float64, with torch:dtype=float64 checking it). Writes a markdown
# table: per variant its bit-identity class, distinct outputs over its runs, run-to-run spread and max abs
# error against both float64 oracles. See docs/gpu.md.
#
#   benchmarks/gpu_check.sh --fetch           # here, with network: the wheels infercmp needs into .whl/
#   benchmarks/gpu_check.sh                   # on the GPU machine (offline): .whl/ must travel with the tree
#   benchmarks/gpu_check.sh --device cpu      # dry run of the whole pipeline without a GPU (CPU knobs instead)
#
# Options: --device cuda|cpu (default cuda), --models cnn,resnet50, --repeat N (5), --jobs N (0: one worker per
# core), --out DIR (default $OUT when set, else out/gpu). Environment: PYTHON (the interpreter that has torch;
# default: the first of python3, python, /usr/bin/python3, /usr/local/bin/python3, /opt/conda/bin/python that
# imports it), GPU_CHECK_INSTALL=auto|venv|target|unzip (how the wheels are installed; default auto: the first
# that works).
#
# Exit status: 0 table written (whatever the numbers), 2 no CUDA device (or no torch), 1 anything else failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WHL="$ROOT/.whl"

# What infercmp needs beyond numpy, onnx, protobuf and torch (preinstalled on the GPU machine), pinned. All pure
# Python but ml_dtypes. typer 0.28.0: the newest release that neither needs pydantic (0.29 does: a binary
# pydantic_core per Python) nor click (it vendors it), and still runs on Python 3.10.
# archspec: the CPU and ISA features in every variant's provenance (without it the fingerprint falls back to the
# platform module's bare machine name); platformdirs: where the caches live (4.12.4: the last for Python 3.10).
CLI_WHEELS=(typer==0.28.0 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 shellingham==1.5.4
            annotated-doc==0.0.6 archspec==0.2.7 platformdirs==4.12.4)
# Installed only when the interpreter lacks them (onnx and torch bring the first two with them; tomli is for
# Python 3.10: tomllib is in the standard library from 3.11).
TYPING_EXTENSIONS=typing_extensions==4.16.0 ML_DTYPES=ml_dtypes==0.6.0 TOMLI=tomli==2.5.0
PY_VERSIONS=(3.10 3.11 3.12 3.13)

die() { echo "gpu_check: $*" >&2; exit 1; }

fetch() {
    local py=${FETCH_PYTHON:-}
    [[ -n $py ]] || { [[ -x $ROOT/.venv/bin/python ]] && py=$ROOT/.venv/bin/python || py=python3; }
    local dl=("$py" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q -d "$WHL")
    mkdir -p "$WHL"
    local v abi arch
    for v in "${PY_VERSIONS[@]}"; do
        # Once per version so that pip checks each wheel's Requires-Python; a wheel already there is kept.
        "${dl[@]}" --python-version "$v" "${CLI_WHEELS[@]}" "$TYPING_EXTENSIONS"
        abi=cp${v/./}
        for arch in x86_64 aarch64; do
            "${dl[@]}" --python-version "$v" --implementation cp --abi "$abi" --platform "manylinux2014_$arch" \
                --platform "manylinux_2_17_$arch" --platform "manylinux_2_27_$arch" --platform "manylinux_2_28_$arch" \
                "$ML_DTYPES"
        done
    done
    "${dl[@]}" --python-version 3.10 "$TOMLI"
    ls -1 "$WHL"
    echo "$(du -sh "$WHL" | cut -f1) in $WHL; carry it to the GPU machine (it is git-ignored)"
}

DEVICE=cuda MODELS=cnn,resnet50 REPEAT=5 JOBS=0 OUTDIR=${OUT:-}
while [[ $# -gt 0 ]]; do
    case $1 in
        --fetch) fetch; exit 0 ;;
        --device) DEVICE=$2; shift 2 ;;
        --models) MODELS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --out) OUTDIR=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $DEVICE == cuda || $DEVICE == cpu ]] || die "--device cuda or cpu, not $DEVICE"
OUTDIR=${OUTDIR:-$ROOT/out/gpu}
SCRATCH=$ROOT/out/gpu/scratch  # the environment and ResNet-50 (100 MB): not under $OUT, which all comes back
mkdir -p "$OUTDIR" "$SCRATCH"
START=$SECONDS

# --- the machine ------------------------------------------------------------------------------------------------
# The interpreter that has torch: $PYTHON, else the first of these that imports it.
PY=${PYTHON:-}
if [[ -z $PY ]]; then
    for candidate in python3 python /usr/bin/python3 /usr/local/bin/python3 /opt/conda/bin/python; do
        command -v "$candidate" >/dev/null || continue
        [[ -z $PY ]] && PY=$candidate
        if "$candidate" -c "import torch" 2>/dev/null; then PY=$candidate; break; fi
    done
fi
[[ -n $PY ]] && command -v "$PY" >/dev/null || die "no Python found (set PYTHON to the interpreter that has torch)"
ENV_TXT=$OUTDIR/environment.txt
{
    echo "host: $(uname -srm)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /' \
            || echo "gpu: nvidia-smi failed"
    else
        echo "gpu: no nvidia-smi"
    fi
    "$PY" - <<'EOF' || true
import importlib, sys
print(f"python: {sys.version.split()[0]} ({sys.executable})")
for name in ("numpy", "onnx", "onnxruntime", "ml_dtypes", "torch"):
    try:
        mod = importlib.import_module(name)
        print(f"{name}: {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"{name}: missing ({type(exc).__name__}: {exc})")
try:
    import torch
    print(f"torch cuda build: {torch.version.cuda}, cudnn: {torch.backends.cudnn.version()}, "
          f"cuda available: {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}"
          + "".join(f", {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())))
except Exception:
    pass
EOF
} | tee "$ENV_TXT"

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY cannot import torch; nothing was run (set PYTHON to the interpreter that has torch)"
    exit 2
fi
if [[ $DEVICE == cuda ]] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
then
    echo "gpu_check: no CUDA device: torch $("$PY" -c 'import torch; print(torch.__version__)') sees no GPU;" \
         "nothing was run (--device cpu is the dry run)"
    exit 2
fi

# --- infercmp's own dependencies, offline from .whl/ ------------------------------------------------------------
ls "$WHL"/*.whl >/dev/null 2>&1 || die "no wheels in $WHL: run 'benchmarks/gpu_check.sh --fetch' where there is network"
wanted=("${CLI_WHEELS[@]}")
"$PY" -c "import typing_extensions" 2>/dev/null || wanted+=(typing_extensions)
"$PY" -c "import ml_dtypes" 2>/dev/null || wanted+=(ml_dtypes)
"$PY" -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>/dev/null \
    || "$PY" -c "import tomli" 2>/dev/null || wanted+=(tomli)
# Unpinned names for the fallbacks: pip picks the wheel of this Python from .whl/.
names=()
for w in "${wanted[@]}"; do names+=("${w%%==*}"); done

check_env() {  # $1: python; the environment must see torch, onnx and infercmp's CLI (else: the import error)
    local why
    why=$("$1" -c "import torch, onnx, numpy, ml_dtypes, typer, rich, archspec.cpu, platformdirs, comparator.cli" \
        2>&1) && return 0
    echo "  $(tail -n 1 <<< "$why")"
    return 1
}
export PIP_ROOT_USER_ACTION=ignore  # pip run as root on the GPU machine: no warning
pip_offline=(-m pip install --no-index --find-links "$WHL" --no-deps --disable-pip-version-check -q)

install_venv() {
    # A venv made from an interpreter that is itself in a venv would see the base interpreter's packages, not
    # torch's: then the target method is the one that works.
    if ! "$PY" -c "import sys; sys.exit(sys.prefix != sys.base_prefix)"; then
        echo "  $PY runs inside a venv: a venv made from it would not see its packages"
        return 1
    fi
    rm -rf "$SCRATCH/venv"
    "$PY" -m venv --system-site-packages "$SCRATCH/venv" || return 1
    RUNPY=$SCRATCH/venv/bin/python
    "$RUNPY" "${pip_offline[@]}" "${names[@]}" || return 1
    # infercmp from this working tree, as an editable install would put it (no build backend needed offline).
    echo "$ROOT" > "$("$RUNPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/infercmp-tree.pth"
}
install_target() {
    rm -rf "$SCRATCH/site"
    "$PY" "${pip_offline[@]}" --target "$SCRATCH/site" "${names[@]}" || return 1
    RUNPY=$PY
    export PYTHONPATH="$ROOT:$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
}
install_unzip() {  # no pip at all: a wheel is a zip of what site-packages gets
    rm -rf "$SCRATCH/unzipped"
    "$PY" - "$WHL" "$SCRATCH/unzipped" "${names[@]}" <<'EOF' || return 1
import platform, re, sys, zipfile
from pathlib import Path
whl, dest, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
tag, arch = f"cp{sys.version_info[0]}{sys.version_info[1]}", platform.machine()
for name in names:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    found = [w for w in sorted(whl.glob("*.whl")) if w.name.lower().startswith(stem + "-")
             and ("-none-any" in w.name or (f"-{tag}-" in w.name and arch in w.name))]
    if not found:
        sys.exit(f"no wheel of {name} for {tag} {arch} in {whl}")
    zipfile.ZipFile(found[-1]).extractall(dest)
EOF
    RUNPY=$PY
    export PYTHONPATH="$ROOT:$SCRATCH/unzipped${PYTHONPATH:+:$PYTHONPATH}"
}

method=${GPU_CHECK_INSTALL:-auto}
saved_pythonpath=${PYTHONPATH:-}
installed=""
for m in venv target unzip; do
    [[ $method == auto || $method == "$m" ]] || continue
    export PYTHONPATH=$saved_pythonpath
    [[ -n $PYTHONPATH ]] || unset PYTHONPATH
    echo "installing ${names[*]} from $WHL ($m)"
    if "install_$m" && check_env "$RUNPY"; then installed=$m; break; fi
    echo "  the $m method did not give a working environment"
done
[[ -n $installed ]] || die "could not install infercmp's dependencies from $WHL (GPU_CHECK_INSTALL=$method)"
"$RUNPY" - "$installed" <<'EOF' | tee -a "$ENV_TXT"
import sys
from importlib.metadata import version

import comparator

print(f"infercmp from {comparator.__file__.rsplit('/', 2)[0]} with typer {version('typer')}, rich {version('rich')}, "
      f"ml_dtypes {version('ml_dtypes')} ({sys.argv[1]}: {sys.executable})")
EOF
echo "setup: $((SECONDS - START)) s"

# --- the models -------------------------------------------------------------------------------------------------
if [[ $DEVICE == cuda ]]; then
    VARIANTS='torch:device=cuda:cudnn_benchmark=off|on:cudnn_deterministic=off|on:tf32=off|on'
    KNOBS=cudnn_benchmark,cudnn_deterministic,tf32
else  # the dry run: three CPU switches of the same backend in their place
    VARIANTS='torch:mkldnn=on|off:deterministic=off|on:threads=1|2'
    KNOBS=mkldnn,deterministic,threads
fi
reports=() failed=()
IFS=, read -ra model_list <<< "$MODELS"
for name in "${model_list[@]}"; do
    t0=$SECONDS
    case $name in
        cnn) model=models/cnn.onnx; feeds=() ;;
        resnet50)
            if ! "$RUNPY" models/real.py --cache "$SCRATCH/real" --light resnet50 --no-fetch; then
                echo "resnet50: cannot be built from this onnx wheel's light model; skipped"
                failed+=(resnet50)
                continue
            fi
            model=$SCRATCH/real/light/resnet50-seed0.onnx; feeds=(--inputs "$SCRATCH/real/feeds/resnet50.npz") ;;
        *) die "unknown model $name (cnn, resnet50)" ;;
    esac
    json=$OUTDIR/$name.json
    rm -f "$json"
    # Exit 1 (beyond the default 1e-5 tolerance: tf32 is) and 3 (a variant failed: the table says which) still
    # give a report; 2 is a usage error.
    rc=0
    "$RUNPY" -m comparator.cli compare "$model" ${feeds[@]+"${feeds[@]}"} -b "$VARIANTS" -b torch --oracle \
        --repeat "$REPEAT" --tap outputs --jobs "$JOBS" --timeout 240 --json "$json" -q > "$OUTDIR/$name.log" 2>&1 \
        || rc=$?
    if [[ ! -f $json ]]; then
        tail -n 20 "$OUTDIR/$name.log"
        echo "$name: infercmp compare exited $rc without a report"
        failed+=("$name")
        continue
    fi
    echo "$name: infercmp compare exited $rc in $((SECONDS - t0)) s (its findings: $OUTDIR/$name.log)"
    reports+=("$json")
done
[[ ${#reports[@]} -gt 0 ]] || die "no model was compared"

TABLE=$OUTDIR/gpu_check.md
"$RUNPY" benchmarks/gpu_table.py --knobs "$KNOBS" --environment "$ENV_TXT" --elapsed $((SECONDS - START)) \
    "${reports[@]}" > "$TABLE"
cat "$TABLE"
echo "table: $TABLE; reports: ${reports[*]}"
[[ ${#failed[@]} -eq 0 ]] || die "no table for ${failed[*]} (see above)"
