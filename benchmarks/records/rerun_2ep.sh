#!/bin/bash
# The default job's first two epochs again on the same machine, stopped by SIGTERM once
# epoch 3 starts, and their history compared with the full run's history.csv.
# Run from the repository root: bash benchmarks/records/rerun_2ep.sh
here=results/default_run/d-30ep
date; lscpu | grep -E "Model name|^CPU\(s\)|CPU family"; git log --oneline -1
echo '$ .venv/bin/python train.py --run-dir runs/rerun-2ep   (SIGTERM at "Epoch 3/30")'
.venv/bin/python train.py --run-dir runs/rerun-2ep > /tmp/rerun-console.txt 2>&1 &
pid=$!
until grep -q "Epoch 3/30" /tmp/rerun-console.txt 2>/dev/null || ! kill -0 $pid 2>/dev/null; do sleep 2; done
kill -TERM $pid; wait $pid; echo "exit status $?"
cat /tmp/rerun-console.txt; date
cp runs/rerun-2ep/history.csv $here/rerun-2ep/history.csv
.venv/bin/python - "$here/history.csv" runs/rerun-2ep/history.csv <<'PY'
import csv, sys
full, rerun = (list(csv.DictReader(open(path))) for path in sys.argv[1:])
keys = [key for key in rerun[0] if key not in ("epoch", "epoch_time_s")]
differences = [abs(float(a[key]) - float(b[key])) for a, b in zip(full, rerun) for key in keys]
differ = [(a["epoch"], key) for a, b in zip(full, rerun) for key in keys
          if round(float(a[key]), 4) != round(float(b[key]), 4)]
print(f"epochs rerun: {len(rerun)}; figures compared: {len(differences)} (the epoch times left out)")
print(f"largest difference: {max(differences):.3g}; figures that differ at the fourth decimal: {differ or 'none'}")
PY
