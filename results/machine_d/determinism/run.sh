#!/bin/bash
# Issue #37's determinism check on machine D (Zen 5, AVX-512, oneDNN on by TensorFlow's own
# choice), from the repository root:
#   bash results/machine_d/determinism/run.sh [cost|ten]   (both without an argument)
# cost.txt: where the gradient sums stop being fixed, and the fix (Grappler's memory
# optimizer off) against TensorFlow's defaults in turns, at the default job's batch;
# ten_runs.txt: tests/test_determinism.py ten times in a row (two identical trainings
# while a third process loads both cores).
set -u
out=results/machine_d/determinism
part=${1:-all}
if [ "$part" = all ] || [ "$part" = cost ]; then
    .venv/bin/python benchmarks/determinism.py --rounds 3 --image-size 64 --batch-size 128 > $out/cost.txt 2>&1
fi
if [ "$part" = all ] || [ "$part" = ten ]; then
    {
        lscpu | grep -E 'Model name|^CPU\(s\)'; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo
        date -u; git log -1 --format='commit %h'
        for i in $(seq 10); do
            echo "run $i"; .venv/bin/python -m pytest -q tests/test_determinism.py 2>&1 | tail -1
        done
    } > $out/ten_runs.txt
fi
