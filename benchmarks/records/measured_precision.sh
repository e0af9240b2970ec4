#!/bin/bash
# Benchmarks of this session, in order, with an empty precision store so the probe runs.
cd "$(dirname "$0")/../.."
export INCEPTION_TF_CACHE_DIR=/tmp/bench/cache
rm -rf /tmp/bench/cache
F='^[IWE]0000|^WARNING|^To enable'
echo "== throughput 224/32 auto"; date
.venv/bin/python benchmarks/throughput.py --variants paper bn --image-size 224 --batch-size 32 --no-saved-model --json /tmp/bench/t224.json 2>&1 | grep -Ev "$F"
echo "== oneDNN A/B, bn 64/128 float32, alternating processes"; date
for i in 1 2; do for v in 0 1; do
  echo "TF_ENABLE_ONEDNN_OPTS=$v"
  TF_ENABLE_ONEDNN_OPTS=$v .venv/bin/python benchmarks/throughput.py --variants bn --image-size 64 --batch-size 128 --precision float32 --no-saved-model --repeats 2 --seconds 4 2>&1 | grep "| bn |"
done; done
echo "== default job, one epoch on 6,400 images"; date
rm -rf /tmp/bench/epoch
.venv/bin/python train.py --limit 6400 --epochs 30 --run-dir /tmp/bench/epoch > /tmp/bench/epoch.log 2>&1 &
pid=$!
while ! grep -q "^Epoch 2/30" /tmp/bench/epoch.log 2>/dev/null; do sleep 5; if ! kill -0 $pid 2>/dev/null; then break; fi; done
kill $pid; wait $pid  # the first epoch's time is in history.csv
grep -Ev "$F" /tmp/bench/epoch.log | head -20
cat /tmp/bench/epoch/history.csv 2>/dev/null | cut -d, -f1,6
date
