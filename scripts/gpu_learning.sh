#!/usr/bin/env bash
# Learning curves of the tuned and the seed configuration, 3 seeds each, all six in parallel processes on one GPU.
#
# Usage: scripts/gpu_learning.sh OUT_DIR [TUNED_SECONDS [SEED_SECONDS]]
#   OUT_DIR/tuned and OUT_DIR/seed are `dqnbench sweep` folders (seed<N>/durations.csv, summary.json, curves.png).
#   Each sweep stops at its time limit as if Ctrl-C had been pressed: every finished episode is kept and the
#   summary is written from what was reached. The tuned runs stop by themselves at 150k environment steps.
#   Defaults: 530 s for tuned, 240 s for seed (the seed configuration is only there to compare against; 0
#   skips it).
# Environment: PYTHON (default python3), DEVICE (default cuda; cpu only to try the script out), TUNED_ARGS
#   (extra `dqnbench sweep` options for the tuned runs, e.g. "--learning-rate 1e-4" to try a variant).
set -euo pipefail
# Job control: without it bash starts background jobs with SIGINT ignored, and `timeout -s INT` could not stop them.
set -m

out=${1:?usage: scripts/gpu_learning.sh OUT_DIR [TUNED_SECONDS [SEED_SECONDS]]}
tuned_s=${2:-530}
seed_s=${3:-240}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
if [ -e "$out" ]; then
    echo "gpu_learning.sh: $out already exists; pass a new OUT_DIR (earlier results are never replaced)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/reference${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
dqnbench=("$python" -m dqnbench.cli)

mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; nproc; "$python" -c \
    'import torch, gymnasium; print("torch", torch.__version__, "gymnasium", gymnasium.__version__)'; } >"$out/machine.txt"
cat "$out/machine.txt"
# Fail in seconds, not after the full budget, when the device or the environment is broken.
"${dqnbench[@]}" train --config tuned --device "$device" --episodes 3 --learning-starts 32 --out "$out/smoke" >"$out/smoke.log" 2>&1 ||
    { cat "$out/smoke.log"; exit 1; }

# One process per seed; 16 cores / 6 processes: 2 torch threads each (the screens are resized on the CPU).
common=(--seeds 0 1 2 --jobs 3 --threads 2 --device "$device")
read -ra tuned_args <<<"${TUNED_ARGS:-}"
timeout -s INT "$tuned_s" "${dqnbench[@]}" sweep --config tuned "${common[@]}" "${tuned_args[@]}" --out "$out/tuned" \
    >"$out/tuned.log" 2>&1 &
tuned=$!
jobs=("$tuned")
names=(tuned)
if [ "$seed_s" -gt 0 ]; then
    timeout -s INT "$seed_s" "${dqnbench[@]}" sweep --config seed --episodes 100000 --max-env-steps 150000 \
        "${common[@]}" --out "$out/seed" >"$out/seed.log" 2>&1 &
    jobs+=($!)
    names+=(seed)
fi
# timeout exits with 124 when it stopped the sweep: that is the planned end, not a failure.
status=0
for job in "${jobs[@]}"; do
    wait "$job" || [ $? -eq 124 ] || status=1
done
for name in "${names[@]}"; do
    echo "== $name"
    cat "$out/$name.log"
done
exit $status
