#!/usr/bin/env bash
# The accelerator check for one GPU machine with JAX but no TensorFlow/TFDS and no internet, in under 12 minutes.
#   bash benchmarks/device_run.sh [OUT]      (from anywhere; OUT defaults to ./device-results)
# Needs the exported datasets beside the project: data/cifar10-course.npz and data/mnist.npz (made on a machine
# with the data by the data task's export; see docs/accelerator.md). Leaves at most 9 files in OUT/results/ and
# the same as OUT/results.tar.gz: env.txt, end_to_end.jsonl, all.log, metrics.jsonl, report.html, ablation.json,
# summary.txt.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-device-results}
PY=${PYTHON:-python}
RES="$OUT/results"
mkdir -p "$RES" "$OUT/work"
t0=$(date +%s)
export TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_PREALLOCATE=false
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())" 2>&1
  git rev-parse HEAD 2>/dev/null
} >"$RES/env.txt"

for f in data/cifar10-course.npz data/mnist.npz; do
  [ -f "$f" ] || { echo "missing $f (copy the exported datasets beside the project)" | tee -a "$RES/summary.txt"; }
done

# 1. The end-to-end benchmark: the real train_and_evaluate on generated arrays of the real sizes (4 min at most).
timeout 240 "$PY" -m benchmarks.end_to_end >"$RES/end_to_end.jsonl" 2>"$OUT/work/end_to_end.err"
echo "end_to_end: exit $? after $(( $(date +%s) - t0 )) s" >>"$RES/summary.txt"
tail -5 "$OUT/work/end_to_end.err" >>"$RES/summary.txt"

# 2. Every task of the report with 5 seeds, from the exported files (4.5 min at most).
t1=$(date +%s)
timeout 270 "$PY" run.py --task all --seeds 5 --data-dir data/cifar10-course.npz --mnist data/mnist.npz \
  --out "$OUT/work/all" --no-progress >"$RES/all.log" 2>&1
echo "run.py --task all --seeds 5: exit $? in $(( $(date +%s) - t1 )) s" >>"$RES/summary.txt"

# 3. The ablation (docs/ablation.md), shrunk to 3 seeds x 4 epochs: its shared program is 15 models vmapped as one
# program, each other variant a program of 3 (2.5 min at most).
t2=$(date +%s)
timeout 150 "$PY" run.py --task ablation --seeds 3 --epochs 4 --data-dir data/cifar10-course.npz \
  --out "$OUT/work/ablation" --no-progress >"$OUT/work/ablation.log" 2>&1
echo "run.py --task ablation --seeds 3 --epochs 4: exit $? in $(( $(date +%s) - t2 )) s" >>"$RES/summary.txt"
tail -3 "$OUT/work/ablation.log" >>"$RES/summary.txt"
[ -f "$OUT/work/ablation/ablation.json" ] && cp "$OUT/work/ablation/ablation.json" "$RES/ablation.json"

# 4. Bring back: every metrics.json as one JSON line (with its path), the report, the summary.
"$PY" - "$OUT/work/all" "$OUT/work/ablation" >"$RES/metrics.jsonl" <<'PY'
import json, os, sys
for root in sys.argv[1:]:
  for d, _, files in sorted(os.walk(root)):
    if "metrics.json" in files:
        print(json.dumps({"path": os.path.relpath(d, os.path.dirname(root)), **json.load(open(os.path.join(d, "metrics.json")))}))
PY
report=$(find "$OUT/work/all" -name report.html | head -1)
[ -n "$report" ] && cp "$report" "$RES/report.html"
echo "total $(( $(date +%s) - t0 )) s" >>"$RES/summary.txt"
tar czf "$OUT/results.tar.gz" -C "$OUT" results
cat "$RES/summary.txt"
