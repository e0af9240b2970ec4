#!/bin/bash
# Issue #38's four findings and two smaller ones, rerun as a user meets them: each command,
# what it printed (stderr and stdout) and its exit code.
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
work=$(mktemp -d)
echo "$(date); machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; commit $(git log -1 --format=%h)"
show() { echo; echo "\$ $*"; "$@" > "$work/out" 2>&1; code=$?; grep -Ev '^(Epoch|[0-9]+/[0-9]+ )' "$work/out" | tail -4; echo "exit $code"; }
TINY="--dataset fashion_mnist --image-size 49 --batch-size 64 --limit 1024 --epochs 2 --precision float32 --backup-every 4 --test-crops 1"
export INCEPTION_TF_RUNTIME=default
# A step backup: SIGTERM once the first one is written (exit 75).
$PY train.py $TINY --run-dir "$work/run" > "$work/train.log" 2>&1 & pid=$!
until [ -f "$work/run/backup/state.json" ]; do sleep 1; done; kill -TERM $pid; wait $pid; echo "train.py stopped by SIGTERM: exit $?"
weights=$(ls "$work"/run/backup/*.weights.h5)
cp "$weights" "$work/weights.bak"; cp "$work/run/backup/state.json" "$work/state.bak"
head -c 4000 "$work/weights.bak" > "$weights"
echo "1. the step backup's weights cut to 4,000 bytes:"; show $PY train.py $TINY --run-dir "$work/run"
cp "$work/weights.bak" "$weights"; printf '{"epoch": "x"' > "$work/run/backup/state.json"
echo; echo "2. backup/state.json corrupt:"; show $PY train.py $TINY --run-dir "$work/run"
cp "$work/state.bak" "$work/run/backup/state.json"
echo; echo "   both restored, the same command resumes:"; show $PY train.py $TINY --run-dir "$work/run"
mkdir "$work/notes"; echo "no image" > "$work/notes/readme.txt"
echo; echo "3. predict on a folder without images:"; show $PY -m inception_tf predict --model "$work/run/model.keras" "$work/notes"
unset INCEPTION_TF_RUNTIME
echo; echo "4. SIGTERM during a first run's measurements (after 15 s):"
INCEPTION_TF_CACHE_DIR="$work/cache" $PY train.py --preset quick --run-dir "$work/quick" > "$work/quick.log" 2>&1 & pid=$!
sleep 15; kill -TERM $pid; wait $pid; echo "exit $?"; sleep 1
echo "probe processes left: $(pgrep -fc 'inception_tf.tasks.timing')"; echo "stored: $(ls "$work/cache" 2>/dev/null | grep -v '^\.' | xargs)"
echo; echo "smaller: INCEPTION_TF_IMAGENET_SHA1=zzz"; INCEPTION_TF_IMAGENET_SHA1=zzz show $PY -m inception_tf predict --model imagenet "$work/notes/readme.txt"
rm -rf "$work"
