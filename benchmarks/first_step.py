"""The compile and first training step of GoogLeNet (bn, 49x49, batch 32, three heads),
by what `compile_for_training` builds before the step:

- "nothing": Keras 3.15's own way outside a strategy's scope, the optimizer, metrics and
  loss trackers all created inside the first traced step;
- "optimizer": the optimizer built eagerly, the metrics and loss trackers in the step
  (which makes TensorFlow trace the step twice, tensorflow/tensorflow#48851);
- "everything": what `compile_for_training` does (`keras_fixes.build_metrics`).

In turns, each in a fresh Keras session of one process, with and without `--ema`'s
moving average; the CPU time is the process's, over the compile and the step. Run from
the repository root:

    .venv/bin/python benchmarks/first_step.py > results/first_run/d-first-step/output.txt
"""

import subprocess
import time

import numpy as np

from inception_tf.startup import loading
from inception_tf.startup import settings

loading.quiet_import_tensorflow()

import keras  # noqa: E402

from inception_tf import GoogLeNet, keras_fixes  # noqa: E402
from inception_tf.tasks.compiling import compile_for_training  # noqa: E402

BUILDS = {
    "nothing": lambda model, spec: None,
    "optimizer": lambda model, spec: model.optimizer.build(model.trainable_variables),
    "everything": keras_fixes.build_metrics,
}

print(subprocess.run("lscpu | grep -E '^(Model name|CPU family|Model|CPU\\(s\\)):'", shell=True,
                     capture_output=True, text=True).stdout.strip())
print("oneDNN:", settings.onednn_enabled(), "keras", keras.__version__)
x, y = np.random.rand(32, 49, 49, 3).astype("float32"), np.random.randint(0, 10, 32)
built_by_compile = keras_fixes.build_metrics
for turn in range(3):
    for ema in (None, 0.9):
        for way, build in BUILDS.items():
            keras.backend.clear_session()
            model = GoogLeNet(num_classes=10, input_shape=(49, 49, 3), variant="bn")
            start, cpu = time.perf_counter(), time.process_time()
            keras_fixes.build_metrics = build
            try:
                compile_for_training(model, weight_decay=5e-3, ema_momentum=ema)
                model.train_on_batch(x, [y, y, y])
            finally:
                keras_fixes.build_metrics = built_by_compile
            print(f"turn {turn} ema {ema} {way}: compile + first step {time.perf_counter() - start:.1f} s, "
                  f"{time.process_time() - cpu:.1f} CPU-s", flush=True)
