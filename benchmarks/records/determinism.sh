#!/bin/bash
# Issue #37's determinism evidence on this machine, from the repository root:
#   bash benchmarks/records/determinism.sh OUT [cost|ten|all] [benchmarks/determinism.py flags...]
# OUT/cost.txt: where the gradient sums stop being fixed, and the fix (Grappler's memory
# optimizer off) against TensorFlow's defaults in turns; OUT/ten_runs.txt:
# tests/test_determinism.py ten times in a row (two identical trainings while a third
# process loads both cores). Machine C ran it with no flags
# (results/reproducibility/c-determinism), machine D with `--image-size 64 --batch-size 128`,
# the default job's (results/reproducibility/d-determinism).
set -u
out=${1:?OUT: the folder of the record}; part=${2:-all}; shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
if [ "$part" = all ] || [ "$part" = cost ]; then
    .venv/bin/python benchmarks/determinism.py --rounds 3 "$@" > "$out/cost.txt" 2>&1
fi
if [ "$part" = all ] || [ "$part" = ten ]; then
    {
        lscpu | grep -E 'Model name|^CPU\(s\)'; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo
        date -u; git log -1 --format='commit %h'
        for i in $(seq 10); do
            echo "run $i"; .venv/bin/python -m pytest -q tests/test_determinism.py 2>&1 | tail -1
        done
    } > "$out/ten_runs.txt"
fi
