"""One run's training task, in TF Model Garden's shape: what it holds (the configuration,
the strategy, this worker's role, the paths it reads and writes, the log) and, in the
order a run calls them, its steps: `build_inputs`, `build_model`, `build_callbacks`,
`train` (which fits from where a backup stood), `evaluate` and `finalise`.

`experiment.run` resolves the configuration, takes the run directory and makes one task;
the `evaluate` command shares the choice of test views (`evaluation.test_views`).
"""

import contextlib
import dataclasses
import json
import math
import pathlib
import sys
import tempfile
import time

import keras

from inception_tf import files, keras_fixes
from inception_tf.dataloaders import augment as augment_lib
from inception_tf.dataloaders import catalog
from inception_tf.dataloaders import data as data_lib
from inception_tf.modeling import model_files
from inception_tf.modeling import weights as weights_lib
from inception_tf.modeling.network import GoogLeNet
from inception_tf.serving import export
from inception_tf.startup import settings
from inception_tf.tasks import callbacks as callbacks_lib
from inception_tf.tasks import budget, compiling, distribute, evaluation, preemption, schedules


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite."""


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where a run reads and writes. The chief writes the run directory itself (`out` is
    `run_dir`); another worker writes to a temporary `out` and resumes from the chief's
    files (`restore_from`, None after --overwrite: nothing to resume)."""

    run_dir: pathlib.Path
    out: pathlib.Path
    restore_from: pathlib.Path = None

    @classmethod
    def for_role(cls, run_dir, role, overwrite):
        run_dir = pathlib.Path(run_dir)
        if role.is_chief:
            return cls(run_dir, run_dir, run_dir)
        out = pathlib.Path(tempfile.mkdtemp(prefix=f"inception_tf-{role.task_type}{role.task_id}-"))
        return cls(run_dir, out, None if overwrite else run_dir)

    @classmethod
    def chief(cls, run_dir):
        """The chief's files: what every worker, and a rerun, resumes from."""
        run_dir = pathlib.Path(run_dir)
        return cls(run_dir, run_dir)

    def backed_up(self):
        """The position `backup` holds, or None when nothing was backed up yet."""
        position = callbacks_lib.backed_up_position(self.backup)
        return position if position.epoch or position.step else None

    # This process's files.
    history = property(lambda self: self.out / "history.csv")
    backup = property(lambda self: self.out / "backup")
    best = property(lambda self: self.out / "best.weights.h5")
    best_state = property(lambda self: self.out / "best.json")
    logs = property(lambda self: self.out / "logs")


@dataclasses.dataclass(frozen=True)
class ResolvedRun:
    """A run as every stage reads it, resolved once per process (`experiment.run`): the
    configuration with every "auto" replaced and its run directory set, the strategy,
    this worker's role, where it writes (`paths`), and the chief's files (`chief`), from
    which every worker and a rerun resume."""

    config: object
    strategy: object
    role: object
    paths: RunPaths
    chief: RunPaths


def open_source(data, log=print):
    """The data source a `config.DataConfig` names, with a split to evaluate on, logged."""
    source = catalog.load_source(
        data.dataset, data_dir=data.data_dir, validation_split=data.validation_split, limit=data.limit,
        skip_corrupt=data.skip_corrupt,
    )
    if "test" not in source.splits and "validation" not in source.splits:
        raise ValueError(
            f"{source.name} at {source.location} has no test or validation split to evaluate on: "
            f"pass --validation-split. Received: validation_split={data.validation_split}"
        )
    log(f"data: {source.name} from {source.location}, {source.num_classes} classes, "
        + ", ".join(f"{key} {split.size}" for key, split in source.splits.items()))
    return source


def evaluate_split(model, source, split_name, data, spec, out_dir, report_as=None):
    """`model` on a split of `source` in the test views of `data` (a `config.DataConfig`:
    its crops, and the augmentation they shift by), batched by `spec`; the metrics and
    report files (`evaluation.evaluate`) named after `report_as`, else the split."""
    views = evaluation.test_views(data.dataset, data.test_crops, data.augment)
    return evaluation.evaluate(model, source.splits[split_name], source.class_names, spec, out_dir,
                               report_as or split_name, views)


def transfer_weights(source_path, model, log=print):
    """`weights.load` with a line saying what was copied and which heads start fresh."""
    copied, fresh = weights_lib.load(model, source_path)
    log(f"init-from {source_path}: {copied} layers copied" + (f", new: {', '.join(fresh)}" if fresh else ""))
    return copied, fresh


def _monitor(model):
    return "val_main_accuracy" if len(model.outputs) > 1 else "val_accuracy"


@dataclasses.dataclass
class _Callbacks:
    """The callbacks of the run's `fit` calls, and the ones `train` asks where training
    stopped or prepares for a resumed epoch."""

    all: keras.callbacks.CallbackList
    nan_guard: callbacks_lib.NaNGuard
    timer: callbacks_lib.EpochTimer
    backup: callbacks_lib.TrainingBackup
    tensorboard: keras.callbacks.TensorBoard

    def begin_epoch(self, steps, skip=0, metrics=None, carried_s=0.0):
        """The next `fit` trains epochs of `steps` steps (None: unknown), the first from its step `skip`."""
        self.all.set_params({**self.all.params, "steps": None if steps is None else steps - skip})
        self.nan_guard.skip = skip
        self.timer.resume(carried_s)
        self.backup.begin(skip, metrics)
        keras_fixes.reopen_tensorboard(self.tensorboard)


class TrainingTask:
    """A `ResolvedRun` on this worker (`distribute.worker_role`), writing to its `paths`.
    `build_inputs` first; then `train`, and on the chief `finalise`."""

    def __init__(self, run, log=print):
        self.run, self.log = run, log
        self.config, self.strategy, self.role, self.paths = run.config, run.strategy, run.role, run.paths
        self.source, self.test_name = None, None

    # --- Inputs ------------------------------------------------------------------------

    def build_inputs(self):
        """Loads the data source, and names the split the run is evaluated on."""
        self.source = open_source(self.config.data, self.log)
        self.test_name = "test" if "test" in self.source.splits else "validation"

    @property
    def _shard(self):
        return (self.role.count, self.role.index) if self.role.count > 1 else None

    def input_spec(self, model):
        """What the training and validation pipelines share: the model's input and heads."""
        d, t = self.config.data, self.config.train
        return data_lib.InputSpec(
            d.image_size, t.batch_size,
            heads=tuple(model.output_names) if len(model.outputs) > 1 else None,  # one head: plain labels
            one_hot=self.source.num_classes if t.label_smoothing else None,
            preprocessing=self.config.model.preprocessing, shard=self._shard,
        )

    def training_data(self, model, epochs, skip=0):
        """The training batches of `epochs` (a number, or a range of them) from step `skip`:
        a function of the seed and the epoch, so that a resumed run sees what it would have seen."""
        d = self.config.data
        augment = augment_lib.AugmentConfig(policy=d.augment, erasing=d.random_erasing, alternate_flips=d.alternate_flips)
        return data_lib.make_dataset(
            self.source.splits["train"], self.input_spec(model), training=True, augment=augment,
            seed=self.config.train.seed, epoch=epochs, skip=skip,
        )

    def validation_data(self, model):
        validation = self.source.splits.get("validation")
        if validation is None:
            return None
        return data_lib.make_dataset(validation, self.input_spec(model))

    # --- Model -------------------------------------------------------------------------

    def compiled_model(self, init=True):
        """GoogLeNet as configured, from `--init-from`'s weights when `init`, compiled."""
        d, m, t = self.config.data, self.config.model, self.config.train
        model = GoogLeNet(
            num_classes=self.source.num_classes, input_shape=(d.image_size, d.image_size, 3), variant=m.variant,
            aux_heads=m.aux_heads, dropout_rate=m.dropout_rate,
        )
        if init and self.config.init_from:
            transfer_weights(self.config.init_from, model, self.log)
        return compiling.compile_for_training(
            model, learning_rate=t.learning_rate, momentum=t.momentum,
            labels="categorical" if t.label_smoothing else "sparse", label_smoothing=t.label_smoothing,
            weight_decay=t.weight_decay, jit_compile=settings.jit_compile(), ema_momentum=t.ema or None,
            beta_rate=t.beta_rate, lookahead_steps=t.lookahead,
        )

    def build_model(self):
        """The compiled model under the strategy, BatchNorm synchronized across replicas."""
        strategy, batch = self.strategy, self.config.train.batch_size
        per_replica = data_lib.replica_batch_size(batch, strategy.num_replicas_in_sync)
        if strategy.num_replicas_in_sync > 1:
            self.log(f"batch: {batch} global, {per_replica} on each of {strategy.num_replicas_in_sync} replicas")
        with strategy.scope():
            model = self.compiled_model()
        if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            self.log(f"loss scaling: dynamic (LossScaleOptimizer), from {model.optimizer.initial_scale:g}")
        if strategy.num_replicas_in_sync > 1:
            synchronized = distribute.synchronize_batchnorm(model)
            if synchronized:
                self.log(f"BatchNorm: {synchronized} layers compute their statistics over the global batch")
        return model

    def schedule(self):
        t = self.config.train
        if t.schedule == "paper":
            return schedules.paper_schedule(t.learning_rate)
        warmup = min(2, t.epochs - 1)
        if t.schedule == "cosine":
            return schedules.CosineDecay(t.learning_rate, t.epochs, warmup_epochs=warmup, alpha=0.01)
        if t.schedule == "linear":
            return schedules.LinearDecay(t.learning_rate, t.epochs, warmup_epochs=warmup)
        return lambda epoch, lr=None: t.learning_rate

    # --- Callbacks ---------------------------------------------------------------------

    def build_callbacks(self, model, stop_requested):
        paths, t = self.paths, self.config.train
        nan_guard, timer = callbacks_lib.NaNGuard(), callbacks_lib.EpochTimer()
        tensorboard = keras.callbacks.TensorBoard(log_dir=str(paths.logs), profile_batch=0)
        backup = callbacks_lib.TrainingBackup(
            paths.backup, every_steps=t.backup_every, stop_requested=stop_requested, timer=timer,
            agree=distribute.agree_on_flags(self.strategy) if self.role.count > 1 else None,
        )
        callback_list = [keras.callbacks.LearningRateScheduler(self.schedule()), nan_guard, timer, tensorboard]
        if "validation" in self.source.splits:
            resume_best = paths.restore_from and paths.restore_from / "best.json"
            callback_list.append(callbacks_lib.BestWeights(paths.best, _monitor(model), resume_from=resume_best))
        callback_list += [
            keras.callbacks.CSVLogger(str(paths.history), append=True),
            backup,  # after CSVLogger: see its docstring
        ]
        verbose = 1 if sys.stdout.isatty() else 2  # a live bar on a terminal, a line per epoch in logs
        every = keras.callbacks.CallbackList(
            callback_list, add_history=True, add_progbar=True, model=model, verbose=verbose, epochs=t.epochs,
            steps=None,
        )
        return _Callbacks(every, nan_guard, timer, backup, tensorboard)

    # --- Training ----------------------------------------------------------------------

    def train(self):
        """Builds the model and fits it from where a backup stood; returns it with the digest
        of its weights. Raises `preemption.Preempted` when a signal stopped it (backed up)."""
        t, strategy = self.config.train, self.strategy
        keras.utils.set_random_seed(t.seed)
        keras.config.set_dtype_policy(t.precision)
        model = self.build_model()
        restore = self.paths.restore_from and self.paths.restore_from / "backup"
        position, metrics = callbacks_lib.restore_backup(model, restore, strategy)
        steps = data_lib.batches_per_epoch(self.source.splits["train"], t.batch_size, shard=self._shard)
        if position.epoch or position.step:
            self.log(f"resuming from {position.describe(t.epochs, steps)}")
        fixes = keras_fixes.distributed_fit(model) if strategy.num_replicas_in_sync > 1 else contextlib.nullcontext()
        average = keras_fixes.weight_average_held(model) if t.ema else contextlib.nullcontext()
        with preemption.stop_on_signals(lambda: self._last_backup(steps)) as stop_requested, fixes, average:
            callbacks = self.build_callbacks(model, stop_requested)
            try:
                self.fit(model, callbacks, position, metrics, steps)
                if stop_requested():  # after the last epoch's backup: the rerun only finalises
                    raise preemption.Preempted(callbacks_lib.Position(t.epochs), stop_requested())
            except preemption.Preempted as stop:
                raise self._preempted(stop, steps) from None
        if callbacks.nan_guard.stopped_at is not None:
            raise self._diverged(callbacks.nan_guard.stopped_at)
        if t.ema:
            model.optimizer.finalize_variable_values(model.trainable_variables)
            self.log(f"weights: the moving average of the steps (momentum {t.ema:g}), evaluated and exported")
        # Every worker reads its weights (a collective under some strategies) before the
        # others leave; equal digests show the replicas stayed in step.
        digest = distribute.weights_digest(model)
        self.log(f"weights after training: sha256 {digest}")
        return model, digest

    def fit(self, model, callbacks, position, metrics, steps):
        """The epochs from `position` in as few `fit` calls as the data allows: each epoch's
        data is its own (its order and augmentation a function of the seed and the epoch).
        An epoch resumed mid-way is a `fit` of its own, from the backup's step with the
        backup's running metrics; the epochs after it share one `fit` and one iterator, so
        that no epoch waits for the last one's to be taken down and the next one's built
        (with an unknown epoch length, every epoch is a `fit` of its own)."""
        validation = self.validation_data(model)
        epoch, epochs = position.epoch, self.config.train.epochs
        while epoch < epochs:
            skip = position.step if epoch == position.epoch else 0
            span = range(epoch, epoch + 1) if skip or steps is None else range(epoch, epochs)
            train_data = self.training_data(model, span, skip)
            callbacks.begin_epoch(steps, skip, metrics if skip else None, position.epoch_time_s if skip else 0.0)
            model.fit(
                train_data, validation_data=validation, initial_epoch=epoch, epochs=span.stop,
                callbacks=callbacks.all, steps_per_epoch=None if steps is None else steps - skip, shuffle=False,
            )
            if model.stop_training:  # NaNGuard
                return
            epoch = span.stop

    def _last_backup(self, steps):
        """Where a rerun resumes, for a second signal's last line."""
        chief = self.run.chief
        position = chief.backed_up()
        if position is None:
            return "nothing was backed up yet; the same command starts again"
        return (f"the last complete backup ({position.describe(self.config.train.epochs, steps)}) is in {chief.backup}; "
                "run the same command again to resume from there")

    def _preempted(self, stop, steps):
        """`stop` with the message a user reads."""
        backup = self.run.chief.backup
        return preemption.Preempted(
            stop.position, stop.signal_name,
            f"Stopped by {stop.signal_name} at {stop.position.describe(self.config.train.epochs, steps)}, backed up "
            f"in {backup}: run the same command again to resume from there.",
        )

    def _diverged(self, stopped_at):
        epoch, batch = stopped_at
        chief = self.run.chief
        position = chief.backed_up()
        kept = "nothing was backed up"
        if position is not None:
            kept = f"the last good state ({position.describe(self.config.train.epochs)}) is in {chief.backup}"
        if chief.best.is_file():
            kept += f", the best weights are in {chief.best}"
        return TrainingDiverged(
            f"The loss stopped being finite at epoch {epoch + 1}, batch {batch}. Training stopped; {kept}. "
            "Lower --learning-rate, then run again with --overwrite."
        )

    # --- Evaluation and what the run leaves --------------------------------------------

    def model_to_evaluate(self, model):
        """The trained model with the best epoch's weights, and that epoch's record (or None);
        with `--ema`, the moving average of the weights, whatever epoch was best.

        After a multi-worker run it is a copy outside the strategy: the other workers are
        gone, and a distributed model would wait for them.
        """
        paths, average = self.paths, bool(self.config.train.ema)
        if self.role.count > 1:
            model = self.compiled_model(init=False)
            if average or not paths.best.is_file():  # else the best weights are loaded below
                state = json.loads(callbacks_lib.backup_state_path(paths.backup).read_text())
                model.load_weights(paths.backup / state["weights"])
                if average:
                    model.optimizer.finalize_variable_values(model.trainable_variables)
        if average or not paths.best.is_file():
            return model, None
        model.load_weights(paths.best)
        best = json.loads(paths.best_state.read_text())
        self.log(f"best epoch: {best['epoch'] + 1} ({best['monitor']} {best['value']:.4f})")
        return model, best

    def evaluate(self, model):
        """The test split's metrics and report files, in the run's test views."""
        d = self.config.data
        spec = data_lib.InputSpec(d.image_size, self.config.train.batch_size, preprocessing=self.config.model.preprocessing)
        return evaluate_split(model, self.source, self.test_name, d, spec, self.paths.run_dir, report_as="test")

    def finalise(self, model, digest):
        """Evaluates, plots, saves and exports; metrics.json, written last, marks the run complete."""
        run_dir, preprocessing, classes = self.paths.run_dir, self.config.model.preprocessing, self.source.class_names
        model, best = self.model_to_evaluate(model)
        metrics = self.evaluate(model)
        self.log(f"\n{self.test_name} split, {metrics['test_examples']} images:\n{metrics['report']}")
        evaluation.plot_curves(self.paths.history, run_dir / "curves.png")
        model_files.save_keras(model, run_dir / "model.keras", classes, preprocessing)
        files.write_text_atomic(run_dir / model_files.LABELS_FILE, model_files.labels_text(classes))
        export.export_saved_model(model, run_dir / "saved_model", classes, preprocessing=preprocessing)
        metrics.update(self._run_figures(model, best, digest))
        files.write_text_atomic(run_dir / "metrics.json", json.dumps(_jsonable(metrics), indent=2) + "\n")
        files.remove(self.paths.backup)
        self.log(
            f"test accuracy {metrics['test_accuracy']:.4f}, top-5 {metrics['test_top5_accuracy']:.4f}, "
            f"loss {metrics['test_loss']:.4f}; training {metrics['training_time_s'] / 60:.1f} min; results in {run_dir}"
        )
        return metrics

    def _run_figures(self, model, best, digest):
        """What metrics.json says of the training, beside the test's figures."""
        t = self.config.train
        history = evaluation.read_history(self.paths.history)
        training_time = float(history.get("epoch_time_s", [0.0]).sum()) if history else 0.0
        epochs_done = len(history.get("epoch", [])) if history else 0
        train_size = self.source.splits["train"].size
        return dict(
            evaluated_split=self.test_name, training_time_s=training_time,
            train_images_per_second=(train_size * epochs_done / training_time) if training_time else None,
            epochs=epochs_done, compute_epochs=budget.compute_epochs([(train_size, budget.training_macs(model))] * epochs_done),
            best_epoch=best["epoch"] + 1 if best else None, train_examples=train_size,
            precision=t.precision, runtime=settings.loaded_setting().name, strategy=t.strategy,
            replicas=self.strategy.num_replicas_in_sync, workers=self.role.count,
            weights_sha256=digest, parameters=model.count_params(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
