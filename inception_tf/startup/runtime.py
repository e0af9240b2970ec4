"""The runtime settings that TensorFlow fixes when it loads, chosen by timing them here.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS`, `TF_NUM_INTEROP_THREADS` and
`TF_NUM_INTRAOP_THREADS` once, as it loads, and turns oneDNN on by itself only on CPUs
with AVX-512 VNNI, bfloat16 or AMX: on an AVX2 CPU it leaves it off, although training
there is much faster with it, and on some CPUs oneDNN is slower. So, as for the
precision, a flag in /proc/cpuinfo decides nothing by itself: `choose_setting` starts a
process per candidate (`probes.Probe`; per candidate and precision where the cores allow),
all at once, each loading TensorFlow under its setting and building and tracing the run's
model in its precisions (the costly part, done side by side); then it times their
training steps in turns (`measured.measure`), keeps the fastest pair of runtime and
precision, and stores both answers per machine and workload, so that the run's own
`precision.choose_policy` finds its answer stored. Where an answer is known for the CPU's
class (`ONEDNN_KNOWN_FASTER_ON`), only it is timed, and the rest only if it fails.

The entry points (`train.py`, `python -m inception_tf train`, the benchmarks) call
`configure` before TensorFlow loads; a user's own script does the same:

    from inception_tf.startup import runtime
    choice = runtime.configure(variant="bn", image_size=64, batch_size=128)
    # now import tensorflow / keras; compile with jit_compile=choice.value.jit_compile

A variable the user set is kept, and only the settings it leaves open are timed. Importing
this module loads neither TensorFlow nor Keras.
"""

import atexit
import contextlib
import dataclasses
import fcntl
import functools
import gc
import os
import sys

from inception_tf import native_stderr
from inception_tf.startup import machine as machine_lib
from inception_tf.startup import measured
from inception_tf.startup import precision as precision_lib
from inception_tf.startup import probes

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
INTER_OP = "TF_NUM_INTEROP_THREADS"
INTRA_OP = "TF_NUM_INTRAOP_THREADS"
VARIABLES = (ONEDNN, INTER_OP, INTRA_OP)
LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# "default": keep TensorFlow's own settings and time nothing (the tests' choice); "auto" times.
MODE = "INCEPTION_TF_RUNTIME"
MODES = ("auto", "default")
CACHE_FILE = "runtime.json"  # beside precision.json
PROBE_SECONDS = 1.0  # timed training per candidate and turn (one step at least; the median step counts)
# Rates this close to the fastest are a tie (between processes they differ by more), won
# by the candidate that changes less: the earlier one in CANDIDATES.
TIE = 0.03


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


# oneDNN both ways. One inter-op thread and XLA were candidates too, until measurements
# dropped them (results/peers/d-peers/runtime.json). `jit_compile` stays False, said
# explicitly to Keras, whose "auto" would compile with XLA.
CANDIDATES = (
    Setting(onednn=False),
    Setting(onednn=True),
)
# A known answer for a known class of CPU, checked by timing it: on CPUs with bfloat16
# arithmetic, oneDNN off trained several times slower than on in every workload
# measured (machines D and E: results/peers/README.md), so there only oneDNN on is
# timed (each precision in a process of its own, side by side), and off only if on fails.
ONEDNN_KNOWN_FASTER_ON = ("avx512_bf16", "amx_bf16")


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


def settings_to_time(given):
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


def question(workload, precision, given):
    """Where the runtime's answer for this workload, precision and user variables is stored."""
    return measured.Question(measured.cache_path(CACHE_FILE), machine_lib.cpu_machine(),
                             {**dataclasses.asdict(workload), "precision": precision, "given": given})


# --- Timing: processes that warm up side by side, then take turns ---------------------------

def time_settings(settings, workload, precisions, start=probes.Probe, log=print, cores=None):
    """`({(setting, precision): images/s}, {setting: {precision: why left out}})`.

    Every setting's process (`start(setting, workload, precisions, screen=...)`, a `Probe`
    unless a test fakes it) warms up at once; where the cores outnumber the processes a
    process per precision would need (`cores`: this machine's), each precision gets its
    own, so that their models trace side by side. Then one process works at a time, in
    the turns of `measured.measure`. A process that fails is left out with a line saying
    why."""
    groups = _groups(settings, precisions, cores)
    started, left_out, timers = [], {setting: {} for setting in settings}, {}
    try:
        for setting in settings:
            for group in groups:
                started.append((setting, group, start(setting, workload, group, screen=len(precisions) > 1)))
        for setting, group, probe in started:
            try:
                left_out[setting].update(probe.ready())
            except RuntimeError as error:
                what = setting.name if len(group) == len(precisions) else f"{setting.name} in {', '.join(group)}"
                log(f"runtime: {what} failed, left out ({error})")
                left_out[setting].update({policy: f"failed ({error})" for policy in group})
                continue
            for policy in group:
                if policy not in left_out[setting]:
                    timers[setting, policy] = functools.partial(probe.rate, policy)
        rates = measured.measure(timers, seconds=PROBE_SECONDS, log=lambda line: log(f"runtime: {line}"),
                                 label=lambda pair: pair[0].name)
    finally:
        for *_, probe in started:
            probe.close()
    return rates, left_out


def _groups(settings, precisions, cores=None):
    """The precisions each setting's processes build: one each where the cores
    outnumber the processes that takes (`cores`: this machine's), else all in one."""
    cores = _cores() if cores is None else cores
    return [[policy] for policy in precisions] if len(settings) * len(precisions) <= cores else [list(precisions)]


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def onednn_enabled():
    """Whether the TensorFlow loaded here runs oneDNN (its own answer, after the variable)."""
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's one report of it (2.21)

    return bool(_pywrap_util_port.IsMklEnabled())


# --- The choice --------------------------------------------------------------------------------

def _given_text(given):
    return ", ".join(f"{name}={value}" for name, value in given.items())


def choose_setting(workload, precision="float32", start=probes.Probe, log=print, environ=None, gpu=None,
                   cpu_features=None):
    """The `measured.Choice` of runtime for training `workload` (a `precision.Workload`) here.

    `precision`: the one the run trains in, or "auto": then every CPU precision is timed
    under every setting, the runtime is the one of the fastest pair, and the precision's
    answer (its rates under that runtime) is stored for `precision.choose_policy` to find.
    `start(setting, workload, precisions)` is `Probe` unless a test fakes it; `environ`
    is os.environ and `cpu_features` this CPU's (as `question` read them) unless a test gives
    its own. A stored answer for this machine and workload is reused; co-located
    processes (a cluster's workers on one machine) measure once, the others wait for it.
    """
    environ = os.environ if environ is None else environ
    mode = environ.get(MODE) or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE} must be one of {MODES}. Received: {MODE}={mode!r}")
    given = given_variables(environ)
    if mode == "default":
        setting = Setting(onednn=_flag(ONEDNN, given[ONEDNN]) if ONEDNN in given else None,
                          inter_op_threads=_count(INTER_OP, given.get(INTER_OP, 0)))
        return _choice(setting, f"{MODE}=default" + (f"; {_given_text(given)} set by you" if given else ""), given=given)
    found = settings_to_time(given)
    if (machine_lib.has_gpu() if gpu is None else gpu):
        return _choice(Setting(), "GPUs train here: nothing to time on the CPU that feeds them", given=given)
    if len(found) == 1:
        return _choice(found[0], f"set by you: {_given_text(given)}", given=given)
    precisions = precision_lib.policies([]) if precision == "auto" else [precision]
    asked, names = question(workload, precision, given), {setting.name: setting for setting in found}
    in_precision = {}

    known, not_timed = _known_answer(found, environ, asked.machine["cpu_features"] if cpu_features is None else cpu_features)

    def timed():
        first = [known] if known else found
        log(_timing_line(first, precisions, not_timed, asked.path))
        pairs, left_out = time_settings(first, workload, precisions, start=start, log=log)
        if known and not pairs:  # the known answer failed: the rest after all
            not_timed.clear()
            rest = [setting for setting in found if setting != known]
            log(f"runtime: timing {' and '.join(s.name for s in rest)} after all")
            pairs, left_out = time_settings(rest, workload, precisions, start=start, log=log)
        best = _best_by_setting(pairs)
        rates = {name: rate for name, (_, rate) in best.items()}
        in_precision.update({name: policy for name, (policy, _) in best.items()})
        if precision == "auto" and rates:
            winner = names[_fastest(rates, names)]
            _store_precision(workload, pairs, winner, left_out.get(winner, {}), log)
        return rates

    with _measuring(asked.path):
        entry, rates, where = measured.choose(
            asked, timed, lambda rates: _fastest(rates, names), lambda entry: entry.get("choice") in names,
            log=lambda error: log(f"runtime: {error}"),
            extra=lambda: {**({"precisions": in_precision} if precision == "auto" else {}),
                           **({"left_out": dict(not_timed)} if not_timed else {})},
        )
    if entry is None:
        return _choice(Setting(), "every probe failed", given=given)
    reason = f"{where}: {measured.format_rates(entry['rates'], entry.get('left_out'), entry.get('precisions') if precision == 'auto' else None)}"
    return _choice(names[entry["choice"]], (f"{_given_text(given)} set by you; " if given else "") + reason, dict(entry["rates"]), given)


def _known_answer(found, environ, features):
    """`(setting, {name: why})`: the oneDNN-on setting of `found` on a CPU with
    ONEDNN_KNOWN_FASTER_ON, and the others it leaves untimed; else `(None, {})`. oneDNN
    limited to older instruction sets by ONEDNN_MAX_CPU_ISA is not that CPU."""
    which = [feature for feature in ONEDNN_KNOWN_FASTER_ON if feature in features]
    known = next((setting for setting in found if setting.onednn), None)
    if len(found) < 2 or environ.get(machine_lib.ONEDNN_ISA) or not which or known is None:
        return None, {}
    return known, {s.name: f"not timed: known slower on CPUs with {' and '.join(which)}" for s in found if s != known}


def _timing_line(settings, precisions, not_timed, path):
    processes = len(settings) * len(_groups(settings, precisions))
    return (f"runtime: timing {' and '.join(s.name for s in settings)} in {' and '.join(precisions)} on this machine"
            + "".join(f" ({name} {why})" for name, why in not_timed.items())
            + (f", {processes} processes warming up at once, then timed in turns" if processes > 1 else ", 1 process warming up, then timed")
            + f" (once; the answer is stored in {path})")


def _best_by_setting(pairs):
    """`{setting name: (its fastest precision, that rate)}` of `{(setting, precision): rate}`."""
    best = {}
    for (setting, policy), rate in pairs.items():
        if rate > best.get(setting.name, (None, 0.0))[1]:
            best[setting.name] = (policy, rate)
    return best


def _choice(setting, reason, rates=None, given=None):
    return measured.Choice("runtime", setting, reason, rates or {}, given or {})


def _fastest(rates, names):
    """Rates within TIE of the highest are a tie, won by the earlier setting."""
    return measured.fastest(rates, list(names), TIE)


def _store_precision(workload, pairs, winner, left_out, log):
    """The precision's answer under the winning runtime, where `precision.choose_policy` looks."""
    rates = {policy: rate for (setting, policy), rate in pairs.items() if setting == winner}
    asked = precision_lib.question(workload)
    entry = measured.new_entry(asked, rates, measured.fastest(rates, precision_lib.ORDER), left_out=left_out,
                               under=f"runtime: {winner.name}")
    measured.store_or_say(asked.path, entry, log=lambda error: log(f"precision: {error}"))


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
    for name, value in choice.value.environment().items():
        if name not in choice.given:
            os.environ[name] = value
    _applied = choice
    return choice


def _check_not_loaded():
    if "tensorflow" in sys.modules:
        raise RuntimeError(
            "The runtime must be chosen before TensorFlow loads: call inception_tf.startup.runtime.configure() "
            "before importing tensorflow, keras or a name from inception_tf. Received: tensorflow already imported"
        )


def applied():
    """The `measured.Choice` this process loaded TensorFlow with, or None."""
    return _applied


def loaded_setting():
    """The runtime TensorFlow runs under in this process, as it reports it."""
    return Setting(onednn=onednn_enabled(), inter_op_threads=_count(INTER_OP, os.environ.get(INTER_OP) or 0),
                   jit_compile=jit_compile() is True)


def jit_compile():
    """For `Model.compile`: the chosen XLA setting, else Keras's "auto"."""
    return _applied.value.jit_compile if _applied else "auto"


def quiet_import_tensorflow():
    """Imports TensorFlow and finds its devices with their C++ start-up lines (oneDNN,
    CUDA stubs and cuInit, absl) kept off the terminal: TensorFlow prints them whatever
    TF_CPP_MIN_LOG_LEVEL says. A level of 0 or 1 asks for them, and gets them; unset, the
    level becomes 2 (later C++ messages below warnings stay off too). On a failed import
    the lines are shown with the error. Training steps then sum their gradients in a fixed
    order (`keras_fixes.deterministic_gradient_sums`): a rerun gives the same bits.

    The hundreds of thousands of objects that TensorFlow and Keras hold from then on are
    frozen (`gc.freeze`): every full collection would scan them again, and halves its
    time without them. An exit handler freezes the rest: Python's finalisation would scan
    them all, for a second or two, only to free memory the process is giving back; files
    are closed where they are written, never left to a collector."""
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
    gc.freeze()
    atexit.unregister(gc.freeze)  # once, however many calls
    atexit.register(gc.freeze)


def configure(variant="bn", image_size=64, batch_size=128, aux_heads=True, precision="float32", log=print,
              **choose_kwargs):
    """Chooses the runtime for training this workload here (`choose_setting`), applies it, logs
    its line, and loads TensorFlow quietly. Call it before anything imports TensorFlow;
    returns the `measured.Choice` (its `value.jit_compile` is for `Model.compile`)."""
    _check_not_loaded()
    workload = precision_lib.Workload(variant, image_size, batch_size, aux_heads)
    choice = apply(choose_setting(workload, precision, log=log, **choose_kwargs))
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

