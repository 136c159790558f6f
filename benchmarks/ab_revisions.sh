#!/usr/bin/env bash
# Wall and CPU time of `infercmp compare` at two revisions of comparator/, alternated round by round so that the
# machine's drift weighs on both alike (the machines are noisy: read the medians side by side).
#
#   bash benchmarks/ab_revisions.sh REV_A REV_B ROUNDS MODEL [compare options...]
#   bash benchmarks/ab_revisions.sh c826b74 HEAD 8 ~/.cache/infercmp/bench/light/resnet50-seed0.onnx -b ort,ort:opt=disable
#
# Each round checks out comparator/ at each revision in turn (byte-compiled, as an installation is), runs
# `python -m comparator.cli compare MODEL OPTIONS --json` in a scratch folder, and records wall, user and system
# seconds (the process and its workers). comparator/ is put back at HEAD at the end, also on an interrupt; the
# script refuses to start while comparator/ has uncommitted changes, which the checkouts would overwrite.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 REV_A REV_B ROUNDS MODEL [compare options...]" >&2; exit 2; }
a=$1 b=$2 rounds=$3
[ -f "$4" ] || { echo "error: no model file $4" >&2; exit 2; }
model=$(realpath "$4")  # the runs happen in a scratch folder
shift 4
cd "$(dirname "$0")/.."
root=$PWD
py=$root/.venv/bin/python
if [ -n "$(git status --porcelain -- comparator)" ]; then
  echo "error: comparator/ has uncommitted changes; commit or stash them first" >&2
  exit 2
fi
scratch=$(mktemp -d)
restore() { git -C "$root" checkout -q HEAD -- comparator; "$py" -m compileall -q "$root/comparator"; rm -rf "$scratch"; }
trap restore EXIT
for _ in $(seq "$rounds"); do
  for rev in "$a" "$b"; do
    git checkout -q "$rev" -- comparator
    "$py" -m compileall -q comparator
    (cd "$scratch" && /usr/bin/time -f "$rev %e %U %S" -a -o "$scratch/times" \
      "$py" -m comparator.cli compare "$model" "$@" --json r.json >/dev/null 2>&1) || true
  done
done
"$py" - "$scratch/times" "$a" "$b" <<'EOF'
import statistics, sys
rows = [r for r in (line.split() for line in open(sys.argv[1])) if len(r) == 4 and r[0] in sys.argv[2:]]
failed = sum(line.startswith("Command exited") for line in open(sys.argv[1]))
if failed:
    print(f"error: {failed} runs exited with a status other than 0 (1: a comparison beyond tolerance; 2 and 3: "
          "errors): these times are not those of the comparison", file=sys.stderr)
for rev in sys.argv[2:]:
    wall = sorted(float(r[1]) for r in rows if r[0] == rev)
    cpu = [float(r[2]) + float(r[3]) for r in rows if r[0] == rev]
    print(f"{rev:>12}: wall median {statistics.median(wall):.2f} s (min {wall[0]:.2f}, max {wall[-1]:.2f}), "
          f"CPU median {statistics.median(cpu):.2f} s, {len(wall)} runs")
sys.exit(1 if failed else 0)
EOF
