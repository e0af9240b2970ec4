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

A variable the user set is kept, and only the settings it leaves open are timed
(`settings` reads the variables and applies the choice; `loading` then loads TensorFlow).
Importing this module loads neither TensorFlow nor Keras.
"""

import contextlib
import dataclasses
import fcntl
import functools
import os

from inception_tf.startup import loading
from inception_tf.startup import machine as machine_lib
from inception_tf.startup import measured
from inception_tf.startup import precision as precision_lib
from inception_tf.startup import probes
from inception_tf.startup import settings as settings_lib
from inception_tf.startup.settings import MODE, MODES, Setting

PROBE_SECONDS = 1.0  # timed training per candidate and turn (one step at least; the median step counts)
# Rates this close to the fastest are a tie (between processes they differ by more), won
# by the candidate that changes less: the earlier one in `settings.CANDIDATES`.
TIE = 0.03


# A known answer for a known class of CPU, checked by timing it: on CPUs with bfloat16
# arithmetic, oneDNN off trained several times slower than on in every workload
# measured (machines D and E: results/peers/README.md), so there only oneDNN on is
# timed (each precision in a process of its own, side by side), and off only if on fails.
ONEDNN_KNOWN_FASTER_ON = ("avx512_bf16", "amx_bf16")


def settings_question(workload, precision, given):
    """Where the runtime's answer for this workload, precision and user variables is stored."""
    return measured.question("runtime", machine_lib.cpu_machine(),
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
    is os.environ and `cpu_features` this CPU's (as `settings_question` read them) unless a test gives
    its own. A stored answer for this machine and workload is reused; co-located
    processes (a cluster's workers on one machine) measure once, the others wait for it.
    """
    environ = os.environ if environ is None else environ
    mode = environ.get(MODE) or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE} must be one of {MODES}. Received: {MODE}={mode!r}")
    given = settings_lib.given_variables(environ)
    if mode == "default":
        reason = f"{MODE}=default" + (f"; {_given_text(given)} set by you" if given else "")
        return _choice(settings_lib.as_given(given), reason, given=given)
    found = settings_lib.settings_to_time(given)
    if (machine_lib.has_gpu() if gpu is None else gpu):
        return _choice(Setting(), "GPUs train here: nothing to time on the CPU that feeds them", given=given)
    if len(found) == 1:
        return _choice(found[0], f"set by you: {_given_text(given)}", given=given)
    precisions = precision_lib.policies([]) if precision == "auto" else [precision]
    asked, names = settings_question(workload, precision, given), {setting.name: setting for setting in found}
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
    asked = precision_lib.policy_question(workload)
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


def configure(variant="bn", image_size=64, batch_size=128, aux_heads=True, precision="float32", log=print,
              **choose_kwargs):
    """Chooses the runtime for training this workload here (`choose_setting`), applies it, logs
    its line, and loads TensorFlow quietly. Call it before anything imports TensorFlow;
    returns the `measured.Choice` (its `value.jit_compile` is for `Model.compile`)."""
    settings_lib.check_not_loaded()
    workload = precision_lib.Workload(variant, image_size, batch_size, aux_heads)
    choice = settings_lib.apply(choose_setting(workload, precision, log=log, **choose_kwargs))
    log(choice.line)
    loading.quiet_import_tensorflow()
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
        loading.quiet_import_tensorflow()
        return None
    return configure(args.variant[0], args.image_size, args.batch_size, precision=args.precision, log=log)

