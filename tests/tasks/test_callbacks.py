import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from inception_tf import keras_fixes
from inception_tf.startup import cluster
from inception_tf.tasks import callbacks, distribute, preemption


def _model():
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse", metrics=["mae"])
    return model


def _xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def _fit(model, backup, epochs=1, skip=0, metrics=None):
    backup.begin(skip, metrics)
    model.fit(*_xy(), batch_size=2, epochs=epochs, verbose=0, shuffle=False, callbacks=[backup])


def test_backup_every_epoch_and_every_n_steps(tmp_path):
    model = _model()
    _fit(model, callbacks.TrainingBackup(tmp_path, every_steps=3))  # 4 steps an epoch
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["epoch"], state["step"], state["weights"]) == (1, 0, "epoch-1-step-0.weights.h5")
    assert "metrics" not in state  # an epoch's end has none running
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-1-step-0.weights.h5", "state.json"]
    writes = []
    backup = callbacks.TrainingBackup(tmp_path, every_steps=3)
    backup._write = lambda position, write=backup._write: (writes.append(position), write(position))
    _fit(model, backup, epochs=2)
    assert [(p.epoch, p.step) for p in writes] == [(0, 3), (1, 0), (1, 3), (2, 0)]


def test_backup_by_time_without_every_steps(tmp_path):
    backup = callbacks.TrainingBackup(tmp_path, every_seconds=0.0)
    writes = []
    backup._write = lambda position: writes.append((position.epoch, position.step))
    _fit(_model(), backup)
    assert writes == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 0)]
    backup = callbacks.TrainingBackup(tmp_path, every_seconds=3600.0)
    writes.clear()
    backup._write = lambda position: writes.append((position.epoch, position.step))
    _fit(_model(), backup)
    assert writes == [(1, 0)]


def test_a_stop_backs_up_the_step_and_a_restore_goes_on_exactly(tmp_path):
    """Stopped at step 2 of epoch 1 and restored into a fresh model, the rest of the epoch
    ends where the uninterrupted one does: weights, optimizer, dropout's random state and
    the running metrics."""
    reference = _model()
    _fit(reference, callbacks.TrainingBackup(tmp_path / "reference"))
    asked = []
    stopping = callbacks.TrainingBackup(tmp_path / "backup", stop_requested=lambda: "SIGTERM" if len(asked) >= 2 else None)
    stopping.on_train_batch_begin = lambda batch, logs=None: asked.append(batch)
    stopped = _model()
    with pytest.raises(preemption.Preempted) as raised:
        _fit(stopped, stopping)
    assert (raised.value.position.epoch, raised.value.position.step, raised.value.signal_name) == (0, 2, "SIGTERM")
    assert (callbacks.backed_up_position(tmp_path / "backup").epoch, callbacks.backed_up_position(tmp_path / "backup").step) == (0, 2)

    resumed = _model()
    keras.utils.set_random_seed(99)  # the restore, not the seed, must give the state back
    position, metrics = callbacks.restore_backup(resumed, tmp_path / "backup", distribute.make_strategy("default"))
    assert (position.epoch, position.step) == (0, 2) and len(metrics) == 4
    assert int(resumed.optimizer.iterations.numpy()) == 2
    resumed_backup = callbacks.TrainingBackup(tmp_path / "resumed")
    xs, ys = _xy()
    resumed_backup.begin(2, metrics)
    keras_fixes.build_metrics(resumed, (tf.TensorSpec((None, 3)), tf.TensorSpec((None, 2))))
    history = resumed.fit(xs[4:], ys[4:], batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[resumed_backup])
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history.history["loss"][-1] == reference.history.history["loss"][-1]


def test_backup_skips_a_diverged_epoch_and_a_diverged_step(tmp_path):
    backup = callbacks.TrainingBackup(tmp_path, every_seconds=0.0)
    backup.set_model(_model())
    backup.begin()
    backup.on_epoch_begin(0)
    backup.on_train_batch_end(0, {"loss": float("nan")})
    backup.on_epoch_end(0, {"loss": float("nan")})
    assert not (tmp_path / "state.json").exists()


def test_an_earlier_versions_backup_reads_as_an_epochs_end(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 2, "weights": "epoch-2.weights.h5"}))
    position = callbacks.backed_up_position(tmp_path)
    assert (position.epoch, position.step) == (2, 0) and callbacks.backed_up_epoch(tmp_path) == 2
    assert position.describe(5) == "the end of epoch 2 of 5"
    assert callbacks.Position(1, 7).describe(3, 16) == "epoch 2 of 3, step 7 of 16"


def test_truncate_history_drops_repeated_epochs(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\r\n0,1.0\r\n1,0.5\r\n2,0.4\r\n")
    callbacks.truncate_history(path, 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.5"]


def test_best_weights_keeps_the_best_across_restarts(tmp_path):
    model = _model()
    best = callbacks.BestWeights(tmp_path / "best.weights.h5", "val_acc")
    best.set_model(model)
    best.on_train_begin()
    best.on_epoch_end(0, {"val_acc": 0.5, "loss": 1.0})
    best.on_epoch_end(1, {"val_acc": 0.4, "loss": 1.0})
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 0
    again = callbacks.BestWeights(tmp_path / "best.weights.h5", "val_acc")
    again.set_model(model)
    again.on_train_begin()
    again.on_epoch_end(2, {"val_acc": 0.45, "loss": 1.0})
    assert json.loads((tmp_path / "best.json").read_text()) == {"monitor": "val_acc", "value": 0.5, "epoch": 0}
    again.on_epoch_end(3, {"val_acc": 0.6, "loss": 1.0})
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 3


def test_strategy_choice(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}))
    assert cluster.resolve_strategy("auto")[0] == "multi_worker"
    monkeypatch.delenv("TF_CONFIG")
    assert cluster.resolve_strategy("auto")[0] == "default"  # no GPU here


STRATEGIES_ON_TWO_CPUS = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from inception_tf.tasks import distribute
found = {}
for name in ("default", "one_device", "mirrored"):
    strategy = distribute.make_strategy(name)
    found[name] = [type(strategy).__name__, strategy.num_replicas_in_sync]
print(json.dumps(found))
"""


def test_every_strategy_name_builds_the_strategy_it_names():
    """On a CPU split in two logical devices (the stand-in for two GPUs), where the
    replica counts tell the strategies apart."""
    done = subprocess.run([sys.executable, "-c", STRATEGIES_ON_TWO_CPUS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "default": ["_DefaultDistributionStrategy", 1],
        "one_device": ["OneDeviceStrategy", 1],
        "mirrored": ["MirroredStrategy", 2],
    }


def test_a_corrupt_or_cut_backup_names_its_file_and_how_to_go_on(tmp_path):
    """A disk fault (backups are renamed into place whole, so a kill cannot do it): a
    state file that is not JSON or not a backup's, and a weights file cut short."""
    state = tmp_path / "backup" / "state.json"
    state.parent.mkdir()
    for text in ('{"epoch": "x"', '{"epoch": "x", "weights": "w.weights.h5"}', "[]"):
        state.write_text(text)
        with pytest.raises(callbacks.BackupError) as raised:
            callbacks.backed_up_position(state.parent)
        message = str(raised.value)
        assert message.startswith(f"The backup file {state} cannot be read (ValueError: ") or message.startswith(
            f"The backup file {state} cannot be read (JSONDecodeError: "), message
        assert f"delete {state.parent} (or pass --overwrite) and run the same command again" in message
        assert isinstance(raised.value, ValueError)  # the command line's exit 2, one line
    stopped = _model()
    backup = callbacks.TrainingBackup(tmp_path / "backup")
    _fit(stopped, backup)
    weights = tmp_path / "backup" / json.loads(state.read_text())["weights"]
    weights.write_bytes(weights.read_bytes()[:4000])
    with pytest.raises(callbacks.BackupError, match=rf"The backup file {weights} cannot be read \(OSError: .*truncated"):
        callbacks.restore_backup(_model(), tmp_path / "backup", distribute.make_strategy("default"))
