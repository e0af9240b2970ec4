"""The cluster a run belongs to and the strategy it asks for, checked before anything is
built: TF_CONFIG (the workers of MultiWorkerMirroredStrategy and this process's task) and
the strategy "auto" resolves to."""

import json
import os

TASK_TYPES = ("chief", "worker")  # the tasks of MultiWorkerMirroredStrategy


def check_tf_config(raw=None):
    """TF_CONFIG (`raw`, default: the environment's) parsed and checked, or None when
    unset: a cluster of chief and worker tasks at distinct "host:port" addresses, and
    this process's task in it. TensorFlow itself ignores a task outside its cluster, and
    the process would train alone. Raises ValueError naming what is wrong."""
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if not raw:
        return None

    def fail(problem):
        return ValueError(f"TF_CONFIG {problem}. Received: TF_CONFIG={raw!r}")

    try:
        config = json.loads(raw)
    except ValueError:
        raise fail("is not valid JSON") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise fail('needs a "cluster" object naming the workers\' addresses')
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES:
            raise fail(f"names a {task_type!r} task: multi-worker training has {' and '.join(TASK_TYPES)} tasks only")
        if not isinstance(addresses, list) or not addresses or not all(_is_address(a) for a in addresses):
            raise fail(f'needs a list of "host:port" addresses for {task_type!r}, got {addresses!r}')
    if len(cluster.get("chief", [])) > 1:
        raise fail(f"names {len(cluster['chief'])} chiefs; a cluster has at most one")
    every = [address for addresses in cluster.values() for address in addresses]
    repeated = sorted({address for address in every if every.count(address) > 1})
    if repeated:
        raise fail(f"gives the address {repeated[0]} to more than one task")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise fail(f'needs a "task" whose "type" is one of the cluster\'s {sorted(cluster)}, got {task!r}')
    index, count = task.get("index", 0), len(cluster[task["type"]])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise fail(f"has the task index {index!r}, outside the cluster's {count} {task['type']} task(s) (0 to {count - 1})")
    return config


def _is_address(value):
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    return bool(host) and port.isdigit()


def tf_config_workers():
    """How many tasks TF_CONFIG names (0 when unset)."""
    config = check_tf_config()
    return sum(len(addresses) for addresses in config["cluster"].values()) if config else 0


def writes_run_dir(strategy="auto"):
    """Whether this process writes the run directory, from TF_CONFIG alone (before
    TensorFlow loads): a process of its own, or a cluster's chief (its "chief" task, else
    worker 0, as `distribute.WorkerRole.is_chief` has it)."""
    config = check_tf_config()
    # Several workers exactly where `resolve_strategy` makes a multi-worker run; the GPUs it
    # would also look at decide nothing between one process and several (none loads here).
    if config is None or resolve_strategy(strategy, gpus=[])[0] != "multi_worker":
        return True
    task = config["task"]
    first = "chief" if "chief" in config["cluster"] else "worker"
    return task["type"] == first and task.get("index", 0) == 0


def cpu_replicas(strategy="auto"):
    """The replicas that share the batch of a run on CPUs, from TF_CONFIG alone (before
    TensorFlow loads): one per worker of a multi-worker run, else one. What the runtime's
    probe times, where GPUs train, nothing."""
    return max(1, tf_config_workers()) if resolve_strategy(strategy, gpus=[])[0] == "multi_worker" else 1


def resolve_strategy(strategy="auto", gpus=None):
    """`(name, reason)` of the tf.distribute strategy to use.

    auto: multi_worker when TF_CONFIG names several workers, mirrored with more than one
    GPU, one_device with one GPU (its distributed data set prefetches batches onto the
    GPU), else default. `gpus`: the GPUs' names (None: those TensorFlow sees).
    """
    if strategy != "auto":
        return strategy, "asked for"
    workers = tf_config_workers()
    if workers > 1:
        return "multi_worker", f"TF_CONFIG names {workers} workers"
    gpus = gpu_names() if gpus is None else gpus
    if len(gpus) > 1:
        return "mirrored", f"{len(gpus)} GPUs"
    if len(gpus) == 1:
        return "one_device", "one GPU: batches are prefetched onto it"
    return "default", "no GPU"


def gpu_names():
    """The logical GPUs' names (loads TensorFlow)."""
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices("GPU")]
