#!/bin/bash
# Issue #37's determinism evidence on machine C, from the repository root:
#   bash results/machine_c/determinism/run.sh
# cost.txt: where the gradient sums stop being fixed, and the fix against TensorFlow's
# default in turns (benchmarks/determinism.py); ten_runs.txt: tests/test_determinism.py ten
# times in a row (two identical trainings while a third process loads both cores).
set -u
out=results/machine_c/determinism
.venv/bin/python benchmarks/determinism.py --rounds 3 > $out/cost.txt 2>&1
{
    lscpu | grep -E 'Model name|^CPU\(s\)'; grep -m1 'cpu family' /proc/cpuinfo; date -u; git log -1 --format='commit %h'
    for i in $(seq 10); do
        echo "run $i"; .venv/bin/python -m pytest -q tests/test_determinism.py 2>&1 | tail -1
    done
} > $out/ten_runs.txt
