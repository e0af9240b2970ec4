"""The runtime settings that TensorFlow fixes when it loads, chosen by timing them here.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS`, `TF_NUM_INTEROP_THREADS` and
`TF_NUM_INTRAOP_THREADS` once, as it loads, and turns oneDNN on by itself only on CPUs
with AVX-512 VNNI, bfloat16 or AMX: on an AVX2 CPU it leaves it off, although training
there is much faster with it, and on some CPUs oneDNN is slower. So, as for the
precision, a flag in /proc/cpuinfo decides nothing: `choose` trains the run's workload a
few seconds under each candidate, one fresh process per candidate and in turns, keeps the
fastest and stores the answer per machine and workload beside the precision's. XLA
compilation of the train step (`jit_compile`) is timed the same way, although it is
decided at compile time.

The entry points (`train.py`, `python -m inception_tf train`, the benchmarks) call
`configure` before TensorFlow loads; a user's own script does the same:

    from inception_tf.tasks import runtime
    choice = runtime.configure(variant="bn", image_size=64, batch_size=128)
    # now import tensorflow / keras; compile with jit_compile=choice.setting.jit_compile

A variable the user set is kept, and only the settings it leaves open are timed. Importing
this module loads neither TensorFlow nor Keras.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

from inception_tf.tasks import precision as precision_lib

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
INTER_OP = "TF_NUM_INTEROP_THREADS"
INTRA_OP = "TF_NUM_INTRAOP_THREADS"
VARIABLES = (ONEDNN, INTER_OP, INTRA_OP)
LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# "default": keep TensorFlow's own settings and time nothing (the tests' choice); "auto" times.
MODE = "INCEPTION_TF_RUNTIME"
MODES = ("auto", "default")
CACHE_FILE = "runtime.json"  # beside precision.json
PROBE_SECONDS = 8.0  # timed training per candidate and round, after the first step
ROUNDS = 2
# After the first round, a candidate this much slower than the fastest is not timed again.
CLEAR_MARGIN = 1.5
# Rates this close to the fastest are a tie (between processes they differ by more), won
# by the candidate that changes less: the earlier one in CANDIDATES.
TIE = 0.03
PROBE_TIMEOUT_S = 900
RESULT_PREFIX = "runtime-probe-result: "


@dataclasses.dataclass(frozen=True)
class Setting:
    """One runtime: oneDNN on or off (None: as TensorFlow decides), TensorFlow's inter-op
    pool (0: its own choice) and XLA compilation of the train step."""

    onednn: bool = None
    inter_op_threads: int = 0
    jit_compile: bool = False

    def environment(self):
        env = {} if self.onednn is None else {ONEDNN: "1" if self.onednn else "0"}
        if self.inter_op_threads:
            env[INTER_OP] = str(self.inter_op_threads)
        return env

    @property
    def name(self):
        parts = ["TensorFlow's own settings" if self.onednn is None else f"oneDNN {'on' if self.onednn else 'off'}"]
        if self.inter_op_threads:
            parts.append(f"{self.inter_op_threads} inter-op thread{'s' if self.inter_op_threads > 1 else ''}")
        if self.jit_compile:
            parts.append("XLA")
        return ", ".join(parts)


# oneDNN both ways; with it, one inter-op thread (the op pool otherwise competes with the
# intra-op pool for few cores) and XLA: both may pay on one machine and cost on another.
CANDIDATES = (
    Setting(onednn=False),
    Setting(onednn=True),
    Setting(onednn=True, inter_op_threads=1),
    Setting(onednn=True, jit_compile=True),
)


@dataclasses.dataclass(frozen=True)
class Choice:
    """The runtime to load TensorFlow with, why, and the figures behind it (images/s by
    setting name)."""

    setting: Setting
    reason: str
    rates: dict = dataclasses.field(default_factory=dict)
    given: dict = dataclasses.field(default_factory=dict)  # the user's own variables

    @property
    def line(self):
        """What a run prints: `runtime: oneDNN on (measured here: ...)`."""
        return f"runtime: {self.setting.name} ({self.reason})"


# --- What the user set, and what is left to time -------------------------------------------

def _flag(name, value):
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name} must be 0 or 1. Received: {name}={value!r}")


def _count(name, value):
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{name} must be a non-negative integer. Received: {name}={value!r}")
    return count


def given_variables(environ=None):
    """The runtime variables the user set, checked: `{name: value}`."""
    environ = os.environ if environ is None else environ
    given = {name: environ[name] for name in VARIABLES if environ.get(name, "") != ""}
    if ONEDNN in given:
        _flag(ONEDNN, given[ONEDNN])
    for name in (INTER_OP, INTRA_OP):
        if name in given:
            _count(name, given[name])
    return given


def candidates(given):
    """CANDIDATES with the user's variables imposed, without repeats, in order."""
    found = []
    for setting in CANDIDATES:
        if ONEDNN in given:
            setting = dataclasses.replace(setting, onednn=_flag(ONEDNN, given[ONEDNN]))
        if INTER_OP in given:
            setting = dataclasses.replace(setting, inter_op_threads=_count(INTER_OP, given[INTER_OP]))
        if setting not in found:
            found.append(setting)
    return found


def has_gpu():
    """An NVIDIA driver reports a GPU (read without loading TensorFlow)."""
    try:
        return any(pathlib.Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return False


def cache_path():
    return precision_lib.cache_path().parent / CACHE_FILE


# --- Timing, one fresh process per candidate ----------------------------------------------------

def probe(setting, workload, seconds=PROBE_SECONDS):
    """images/s of `workload`'s training step in a new Python process that loads
    TensorFlow under `setting`; raises RuntimeError (with the process's last words) when
    that process fails."""
    request = {"workload": dataclasses.asdict(workload["model"]), "precision": workload["precision"],
               "jit_compile": setting.jit_compile, "seconds": seconds}
    env = {**os.environ, **setting.environment()}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "inception_tf.tasks.runtime", json.dumps(request)],
            env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer in {PROBE_TIMEOUT_S} s") from None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            if setting.onednn is not None and result["onednn"] != setting.onednn:
                raise RuntimeError(f"TensorFlow loaded with oneDNN {'on' if result['onednn'] else 'off'}")
            return float(result["images_per_second"])
    last = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
    raise RuntimeError(f"exit code {done.returncode}: {last}")


def measure(settings, workload, rounds=ROUNDS, clear_margin=CLEAR_MARGIN, timer=probe, log=print):
    """`{setting: images/s}`: each setting timed in `rounds` turns (one process each time),
    the rate the median of its turns. A setting over `clear_margin` times slower than the
    fastest after the first turn is not timed again; one whose process fails is left out."""
    times = {}
    for turn in range(rounds):
        for setting in settings:
            try:
                times.setdefault(setting, []).append(timer(setting, workload))
            except RuntimeError as error:
                log(f"runtime: {setting.name} failed, left out ({error})")
                times.pop(setting, None)
        settings = [setting for setting in settings if setting in times]
        if turn == 0 and times:
            best = max(rates[0] for rates in times.values())
            settings = [setting for setting in settings if times[setting][0] * clear_margin >= best]
    return {setting: statistics.median(rates) for setting, rates in times.items()}


def _probe_main(request):
    """The probe process: prints `RESULT_PREFIX {"images_per_second": ...}`."""
    quiet_import_tensorflow()
    import keras

    workload = precision_lib.Workload(**request["workload"])
    keras.config.set_dtype_policy(request["precision"])
    rates = precision_lib.measure(
        [request["precision"]], workload, seconds=request["seconds"], rounds=1, jit_compile=request["jit_compile"]
    )
    print(RESULT_PREFIX + json.dumps({"images_per_second": rates[request["precision"]], "onednn": onednn_enabled()}),
          flush=True)


def onednn_enabled():
    """Whether the TensorFlow loaded here runs oneDNN (its own answer, after the variable)."""
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's one report of it (2.21)

    return bool(_pywrap_util_port.IsMklEnabled())


# --- The choice --------------------------------------------------------------------------------

def fastest(rates, order):
    """The name in `order` of the first rate within TIE of the highest."""
    best = max(rates.values())
    return next(name for name in order if name in rates and rates[name] >= best * (1 - TIE))


def _format(rates):
    ranked = sorted(rates.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {rate:.1f} images/s" for name, rate in ranked)


def _given_text(given):
    return ", ".join(f"{name}={value}" for name, value in given.items())


def choose(variant, image_size, batch_size, aux_heads=True, precision="float32", timer=probe, log=print,
           environ=None, gpu=None):
    """The `Choice` of runtime for training this workload here.

    `precision`: the one the run trains in ("auto" times in float32: the precision is
    measured afterwards, under the runtime chosen). `timer(setting, workload) -> images/s`
    is `probe` unless a test fakes it; `environ` is os.environ unless a test gives its own.
    A stored answer for this machine and workload is reused; co-located processes (the
    workers of a cluster on one machine) measure once, the others wait for its answer.
    """
    environ = os.environ if environ is None else environ
    mode = environ.get(MODE) or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE} must be one of {MODES}. Received: {MODE}={mode!r}")
    given = given_variables(environ)
    if mode == "default":
        setting = Setting(onednn=_flag(ONEDNN, given[ONEDNN]) if ONEDNN in given else None,
                          inter_op_threads=_count(INTER_OP, given.get(INTER_OP, 0)))
        return Choice(setting, f"{MODE}=default" + (f"; {_given_text(given)} set by you" if given else ""), given=given)
    found = candidates(given)
    if (has_gpu() if gpu is None else gpu):
        return Choice(Setting(), "GPUs train here: nothing to time on the CPU that feeds them", given=given)
    if len(found) == 1:
        return Choice(found[0], f"set by you: {_given_text(given)}", given=given)
    model = precision_lib.Workload(variant=variant, image_size=image_size, batch_size=batch_size, aux_heads=aux_heads)
    key = {**dataclasses.asdict(model), "precision": "float32" if precision == "auto" else precision,
           "given": given}
    path, names = cache_path(), {setting.name: setting for setting in found}

    def timed():
        log(f"runtime: timing {len(found)} settings on this machine, a process each "
            f"(once; the answer is stored in {path})")
        measured = measure(found, {"model": model, "precision": key["precision"]}, timer=timer, log=log)
        return {setting.name: rate for setting, rate in measured.items()}

    with _measuring(path):
        entry, rates, where = precision_lib.stored_or_measured(
            path, precision_lib.cpu_machine(), key, timed, lambda rates: fastest(rates, list(names)),
            lambda entry: entry.get("choice") in names, log=lambda error: log(f"runtime: {error}"),
        )
    if entry is None:
        return Choice(Setting(), "every probe failed", given=given)
    rates = entry["rates"]
    reason = f"{where}: {_format(rates)}"
    if given:
        reason = f"{_given_text(given)} set by you; {reason}"
    return Choice(names[entry["choice"]], reason, dict(rates), given)


@contextlib.contextmanager
def _measuring(path):
    """One process of this machine measures at a time; the others then find its answer."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.parent / f".{path.name}.measuring", "w")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- Applying it, before TensorFlow loads ------------------------------------------------------

_applied = None


def apply(choice):
    """Sets the variables of `choice` that the user did not set. Raises RuntimeError once
    TensorFlow has loaded: it would no longer read them."""
    global _applied
    _check_not_loaded()
    for name, value in choice.setting.environment().items():
        if name not in choice.given:
            os.environ[name] = value
    _applied = choice
    return choice


def _check_not_loaded():
    if "tensorflow" in sys.modules:
        raise RuntimeError(
            "The runtime must be chosen before TensorFlow loads: call inception_tf.runtime.configure() "
            "before importing tensorflow, keras or a name from inception_tf. Received: tensorflow already imported"
        )


def applied():
    """The `Choice` this process loaded TensorFlow with, or None."""
    return _applied


def loaded_setting():
    """The runtime TensorFlow runs under in this process, as it reports it."""
    return Setting(onednn=onednn_enabled(), inter_op_threads=_count(INTER_OP, os.environ.get(INTER_OP) or 0),
                   jit_compile=jit_compile() is True)


def jit_compile():
    """For `Model.compile`: the chosen XLA setting, else Keras's "auto"."""
    return _applied.setting.jit_compile if _applied else "auto"


def quiet_import_tensorflow():
    """Imports TensorFlow and finds its devices with their C++ start-up lines (oneDNN,
    CUDA stubs and cuInit, absl) kept off the terminal: TensorFlow prints them whatever
    TF_CPP_MIN_LOG_LEVEL says. A level of 0 or 1 asks for them, and gets them; unset, the
    level becomes 2 (later C++ messages below warnings stay off too). On a failed import
    the lines are shown with the error."""
    os.environ.setdefault(LOG_LEVEL, "2")
    if "tensorflow" in sys.modules or os.environ[LOG_LEVEL] in ("0", "1"):
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            # Finding the devices is where CUDA's probe complains on a machine without it.
            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def configure(variant="bn", image_size=64, batch_size=128, aux_heads=True, precision="float32", log=print,
              **choose_kwargs):
    """Chooses the runtime for training this workload here (`choose`), applies it, logs
    its line, and loads TensorFlow quietly. Call it before anything imports TensorFlow;
    returns the `Choice` (its `setting.jit_compile` is for `Model.compile`)."""
    _check_not_loaded()
    choice = apply(choose(variant, image_size, batch_size, aux_heads, precision, log=log, **choose_kwargs))
    log(choice.line)
    quiet_import_tensorflow()
    return choice


def configure_from_flags(argv, variant="bn", image_size=64, batch_size=128, precision="float32", log=print):
    """`configure` for a script whose flags name a training workload (the benchmarks):
    reads `--variant` (or the first of `--variants`), `--image-size`, `--batch-size` and
    `--precision` from `argv`, other flags left to the script."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--variant", "--variants", nargs="+", default=[variant])
    parser.add_argument("--image-size", type=int, default=image_size)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--precision", default=precision)
    args, _ = parser.parse_known_args(argv)
    if any(flag in ("-h", "--help") for flag in argv):
        quiet_import_tensorflow()
        return None
    return configure(args.variant[0], args.image_size, args.batch_size, precision=args.precision, log=log)


if __name__ == "__main__":
    _probe_main(json.loads(sys.argv[1]))
