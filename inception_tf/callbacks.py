"""Callbacks that keep a run restartable: nothing they write is ever half-written."""

import csv
import io
import json
import math
import pathlib
import time

import keras

from inception_tf import files, keras_fixes


def _finite(logs, key="loss"):
    value = (logs or {}).get(key)
    return value is None or math.isfinite(float(value))


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Keras's `BackupAndRestore`, with the backup switched atomically after every
    finished epoch.

    Keras's own writes `latest.weights.h5` and its metadata in place: a kill or a full
    disk while writing loses both. Here each epoch's weights (with the optimizer's
    state) go to `epoch-N.weights.h5`, then `state.json` is renamed over the old one to
    point at them. A kill at any instant leaves a complete backup. A diverged epoch
    (non-finite loss) is never backed up.

    Put it after the callbacks that write the epoch's logs (CSVLogger): a kill between
    the two then repeats an epoch's row, which `truncate_history` drops on resume,
    rather than losing it. The backup is kept when training ends; the caller removes it
    once the whole run is done.

    Under a multi-worker strategy every worker restores from the chief's backup in a
    directory they all reach (`restore_dir`), and writes its own to `backup_dir`: the
    chief's is that same directory, the others' a temporary one.
    """

    def __init__(self, backup_dir, restore_dir=None):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.restore_dir = pathlib.Path(restore_dir) if restore_dir is not None else self.backup_dir
        self.restored_epoch = 0

    def on_train_begin(self, logs=None):
        state_path = backup_state_path(self.restore_dir)
        if not state_path.is_file():
            return
        state = json.loads(state_path.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.restore_dir / state["weights"])
        self.restored_epoch = state["epoch"]
        keras_fixes.start_fit_at_epoch(self.model, self.restored_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        name = f"epoch-{epoch + 1}.weights.h5"
        save_weights(self.model, self.backup_dir / name)
        files.write_text_atomic(backup_state_path(self.backup_dir), json.dumps({"epoch": epoch + 1, "weights": name}))
        for old in self.backup_dir.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)


def save_weights(model, path):
    """`model.save_weights(path)` through `files.atomic_path`: `path` is complete or untouched."""
    with files.atomic_path(path, suffix=".weights.h5") as tmp, keras_fixes.closing_failed_h5_writes():
        model.save_weights(tmp)


def backup_state_path(backup_dir):
    return pathlib.Path(backup_dir) / "state.json"


def backed_up_epoch(backup_dir):
    """The number of finished epochs in a backup (0 without one)."""
    path = backup_state_path(backup_dir)
    return json.loads(path.read_text())["epoch"] if path.is_file() else 0


def truncate_history(path, epoch):
    """Drop the rows of `path` (a CSVLogger file) for epochs >= `epoch` (0-based)."""
    path = pathlib.Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    # A row cut short by a kill or a full disk is dropped with the epochs after the backup.
    kept = [row for row in body if len(row) == len(header) and row[0].isdigit() and int(row[0]) < epoch]
    if len(kept) != len(body):
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header] + kept)
        files.write_text_atomic(path, buffer.getvalue())


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best `monitor`, written atomically.

    The best value and its epoch live in a JSON beside the weights, so a resumed run
    keeps comparing against the best of the epochs before the interruption.
    """

    def __init__(self, filepath, monitor, mode="max", resume_from=None):
        """`resume_from`: the JSON state to start from instead of the one beside
        `filepath` (a worker that writes to a temporary place follows the chief's)."""
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
        self.filepath = pathlib.Path(filepath)
        self.monitor = monitor
        self.mode = mode
        self.best = None
        self.best_epoch = None
        self.resume_from = pathlib.Path(resume_from) if resume_from is not None else None

    @property
    def state_path(self):
        return self.filepath.with_name(self.filepath.name.replace(".weights.h5", "") + ".json")

    def on_train_begin(self, logs=None):
        state_path = self.resume_from or self.state_path
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            if state.get("monitor") == self.monitor:
                self.best, self.best_epoch = state["value"], state["epoch"]

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"BestWeights monitors '{self.monitor}', which the epoch's logs lack. "
                f"Available: {sorted(logs or {})}"
            )
        value = float(value)
        if not math.isfinite(value) or not _finite(logs) or not self._improved(value):
            return
        save_weights(self.model, self.filepath)
        self.best, self.best_epoch = value, epoch
        files.write_text_atomic(
            self.state_path, json.dumps({"monitor": self.monitor, "value": value, "epoch": epoch})
        )


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (wall time of the epoch, validation included) to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = time.perf_counter() - self._start


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that remembers where the loss stopped being finite."""

    def __init__(self):
        super().__init__()
        self.stopped_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and self.stopped_at is None and not _finite(logs):
            self.stopped_at = (self._epoch, batch)
