#!/bin/bash
# Issue #37's determinism check on machine D (Zen 5, AVX-512, oneDNN on by TensorFlow's own
# choice), from the repository root: where the gradient sums stop being fixed, and the fix
# (Grappler's memory optimizer off) against TensorFlow's defaults in turns, at the default
# job's batch.
set -u
.venv/bin/python benchmarks/determinism.py --rounds 3 --image-size 64 --batch-size 128 > results/machine_d/determinism/cost.txt 2>&1
