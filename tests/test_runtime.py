"""Choosing TensorFlow's runtime by timing it: the choice, the stored answer, the user's
own variables, co-located processes, the real probe process, and a quiet start."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from inception_tf.tasks import precision, runtime
from inception_tf.tasks.runtime import CANDIDATES, INTER_OP, ONEDNN, Setting

OFF, ON, ON_ONE_THREAD, ON_XLA = CANDIDATES
WORKLOAD = dict(variant="bn", image_size=64, batch_size=128)
NO_USER_VARIABLES = {}


@pytest.fixture(autouse=True)
def _own_store(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "_applied", None)


def _timer(rates):
    """A fake probe: `rates` by setting; records each call."""
    calls = []

    def timer(setting, workload):
        calls.append(setting)
        return rates[setting]

    timer.calls = calls
    return timer


def _never(setting, workload):
    raise AssertionError("timed again where the stored answer should have served")


def _choose(timer, environ=NO_USER_VARIABLES, lines=None, **workload):
    log = (lines if lines is not None else []).append
    return runtime.choose(**{**WORKLOAD, **workload}, timer=timer, log=log, environ=environ, gpu=False)


def test_an_avx2_cpu_where_onednn_pays_trains_with_it_and_says_why():
    lines = []
    timer = _timer({OFF: 55.3, ON: 96.1, ON_ONE_THREAD: 90.0, ON_XLA: 30.0})
    choice = _choose(timer, lines=lines)
    assert choice.setting == ON
    assert choice.line == (
        "runtime: oneDNN on (measured here: oneDNN on 96.1 images/s, oneDNN on, 1 inter-op thread 90.0 images/s, "
        "oneDNN off 55.3 images/s, oneDNN on, XLA 30.0 images/s)"
    )
    assert any("timing 4 settings on this machine, a process each" in line for line in lines)
    # Two turns each, but one for those over 1.5x slower than the best after the first.
    assert timer.calls == [OFF, ON, ON_ONE_THREAD, ON_XLA, ON, ON_ONE_THREAD]


def test_a_cpu_where_onednn_is_slower_trains_without_it():
    choice = _choose(_timer({OFF: 80.0, ON: 16.5, ON_ONE_THREAD: 15.0, ON_XLA: 10.0}))
    assert choice.setting == OFF and choice.setting.environment() == {ONEDNN: "0"}


def test_the_rate_is_the_median_of_the_turns():
    rates = iter([50.0, 60.0, 40.0, 10.0, 70.0, 55.0, 45.0])
    choice = _choose(lambda setting, workload: next(rates))
    assert choice.rates == {"oneDNN off": 60.0, "oneDNN on": 57.5, "oneDNN on, 1 inter-op thread": 42.5,
                            "oneDNN on, XLA": 10.0}
    assert choice.setting == OFF


def test_a_near_tie_goes_to_the_setting_that_changes_less():
    choice = _choose(_timer({OFF: 14.1, ON: 30.26, ON_ONE_THREAD: 30.33, ON_XLA: 14.7}))
    assert choice.setting == ON
    assert _choose(_timer({OFF: 14.1, ON: 30.0, ON_ONE_THREAD: 31.5, ON_XLA: 14.7}), image_size=96).setting == ON_ONE_THREAD


def test_a_second_run_reuses_the_stored_answer_and_another_workload_measures_again():
    timer = _timer({OFF: 55.3, ON: 96.1, ON_ONE_THREAD: 90.0, ON_XLA: 30.0})
    _choose(timer)
    second = _choose(_never)
    assert second.setting == ON and "measured on this machine" in second.reason and "oneDNN on 96.1" in second.reason
    stored = json.loads(runtime.cache_path().read_text())["entries"]
    assert len(stored) == 1 and stored[0]["choice"] == "oneDNN on"
    assert stored[0]["machine"]["cores"] == os.cpu_count() and stored[0]["machine"]["tensorflow"]
    assert runtime.cache_path().parent == precision.cache_path().parent
    calls = len(timer.calls)
    _choose(timer, image_size=224, batch_size=32)
    assert len(timer.calls) > calls


def test_a_variable_the_user_set_is_kept_and_only_the_rest_is_timed():
    timer = _timer({Setting(False): 55.0, Setting(False, 1): 60.0, Setting(False, 0, True): 20.0})
    choice = _choose(timer, environ={ONEDNN: "0"})
    assert set(timer.calls) == {Setting(False), Setting(False, 1), Setting(False, 0, True)}
    assert choice.setting == Setting(False, 1)
    assert choice.line.startswith("runtime: oneDNN off, 1 inter-op thread (TF_ENABLE_ONEDNN_OPTS=0 set by you; measured")


def test_with_every_variable_set_only_xla_is_timed_and_a_bad_value_is_named():
    timer = _timer({Setting(True, 2): 80.0, Setting(True, 2, True): 40.0})
    choice = _choose(timer, environ={ONEDNN: "1", INTER_OP: "2"})
    assert timer.calls == [Setting(True, 2), Setting(True, 2, True), Setting(True, 2)]
    assert choice.setting == Setting(True, 2) and choice.setting.environment() == {ONEDNN: "1", INTER_OP: "2"}
    with pytest.raises(ValueError, match=r"TF_ENABLE_ONEDNN_OPTS must be 0 or 1. Received: TF_ENABLE_ONEDNN_OPTS='maybe'"):
        _choose(_never, environ={ONEDNN: "maybe"})
    with pytest.raises(ValueError, match=r"Received: TF_NUM_INTEROP_THREADS='-1'"):
        _choose(_never, environ={INTER_OP: "-1"})


def test_default_mode_and_gpu_machines_time_nothing():
    choice = _choose(_never, environ={runtime.MODE: "default"})
    assert choice.setting.environment() == {} and choice.line == "runtime: TensorFlow's own settings (INCEPTION_TF_RUNTIME=default)"
    kept = _choose(_never, environ={runtime.MODE: "default", ONEDNN: "0"})
    assert kept.line == "runtime: oneDNN off (INCEPTION_TF_RUNTIME=default; TF_ENABLE_ONEDNN_OPTS=0 set by you)"
    on_gpu = runtime.choose(**WORKLOAD, timer=_never, log=print, environ={}, gpu=True)
    assert on_gpu.setting.environment() == {} and "GPUs train here" in on_gpu.reason
    with pytest.raises(ValueError, match=r"Received: INCEPTION_TF_RUNTIME='fast'"):
        _choose(_never, environ={runtime.MODE: "fast"})


def test_a_failing_probe_is_left_out_and_all_failing_keeps_tensorflows_settings():
    def timer(setting, workload):
        if setting.jit_compile:
            raise RuntimeError("exit code 1: XLA compilation failed")
        return {OFF: 50.0, ON: 70.0, ON_ONE_THREAD: 60.0}[setting]

    lines = []
    choice = _choose(timer, lines=lines)
    assert choice.setting == ON and "XLA" not in choice.reason
    assert "runtime: oneDNN on, XLA failed, left out (exit code 1: XLA compilation failed)" in lines

    def broken(setting, workload):
        raise RuntimeError("exit code 1")

    assert _choose(broken, image_size=96).setting == Setting()


def test_processes_on_one_machine_measure_once_and_agree():
    """Co-located workers of a cluster: one times, the other waits for its answer."""
    timer = _timer({OFF: 55.3, ON: 96.1, ON_ONE_THREAD: 90.0, ON_XLA: 30.0})

    def slow(setting, workload):
        time.sleep(0.05)
        return timer(setting, workload)

    choices = []
    threads = [threading.Thread(target=lambda: choices.append(_choose(slow))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(timer.calls) == 6 and {c.setting for c in choices} == {ON}
    assert sorted("measured here" in c.reason for c in choices) == [False, True]


def test_apply_sets_what_the_user_left_open_and_refuses_once_tensorflow_has_loaded(monkeypatch):
    environ = {INTER_OP: "2"}
    monkeypatch.setattr(os, "environ", environ)
    choice = runtime.Choice(ON_ONE_THREAD, "measured here", given={INTER_OP: "2"})
    with pytest.MonkeyPatch.context() as before_tensorflow:
        before_tensorflow.delitem(sys.modules, "tensorflow")
        runtime.apply(choice)
    assert environ == {ONEDNN: "1", INTER_OP: "2"}
    assert runtime.applied() is choice and runtime.jit_compile() is False
    with pytest.raises(RuntimeError, match="before TensorFlow loads.*Received: tensorflow already imported"):
        runtime.configure(**WORKLOAD, timer=_never)


def test_the_probe_process_loads_tensorflow_under_the_setting_it_times():
    """The real probe: a fresh process per setting, the variable reaching TensorFlow."""
    tiny = {"model": precision.Workload(variant="bn", image_size=49, batch_size=4), "precision": "float32"}
    for setting in (OFF, ON):
        assert runtime.probe(setting, tiny, seconds=0.5) > 0
    with pytest.raises(RuntimeError, match="exit code"):
        runtime.probe(OFF, {**tiny, "model": precision.Workload(variant="bn", image_size=8, batch_size=4)}, seconds=0.1)


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_help_loads_no_tensorflow_and_commands_start_without_its_lines():
    env = {name: value for name, value in os.environ.items() if name != runtime.LOG_LEVEL}
    code = "import sys; from inception_tf import cli, runtime; cli.build_parser(); print('tensorflow' in sys.modules)"
    assert _run("-c", code).stdout.strip() == "False"
    done = subprocess.run([sys.executable, "-m", "inception_tf", "summary", "--image-size", "64", "--num-classes", "3"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "inception_5b" in done.stdout
    assert done.stderr == "", done.stderr
    # Asked for: TF_CPP_MIN_LOG_LEVEL=0 shows them.
    shown = _run("-m", "inception_tf", "summary", "--image-size", "64", env={runtime.LOG_LEVEL: "0"})
    assert "cudart_stub" in shown.stderr or "port.cc" in shown.stderr or "cuInit" in shown.stderr


def test_a_bad_runtime_variable_stops_train_before_tensorflow_loads_with_one_line():
    done = _run("train.py", "--preset", "quick", env={ONEDNN: "maybe"})
    assert done.returncode == 2
    assert done.stderr == "error: TF_ENABLE_ONEDNN_OPTS must be 0 or 1. Received: TF_ENABLE_ONEDNN_OPTS='maybe'\n"
