"""One training run, from data to exported model, in one run directory.

RUN_DIR/
  config.json            the resolved configuration, written before training starts
  history.csv            one row per epoch (losses, accuracies, learning rate, time)
  logs/                  TensorBoard
  best.weights.h5        the weights of the best validation epoch (+ best.json)
  backup/                where training stood (every epoch's end, every 10 minutes, on SIGTERM),
                         while the run is unfinished
  model.keras            the full training model (three heads), best weights
  labels.txt             the class names, for model.keras
  saved_model/           the exported inference model
  metrics.json           test metrics, per-class table, timings: the run is complete
  curves.png, confusion_matrix.png, mistakes.png (the most confident mistakes)
  .lock                  held by the one process writing the run directory

The run reads top to bottom in `_run_locked`: build the data, train (model, callbacks,
fit), finalise (evaluate, plots, save, export, metrics). `RunPaths` says where each
process writes; a multi-worker run differs only there and in `_model_to_evaluate`.
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

from inception_tf import config as config_lib
from inception_tf import files, keras_fixes
from inception_tf.dataloaders import augment as augment_lib
from inception_tf.dataloaders import data as data_lib
from inception_tf.dataloaders.augment import AugmentConfig
from inception_tf.modeling import model_files, pretrained
from inception_tf.modeling import weights as weights_lib
from inception_tf.modeling.model import GoogLeNet
from inception_tf.serving import export
from inception_tf.tasks import callbacks as callbacks_lib
from inception_tf.tasks import budget, distribute, evaluation, preemption, runtime, schedules, training
from inception_tf.tasks import precision as precision_lib

RUN_FILES = (
    config_lib.CONFIG_FILE, "history.csv", "logs", "best.weights.h5", "best.json", "backup", "model.keras",
    "labels.txt", "saved_model", "metrics.json", "curves.png", "confusion_matrix.png", "mistakes.png",
)


class RunDirError(RuntimeError):
    """The run directory holds another run."""


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite."""


def default_run_dir(config):
    """`runs/fashion_mnist-paper-64px-15ep`: the same command finds its run again, and
    a --preset quick run does not collide with the full one."""
    d = config.data
    limit = f"-limit{d.limit}" if d.limit else ""
    return f"runs/{d.dataset}-{config.model.variant}-{d.image_size}px-{config.train.epochs}ep{limit}"


def resolve(config, strategy, overwrite=False, log=print, **choose_kwargs):
    """The configuration with every "auto" replaced, logging why each was chosen.

    The preprocessing follows `--init-from`'s model file (its weights expect it), else "tf".

    A run that resumes keeps the precision it started in (its config.json); a new one
    times the candidates on this machine unless one was named (`precision.choose`, whose
    keyword arguments `choose_kwargs` passes on). Several workers must have loaded
    TensorFlow under one runtime (`distribute.check_same_runtime`).
    """
    config.validate()
    if distribute.worker_role(strategy).count > 1:
        distribute.check_same_runtime(strategy, runtime.loaded_setting().name)
    run_dir = config.run_dir or default_run_dir(config)
    t = config.train
    preprocessing = config.model.preprocessing
    if preprocessing == "auto" and config.init_from:
        preprocessing = model_files.read_info(pretrained.resolve(config.init_from)).preprocessing
        log(f"preprocessing: {preprocessing} (the input {config.init_from} expects)")
    elif preprocessing == "auto":
        preprocessing = "tf"
    saved = pathlib.Path(run_dir) / config_lib.CONFIG_FILE
    if t.precision == "auto" and saved.is_file() and not overwrite:
        policy = json.loads(saved.read_text()).get("train", {}).get("precision")
        choice = precision_lib.Choice(policy, f"the precision {run_dir} started in")
    else:
        workload = precision_lib.Workload(
            variant=config.model.variant,
            image_size=config.data.image_size,
            batch_size=data_lib.replica_batch_size(t.batch_size, strategy.num_replicas_in_sync),
            aux_heads=config.model.aux_heads,
        )
        if distribute.worker_role(strategy).count > 1:
            choose_kwargs.setdefault("agree", distribute.agree_on_rates(strategy))
        choice = precision_lib.choose(t.precision, workload, log=log, **choose_kwargs)
    log(f"precision: {choice.policy} ({choice.reason})")
    return config.replace(
        **{
            "train.precision": choice.policy,
            "model.preprocessing": preprocessing,
            "data.augment": config.resolved_augment(),
            "run_dir": run_dir,
        }
    )


def prepare_run_dir(config, overwrite=False):
    """Checks the run directory against `config`; returns "new", "resume" or "complete"."""
    run_dir = pathlib.Path(config.run_dir)
    saved = run_dir / config_lib.CONFIG_FILE
    if overwrite:
        for name in RUN_FILES:
            files.remove(run_dir / name)
        return "new"
    if not saved.is_file():
        leftovers = [name for name in RUN_FILES if (run_dir / name).exists()]
        if leftovers:
            raise RunDirError(f"{run_dir} holds {leftovers} but no config.json. Pass --overwrite to start afresh.")
        return "new"
    changes = config_lib.diff(json.loads(saved.read_text()), config.to_dict())
    if changes:
        listed = "\n".join(f"  {change}" for change in changes)
        raise RunDirError(
            f"{run_dir} holds a run with another configuration (saved -> now):\n{listed}\n"
            "Pass --overwrite to replace it, or choose another --run-dir."
        )
    return "complete" if (run_dir / "metrics.json").is_file() else "resume"


def transfer_weights(source_path, model, log=print):
    """`weights.load` with a line saying what was copied and which heads start fresh."""
    copied, fresh = weights_lib.load(model, source_path)
    log(f"init-from {source_path}: {copied} layers copied" + (f", new: {', '.join(fresh)}" if fresh else ""))
    return copied, fresh


def _schedule(config):
    t = config.train
    if t.schedule == "paper":
        return schedules.paper_schedule(t.learning_rate)
    if t.schedule == "cosine":
        return schedules.CosineDecay(t.learning_rate, t.epochs, warmup_epochs=min(2, t.epochs - 1), alpha=0.01)
    return lambda epoch, lr=None: t.learning_rate


def _monitor(model):
    return "val_main_accuracy" if len(model.outputs) > 1 else "val_accuracy"


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

    # This process's files.
    history = property(lambda self: self.out / "history.csv")
    backup = property(lambda self: self.out / "backup")
    best = property(lambda self: self.out / "best.weights.h5")
    best_state = property(lambda self: self.out / "best.json")
    logs = property(lambda self: self.out / "logs")


def run(config, overwrite=False, log=print):
    """Trains, evaluates, reports and exports. Returns the metrics dict.

    Raises RunDirError when the run directory holds another configuration or another
    process is writing it, TrainingDiverged when the loss stops being finite, and
    files.DiskFull when the disk fills (saying where a rerun resumes from), and
    preemption.Preempted when SIGTERM or SIGINT stopped training after a step, backed up
    in RUN_DIR/backup (a second signal ends the process at once).

    Under a multi-worker strategy every worker runs this with the same configuration.
    The chief writes the run directory, evaluates and exports, and returns the metrics;
    the other workers train, write what they must to a temporary directory that they
    remove, and return None.
    """
    config.validate()
    strategy_name, reason = distribute.resolve_strategy(config.train.strategy)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = distribute.make_strategy(strategy_name)
    log(f"strategy: {strategy_name} ({reason}), {strategy.num_replicas_in_sync} replica(s)")
    role = distribute.worker_role(strategy)
    run_dir = config.run_dir or default_run_dir(config)
    config = config.replace(**{"train.strategy": strategy_name, "run_dir": run_dir})
    # One writer per run directory: the chief, which writes it (other workers only read).
    with _run_dir_lock(run_dir) if role.is_chief else contextlib.nullcontext():
        try:
            return _run_locked(config, strategy, role, overwrite, log)
        except Exception as error:
            if not files.is_disk_full(error):
                raise
            raise _disk_full(error, config, role) from error


@contextlib.contextmanager
def _run_dir_lock(run_dir):
    try:
        with files.exclusive_lock(run_dir):
            yield
    except files.LockHeld as error:
        raise RunDirError(f"{error}. Wait for it to finish, or choose another --run-dir.") from None


def _disk_full(error, config, role):
    """The one message of a full disk: what was being written, and where a rerun resumes."""
    run_dir = pathlib.Path(config.run_dir)
    if role.is_chief:
        files.remove_leftovers(run_dir)
    written = getattr(error, "path", None) or getattr(error, "filename", None) or f"into {run_dir}"
    backup = RunPaths(run_dir, out=run_dir).backup  # the chief's, which a rerun resumes from
    position = callbacks_lib.backed_up_position(backup)
    if position.epoch or position.step:
        resume = (
            f"The state at {position.describe(config.train.epochs)} is saved in {backup}: "
            "free some space and run the same command again to resume from it."
        )
    else:
        resume = "Nothing was backed up yet: free some space and run the same command again."
    return files.DiskFull(written, f". {resume}")


def _run_locked(config, strategy, role, overwrite, log):
    config = resolve(config, strategy, overwrite, log)
    run_dir = pathlib.Path(config.run_dir)
    # Read-only on other workers: the chief alone changes the run directory (and
    # --overwrite empties it, so there is nothing to resume from).
    state = prepare_run_dir(config, overwrite) if role.is_chief or not overwrite else "new"
    if state == "complete":
        log(f"{run_dir} is complete (metrics.json); pass --overwrite to train it again.")
        return json.loads((run_dir / "metrics.json").read_text()) if role.is_chief else None
    paths = RunPaths.for_role(run_dir, role, overwrite)
    if role.count > 1:
        log(f"worker: {role.name}, {role.index + 1} of {role.count}" + ("" if role.is_chief else f", writes to {paths.out}"))
    try:
        if role.is_chief:
            _start_run_dir(config, paths, state, log)
        source, test_name = _build_data(config, log)
        model, digest = _train(config, strategy, role, source, paths, log)
        if not role.is_chief:
            log(f"{role.name}: training done; the chief evaluates and exports into {run_dir}")
            return None
        return _finalise(config, strategy, role, source, test_name, model, digest, paths, log)
    finally:
        if not role.is_chief:
            files.remove(paths.out)


def _start_run_dir(config, paths, state, log):
    leftovers = files.remove_leftovers(paths.run_dir)
    if leftovers:
        log(f"removed {len(leftovers)} unfinished file(s) a killed run left: {', '.join(p.name for p in leftovers)}")
    files.write_text_atomic(paths.run_dir / config_lib.CONFIG_FILE, config.to_json())
    callbacks_lib.truncate_history(paths.history, callbacks_lib.backed_up_epoch(paths.backup))
    log(f"run directory: {paths.run_dir} ({'resuming' if state == 'resume' else 'new run'})")


def _build_data(config, log):
    """The data source, and the split the run is evaluated on."""
    d = config.data
    source = data_lib.load_source(
        d.dataset, data_dir=d.data_dir, validation_split=d.validation_split, limit=d.limit,
        skip_corrupt=d.skip_corrupt,
    )
    splits = source.splits
    if "test" not in splits and "validation" not in splits:
        raise ValueError(
            f"{source.name} at {source.location} has no test or validation split to evaluate on: "
            f"pass --validation-split. Received: validation_split={d.validation_split}"
        )
    log(
        f"data: {source.name} from {source.location}, {source.num_classes} classes, "
        + ", ".join(f"{key} {split.size}" for key, split in splits.items())
    )
    return source, "test" if "test" in splits else "validation"


def _dataset_arguments(config, source, model, role):
    """What the training and validation pipelines share."""
    return dict(
        heads=tuple(model.output_names) if len(model.outputs) > 1 else None,  # one head: plain labels
        one_hot=source.num_classes if config.train.label_smoothing else None,
        shard=(role.count, role.index) if role.count > 1 else None,
        preprocessing=config.model.preprocessing,
    )


def _training_data(config, source, model, role, epoch, skip):
    """The training batches of epoch `epoch` (or a range of them) from step `skip`: a
    function of the seed and the epoch, so that a resumed run sees what it would have seen."""
    d, t = config.data, config.train
    return data_lib.make_dataset(
        source.splits["train"], d.image_size, t.batch_size, training=True, seed=t.seed, epoch=epoch, skip=skip,
        augment=AugmentConfig(policy=d.augment, erasing=d.random_erasing), **_dataset_arguments(config, source, model, role),
    )


def _validation_data(config, source, model, role):
    validation = source.splits.get("validation")
    if validation is None:
        return None
    d, t = config.data, config.train
    return data_lib.make_dataset(validation, d.image_size, t.batch_size, **_dataset_arguments(config, source, model, role))


def _build_model(config, strategy, num_classes, log):
    per_replica = data_lib.replica_batch_size(config.train.batch_size, strategy.num_replicas_in_sync)
    if strategy.num_replicas_in_sync > 1:
        log(f"batch: {config.train.batch_size} global, {per_replica} on each of {strategy.num_replicas_in_sync} replicas")
    with strategy.scope():
        model = _build_and_compile(config, num_classes, log)
    if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
        log(f"loss scaling: dynamic (LossScaleOptimizer), from {model.optimizer.initial_scale:g}")
    if strategy.num_replicas_in_sync > 1:
        synchronized = distribute.synchronize_batchnorm(model)
        if synchronized:
            log(f"BatchNorm: {synchronized} layers compute their statistics over the global batch")
    return model


@dataclasses.dataclass
class _Callbacks:
    """The callbacks of the run's `fit` calls, and the ones `_train` asks where training
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


def _build_callbacks(config, model, strategy, role, paths, validation, stop_requested):
    nan_guard, timer = callbacks_lib.NaNGuard(), callbacks_lib.EpochTimer()
    tensorboard = keras.callbacks.TensorBoard(log_dir=str(paths.logs), profile_batch=0)
    backup = callbacks_lib.TrainingBackup(
        paths.backup, every_steps=config.train.backup_every, stop_requested=stop_requested, timer=timer,
        agree=distribute.agree_on_flags(strategy) if role.count > 1 else None,
    )
    callback_list = [
        keras.callbacks.LearningRateScheduler(_schedule(config)),
        nan_guard,
        timer,
        tensorboard,
    ]
    if validation:
        resume_best = paths.restore_from and paths.restore_from / "best.json"
        callback_list.append(callbacks_lib.BestWeights(paths.best, _monitor(model), resume_from=resume_best))
    callback_list += [
        keras.callbacks.CSVLogger(str(paths.history), append=True),
        backup,  # after CSVLogger: see its docstring
    ]
    verbose = 1 if sys.stdout.isatty() else 2  # a live bar on a terminal, a line per epoch in logs
    every = keras.callbacks.CallbackList(
        callback_list, add_history=True, add_progbar=True, model=model, verbose=verbose, epochs=config.train.epochs,
        steps=None,
    )
    return _Callbacks(every, nan_guard, timer, backup, tensorboard)


def _train(config, strategy, role, source, paths, log):
    """Builds the model and fits it from where a backup stood; returns it with the digest
    of its weights. Raises `preemption.Preempted` when a signal stopped it (backed up)."""
    t = config.train
    keras.utils.set_random_seed(t.seed)
    keras.config.set_dtype_policy(t.precision)
    model = _build_model(config, strategy, source.num_classes, log)
    position, metrics = callbacks_lib.restore_backup(model, paths.restore_from and paths.restore_from / "backup", strategy)
    steps = data_lib.batches_per_epoch(
        source.splits["train"], t.batch_size, shard=(role.count, role.index) if role.count > 1 else None
    )
    if position.epoch or position.step:
        log(f"resuming from {position.describe(t.epochs, steps)}")
    fixes = keras_fixes.distributed_fit(model) if strategy.num_replicas_in_sync > 1 else contextlib.nullcontext()
    average = keras_fixes.weight_average_held(model) if t.ema else contextlib.nullcontext()
    with preemption.stop_on_signals() as stop_requested, fixes, average:
        callbacks = _build_callbacks(config, model, strategy, role, paths, "validation" in source.splits, stop_requested)
        try:
            _fit_epochs(config, strategy, role, source, model, callbacks, position, metrics, steps)
            if stop_requested():  # after the last epoch's backup: the rerun only finalises
                raise preemption.Preempted(callbacks_lib.Position(t.epochs), stop_requested())
        except preemption.Preempted as stop:
            raise _preempted(stop, t.epochs, steps, paths.run_dir) from None
    if callbacks.nan_guard.stopped_at is not None:
        raise _diverged(callbacks.nan_guard.stopped_at, paths.run_dir, t.epochs)
    if t.ema:
        model.optimizer.finalize_variable_values(model.trainable_variables)
        log(f"weights: the moving average of the steps (momentum {t.ema:g}), evaluated and exported")
    # Every worker reads its weights (a collective under some strategies) before the
    # others leave; equal digests show the replicas stayed in step.
    digest = distribute.weights_digest(model)
    log(f"weights after training: sha256 {digest}")
    return model, digest


def _fit_epochs(config, strategy, role, source, model, callbacks, position, metrics, steps):
    """The epochs from `position` in as few `fit` calls as the data allows: each epoch's
    data is its own (its order and augmentation a function of the seed and the epoch).
    An epoch resumed mid-way is a `fit` of its own, from the backup's step with the
    backup's running metrics; the epochs after it share one `fit` and one iterator, so
    that no epoch waits for the last one's to be taken down and the next one's built
    (with an unknown epoch length, every epoch is a `fit` of its own)."""
    validation = _validation_data(config, source, model, role)
    epoch, epochs = position.epoch, config.train.epochs
    while epoch < epochs:
        skip = position.step if epoch == position.epoch else 0
        span = range(epoch, epoch + 1) if skip or steps is None else range(epoch, epochs)
        train_data = _training_data(config, source, model, role, span, skip)
        if skip:
            with strategy.scope():
                keras_fixes.build_metrics(model, train_data.element_spec)
        callbacks.begin_epoch(steps, skip, metrics if skip else None, position.epoch_time_s if skip else 0.0)
        model.fit(
            train_data, validation_data=validation, initial_epoch=epoch, epochs=span.stop, callbacks=callbacks.all,
            steps_per_epoch=None if steps is None else steps - skip, shuffle=False,
        )
        if model.stop_training:  # NaNGuard
            return
        epoch = span.stop


def _preempted(stop, epochs, steps, run_dir):
    """`stop` with the message a user reads."""
    backup = RunPaths(run_dir, out=run_dir).backup  # the chief's, which every worker resumes from
    return preemption.Preempted(
        stop.position, stop.signal_name,
        f"Stopped by {stop.signal_name} at {stop.position.describe(epochs, steps)}, backed up in {backup}: "
        "run the same command again to resume from there.",
    )


def _diverged(stopped_at, run_dir, epochs):
    epoch, batch = stopped_at
    chief = RunPaths(run_dir, out=run_dir)  # the files a rerun resumes from
    backup, best = chief.backup, chief.best
    position = callbacks_lib.backed_up_position(backup)
    kept = "nothing was backed up"
    if position.epoch or position.step:
        kept = f"the last good state ({position.describe(epochs)}) is in {backup}"
    if best.is_file():
        kept += f", the best weights are in {best}"
    return TrainingDiverged(
        f"The loss stopped being finite at epoch {epoch + 1}, batch {batch}. Training stopped; {kept}. "
        "Lower --learning-rate, then run again with --overwrite."
    )


def _model_to_evaluate(config, model, role, num_classes, paths, log):
    """The trained model with the best epoch's weights, and that epoch's record (or None);
    with `--ema`, the moving average of the weights, whatever epoch was best.

    After a multi-worker run it is a copy outside the strategy: the other workers are
    gone, and a distributed model would wait for them.
    """
    average = bool(config.train.ema)
    if role.count > 1:
        model = _build_and_compile(config, num_classes, log=lambda *_: None, init=False)
        model.optimizer.build(model.trainable_variables)
        if average or not paths.best.is_file():  # else the best weights are loaded below
            state = json.loads(callbacks_lib.backup_state_path(paths.backup).read_text())
            model.load_weights(paths.backup / state["weights"])
            if average:
                model.optimizer.finalize_variable_values(model.trainable_variables)
    if average or not paths.best.is_file():
        return model, None
    model.load_weights(paths.best)
    best = json.loads(paths.best_state.read_text())
    log(f"best epoch: {best['epoch'] + 1} ({best['monitor']} {best['value']:.4f})")
    return model, best


def _finalise(config, strategy, role, source, test_name, model, digest, paths, log):
    """Evaluates, plots, saves and exports; metrics.json, written last, marks the run complete."""
    d, t, run_dir = config.data, config.train, paths.run_dir
    model, best = _model_to_evaluate(config, model, role, source.num_classes, paths, log)
    preprocessing = config.model.preprocessing
    metrics = evaluation.evaluate(
        model, source.splits[test_name], source.class_names, d.image_size, t.batch_size, run_dir, split_name="test",
        views=augment_lib.test_view_boxes(d.test_crops, AugmentConfig(policy=d.augment)), preprocessing=preprocessing,
    )
    log(f"\n{test_name} split, {metrics['test_examples']} images:\n{metrics['report']}")
    evaluation.plot_curves(paths.history, run_dir / "curves.png")
    model_files.save_keras(model, run_dir / "model.keras", source.class_names, preprocessing)
    files.write_text_atomic(run_dir / model_files.LABELS_FILE, model_files.labels_text(source.class_names))
    export.export_saved_model(model, run_dir / "saved_model", source.class_names, preprocessing=preprocessing)

    history = evaluation.read_history(paths.history)
    training_time = float(history.get("epoch_time_s", [0.0]).sum()) if history else 0.0
    epochs_done = len(history.get("epoch", [])) if history else 0
    train_size = source.splits["train"].size
    metrics.update(
        evaluated_split=test_name, training_time_s=training_time,
        train_images_per_second=(train_size * epochs_done / training_time) if training_time else None,
        epochs=epochs_done, epoch_equivalents=budget.epoch_equivalents([d.image_size] * epochs_done),
        best_epoch=best["epoch"] + 1 if best else None, train_examples=train_size,
        precision=t.precision, runtime=runtime.loaded_setting().name, strategy=t.strategy,
        replicas=strategy.num_replicas_in_sync, workers=role.count,
        weights_sha256=digest, parameters=model.count_params(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    files.write_text_atomic(run_dir / "metrics.json", json.dumps(_jsonable(metrics), indent=2) + "\n")
    files.remove(paths.backup)
    log(
        f"test accuracy {metrics['test_accuracy']:.4f}, top-5 {metrics['test_top5_accuracy']:.4f}, "
        f"loss {metrics['test_loss']:.4f}; training {training_time / 60:.1f} min; results in {run_dir}"
    )
    return metrics


def _build_and_compile(config, num_classes, log, init=True):
    d, m, t = config.data, config.model, config.train
    model = GoogLeNet(
        num_classes=num_classes, input_shape=(d.image_size, d.image_size, 3), variant=m.variant,
        aux_heads=m.aux_heads, dropout_rate=m.dropout_rate,
    )
    if init and config.init_from:
        transfer_weights(config.init_from, model, log)
    return training.compile_for_training(
        model,
        learning_rate=t.learning_rate,
        momentum=t.momentum,
        labels="categorical" if t.label_smoothing else "sparse",
        label_smoothing=t.label_smoothing,
        weight_decay=t.weight_decay,
        jit_compile=runtime.jit_compile(),
        ema_momentum=t.ema or None,
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
