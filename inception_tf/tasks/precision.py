"""The training precision, chosen by timing the candidates on this machine.

A CPU flag does not say which precision is faster: a CPU with AMX or a fast AVX-512
bfloat16 path trains in mixed_bfloat16 well ahead of float32, one that reports
`avx512_bf16` without AMX can run bfloat16 at half float32's speed, and one without
either emulates it. So `precision="auto"` times a training step of the run's own model
(variant, input size, batch per replica) in each candidate precision, in turns, picks the
fastest, and stores the answer for this machine (CPU model and instruction sets, cores,
GPUs, TensorFlow version) and workload in a small JSON file, so that later runs skip the
probe. A precision given by name is never second-guessed.
"""

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import sys
import time

from inception_tf import files, native_stderr

FLOAT32, BFLOAT16, FLOAT16 = "float32", "mixed_bfloat16", "mixed_float16"
# The order of a tie: the simpler precision first.
ORDER = (FLOAT32, BFLOAT16, FLOAT16)
# The instruction sets that decide how fast float32 and bfloat16 run on a CPU.
CPU_FEATURES = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16",
)
# oneDNN's own limit on the instruction sets its kernels use (unset: all the CPU has).
ONEDNN_ISA = "ONEDNN_MAX_CPU_ISA"
CACHE_ENV = "INCEPTION_TF_CACHE_DIR"
CACHE_FILE = "precision.json"
# The convolution check only screens out a precision the CPU emulates: bfloat16's 3x3
# convolution ran 15-19x float32's on an AVX2 CPU, but a small one ran 1.6-1.7x longer
# on an AMX CPU whose whole training step was 1.45x faster in bfloat16. Anything under
# this is left to the timed training step.
EMULATED = 4.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the probe times: one training step of this model on this batch per replica.

    Ten classes whatever the data set: the classifiers' cost is negligible beside the
    convolutions'."""

    variant: str
    image_size: int
    batch_size: int
    aux_heads: bool = True


@dataclasses.dataclass(frozen=True)
class Choice:
    """The precision to train in, why, and the figures behind it (images/s)."""

    policy: str
    reason: str
    rates: dict = dataclasses.field(default_factory=dict)


# --- The machine --------------------------------------------------------------------------

def cpu_info():
    """`(model name, sorted features of CPU_FEATURES this CPU reports)`."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return model, sorted(flags & set(CPU_FEATURES))


def gpu_details():
    """`[{"name", "compute_capability"}]` of each GPU TensorFlow sees."""
    import tensorflow as tf

    details = []
    for gpu in tf.config.list_physical_devices("GPU"):
        found = tf.config.experimental.get_device_details(gpu)
        details.append(
            {"name": found.get("device_name", gpu.name), "compute_capability": list(found.get("compute_capability") or (0, 0))}
        )
    return details


def cpu_machine():
    """The CPU, its cores and the TensorFlow installed, read without loading TensorFlow
    (the runtime's answers hold for these)."""
    model, features = cpu_info()
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(sys.modules.get("tensorflow"), "__version__", None)
    found = {"cpu": model, "cpu_features": features, "cores": os.cpu_count(), "tensorflow": version}
    if os.environ.get(ONEDNN_ISA):
        # oneDNN then runs other kernels (an AVX-512 CPU limited to AVX2 times as an AVX2
        # one does), so the answers measured without the limit do not hold.
        found["onednn_max_cpu_isa"] = os.environ[ONEDNN_ISA]
    return found


def machine(gpus=None):
    """What a measured precision holds for: another CPU, core count, GPU or TensorFlow
    measures again."""
    return {
        **cpu_machine(),
        "gpus": [f"{g['name']} (compute capability {'.'.join(map(str, g['compute_capability']))})" for g in gpus or []],
    }


def describe_machine(gpus=None):
    """One line for benchmark headers: CPU model, cores, instruction sets, GPUs."""
    found = machine(gpus)
    features = " ".join(found["cpu_features"]) or f"none of {', '.join(CPU_FEATURES)}"
    line = f"{found['cpu']}, {found['cores']} cores, {features}{onednn_limit(found)}"
    return line + (f"; GPUs: {', '.join(found['gpus'])}" if found["gpus"] else "; no GPU")


def onednn_limit(found):
    """` (oneDNN limited to AVX2 by ONEDNN_MAX_CPU_ISA)` for a machine (as `cpu_machine`
    gives it) measured under that limit, else ""."""
    limit = found.get("onednn_max_cpu_isa")
    return f" (oneDNN limited to {limit} by {ONEDNN_ISA})" if limit else ""


def candidates(gpus):
    """The precisions worth timing, by what the hardware supports.

    GPUs: float16 pays from tensor cores on (compute capability 7.0), bfloat16 from 8.0;
    below 7.0 float32 alone. CPUs: bfloat16 and float32 (TensorFlow's float16 CPU kernels
    are few and slow: float16 there is a stand-in for testing, never a choice).
    """
    if gpus:
        capability = min(tuple(g["compute_capability"]) for g in gpus)
        found = [FLOAT32]
        if capability >= (8, 0):
            found.append(BFLOAT16)
        if capability >= (7, 0):
            found.append(FLOAT16)
        return found
    return [FLOAT32, BFLOAT16]


# --- Timing -------------------------------------------------------------------------------

class StepTimer:
    """A training step of `workload` in one policy, timed on request.

    The model is built and compiled as a run compiles it, with one random batch held in
    memory, and its first step (tracing, kernel set-up) runs at once, untimed: it raises
    whatever the kernels raise when the policy cannot train here."""

    def __init__(self, policy, workload, jit_compile=False):
        import keras
        import numpy as np

        from inception_tf.modeling.model import GoogLeNet
        from inception_tf.tasks.training import compile_for_training, labels_for_heads

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


def measure(policies, workload, seconds=2.0, rounds=2, clear_margin=1.5, jit_compile=False, log=print):
    """images/s of a training step of `workload` in each policy, timed in turns.

    A policy other than float32 whose 3x3 convolution runs over `EMULATED` times
    longer than float32's (`convolution_slowdown`: bfloat16 emulated on a CPU without
    it) is left out unbuilt, at rate 0. Each other policy gets a `StepTimer`, then one
    timed step; a policy over `clear_margin` times slower than the fastest is out. The rest
    take `rounds` turns of at least `seconds / rounds` each, so that a machine slowing
    down for a while slows them alike; a rate is the median of its turns. The session is
    cleared afterwards. `jit_compile` compiles the step with XLA.

    A policy whose first step fails here gets the rate 0, with a line saying why (oneDNN
    limited to AVX2 by `ONEDNN_MAX_CPU_ISA` on a CPU with bfloat16 cannot build a
    bfloat16 convolution); when every policy fails, the first error is raised.
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
                with native_stderr.held() if policy != FLOAT32 else contextlib.nullcontext():
                    timers[policy] = StepTimer(policy, workload, jit_compile)
            except Exception as error:  # whatever the kernels raise: the policy cannot train here
                failures.append(error)
                log(f"precision: {policy} cannot train here, left out ({first_line(error)})")
        if not timers:
            raise failures[0]
        rates = {policy: [timer.rate()] for policy, timer in timers.items()}
        best = max(found[0] for found in rates.values())
        close = [policy for policy in timers if rates[policy][0] * clear_margin >= best]
        for _ in range(rounds):
            for policy in close:
                rates[policy].append(timers[policy].rate(seconds / rounds))
    finally:
        keras.backend.clear_session()
    return {policy: statistics.median(rates[policy]) if policy in rates else 0.0 for policy in policies}


def emulated(policy, workload):
    """How many times longer `policy`'s 3x3 convolution takes than float32's where that
    is over `EMULATED` (the CPU emulates the precision: leave it out unbuilt), else None."""
    if policy == FLOAT32:
        return None
    slowdown = convolution_slowdown(policy, workload)
    return slowdown if slowdown > EMULATED else None


def convolution_slowdown(policy, workload, repeats=3):
    """How many times longer a 3x3 convolution's forward and backward pass takes in
    `policy`'s compute dtype than in float32 here: a check of a second or two that
    leaves out a precision the CPU only emulates (bfloat16 without AVX-512 runs many
    times slower) before a model is built and traced for it. The shape is inception
    3a's 3x3 branch at this input size, on at most 16 images."""
    import keras
    import tensorflow as tf

    side, batch = max(workload.image_size // 8, 3), min(workload.batch_size, 16)
    rng = tf.random.Generator.from_seed(0)
    images, kernel = rng.uniform((batch, side, side, 96)), rng.uniform((3, 3, 96, 128))

    def seconds(dtype):
        x, k = tf.cast(images, dtype), tf.cast(kernel, dtype)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                loss = tf.reduce_sum(tf.cast(tf.nn.conv2d(x, k, 1, "SAME"), tf.float32))
            return tape.gradient(loss, [x, k])

        step()
        return statistics.median(_timed(step) for _ in range(repeats))

    with native_stderr.held():  # TensorFlow's ERROR line for a bfloat16 fallback (see native_stderr)
        return seconds(keras.DTypePolicy(policy).compute_dtype) / seconds("float32")


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


# --- The stored answers -------------------------------------------------------------------

def cache_path():
    """$INCEPTION_TF_CACHE_DIR/precision.json, else under $XDG_CACHE_HOME or ~/.cache."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
        root = pathlib.Path(base) / "inception_tf"
    return pathlib.Path(root) / CACHE_FILE


def _read(path):
    try:
        entries = json.loads(path.read_text()).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return []
    return entries if isinstance(entries, list) else []


def stored(path, found_machine, workload):
    """The stored entry for this machine and workload (a `Workload` or a dict), or None."""
    wanted = workload if isinstance(workload, dict) else dataclasses.asdict(workload)
    for entry in _read(path):
        if isinstance(entry, dict) and entry.get("machine") == found_machine and entry.get("workload") == wanted:
            return entry
    return None


def store(path, entry):
    """Adds `entry` to the file, replacing one for the same machine and workload.
    Concurrent runs take turns on a lock file; the file itself is replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = [
            e for e in _read(path)
            if not (isinstance(e, dict) and (e.get("machine"), e.get("workload")) == (entry["machine"], entry["workload"]))
        ]
        files.write_text_atomic(path, json.dumps({"entries": kept + [entry]}, indent=2) + "\n")


def stored_or_measured(path, found_machine, workload, measure, pick, usable, log=print, extra=dict):
    """`(entry, rates, where)`: the entry stored in `path` for this machine and workload
    (a `Workload` or a dict) where `usable(entry)`, else `measure()`'s rates (by name),
    stored with `pick(rates)` as the choice and `extra()`'s keys. Empty rates (nothing
    could be timed) are returned as they are, and nothing is stored. `log` gets the note
    of a store that failed."""
    entry = stored(path, found_machine, workload)
    if entry is not None and usable(entry):
        return entry, entry["rates"], f"measured on this machine {entry.get('measured_at', '')}, stored in {path}"
    rates = measure()
    if not rates:
        return None, rates, "measured here"
    entry = new_entry(found_machine, workload, rates, pick(rates), **extra())
    store_or_say(path, entry, log)
    return entry, rates, "measured here"


def new_entry(found_machine, workload, rates, choice, **extra):
    """What the store keeps of one measurement: `extra` holds what else explains it
    (`left_out`: `{name: why}` of candidates not timed)."""
    return {
        "machine": found_machine,
        "workload": workload if isinstance(workload, dict) else dataclasses.asdict(workload),
        "rates": {name: round(float(rate), 2) for name, rate in rates.items()},
        "choice": choice,
        "measured_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **extra,
    }


def store_or_say(path, entry, log=print):
    """`store`, or a line to `log` saying why the next run measures again."""
    try:
        store(path, entry)
    except OSError as error:
        log(f"could not store the measurement ({error}); the next run measures again")


# --- The choice ---------------------------------------------------------------------------

def fastest(rates):
    """The policy of the highest rate; ties go to the earlier one in ORDER."""
    return max(sorted(rates, key=ORDER.index), key=lambda policy: rates[policy])


def format_rates(rates, left_out=None):
    """`float32 80.2 images/s, mixed_bfloat16 left out (why)`."""
    ranked = sorted(rates, key=lambda policy: -rates[policy])
    return ", ".join([f"{policy} {rates[policy]:.1f} images/s" for policy in ranked]
                     + [f"{policy} left out ({why})" for policy, why in (left_out or {}).items()])


def choose(precision="auto", workload=None, gpus=None, timer=measure, agree=None, log=print):
    """The `Choice` of precision for a run of `workload`.

    Args:
        precision: "auto", or a policy name, which is returned as it is.
        workload: the `Workload` to time (needed for "auto").
        gpus: the GPUs' details as `gpu_details()` gives them (None: ask TensorFlow).
        timer: `timer(policies, workload) -> {policy: images/s}`, `measure` unless a test
            fakes it.
        agree: under several workers, `agree(rates) -> rates` makes every worker decide
            on the same figures (see `distribute.agree_on_rates`).
        log: where a note on a probe or an unwritable store goes.
    """
    if precision != "auto":
        return Choice(precision, "asked for")
    if workload is None:
        raise ValueError("precision='auto' needs the run's workload to time. Received: workload=None")
    gpus = gpu_details() if gpus is None else gpus
    policies = candidates(gpus)
    if len(policies) == 1:
        return Choice(policies[0], "the only precision this GPU runs well")
    path = cache_path()

    def timed():
        log(f"precision: timing {' and '.join(policies)} on this machine (once; the answer is stored in {path})")
        return timer(policies, workload)

    def usable(entry):
        return set(entry.get("rates", {})) | set(entry.get("left_out", {})) == set(policies) and entry["rates"]

    entry, rates, where = stored_or_measured(
        path, machine(gpus), workload, timed, fastest, usable, log=lambda error: log(f"precision: {error}"),
    )
    left_out = (entry or {}).get("left_out")
    if agree is not None:
        rates, where = agree(rates), where + ", averaged over the workers"
    policy = fastest(rates)
    return Choice(policy, f"{where}: {format_rates(rates, left_out)}", dict(rates))
