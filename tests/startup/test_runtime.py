"""Choosing TensorFlow's runtime by timing it: the choice, the stored answer, the user's
own variables, co-located processes, the real probe process, and a quiet start."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from inception_tf import choices
from inception_tf.startup import loading, measured, precision, probes, runtime, settings
from inception_tf.startup.precision import Workload
from inception_tf.startup.settings import CANDIDATES, INTER_OP, ONEDNN, Setting
from inception_tf.tasks import timing

OFF, ON = CANDIDATES
F32, BF16 = choices.FLOAT32, choices.BFLOAT16
WORKLOAD = dict(variant="bn", image_size=64, batch_size=128)
NO_USER_VARIABLES = {}


@pytest.fixture(autouse=True)
def _own_store(tmp_path, monkeypatch):
    monkeypatch.setenv(measured.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(settings, "_applied", None)


def _probes(rates, left_out=None, fail=()):
    """Fake probe processes: `rates[setting]` is images/s (or `{precision: images/s}`, or
    an iterator of them); `left_out[setting]` what a process leaves out; a setting in
    `fail` fails to start. Records the processes started and each timed step."""
    started, calls, built = [], [], []

    class Fake:
        def __init__(self, setting, workload, precisions, screen=None):
            self.setting, self.precisions = setting, precisions
            started.append(setting)
            built.append((setting, list(precisions), screen))

        def ready(self):
            if self.setting in fail:
                raise RuntimeError("exit code 1: MemoryError")
            return dict((left_out or {}).get(self.setting, {}))

        def rate(self, policy, seconds):
            calls.append((self.setting, policy, seconds))
            found = rates[self.setting]
            found = next(found) if hasattr(found, "__next__") else found
            return found[policy] if isinstance(found, dict) else found

        def close(self):
            pass

    Fake.started, Fake.calls, Fake.built = started, calls, built
    return Fake


def _never(setting, workload, precisions, screen=None):
    raise AssertionError("timed again where the stored answer should have served")


def _choose(start, environ=NO_USER_VARIABLES, lines=None, precision="float32", cpu_features=("avx2", "fma"), **workload):
    """`choose_setting` on an AVX2 CPU (machine C's class) unless `cpu_features` say otherwise."""
    log = (lines if lines is not None else []).append
    asked = Workload(**{**WORKLOAD, **workload})
    return runtime.choose_setting(asked, precision, start=start, log=log, environ=environ, gpu=False,
                                  cpu_features=list(cpu_features))


def test_an_avx2_cpu_where_onednn_pays_trains_with_it_and_says_why():
    lines = []
    start = _probes({OFF: 55.3, ON: 96.1})
    choice = _choose(start, lines=lines)
    assert choice.value == ON and choice.value.environment() == {ONEDNN: "1"}
    assert choice.line == "runtime: oneDNN on (measured here: oneDNN on 96.1 images/s, oneDNN off 55.3 images/s)"
    assert any("2 processes warming up at once, then timed in turns" in line for line in lines)
    # One step each first; oneDNN off, over 1.5x slower, is not timed again, and a
    # setting left alone needs no further turns.
    assert start.calls == [(OFF, F32, 0.0), (ON, F32, 0.0)]


def test_close_settings_take_further_turns_and_the_rate_is_their_median():
    rates = {OFF: iter([50.0, 60.0, 40.0]), ON: iter([45.0, 70.0, 55.0])}
    start = _probes(rates)
    choice = _choose(start)
    assert choice.rates == {"oneDNN off": 50.0, "oneDNN on": 55.0} and choice.value == ON
    assert [seconds for *_, seconds in start.calls] == [0.0, 0.0] + [runtime.PROBE_SECONDS] * 4


def test_a_cpu_where_onednn_is_slower_trains_without_it():
    choice = _choose(_probes({OFF: 80.0, ON: 16.5}))
    assert choice.value == OFF and choice.value.environment() == {ONEDNN: "0"}


def test_a_near_tie_goes_to_the_setting_that_changes_less():
    assert _choose(_probes({OFF: 30.33, ON: 30.26})).value == OFF
    assert _choose(_probes({OFF: 30.0, ON: 31.5}), image_size=96).value == ON


def test_auto_precision_picks_the_fastest_pair_and_stores_the_precisions_answer_under_it(monkeypatch):
    """bfloat16 pays under oneDNN, and is left out unbuilt without it; four processes
    would outnumber the 2 cores, so each setting builds both precisions in one."""
    monkeypatch.setattr(runtime, "_cores", lambda: 2)
    lines = []
    start = _probes({OFF: {F32: 150.0}, ON: {F32: 380.0, BF16: 550.0}},
                    left_out={OFF: {BF16: "its 3x3 convolution runs 9.0x longer than float32's here"}})
    choice = _choose(start, lines=lines, precision="auto")
    assert start.built == [(OFF, [F32, BF16], True), (ON, [F32, BF16], True)]
    assert choice.value == ON
    assert choice.line == ("runtime: oneDNN on (measured here: oneDNN on 550.0 images/s in mixed_bfloat16, "
                           "oneDNN off 150.0 images/s in float32)")
    assert any("in float32 and mixed_bfloat16" in line for line in lines)
    # The run's own precision.choose_policy finds the answer measured under oneDNN on.
    found = precision.choose_policy("auto", precision.Workload(**WORKLOAD), _never_precision, gpus=[], log=print)
    assert found.value == BF16 and found.rates == {F32: 380.0, BF16: 550.0}
    assert "float32 380.0 images/s" in found.reason and "stored in" in found.reason


def test_on_a_cpu_with_bfloat16_only_onednn_on_is_timed_each_precision_in_a_process(monkeypatch):
    """Machines D's and E's class (`ONEDNN_KNOWN_FASTER_ON`): oneDNN off is not timed, and
    oneDNN on's two precisions trace side by side, a process each, both screened."""
    monkeypatch.setattr(runtime, "_cores", lambda: 2)
    lines = []
    start = _probes({ON: {F32: 380.0, BF16: 550.0}})
    choice = _choose(start, lines=lines, precision="auto", cpu_features=["avx2", "avx512_bf16"])
    assert start.built == [(ON, [F32], True), (ON, [BF16], True)]
    assert choice.value == ON
    assert choice.line == ("runtime: oneDNN on (measured here: oneDNN on 550.0 images/s in mixed_bfloat16, "
                           "oneDNN off left out (not timed: known slower on CPUs with avx512_bf16))")
    assert any("(oneDNN off not timed: known slower on CPUs with avx512_bf16), 2 processes warming up" in line
               for line in lines)
    found = precision.choose_policy("auto", precision.Workload(**WORKLOAD), _never_precision, gpus=[], log=print)
    assert found.value == BF16 and found.rates == {F32: 380.0, BF16: 550.0}
    again = _choose(_never, precision="auto", cpu_features=["avx512_bf16"])
    assert again.value == ON and "oneDNN off left out (not timed" in again.reason


def test_where_the_known_answer_fails_or_onednn_is_limited_the_rest_is_timed():
    lines = []
    start = _probes({OFF: 50.0}, fail=(ON,))
    choice = _choose(start, lines=lines, cpu_features=["amx_bf16"])
    assert start.started == [ON, OFF] and choice.value == OFF
    assert "runtime: timing oneDNN off after all" in lines and "not timed" not in choice.line
    assert any(line.startswith("runtime: timing oneDNN on in float32 on this machine (oneDNN off not timed: known slower "
                               "on CPUs with amx_bf16), 1 process warming up, then timed (once;") for line in lines)
    # oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA) does not run this CPU's bfloat16: both timed.
    start = _probes({OFF: 50.0, ON: 70.0})
    _choose(start, environ={"ONEDNN_MAX_CPU_ISA": "AVX2"}, cpu_features=["avx512_bf16"], image_size=96)
    assert start.started == [OFF, ON]


def test_a_precision_left_out_is_stored_with_why_and_a_second_run_reuses_both_answers():
    why = "its 3x3 convolution runs 14.8x longer than float32's here"
    start = _probes({OFF: {F32: 55.3}, ON: {F32: 96.1}}, left_out={OFF: {BF16: why}, ON: {BF16: why}})
    _choose(start, precision="auto")
    again = _choose(_never, precision="auto")
    assert again.value == ON and "measured on this machine" in again.reason and "oneDNN on 96.1 images/s in float32" in again.reason
    found = precision.choose_policy("auto", precision.Workload(**WORKLOAD), _never_precision, gpus=[], log=print)
    assert found.value == F32 and found.reason.endswith(f"float32 96.1 images/s, mixed_bfloat16 left out ({why})")
    entries = json.loads(measured.cache_path().read_text())["entries"]
    assert sorted(entry["kind"] for entry in entries) == ["precision", "runtime"]


def _never_precision(policies, workload):
    raise AssertionError("the precision was timed again where the runtime's probe stored it")


def test_a_second_run_reuses_the_stored_answer_and_another_workload_measures_again():
    start = _probes({OFF: 55.3, ON: 96.1})
    _choose(start)
    second = _choose(_never)
    assert second.value == ON and "measured on this machine" in second.reason and "oneDNN on 96.1" in second.reason
    stored = json.loads(runtime.settings_question(Workload(**WORKLOAD), "float32", {}).path.read_text())["entries"]
    assert len(stored) == 1 and stored[0]["choice"] == "oneDNN on"
    assert stored[0]["machine"]["cores"] == os.cpu_count() and stored[0]["machine"]["tensorflow"]
    # One store per machine: the runtime's and the precision's answers in one file.
    assert runtime.settings_question(Workload(**WORKLOAD), "float32", {}).path == precision.policy_question(Workload(**WORKLOAD)).path
    calls = len(start.calls)
    _choose(start, image_size=224, batch_size=32)
    assert len(start.calls) > calls


def test_a_variable_the_user_set_is_kept_and_only_the_rest_is_timed():
    start = _probes({Setting(False, 1): 60.0, Setting(True, 1): 50.0})
    choice = _choose(start, environ={INTER_OP: "1"})
    assert start.started == [Setting(False, 1), Setting(True, 1)]
    assert choice.value == Setting(False, 1)
    assert choice.line.startswith("runtime: oneDNN off, 1 inter-op thread (TF_NUM_INTEROP_THREADS=1 set by you; measured")


def test_with_oneDNN_set_nothing_is_timed_and_a_bad_value_is_named():
    choice = _choose(_never, environ={ONEDNN: "1", INTER_OP: "2"})
    assert choice.value == Setting(True, 2) and choice.value.environment() == {ONEDNN: "1", INTER_OP: "2"}
    assert choice.reason == "set by you: TF_ENABLE_ONEDNN_OPTS=1, TF_NUM_INTEROP_THREADS=2"
    with pytest.raises(ValueError, match=r"TF_ENABLE_ONEDNN_OPTS must be 0 or 1. Received: TF_ENABLE_ONEDNN_OPTS='maybe'"):
        _choose(_never, environ={ONEDNN: "maybe"})
    with pytest.raises(ValueError, match=r"Received: TF_NUM_INTEROP_THREADS='-1'"):
        _choose(_never, environ={INTER_OP: "-1"})


def test_default_mode_and_gpu_machines_time_nothing():
    choice = _choose(_never, environ={settings.MODE: "default"})
    assert choice.value.environment() == {} and choice.line == "runtime: TensorFlow's own settings (INCEPTION_TF_RUNTIME=default)"
    kept = _choose(_never, environ={settings.MODE: "default", ONEDNN: "0"})
    assert kept.line == "runtime: oneDNN off (INCEPTION_TF_RUNTIME=default; TF_ENABLE_ONEDNN_OPTS=0 set by you)"
    on_gpu = runtime.choose_setting(precision.Workload(**WORKLOAD), start=_never, log=print, environ={}, gpu=True)
    assert on_gpu.value.environment() == {} and "GPUs train here" in on_gpu.reason
    with pytest.raises(ValueError, match=r"Received: INCEPTION_TF_RUNTIME='fast'"):
        _choose(_never, environ={settings.MODE: "fast"})


def test_a_failing_probe_is_left_out_and_all_failing_keeps_tensorflows_settings():
    lines = []
    choice = _choose(_probes({OFF: 50.0, ON: 70.0}, fail=(OFF,)), lines=lines)
    assert choice.value == ON and "off" not in choice.reason
    assert "runtime: oneDNN off failed, left out (exit code 1: MemoryError)" in lines
    assert _choose(_probes({}, fail=(OFF, ON)), image_size=96).value == Setting()


def test_processes_on_one_machine_measure_once_and_agree():
    """Co-located workers of a cluster: one times, the other waits for its answer."""
    start = _probes({OFF: 55.3, ON: 96.1})

    class Slow(start):
        def ready(self):
            time.sleep(0.05)
            return super().ready()

    choices = []
    threads = [threading.Thread(target=lambda: choices.append(_choose(Slow))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(start.started) == 2 and {c.value for c in choices} == {ON}
    assert sorted("measured here" in c.reason for c in choices) == [False, True]


def test_the_probe_processes_load_tensorflow_under_the_setting_they_time():
    """The real probes: a process per setting, the variable reaching TensorFlow, and
    bfloat16 either timed or left out with the reason (which, depends on this CPU), a
    process that cannot build the model failing with its own words, and a process whose
    TensorFlow reports another oneDNN state than its setting refused before it builds."""
    tiny = precision.Workload(variant="bn", image_size=49, batch_size=4)
    unbuildable = precision.Workload(variant="bn", image_size=8, batch_size=4)
    # All four start at once: each spends most of its life loading TensorFlow.
    started = off, on, broken, lying = [probes.Probe(OFF, tiny, [F32], screen=False),
                                        probes.Probe(ON, tiny, [F32, BF16], screen=True),
                                        probes.Probe(OFF, unbuildable, [F32], screen=False),
                                        probes.Probe(OFF, unbuildable, [F32], screen=False)]
    try:
        assert off.ready() == {} and off.rate(F32, 0.2) > 0
        left_out = on.ready()
        assert set(left_out) <= {BF16} and on.rate(F32, 0.2) > 0
        if BF16 in left_out:
            assert "longer than float32's" in left_out[BF16] or "cannot train here" in left_out[BF16]
        else:
            assert on.rate(BF16, 0.2) > 0
        with pytest.raises(RuntimeError, match="exit code 1: .*no precision can train here"):
            broken.ready()
        # TensorFlow told to load otherwise than the setting says is caught, before the
        # model that cannot be built is tried.
        lying.setting = ON  # started under TF_ENABLE_ONEDNN_OPTS=0
        with pytest.raises(RuntimeError, match="TensorFlow loaded with oneDNN off"):
            lying.ready()
    finally:
        for probe in started:
            probe.close()


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_help_loads_no_tensorflow_and_commands_start_without_its_lines():
    env = {name: value for name, value in os.environ.items() if name != loading.LOG_LEVEL}
    code = "import sys; from inception_tf import cli; from inception_tf.startup import runtime; cli.build_parser(); print('tensorflow' in sys.modules)"
    assert _run("-c", code).stdout.strip() == "False"
    done = subprocess.run([sys.executable, "-m", "inception_tf", "summary", "--image-size", "64", "--num-classes", "3"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "inception_5b" in done.stdout
    assert done.stderr == "", done.stderr
    # Asked for: TF_CPP_MIN_LOG_LEVEL=0 shows them.
    shown = _run("-m", "inception_tf", "summary", "--image-size", "64", env={loading.LOG_LEVEL: "0"})
    assert "cudart_stub" in shown.stderr or "port.cc" in shown.stderr or "cuInit" in shown.stderr


def test_a_bad_runtime_variable_stops_train_before_tensorflow_loads_with_one_line():
    done = _run("train.py", "--preset", "quick", env={ONEDNN: "maybe"})
    assert done.returncode == 2
    assert done.stderr == "error: TF_ENABLE_ONEDNN_OPTS must be 0 or 1. Received: TF_ENABLE_ONEDNN_OPTS='maybe'\n"


def test_the_convolution_check_screens_candidates_never_a_named_precision(monkeypatch, capsys):
    """A probe screening precisions (the run asked for the fastest: its own or a sibling's
    process builds the others) leaves out one whose convolution is emulated
    (`timing.EMULATED`); a probe for the one precision a run names builds it whatever
    the check would say (it once refused bfloat16 on a CPU where it trained 1.45x faster)."""
    import io

    monkeypatch.setattr(timing, "convolution_slowdown", lambda policy, workload: 10 * timing.EMULATED)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no timing asked: the probe reports and ends
    built = []  # the real step is built in test_the_probe_processes_load_tensorflow_under_the_setting_they_time
    monkeypatch.setattr(timing, "StepTimer", lambda policy, workload, jit_compile: built.append(policy))
    tiny = {"variant": "bn", "image_size": 49, "batch_size": 2, "aux_heads": True}

    def report(precisions, screen):
        built.clear()
        timing.probe_main({"workload": tiny, "precisions": precisions, "screen": screen, "jit_compile": False})
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(probes.RESULT_PREFIX)]
        return json.loads(lines[-1][len(probes.RESULT_PREFIX):])["left_out"], built

    emulated = {BF16: "its 3x3 convolution runs 40.0x longer than float32's here"}
    assert report([F32, BF16], screen=True) == (emulated, [F32])
    assert report([BF16], screen=True) == (emulated, [])  # bfloat16's own process, screened
    assert report([BF16], screen=False) == ({}, [BF16])
