"""A training step of the run's own model, timed: what the precision and runtime probes
measure (`startup.precision`, `startup.runtime`).

`time_policies` times the precisions in this process; `python -m inception_tf.tasks.timing
REQUEST` is the runtime's probe process (`startup.probes.Probe`), which loads TensorFlow
under the setting it was started with and times the steps it is asked for.
"""

import contextlib
import functools
import json
import math
import statistics
import sys
import time

from inception_tf import choices, native_stderr
from inception_tf.startup import measured
from inception_tf.startup import precision as precision_lib
from inception_tf.startup import loading, probes, settings

# The convolution check only screens out a precision the CPU emulates, an order of
# magnitude slower: one whose small convolution is merely slower can still win the whole
# step (an AMX CPU's bfloat16 did, results/precision/e-probe-miss/), so anything under this
# is left to the timed training step.
EMULATED = 4.0


class StepTimer:
    """A training step of `workload` in one policy, timed on request.

    The model is built and compiled as a run compiles it, with one random batch held in
    memory, and its first step (tracing, kernel set-up) runs at once, untimed: it raises
    whatever the kernels raise when the policy cannot train here."""

    def __init__(self, policy, workload, jit_compile=False):
        import keras
        import numpy as np

        from inception_tf.modeling.network import GoogLeNet
        from inception_tf.tasks.compiling import compile_for_training, labels_for_heads

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            size, self.batch = workload.image_size, workload.batch_size
            model = compile_for_training(
                GoogLeNet(10, (size, size, 3), variant=workload.variant, aux_heads=workload.aux_heads),
                jit_compile=jit_compile,
            )
        finally:
            keras.config.set_dtype_policy(previous)
        rng = np.random.default_rng(0)
        images = rng.uniform(-1, 1, (self.batch, size, size, 3)).astype("float32")
        self._step = functools.partial(model.train_on_batch, images, labels_for_heads(model, rng.integers(0, 10, self.batch)))
        self._step()

    def rate(self, seconds=0.0):
        """images/s: the batch over the median of the steps timed in at least `seconds`
        (one step at least)."""
        times, deadline = [], time.perf_counter() + seconds
        while not times or time.perf_counter() < deadline:
            times.append(_timed(self._step))
        return self.batch / statistics.median(times)


def time_policies(policies, workload, jit_compile=False, log=print, seconds=precision_lib.SECONDS):
    """images/s of a training step of `workload` in each policy, timed in turns of
    `seconds` (`measured.measure`).

    A policy other than float32 whose 3x3 convolution runs over `EMULATED` times
    longer than float32's (`convolution_slowdown`: bfloat16 emulated on a CPU without
    it) is left out unbuilt, at rate 0. So is a policy whose first step fails here, with
    a line saying why (oneDNN limited to AVX2 by `ONEDNN_MAX_CPU_ISA` on a CPU with
    bfloat16 cannot build a bfloat16 convolution); when every policy fails, the first
    error is raised. The session is cleared afterwards. `jit_compile` compiles the step
    with XLA.
    """
    import keras

    timers, failures = {}, []
    try:
        for policy in policies:
            try:
                if emulated(policy, workload):
                    log(f"precision: {policy} left out: its 3x3 convolution runs over {EMULATED:g}x longer "
                        "than float32's here")
                    continue
                with native_stderr.held() if policy != choices.FLOAT32 else contextlib.nullcontext():
                    timers[policy] = StepTimer(policy, workload, jit_compile).rate
            except Exception as error:  # whatever the kernels raise: the policy cannot train here
                failures.append(error)
                log(f"precision: {policy} cannot train here, left out ({first_line(error)})")
        if not timers:
            raise failures[0]
        rates = measured.measure(timers, seconds=seconds, log=lambda line: log(f"precision: {line}"))
    finally:
        keras.backend.clear_session()
    return {policy: rates.get(policy, 0.0) for policy in policies}


def emulated(policy, workload):
    """How many times longer `policy`'s 3x3 convolution takes than float32's where that
    is over `EMULATED` (the CPU emulates the precision: leave it out unbuilt), else None."""
    if policy == choices.FLOAT32:
        return None
    slowdown = convolution_slowdown(policy, workload)
    return slowdown if slowdown > EMULATED else None


def convolution_slowdown(policy, workload, turns=10):
    """How many times longer a 3x3 convolution's forward and backward pass takes in
    `policy`'s compute dtype than in float32 here: a check of a second or two that
    leaves out a precision the CPU only emulates (bfloat16 without AVX-512 runs many
    times slower) before a model is built and traced for it. The shape is inception
    3a's 3x3 branch at this input size, on at most 16 images. The step lasts
    milliseconds, so a busy neighbour can double any one wall-clock timing: the two
    dtypes take turns, each timed in this process's CPU time (which a neighbour
    holding the cores does not add to), and each keeps its fastest turn."""
    import keras
    import tensorflow as tf

    side, batch = max(workload.image_size // 8, 3), min(workload.batch_size, 16)
    rng = tf.random.Generator.from_seed(0)
    images, kernel = rng.uniform((batch, side, side, 96)), rng.uniform((3, 3, 96, 128))

    def traced(dtype):
        x, k = tf.cast(images, dtype), tf.cast(kernel, dtype)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                loss = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, k, 1, "SAME"), tf.float32))
            return tape.gradient(loss, [x, k])

        step()
        return step

    with native_stderr.held():  # TensorFlow's ERROR line for a bfloat16 fallback (see native_stderr)
        steps = {"policy": traced(keras.DTypePolicy(policy).compute_dtype), "float32": traced("float32")}
        best = {name: math.inf for name in steps}
        for _ in range(turns):
            for name, step in steps.items():
                start = time.process_time()
                step()
                best[name] = min(best[name], time.process_time() - start)
    return best["policy"] / best["float32"]


def first_line(error):
    """The line of an error that says what went wrong: TensorFlow's graph errors wrap it
    in a header, the traceback of the op's creation and the node's name."""
    wrapping = ("Graph execution error", "Detected at node", "File ", "[[")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().startswith(wrapping)]
    return f"{type(error).__name__}: {lines[-1][:200] if lines else ''}"


def _timed(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def probe_main(request):
    """The probe process: prints `probes.RESULT_PREFIX {"onednn": ...}` as soon as TensorFlow
    has loaded (a process that loaded it otherwise than its setting is refused before it
    builds anything), warms up, prints `probes.RESULT_PREFIX {"left_out": ...}`, then for
    each request line on stdin prints `probes.RESULT_PREFIX {"images_per_second": ...}`."""
    loading.quiet_import_tensorflow()
    _say({"onednn": settings.onednn_enabled()})
    workload = precision_lib.Workload(**request["workload"])
    timers, screened, failed = {}, {}, {}
    for policy in request["precisions"]:
        try:
            slowdown = request["screen"] and emulated(policy, workload)
            if slowdown:
                screened[policy] = f"its 3x3 convolution runs {slowdown:.1f}x longer than float32's here"
                continue
            timers[policy] = StepTimer(policy, workload, jit_compile=request["jit_compile"])
        except Exception as error:  # whatever the kernels raise: the policy cannot train here
            failed[policy] = f"cannot train here: {first_line(error)}"
    left_out = {**screened, **failed}
    if not timers and not screened:  # screened out alone is an answer (its sibling process builds float32)
        raise SystemExit(f"no precision can train here: {left_out}")
    _say({"left_out": left_out})
    for line in sys.stdin:
        asked = json.loads(line)
        _say({"images_per_second": timers[asked["policy"]].rate(asked["seconds"])})


def _say(message):
    print(probes.RESULT_PREFIX + json.dumps(message), flush=True)


if __name__ == "__main__":
    probe_main(json.loads(sys.argv[1]))
