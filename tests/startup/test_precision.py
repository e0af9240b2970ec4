"""Choosing the precision by timing it: the choice, the stored answer, the GPU branches."""

import json

import keras
import pytest

from inception_tf.startup import cluster, machine, measured, precision
from inception_tf.choices import BFLOAT16, FLOAT16, FLOAT32
from inception_tf.startup.precision import Workload
from inception_tf.tasks import distribute, timing

WORKLOAD = Workload(variant="bn", image_size=64, batch_size=128)
H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}
V100 = {"name": "Tesla V100-SXM2-16GB", "compute_capability": [7, 0]}
K80 = {"name": "Tesla K80", "compute_capability": [3, 7]}


@pytest.fixture(autouse=True)
def _own_store(tmp_path, monkeypatch):
    monkeypatch.setenv(measured.CACHE_ENV, str(tmp_path / "cache"))


def _timer(rates):
    calls = []

    def timer(policies, workload):
        calls.append((tuple(policies), workload))
        return {policy: rates[policy] for policy in policies}

    timer.calls = calls
    return timer


def _never(policies, workload):
    raise AssertionError("timed again where the stored answer should have served")


def test_a_cpu_where_bfloat16_is_slower_trains_in_float32_and_says_why():
    lines = []
    choice = precision.choose_policy("auto", WORKLOAD, gpus=[], timer=_timer({FLOAT32: 22.1, BFLOAT16: 14.0}), log=lines.append)
    assert choice.value == FLOAT32
    assert choice.reason == "measured here: float32 22.1 images/s, mixed_bfloat16 14.0 images/s"
    assert any("timing float32 and mixed_bfloat16 on this machine" in line for line in lines)


def test_a_cpu_where_bfloat16_is_faster_trains_in_bfloat16():
    choice = precision.choose_policy("auto", WORKLOAD, gpus=[], timer=_timer({FLOAT32: 30.7, BFLOAT16: 53.0}), log=lambda _: None)
    assert choice.value == BFLOAT16


def test_a_second_run_on_the_same_machine_reuses_the_stored_answer():
    timer = _timer({FLOAT32: 22.1, BFLOAT16: 14.0})
    first = precision.choose_policy("auto", WORKLOAD, gpus=[], timer=timer, log=lambda _: None)
    second = precision.choose_policy("auto", WORKLOAD, gpus=[], timer=_never, log=lambda _: None)
    assert len(timer.calls) == 1 and second.value == first.value == FLOAT32
    assert "measured on this machine" in second.reason and "float32 22.1 images/s" in second.reason
    stored = json.loads(precision.policy_question(WORKLOAD).path.read_text())["entries"]
    assert len(stored) == 1 and stored[0]["choice"] == FLOAT32
    assert stored[0]["machine"]["cores"] and stored[0]["machine"]["tensorflow"]


def test_another_machine_or_workload_measures_again(monkeypatch):
    timer = _timer({FLOAT32: 22.1, BFLOAT16: 14.0})
    precision.choose_policy("auto", WORKLOAD, gpus=[], timer=timer, log=lambda _: None)
    precision.choose_policy("auto", Workload("paper", 224, 32), gpus=[], timer=timer, log=lambda _: None)
    monkeypatch.setattr(machine, "cpu_info", lambda: ("Another CPU", ["amx_bf16", "avx512_bf16"]))
    faster_bf16 = _timer({FLOAT32: 30.0, BFLOAT16: 50.0})
    assert precision.choose_policy("auto", WORKLOAD, gpus=[], timer=faster_bf16, log=lambda _: None).value == BFLOAT16
    assert len(timer.calls) == 2 and len(faster_bf16.calls) == 1
    assert len(json.loads(precision.policy_question(WORKLOAD).path.read_text())["entries"]) == 3


def test_a_onednn_instruction_set_limit_is_another_machine(monkeypatch):
    monkeypatch.delenv(machine.ONEDNN_ISA, raising=False)
    timer = _timer({FLOAT32: 22.1, BFLOAT16: 30.0})
    assert precision.choose_policy("auto", WORKLOAD, gpus=[], timer=timer, log=lambda _: None).value == BFLOAT16
    assert "onednn_max_cpu_isa" not in machine.cpu_machine()  # answers stored before the key still match
    monkeypatch.setenv(machine.ONEDNN_ISA, "AVX2")
    limited = _timer({FLOAT32: 22.1, BFLOAT16: 3.0})
    assert precision.choose_policy("auto", WORKLOAD, gpus=[], timer=limited, log=lambda _: None).value == FLOAT32
    assert precision.choose_policy("auto", WORKLOAD, gpus=[], timer=_never, log=lambda _: None).value == FLOAT32
    assert len(timer.calls) == len(limited.calls) == 1
    assert machine.describe_machine([]).endswith("(oneDNN limited to AVX2 by ONEDNN_MAX_CPU_ISA); no GPU")


def test_a_named_precision_is_never_timed():
    assert precision.choose_policy(BFLOAT16, WORKLOAD, gpus=[], timer=_never) == measured.Choice("precision", BFLOAT16, "asked for")


def test_an_unwritable_store_still_chooses(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(measured.CACHE_ENV, str(blocker / "cache"))  # a folder under a file
    lines = []
    choice = precision.choose_policy("auto", WORKLOAD, gpus=[], timer=_timer({FLOAT32: 2.0, BFLOAT16: 1.0}), log=lines.append)
    assert choice.value == FLOAT32 and any("could not store the measurement" in line for line in lines)


def test_a_corrupt_store_is_measured_over(tmp_path):
    precision.policy_question(WORKLOAD).path.parent.mkdir(parents=True)
    precision.policy_question(WORKLOAD).path.write_text("{not json")
    choice = precision.choose_policy("auto", WORKLOAD, gpus=[], timer=_timer({FLOAT32: 2.0, BFLOAT16: 1.0}), log=lambda _: None)
    assert choice.value == FLOAT32
    assert len(json.loads(precision.policy_question(WORKLOAD).path.read_text())["entries"]) == 1


@pytest.mark.parametrize(
    "gpus, expected",
    [([], [FLOAT32, BFLOAT16]), ([H100], [FLOAT32, BFLOAT16, FLOAT16]), ([V100], [FLOAT32, FLOAT16]), ([K80], [FLOAT32]),
     ([H100, V100], [FLOAT32, FLOAT16])],
)
def test_candidates_follow_the_hardware(gpus, expected):
    assert precision.policies(gpus) == expected


def test_standin_gpu_precision_is_timed_among_what_the_gpu_runs():
    timer = _timer({FLOAT32: 900.0, BFLOAT16: 3100.0, FLOAT16: 3500.0})
    choice = precision.choose_policy("auto", WORKLOAD, gpus=[H100], timer=timer, log=lambda _: None)
    assert choice.value == FLOAT16 and timer.calls[0][0] == (FLOAT32, BFLOAT16, FLOAT16)
    assert machine.machine([H100])["gpus"] == ["NVIDIA H100 80GB HBM3 (compute capability 9.0)"]
    # A GPU without tensor cores has one candidate: nothing to time.
    assert precision.choose_policy("auto", WORKLOAD, gpus=[K80], timer=_never).value == FLOAT32


def test_ties_go_to_float32():
    assert measured.fastest({BFLOAT16: 10.0, FLOAT32: 10.0}, precision.ORDER) == FLOAT32


def test_measure_times_each_policy_and_restores_the_session():
    """bfloat16 is timed, or left out unbuilt where its convolution is far slower: which
    one is this CPU's answer, and the line says it."""
    keras.config.set_dtype_policy("float32")
    lines = []
    rates = timing.time_policies([FLOAT32, BFLOAT16], Workload("bn", 64, 2), seconds=0.2, log=lines.append)
    assert set(rates) == {FLOAT32, BFLOAT16} and rates[FLOAT32] > 0
    slower = timing.convolution_slowdown(BFLOAT16, Workload("bn", 64, 2))
    if rates[BFLOAT16] == 0:
        assert lines == ["precision: mixed_bfloat16 left out: its 3x3 convolution runs over 4x longer than float32's here"]
        assert slower > timing.EMULATED / 1.2  # the check measured again, with room for the spread between two timings
    else:
        assert lines == [] and slower < timing.EMULATED * 1.2
    assert keras.config.dtype_policy().name == "float32"


def test_a_policy_that_cannot_train_here_is_left_out_with_the_reason(monkeypatch):
    """(The real step is built and timed in test_measure_times_each_policy_and_restores_the_session.)"""

    class FailingInBfloat16:
        def __init__(self, policy, workload, jit_compile):
            if policy == BFLOAT16:  # as TensorFlow wraps a kernel's error in the first step
                raise RuntimeError("Graph execution error:\n\n  File \"x.py\", line 1\n\n"
                                   "message: no bfloat16 convolution here\n\t [[{{node conv}}]]")

        def rate(self, seconds):
            return 10.0

    monkeypatch.setattr(timing, "StepTimer", FailingInBfloat16)
    monkeypatch.setattr(timing, "convolution_slowdown", lambda policy, workload: 1.0)  # as on a bf16 CPU
    lines = []
    rates = timing.time_policies([FLOAT32, BFLOAT16], Workload("bn", 64, 2), seconds=0.2, log=lines.append)
    assert rates[BFLOAT16] == 0.0 and rates[FLOAT32] > 0 and measured.fastest(rates, precision.ORDER) == FLOAT32
    assert lines == ["precision: mixed_bfloat16 cannot train here, left out "
                     "(RuntimeError: message: no bfloat16 convolution here)"]
    with pytest.raises(RuntimeError, match="no bfloat16 convolution"):  # nothing left to train in
        timing.time_policies([BFLOAT16], Workload("bn", 64, 2), seconds=0.2, log=lines.append)


def test_workers_agree_on_the_average_of_their_figures(monkeypatch):
    """A second worker's figures join this one's in the all-reduce (faked here; the real
    collective runs in test_multi_worker): the rates are averaged, and a precision the
    other worker could not run (another GPU) drops out."""
    import numpy as np
    import tensorflow as tf

    theirs = {FLOAT32: 30.0}

    def with_another_worker(strategy, local):
        other = [theirs.get(name, 0.0) for name in precision.ORDER] + [float(name in theirs) for name in precision.ORDER]
        return np.asarray(local) + np.array(other + [1.0])

    monkeypatch.setattr(distribute, "_sum_over_replicas", with_another_worker)
    agree = distribute.agree_on_rates(tf.distribute.get_strategy())
    assert agree({FLOAT32: 22.0, BFLOAT16: 14.0}) == pytest.approx({FLOAT32: 26.0})


def test_describe_machine_names_cpu_cores_and_instruction_sets(monkeypatch):
    monkeypatch.setattr(machine, "cpu_info", lambda: ("AMD EPYC 7B13", ["avx2", "fma"]))
    assert machine.describe_machine([]).startswith("AMD EPYC 7B13, ")
    assert "avx2 fma; no GPU" in machine.describe_machine([])


@pytest.mark.parametrize(
    "gpus, expected",
    [([], "default"), (["/device:GPU:0"], "one_device"), (["/device:GPU:0", "/device:GPU:1"], "mirrored")],
)
def test_standin_strategy_follows_the_gpus(gpus, expected, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster.resolve_strategy("auto", gpus=gpus)[0] == expected


def test_standin_strategy_devices():
    gpus, cpus = ["/device:GPU:0", "/device:GPU:1"], ["/device:CPU:0", "/device:CPU:1"]
    assert distribute.strategy_devices("mirrored", gpus, cpus) == gpus
    assert distribute.strategy_devices("mirrored", [], cpus) == cpus
    assert distribute.strategy_devices("one_device", gpus, cpus) == ["/device:GPU:0"]
    assert distribute.strategy_devices("one_device", [], cpus[:1]) == ["/device:CPU:0"]


def test_a_run_times_its_own_workload_and_a_resumed_run_keeps_its_precision(tmp_path):
    import tensorflow as tf

    from inception_tf.config import RunConfig
    from inception_tf.tasks import experiment

    config = RunConfig().replace(**{"run_dir": str(tmp_path / "run"), "data.image_size": 96, "train.batch_size": 32})
    timer = _timer({FLOAT32: 22.1, BFLOAT16: 14.0})
    lines = []
    resolved = experiment.resolve(config, tf.distribute.get_strategy(), log=lines.append, timer=timer, gpus=[])
    assert resolved.train.precision == FLOAT32
    assert timer.calls[0][1] == Workload(variant="bn", image_size=96, batch_size=32, aux_heads=True)
    assert "precision: float32 (measured here: float32 22.1 images/s, mixed_bfloat16 14.0 images/s)" in lines

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(resolved.replace(**{"train.precision": BFLOAT16}).to_json())
    again = experiment.resolve(config, tf.distribute.get_strategy(), log=lines.append, timer=_never, gpus=[])
    assert again.train.precision == BFLOAT16 and lines[-1].endswith(f"(the precision {tmp_path / 'run'} started in)")


def test_the_convolution_check_compares_a_policy_with_float32():
    """A policy against itself is about 1x; bfloat16 gives a positive figure on any CPU
    (left out of training above EMULATED, as the runtime's probe does)."""
    same = timing.convolution_slowdown(FLOAT32, Workload("bn", 64, 16))
    assert 0.5 < same < 2.0
    assert timing.convolution_slowdown(BFLOAT16, Workload("bn", 64, 16)) > 0
