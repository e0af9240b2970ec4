"""The runtime settings that TensorFlow fixes when it loads, chosen by timing them here.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS`, `TF_NUM_INTEROP_THREADS` and
`TF_NUM_INTRAOP_THREADS` once, as it loads, and turns oneDNN on by itself only on CPUs
with AVX-512 VNNI, bfloat16 or AMX: on an AVX2 CPU it leaves it off, although training
there is much faster with it, and on some CPUs oneDNN is slower. So, as for the
precision, a flag in /proc/cpuinfo decides nothing: `choose` starts one process per
candidate, all at once, each loading TensorFlow under its setting and building and
tracing the run's model in each candidate precision (the costly part, done side by side);
then it times their training steps in turns, keeps the fastest pair of runtime and
precision, and stores both answers per machine and workload, so that the run's own
`precision.choose` finds its answer stored.

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
import select
import statistics
import subprocess
import sys
import tempfile
import time

from inception_tf import native_stderr
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
PROBE_SECONDS = 2.5  # timed training per candidate and turn (one step at least)
ROUNDS = 2
# After the first turn, a candidate this much slower than the fastest is not timed again.
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


# oneDNN both ways. One inter-op thread and XLA were candidates too, and lost every
# workload on the two CPUs measured (results/machine_d/peers-runtime.json; machine C in
# issue #35). `jit_compile` stays False, said explicitly to Keras, whose "auto" would
# compile with XLA.
CANDIDATES = (
    Setting(onednn=False),
    Setting(onednn=True),
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


# --- Timing: processes that warm up side by side, then take turns ---------------------------

class Probe:
    """A Python process that loads TensorFlow under `setting`, builds and traces the
    workload's training step in each of `precisions` (when there are several, one whose
    3x3 convolution is over `precision.EMULATED` times slower than float32's is left out
    unbuilt; a precision the run names is always built) and then times a step
    on request. Its lines on stdout start with RESULT_PREFIX; stderr goes to a file,
    shown only when the process fails."""

    def __init__(self, setting, workload, precisions):
        self.setting = setting
        request = {"workload": dataclasses.asdict(workload), "precisions": list(precisions),
                   "jit_compile": setting.jit_compile}
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "inception_tf.tasks.runtime", json.dumps(request)],
            env={**os.environ, **setting.environment()}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None,
        )
        self._buffer = b""

    def ready(self):
        """`{precision: why}` of the precisions left out, once the process is warm.
        Raises RuntimeError when it failed or loaded TensorFlow otherwise."""
        found = self._message()
        if self.setting.onednn is not None and found["onednn"] != self.setting.onednn:
            raise RuntimeError(f"TensorFlow loaded with oneDNN {'on' if found['onednn'] else 'off'}")
        return found["left_out"]

    def rate(self, policy, seconds):
        """images/s of a training step in `policy`, timed for at least `seconds`."""
        try:
            self._process.stdin.write((json.dumps({"policy": policy, "seconds": seconds}) + "\n").encode())
            self._process.stdin.flush()
        except OSError:
            pass  # the process ended: _message says how
        return self._message()["images_per_second"]

    def _message(self):
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                if line.startswith(RESULT_PREFIX.encode()):
                    return json.loads(line[len(RESULT_PREFIX):])
                continue
            if not select.select([self._process.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise RuntimeError(f"no answer in {PROBE_TIMEOUT_S} s")
            chunk = os.read(self._process.stdout.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError(self._last_words())
            self._buffer += chunk

    def _last_words(self):
        code = self._process.wait()
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return f"exit code {code}: {lines[-1] if lines else '(nothing)'}"

    def close(self):
        """Ends the process (it leaves when its stdin closes)."""
        try:
            self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()


def _end_with_parent():
    """In a probe process, before it runs: Linux sends it SIGKILL when the process that
    started it ends, however that ends (SIGTERM or SIGKILL during the measurement):
    no probe outlives the run that asked for it."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # linux/prctl.h
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def measure(settings, workload, precisions, rounds=ROUNDS, clear_margin=CLEAR_MARGIN, seconds=PROBE_SECONDS,
            start=Probe, log=print):
    """`({(setting, precision): images/s}, {setting: {precision: why left out}})`.

    Every setting's process (`start(setting, workload, precisions)`, a `Probe` unless a
    test fakes it) warms up at once; then one process works at a time. A first turn
    times one step of each pair, and a pair over `clear_margin` times slower than the
    fastest is out; when more than one pair is left, each is timed in `rounds` further
    turns of `seconds`, and its rate is the median of its turns. A setting whose process
    fails is left out with a line saying why."""
    probes, left_out, times = {}, {}, {}
    try:
        for setting in settings:
            probes[setting] = start(setting, workload, precisions)
        pairs = []
        for setting in settings:
            try:
                left_out[setting] = probes[setting].ready()
            except RuntimeError as error:
                log(f"runtime: {setting.name} failed, left out ({error})")
                continue
            pairs += [(setting, policy) for policy in precisions if policy not in left_out[setting]]
        for turn in range(rounds + 1):
            for pair in pairs:
                try:
                    times.setdefault(pair, []).append(probes[pair[0]].rate(pair[1], seconds if turn else 0.0))
                except RuntimeError as error:
                    log(f"runtime: {pair[0].name} failed, left out ({error})")
                    times.pop(pair, None)
            pairs = [pair for pair in pairs if pair in times]
            if turn == 0 and times:
                best = max(found[0] for found in times.values())
                pairs = [pair for pair in pairs if times[pair][0] * clear_margin >= best]
            if len(pairs) < 2:
                break
    finally:
        for probe in probes.values():
            probe.close()
    return {pair: statistics.median(found) for pair, found in times.items()}, left_out


def _probe_main(request):
    """The probe process: warms up, prints `RESULT_PREFIX {"left_out": ..., "onednn": ...}`,
    then for each request line on stdin prints `RESULT_PREFIX {"images_per_second": ...}`."""
    quiet_import_tensorflow()
    workload = precision_lib.Workload(**request["workload"])
    timers, left_out = {}, {}
    for policy in request["precisions"]:
        try:
            slowdown = len(request["precisions"]) > 1 and precision_lib.emulated(policy, workload)
            if slowdown:
                left_out[policy] = f"its 3x3 convolution runs {slowdown:.1f}x longer than float32's here"
                continue
            timers[policy] = precision_lib.StepTimer(policy, workload, jit_compile=request["jit_compile"])
        except Exception as error:  # whatever the kernels raise: the policy cannot train here
            left_out[policy] = f"cannot train here: {precision_lib.first_line(error)}"
    if not timers:
        raise SystemExit(f"no precision can train here: {left_out}")
    _say({"left_out": left_out, "onednn": onednn_enabled()})
    for line in sys.stdin:
        asked = json.loads(line)
        _say({"images_per_second": timers[asked["policy"]].rate(asked["seconds"])})


def _say(message):
    print(RESULT_PREFIX + json.dumps(message), flush=True)


def onednn_enabled():
    """Whether the TensorFlow loaded here runs oneDNN (its own answer, after the variable)."""
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's one report of it (2.21)

    return bool(_pywrap_util_port.IsMklEnabled())


# --- The choice --------------------------------------------------------------------------------

def fastest(rates, order):
    """The name in `order` of the first rate within TIE of the highest."""
    best = max(rates.values())
    return next(name for name in order if name in rates and rates[name] >= best * (1 - TIE))


def _format(rates, precisions=None):
    ranked = sorted(rates.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {rate:.1f} images/s" + (f" in {precisions[name]}" if precisions else "")
                     for name, rate in ranked)


def _given_text(given):
    return ", ".join(f"{name}={value}" for name, value in given.items())


def choose(variant, image_size, batch_size, aux_heads=True, precision="float32", start=Probe, log=print,
           environ=None, gpu=None):
    """The `Choice` of runtime for training this workload here.

    `precision`: the one the run trains in, or "auto": then every CPU precision is timed
    under every setting, the runtime is the one of the fastest pair, and the precision's
    answer (its rates under that runtime) is stored for `precision.choose` to find.
    `start(setting, workload, precisions)` is `Probe` unless a test fakes it; `environ`
    is os.environ unless a test gives its own. A stored answer for this machine and
    workload is reused; co-located processes (the workers of a cluster on one machine)
    measure once, the others wait for its answer.
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
    precisions = precision_lib.candidates([]) if precision == "auto" else [precision]
    key = {**dataclasses.asdict(model), "precision": precision, "given": given}
    path, names = cache_path(), {setting.name: setting for setting in found}
    in_precision = {}

    def timed():
        log(f"runtime: timing {' and '.join(names)} in {' and '.join(precisions)} on this machine, "
            f"{len(found)} processes warming up at once, then timed in turns (once; the answer is stored in {path})")
        measured, left_out = measure(found, model, precisions, start=start, log=log)
        best = {}  # each setting's fastest precision and its rate
        for (setting, policy), rate in measured.items():
            if rate > best.get(setting.name, (None, 0.0))[1]:
                best[setting.name] = (policy, rate)
        rates = {name: rate for name, (_, rate) in best.items()}
        in_precision.update({name: policy for name, (policy, _) in best.items()})
        if precision == "auto" and rates:
            _store_precision(model, measured, left_out, names[fastest(rates, list(names))], log)
        return rates

    with _measuring(path):
        entry, rates, where = precision_lib.stored_or_measured(
            path, precision_lib.cpu_machine(), key, timed, lambda rates: fastest(rates, list(names)),
            lambda entry: entry.get("choice") in names, log=lambda error: log(f"runtime: {error}"),
            extra=lambda: {"precisions": in_precision} if precision == "auto" else {},
        )
    if entry is None:
        return Choice(Setting(), "every probe failed", given=given)
    rates = entry["rates"]
    reason = f"{where}: {_format(rates, entry.get('precisions') if precision == 'auto' else None)}"
    if given:
        reason = f"{_given_text(given)} set by you; {reason}"
    return Choice(names[entry["choice"]], reason, dict(rates), given)


def _store_precision(model, measured, left_out, winner, log):
    """The precision's answer under the winning runtime, where `precision.choose` looks."""
    rates = {policy: rate for (setting, policy), rate in measured.items() if setting == winner}
    entry = precision_lib.new_entry(precision_lib.machine([]), model, rates, precision_lib.fastest(rates),
                                    left_out=left_out.get(winner, {}), under=f"runtime: {winner.name}")
    precision_lib.store_or_say(precision_lib.cache_path(), entry, log=lambda error: log(f"precision: {error}"))


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
    the lines are shown with the error. Training steps then sum their gradients in a fixed
    order (`keras_fixes.deterministic_gradient_sums`): a rerun gives the same bits."""
    os.environ.setdefault(LOG_LEVEL, "2")
    if "tensorflow" in sys.modules or os.environ[LOG_LEVEL] in ("0", "1"):
        import tensorflow  # noqa: F401
    else:
        with native_stderr.held():
            import tensorflow as tf

            # Finding the devices is where CUDA's probe complains on a machine without it.
            tf.config.list_physical_devices()
    from inception_tf import keras_fixes  # imports Keras: only once TensorFlow is loaded

    keras_fixes.deterministic_gradient_sums()


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
