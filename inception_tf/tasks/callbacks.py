"""Callbacks that keep a run restartable: nothing they write is ever half-written."""

import csv
import dataclasses
import io
import json
import math
import pathlib
import time

import keras
import numpy as np

from inception_tf import files, keras_fixes
from inception_tf.tasks import preemption, timing


def _finite(logs, key="loss"):
    value = (logs or {}).get(key)
    return value is None or math.isfinite(float(value))


BACKUP_MINUTES = 10  # between step-level backups, by default: a long epoch is covered without a flag


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a backup stands: `epoch` epochs finished, and `step` steps of the next one
    (0 at an epoch's end), which had taken `epoch_time_s` seconds so far."""

    epoch: int = 0
    step: int = 0
    epoch_time_s: float = 0.0

    def describe(self, epochs, steps=None):
        """E.g. `epoch 2 of 3, step 7 of 16` (the epoch in progress), `the end of epoch 1 of 3`."""
        if not self.step:
            return f"the end of epoch {self.epoch} of {epochs}" if self.epoch else "the start"
        of = f" of {steps}" if steps else ""
        return f"epoch {self.epoch + 1} of {epochs}, step {self.step}{of}"


def backup_state_path(backup_dir):
    return pathlib.Path(backup_dir) / "state.json"


class BackupError(ValueError):
    """A backup that cannot be read (a disk fault: backups are renamed into place whole)."""

    def __init__(self, path, error):
        backup_dir = pathlib.Path(path).parent
        super().__init__(
            f"The backup file {path} cannot be read ({timing.first_line(error)}). It is the only record of where "
            f"training stood: restore it, or delete {backup_dir} (or pass --overwrite) and run the same command "
            "again to train the run from its start."
        )


def read_backup(backup_dir):
    """The state a backup holds (`TrainingBackup._write`), or None without one. A backup
    of an earlier version, taken at an epoch's end, reads as step 0. Raises BackupError
    for a state file that is not one."""
    path = backup_state_path(backup_dir)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not isinstance(state.get("weights"), str):
            raise ValueError(f"no weights file named in {state!r:.80}")
        for key in ("epoch", "step"):
            if not isinstance(state.get(key, 0), int) or state.get(key, 0) < 0:
                raise ValueError(f"{key} is not a count: {state.get(key)!r}")
    except (OSError, ValueError) as error:
        raise BackupError(path, error) from None
    return state


def backed_up_position(backup_dir):
    """The `Position` of a backup (the start without one)."""
    return _position(read_backup(backup_dir) or {})


def _position(state):
    return Position(state.get("epoch", 0), state.get("step", 0), state.get("epoch_time_s", 0.0))


def backed_up_epoch(backup_dir):
    """The number of finished epochs in a backup (0 without one)."""
    return backed_up_position(backup_dir).epoch


def restore_backup(model, backup_dir, strategy):
    """Loads a backup into `model` (compiled): the weights, the optimizer's state and the
    dropout layers' random state. Returns its `Position` and the running metrics of the
    epoch in progress (for `TrainingBackup.begin`), or `(Position(), None)` without one
    (or with `backup_dir` None)."""
    state = read_backup(backup_dir) if backup_dir is not None else None
    if state is None:
        return Position(), None
    if model.optimizer is not None and not model.optimizer.built:
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    weights = pathlib.Path(backup_dir) / state["weights"]
    try:
        model.load_weights(weights)
    except (OSError, ValueError) as error:  # h5py's for a cut file; Keras's for other contents
        raise BackupError(weights, error) from None
    for variable, value in zip(keras_fixes.seed_generator_states(model), state.get("seed_generators", [])):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return _position(state), state.get("metrics")


class TrainingBackup(keras.callbacks.Callback):
    """Backs up a run so that it resumes exactly where it stopped: at every epoch's end,
    every `every_steps` steps (or `every_seconds` of training without it), and at the
    step after a stop was asked for (`stop_requested()` returns a signal's name), after
    which it raises `preemption.Preempted`.

    A backup is the weights with the optimizer's state (`epoch-E-step-S.weights.h5`) and
    `state.json`: the position, the dropout layers' random state (which `save_weights`
    leaves out) and, mid-epoch, the epoch's running metrics. The weights are written
    first and `state.json` is renamed over the old one to point at them, so a kill at
    any instant leaves a complete backup. The data's position is the position itself:
    an epoch's batches depend on the seed and the epoch alone (`data.make_dataset`).
    A non-finite loss is never backed up.

    Put it after the callbacks that write the epoch's logs (CSVLogger): a kill between
    the two then repeats an epoch's row, which `truncate_history` drops on resume,
    rather than losing it. Under several workers every worker writes its own (the
    chief's in the run directory), at the same steps: `agree` (see
    `distribute.agree_on_flags`) makes their decisions one.

    Call `begin` before each `fit` of one epoch.
    """

    def __init__(self, backup_dir, every_steps=None, every_seconds=BACKUP_MINUTES * 60, stop_requested=None,
                 agree=None, timer=None):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.stop_requested = stop_requested or (lambda: None)
        self.agree = agree or (lambda flags: flags)
        self.timer = timer
        self._skip, self._metrics = 0, None
        self._last_backup = time.monotonic()

    def begin(self, skip=0, metrics=None):
        """The next `fit` trains one epoch from its step `skip`, with the running
        metrics a backup held (None: from zero)."""
        self._skip, self._metrics = skip, metrics

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._metrics is not None:  # after fit reset them: the epoch goes on from the backup's
            variables = self.model.metrics_variables
            if len(variables) != len(self._metrics):
                raise ValueError(
                    f"The backup in {self.backup_dir} holds {len(self._metrics)} metric values for a model with "
                    f"{len(variables)} (built: see keras_fixes.build_metrics). Received: metrics={self._metrics!r}"
                )
            for variable, value in zip(variables, self._metrics):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            self._metrics = None

    def on_train_batch_end(self, batch, logs=None):
        if not _finite(logs):
            return
        step = self._skip + batch + 1
        steps = self.params.get("steps")
        # At an epoch's last step the epoch's end is as near, and backs up what a resume needs.
        stop = self.stop_requested() is not None and not (steps and batch + 1 >= steps)
        if self.every_steps:
            due = step % self.every_steps == 0
        else:
            due = time.monotonic() - self._last_backup >= self.every_seconds
        stop, due = self.agree((stop, due))
        if stop or due:
            self._write(Position(self._epoch, step, self.timer.elapsed() if self.timer else 0.0))
        if stop:
            self._stop(Position(self._epoch, step))

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        self._write(Position(epoch + 1))
        (stop,) = self.agree((self.stop_requested() is not None,))
        if stop:
            self._stop(Position(epoch + 1))

    def _stop(self, position):
        """Ends `fit` at once: the rest of a stopped epoch (its validation, its row in the
        history, a best-weights check) belongs to the resumed run."""
        raise preemption.Preempted(position, self.stop_requested() or "a signal to another worker")

    def _write(self, position):
        name = f"epoch-{position.epoch}-step-{position.step}.weights.h5"
        save_weights(self.model, self.backup_dir / name)
        state = {
            "epoch": position.epoch, "step": position.step, "epoch_time_s": position.epoch_time_s, "weights": name,
            "seed_generators": [v.numpy().tolist() for v in keras_fixes.seed_generator_states(self.model)],
        }
        if position.step:
            state["metrics"] = [np.asarray(v.numpy()).tolist() for v in self.model.metrics_variables]
        files.write_text_atomic(backup_state_path(self.backup_dir), json.dumps(state))
        for old in self.backup_dir.glob("*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
        self._last_backup = time.monotonic()


def save_weights(model, path):
    """`model.save_weights(path)` through `files.atomic_path`: `path` is complete or untouched."""
    with files.atomic_path(path, suffix=".weights.h5") as tmp, keras_fixes.closing_failed_h5_writes():
        model.save_weights(tmp)


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
    """Adds `epoch_time_s` (wall time of the epoch, validation included) to the logs; an
    epoch resumed mid-way counts the time before the stop too (`resume`)."""

    def __init__(self):
        super().__init__()
        self._carried = 0.0

    def resume(self, seconds):
        """The next epoch had run for `seconds` before the run stopped."""
        self._carried = seconds

    def elapsed(self):
        return self._carried + time.perf_counter() - self._start

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = self.elapsed()
        self._carried = 0.0


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that remembers where the loss stopped being finite (`skip`: the
    steps of the epoch trained before the `fit` that follows, after a resume)."""

    def __init__(self):
        super().__init__()
        self.stopped_at = None
        self.skip = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and self.stopped_at is None and not _finite(logs):
            self.stopped_at = (self._epoch, self.skip + batch)
