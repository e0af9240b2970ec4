"""TF_CONFIG is checked before anything starts (`cluster.check_tf_config`): TensorFlow
itself would ignore a task outside its cluster and train alone."""

import json
import subprocess
import sys

import pytest

from inception_tf.startup import cluster

from runs import ROOT, env

TWO = {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}
BAD = [
    ({"cluster": {"worker": ["127.0.0.1:20001"]}, "task": {"type": "worker", "index": 5}},
     "has the task index 5, outside the cluster's 1 worker task(s) (0 to 0)"),
    ({"cluster": {"worker": ["127.0.0.1:20001"]}, "task": {"type": "worker", "index": 1}},
     "has the task index 1, outside the cluster's 1 worker task(s) (0 to 0)"),
    ({"cluster": {"worker": ["127.0.0.1:20001", "127.0.0.1:20001"]}, "task": {"type": "worker", "index": 0}},
     "gives the address 127.0.0.1:20001 to more than one task"),
    ({"cluster": {"chief": ["127.0.0.1:20001"], "worker": ["127.0.0.1:20001"]}, "task": {"type": "chief", "index": 0}},
     "gives the address 127.0.0.1:20001 to more than one task"),
    ({"cluster": TWO, "task": {"type": "chief", "index": 0}}, "needs a \"task\" whose \"type\" is one of the cluster's ['worker']"),
    ({"cluster": TWO, "task": {"type": "worker", "index": -1}}, "has the task index -1"),
    ({"cluster": {**TWO, "ps": ["127.0.0.1:20003"]}, "task": {"type": "worker", "index": 0}}, "names a 'ps' task"),
    ({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}, 'needs a list of "host:port" addresses'),
    ({"cluster": {"chief": ["a:1", "b:2"], "worker": ["c:3"]}, "task": {"type": "worker", "index": 0}}, "names 2 chiefs"),
    ({"task": {"type": "worker", "index": 0}}, 'needs a "cluster" object'),
]


@pytest.mark.parametrize("config, problem", BAD)
def test_a_bad_tf_config_is_named(config, problem):
    raw = json.dumps(config)
    with pytest.raises(ValueError) as raised:
        cluster.check_tf_config(raw)
    assert problem in str(raised.value) and f"Received: TF_CONFIG={raw!r}" in str(raised.value)


def test_a_good_tf_config_passes_and_unset_is_none():
    config = {"cluster": {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222"]}, "task": {"type": "worker", "index": 0}}
    assert cluster.check_tf_config(json.dumps(config)) == config
    assert cluster.check_tf_config("") is None
    with pytest.raises(ValueError, match="is not valid JSON"):
        cluster.check_tf_config("{cluster")


TWO_WORKERS = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}
WITH_CHIEF = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222"]}


@pytest.mark.parametrize("tf_config, strategy, writes", [
    (None, "auto", True),  # a process of its own
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 0}}, "auto", True),  # worker 0 is the chief
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}}, "auto", False),
    ({"cluster": WITH_CHIEF, "task": {"type": "chief", "index": 0}}, "auto", True),
    ({"cluster": WITH_CHIEF, "task": {"type": "worker", "index": 0}}, "multi_worker", False),  # the chief is another
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}}, "default", True),  # trains alone
    ({"cluster": {"worker": ["10.0.0.1:2222"]}, "task": {"type": "worker", "index": 0}}, "auto", True),
])
def test_the_run_directory_writer_is_known_before_tensorflow_loads(monkeypatch, tf_config, strategy, writes):
    """The chief as `distribute.WorkerRole.is_chief` names it once the strategy exists."""
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert cluster.writes_run_dir(strategy) is writes


@pytest.mark.parametrize("tf_config, strategy, replicas", [
    (None, "auto", 1),
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}}, "auto", 2),
    ({"cluster": WITH_CHIEF, "task": {"type": "chief", "index": 0}}, "multi_worker", 2),
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}}, "default", 1),
])
def test_the_runtime_times_the_batch_of_one_cpu_replica(monkeypatch, tf_config, strategy, replicas):
    """What `cli` gives the runtime's probe, as the precision's (`experiment.resolve`) has it."""
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert cluster.cpu_replicas(strategy) == replicas


@pytest.mark.parametrize("config, problem", [BAD[0], BAD[2]])
def test_train_refuses_a_bad_tf_config_with_exit_2_and_one_line(tmp_path, config, problem):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--epochs", "1", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env={**env(), "TF_CONFIG": json.dumps(config)}, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: TF_CONFIG ") and problem in result.stderr
    assert not (tmp_path / "run").exists()  # nothing started
