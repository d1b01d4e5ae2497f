#!/usr/bin/env bash
# The benchmark suite on a GPU machine: CPU and CUDA cases, CUDA required (a missing GPU fails the run).
#
#   benchmarks/gpu_run.sh OUT_DIR [extra pytest args...]
#
# Meant for a bare H100/H200 machine holding a copy of this repository: it uses .venv/bin/python when that
# runs there, else python3 (which holds PyTorch on those machines), installs the wheels in .whl/ (gymnasium,
# pygame-ce, farama-notifications: what that image lacks) into /tmp/site when gymnasium is missing, and
# imports dqnbench from reference/ when it is not installed. Writes into OUT_DIR:
#   bench-gpu-cuda.json, bench-gpu-cpu.json   pytest-benchmark JSON of each device (store both:
#                                            python -m dqnbench.bench.history store ...)
#   bench-gpu-cuda.log, bench-gpu-cpu.log     the runs' output
#   gpu.txt                                  nvidia-smi's and torch's view of the card
# A copied tree may carry a stale .git: give the code's commit as
# DQNBENCH_COMMIT=$(git rev-parse HEAD)$(git diff --quiet HEAD || echo -dirty)
# (from the shell that holds the repository) and the JSON records it, keeping what git said under commit_info.git.
# Takes about 2-3 minutes on an H100 (max 0.5 s of rounds per benchmark); stops itself after 150 + 150 s.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_run.sh OUT_DIR [pytest args...]}
shift
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out"

python=python3
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then python=.venv/bin/python; fi
if ! "$python" -c "import gymnasium" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "gymnasium is missing and there is no .whl/ to install it from" >&2; exit 1; }
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$python" -c "import dqnbench" 2>/dev/null; then
    # Not installed, so pytest finds no entry point for the conformance plugin (--dqn-impl): load it by name.
    export PYTHONPATH=$PWD/reference${PYTHONPATH:+:$PYTHONPATH} PYTEST_ADDOPTS="-p dqnbench.conformance.plugin ${PYTEST_ADDOPTS:-}"
fi

# The allocator thresholds must be in the environment before Python starts (see dqnbench.bench.facts).
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
export SDL_VIDEODRIVER=dummy PYTHONUNBUFFERED=1 DQNBENCH_REQUIRE_CUDA=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee -a "$out/gpu.txt"

# Two sessions, CUDA first, so that a slow CPU half (or a compile that runs long) cannot cost the CUDA JSON:
# pytest-benchmark writes its JSON only when a session ends, and `timeout` ends a session without one.
# -W default: warnings from another torch version stay warnings here instead of failing every benchmark.
status=0
for device in cuda cpu; do
    # 150 s each: the CPU half holds the slowest cases (the reference on one core, two ~11 s compilations).
    limit=150
    timeout "$limit" "$python" -m pytest benchmarks/ -q -p no:cacheprovider -W default --device="$device" \
        --benchmark-max-time=0.5 --benchmark-json="$out/bench-gpu-$device.json" \
        --benchmark-columns=median,iqr,rounds "$@" 2>&1 | tee "$out/bench-gpu-$device.log"
    code=${PIPESTATUS[0]}
    echo "gpu_run.sh: --device=$device: pytest exit status $code (124: stopped after ${limit} s)" \
        | tee -a "$out/bench-gpu-$device.log"
    # A session that was stopped leaves an empty JSON behind: remove it so nothing mistakes it for a result.
    [ -s "$out/bench-gpu-$device.json" ] || rm -f "$out/bench-gpu-$device.json"
    [ "$code" -ne 0 ] && status=$code
done
exit "$status"
