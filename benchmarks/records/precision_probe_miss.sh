#!/bin/bash
# The precision probe's miss on machine E (Intel Xeon with AMX, 2 cores), 2026-12-02:
# whole training steps in mixed_bfloat16 against float32, in one process each size,
# at the default job's batch (128) and at 64; then the convolution check's figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
export INCEPTION_TF_CACHE_DIR=$(mktemp -d)
for batch in 128 64; do
  "$py" benchmarks/throughput.py --variants bn --image-size 49 --batch-size $batch --precision mixed_bfloat16 \
    --no-saved-model --repeats 2 --seconds 4
done
"$py" - <<'PY'
from inception_tf.startup import precision, runtime
from inception_tf.tasks import timing
runtime.quiet_import_tensorflow()
for size, batch in ((49, 128), (64, 128)):
    slower = timing.convolution_slowdown(precision.BFLOAT16, precision.Workload("bn", size, batch))
    print(f"convolution check, bn {size}/{batch}: mixed_bfloat16's 3x3 convolution takes {slower:.2f}x float32's")
PY
