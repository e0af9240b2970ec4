import json

import keras
import numpy as np

from inception_tf import callbacks, distribute


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def _xy():
    return np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")


def test_backup_restores_weights_optimizer_and_epoch(tmp_path):
    model = _model()
    model.fit(*_xy(), epochs=2, verbose=0, callbacks=[callbacks.AtomicBackupAndRestore(str(tmp_path))])
    assert json.loads((tmp_path / "state.json").read_text()) == {"epoch": 2, "weights": "epoch-2.weights.h5"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-2.weights.h5", "state.json"]
    fresh = _model()
    backup = callbacks.AtomicBackupAndRestore(str(tmp_path))
    history = fresh.fit(*_xy(), epochs=3, verbose=0, callbacks=[backup])
    assert backup.restored_epoch == 2 and len(history.history["loss"]) == 1
    assert callbacks.backed_up_epoch(tmp_path) == 3


def test_backup_skips_a_diverged_epoch(tmp_path):
    backup = callbacks.AtomicBackupAndRestore(str(tmp_path))
    backup.set_model(_model())
    backup.on_epoch_end(0, {"loss": float("nan")})
    assert callbacks.backed_up_epoch(tmp_path) == 0


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
    assert distribute.resolve_strategy("auto")[0] == "multi_worker"
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.resolve_strategy("auto")[0] == "default"  # no GPU here


def test_every_strategy_name_builds_here():
    for name in ("default", "one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        assert strategy.num_replicas_in_sync >= 1
