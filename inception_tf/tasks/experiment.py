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

This module takes the run directory (its lock, what it holds, a full disk) and resolves
the configuration; `task.TrainingTask` does the run itself, top to bottom in
`_run_locked`: build the data, train (model, callbacks, fit), finalise (evaluate, plots,
save, export, metrics). `RunPaths` says where each process writes; a multi-worker run
differs only there and in `TrainingTask.model_to_evaluate`.
"""

import contextlib
import json
import pathlib
import re

from inception_tf import config as config_lib
from inception_tf import files
from inception_tf.modeling import model_files
from inception_tf.startup import cluster, measured, settings
from inception_tf.startup import precision as precision_lib
from inception_tf.tasks import callbacks as callbacks_lib
from inception_tf.tasks import distribute, timing
from inception_tf.tasks.task import ResolvedRun, RunPaths, TrainingTask

RUN_FILES = (
    config_lib.CONFIG_FILE, "history.csv", "logs", "best.weights.h5", "best.json", "backup", "model.keras",
    "labels.txt", "saved_model", "metrics.json", "curves.png", "confusion_matrix.png", "mistakes.png",
)


class RunDirError(RuntimeError):
    """The run directory holds another run."""


def resolve(config, strategy, overwrite=False, log=print, **choose_kwargs):
    """The configuration with every "auto" replaced, logging why each was chosen.

    The preprocessing follows `--init-from`'s model file (its weights expect it), else "tf".

    A run that resumes keeps the precision it started in (its config.json); a new one
    times the candidates on this machine unless one was named (`precision.choose_policy`, whose
    keyword arguments `choose_kwargs` passes on). Several workers must have loaded
    TensorFlow under one runtime (`distribute.check_same_runtime`).
    """
    if distribute.worker_role(strategy).count > 1:
        distribute.check_same_runtime(strategy, settings.loaded_setting().name)
    run_dir = config.run_dir
    t = config.train
    preprocessing = config.model.preprocessing
    if preprocessing == "auto" and config.init_from:
        preprocessing = model_files.read_info(config.init_from).preprocessing
        log(f"preprocessing: {preprocessing} (the input {config.init_from} expects)")
    elif preprocessing == "auto":
        preprocessing = "tf"
    saved = pathlib.Path(run_dir or ".") / config_lib.CONFIG_FILE
    if t.precision == "auto" and run_dir and saved.is_file() and not overwrite:
        policy = json.loads(saved.read_text()).get("train", {}).get("precision")
        choice = measured.Choice("precision", policy, f"the precision {run_dir} started in")
    else:
        workload = config.workload(strategy.num_replicas_in_sync)
        if distribute.worker_role(strategy).count > 1:
            choose_kwargs.setdefault("agree", distribute.agree_on_rates(strategy))
        choose_kwargs.setdefault("timer", timing.time_policies)
        choice = precision_lib.choose_policy(t.precision, workload, log=log, **choose_kwargs)
    log(choice.line)
    return config.replace(
        **{
            "train.precision": choice.value,
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
    config = config.checked()
    strategy_name, reason = cluster.resolve_strategy(config.train.strategy)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = distribute.make_strategy(strategy_name)
    log(f"strategy: {strategy_name} ({reason}), {strategy.num_replicas_in_sync} replica(s)")
    role = distribute.worker_role(strategy)
    config = config.replace(**{"train.strategy": strategy_name, "run_dir": config.run_dir or config.resolved_run_dir()})
    chief = RunPaths.chief(config.run_dir)
    # One writer per run directory: the chief, which writes it (other workers only read).
    with _run_dir_lock(config.run_dir) if role.is_chief else contextlib.nullcontext():
        try:
            return _run_locked(config, strategy, role, chief, overwrite, log)
        except Exception as error:
            if files.is_disk_full(error):
                raise _disk_full(error, chief, role, config.train.epochs) from error
            if _is_out_of_memory(error):
                raise _out_of_memory(error, config, chief) from None
            raise


@contextlib.contextmanager
def _run_dir_lock(run_dir):
    try:
        with files.exclusive_lock(run_dir):
            yield
    except files.LockHeld as error:
        raise RunDirError(f"{error}. Wait for it to finish, or choose another run_dir.") from None


class OutOfMemory(RuntimeError):
    """TensorFlow could not allocate a tensor: the batch or the input is too large here."""


def _is_out_of_memory(error):
    return any(isinstance(e, MemoryError) or type(e).__name__ == "ResourceExhaustedError"
               for e in files.error_chain(error))


def _out_of_memory(error, config, chief):
    """One line: what ran out, what to change, and where the last backup is."""
    position = chief.backed_up()
    kept = (f"the last complete backup ({position.describe(config.train.epochs)}) stays in {chief.backup}"
            if position is not None else "nothing was backed up yet")
    message = str(getattr(error, "message", error))
    # TensorFlow's words for the tensor, found inside its framing ("Graph execution error: ...").
    found = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]( and type \w+)?", message)
    detail = found.group(0) if found else (message.strip().splitlines() or ["?"])[0][:160]
    return OutOfMemory(
        f"Out of memory at --batch-size {config.train.batch_size} and --image-size {config.data.image_size} "
        f"({detail}): lower either and start again with --overwrite or another --run-dir; {kept}."
    )


def _disk_full(error, chief, role, epochs):
    """The one message of a full disk: what was being written, and where a rerun resumes."""
    if role.is_chief:
        files.remove_leftovers(chief.run_dir)
    written = getattr(error, "path", None) or getattr(error, "filename", None) or f"into {chief.run_dir}"
    position = chief.backed_up()
    if position is not None:
        resume = (
            f"The state at {position.describe(epochs)} is saved in {chief.backup}: "
            "free some space and run the same command again to resume from it."
        )
    else:
        resume = "Nothing was backed up yet: free some space and run the same command again."
    return files.DiskFull(written, f". {resume}")


def _run_locked(config, strategy, role, chief, overwrite, log):
    """The run resolved (`ResolvedRun`), then trained on this worker."""
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
        task = TrainingTask(ResolvedRun(config, strategy, role, paths, chief), log)
        task.build_inputs()
        model, digest = task.train()
        if not role.is_chief:
            log(f"{role.name}: training done; the chief evaluates and exports into {run_dir}")
            return None
        return task.finalise(model, digest)
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
