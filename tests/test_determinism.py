"""Two identical training processes end with the same weights, bit for bit, while a third
loads a core (`keras_fixes.deterministic_gradient_sums`: without it, TensorFlow sums a
tensor's gradients in the order the thread scheduling delivers them, and the same
processes end apart)."""

import json
import os
import runpy
import subprocess
import sys

from runs import ROOT, env

SCRIPT = ROOT / "benchmarks" / "determinism.py"
RESULT = runpy.run_path(str(SCRIPT))["RESULT"]  # the line its processes report on (loads no TensorFlow)
# bn at 64x64, batch 64 (the sums are large enough there for TensorFlow to reorder them),
# as the package loads TensorFlow ("fixed"), under the tests' runtime (conftest.py). The
# negative control, INCEPTION_TF_DETERMINISM_SETTING=tf (TensorFlow's defaults), shows the
# test failing without the fix: results/reproducibility/e-determinism/.
SETTING = os.environ.get("INCEPTION_TF_DETERMINISM_SETTING", "fixed")
CHILD = ["--child", SETTING, "--image-size", "64", "--batch-size", "64", "--warmup", "2", "--steps", "4"]
# A third process keeping a core busy with matrix products until killed. One thread is
# enough to set the trainings' threads apart (without the fix, the two ended apart in 3
# rounds of 3); a thread per core made the test a third longer and slowed the suite's
# other worker for as long. At the lowest priority it takes every cycle the trainings'
# threads leave while they wait, which is what moves their timing (without the fix they
# still ended apart, 4 runs of 4), and yields to the suite's other workers.
LOAD = "import numpy as np\na = np.ones((1024, 1024), np.float32)\nwhile True:\n    a = (a @ a) * (1 / 1024)\n"
LOAD_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _digest(output):
    found = [line for line in output.splitlines() if line.startswith(RESULT)]
    assert found, output[-3000:]
    return json.loads(found[-1][len(RESULT):])["sha256"]


def test_two_identical_trainings_under_load_end_with_the_same_weights():
    load = subprocess.Popen([sys.executable, "-c", LOAD], env={**env(), **LOAD_THREADS}, preexec_fn=lambda: os.nice(19))
    try:
        runs = [subprocess.Popen([sys.executable, str(SCRIPT), *CHILD], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env()) for _ in range(2)]
        outputs = [run.communicate(timeout=900)[0] for run in runs]
        assert load.poll() is None, "the load ended before the trainings did"
    finally:
        load.kill()
        load.wait()
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
    first, second = (_digest(output) for output in outputs)
    assert first == second, f"the same training twice ended with different weights: {first} and {second}"
