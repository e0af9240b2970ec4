"""The compile and first training step of GoogLeNet (bn, 49x49, batch 32, three heads),
with the optimizer built by Keras inside the first traced step ("lazy", Keras 3.15's
way outside a strategy's scope: `compile_for_training` with its eager build skipped)
and built eagerly by `compile_for_training` ("eager"),
in turns, each in a fresh Keras session of one process, with and without `--ema`'s
moving average. Run from the repository root:

    .venv/bin/python benchmarks/first_step.py > results/machine_d/first-step/output.txt
"""

import subprocess
import time

import numpy as np

from inception_tf.startup import runtime

runtime.quiet_import_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from inception_tf import GoogLeNet  # noqa: E402
from inception_tf.tasks.compiling import compile_for_training  # noqa: E402

print(subprocess.run("lscpu | grep -E '^(Model name|CPU family|Model|CPU\\(s\\)):'", shell=True,
                     capture_output=True, text=True).stdout.strip())
print("oneDNN:", runtime.onednn_enabled(), "keras", keras.__version__)
x, y = np.random.rand(32, 49, 49, 3).astype("float32"), np.random.randint(0, 10, 32)
for turn in range(3):
    for ema in (None, 0.9):
        for way in ("lazy", "eager"):
            keras.backend.clear_session()
            model = GoogLeNet(num_classes=10, input_shape=(49, 49, 3), variant="bn")
            start = time.perf_counter()
            build = keras.optimizers.SGD.build
            if way == "lazy":  # compile_for_training's eager build skipped: Keras builds it in the step
                keras.optimizers.SGD.build = lambda self, variables: None if tf.executing_eagerly() else build(self, variables)
            try:
                compile_for_training(model, weight_decay=5e-3, ema_momentum=ema)
                model.train_on_batch(x, [y, y, y])
            finally:
                keras.optimizers.SGD.build = build
            print(f"turn {turn} ema {ema} {way}: compile + first step {time.perf_counter() - start:.1f} s", flush=True)
