#!/bin/bash
# `train.py --preset quick` as a first run (an empty store of measurements), each console
# line stamped with the seconds since the command started; then the same command again
# with the measurements stored, into a new run directory. The consoles go to OUT
# (default: this folder): `bash benchmarks/records/first_run.sh results/first_run/e-quick`.
cd "$(dirname "$0")/../.."
out=${1:-results/first_run/c-quick}
mkdir -p "$out"
stamp() { local start=$1; while IFS= read -r line; do printf '%6.1f  %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"; done; }
machine() { echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(grep -m1 -ow 'avx2\|fma\|avx512f\|avx512_bf16\|avx512_vnni\|amx_bf16' /proc/cpuinfo | sort -u | xargs)"; }
cache=$(mktemp -d)
for run in first stored; do
  rm -rf /tmp/quick-$run
  {
    date; machine; git log -1 --format='commit: %h'
    echo "\$ INCEPTION_TF_CACHE_DIR=$cache python train.py --preset quick --run-dir /tmp/quick-$run"
    start=$(date +%s.%N)
    INCEPTION_TF_CACHE_DIR=$cache .venv/bin/python -u train.py --preset quick --run-dir /tmp/quick-$run 2>&1 | stamp "$start"
    printf 'exit %s, %.1f s\n' "${PIPESTATUS[0]}" "$(echo "$(date +%s.%N) - $start" | bc)"
  } > "$out/$run.txt"
done
