"""Where a run's work goes: the tf.distribute strategy, this process's role among the
workers, and keeping the replicas in step (one strategy, every worker alike)."""

import dataclasses
import hashlib
import os

import numpy as np

from inception_tf.startup import cluster, precision

def strategy_devices(name, gpus, cpus):
    """The devices a one_device or mirrored strategy runs on, from the logical device
    names: every GPU; without one, every logical CPU (several only where the process
    split its CPU with `tf.config.set_logical_device_configuration`, the stand-in for
    several GPUs that the tests use)."""
    if name == "one_device":
        return (gpus or cpus)[:1]
    if name == "mirrored":
        return list(gpus or cpus)
    raise ValueError(f"Only one_device and mirrored run on a list of devices. Received: strategy={name!r}")


def make_strategy(name):
    import tensorflow as tf

    if name == "multi_worker":
        if cluster.tf_config_workers() < 1:
            raise ValueError(
                "strategy='multi_worker' needs TF_CONFIG to name the cluster and this task. "
                f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        # Ring all-reduce over gRPC: the collective that works on CPUs and across
        # machines; NCCL is chosen by TensorFlow itself where every worker has GPUs.
        implementation = (
            tf.distribute.experimental.CommunicationImplementation.AUTO
            if tf.config.list_physical_devices("GPU")
            else tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation)
        )
    if name in ("mirrored", "one_device"):
        gpus = cluster.gpu_names()
        devices = strategy_devices(name, gpus, [device.name for device in tf.config.list_logical_devices("CPU")])
        if name == "one_device":
            return tf.distribute.OneDeviceStrategy(devices[0])
        # Without GPUs the devices are CPUs, where NCCL does not run.
        cross_device = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device)
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy. Received: strategy={name!r}")


def agree_on_rates(strategy):
    """For `precision.choose_policy` under several workers: every worker's measured images/s,
    averaged across the workers with one all-reduce, so that all decide alike. A
    precision that some worker cannot run (another GPU) drops out."""
    import tensorflow as tf

    def agree(rates):
        names = precision.ORDER
        # Each replica adds its rates, a 1 for each precision it ran, and a 1 for itself.
        local = tf.constant(
            [float(rates.get(name, 0.0)) for name in names] + [float(name in rates) for name in names] + [1.0],
            tf.float32,
        )
        summed = _sum_over_replicas(strategy, local)
        count = summed[-1]
        return {
            name: float(summed[i] / count)
            for i, name in enumerate(names)
            if summed[len(names) + i] == count
        }

    return agree


def agree_on_flags(strategy):
    """For `callbacks.TrainingBackup` under several workers: a function that turns this
    worker's flags (a tuple of bools) into the same answer on every worker, each flag
    true where some worker's is, with one all-reduce. A signal to one worker, or one
    worker's clock, then stops or backs up all of them at the same step."""
    import tensorflow as tf

    def agree(flags):
        summed = _sum_over_replicas(strategy, tf.constant([float(flag) for flag in flags], tf.float32))
        return tuple(bool(value > 0) for value in np.atleast_1d(summed))

    return agree


def _sum_over_replicas(strategy, local):
    """The sum of every replica's copy of the vector `local` (a tensor), as numpy: one
    all-reduce, across the workers under MultiWorkerMirroredStrategy."""
    import tensorflow as tf

    return strategy.reduce("SUM", strategy.run(lambda: tf.identity(local)), axis=None).numpy()


def check_same_runtime(strategy, setting_name):
    """Under several workers: stops every worker when they loaded TensorFlow under
    different runtimes (each measures its own machine, and machines differ), since the
    replicas would then compute the same step differently.

    One all-reduce of a fingerprint of the setting's name, its square and a count: every
    worker's fingerprint is the same exactly when the sum of squares is the count times
    the mean squared.
    """
    import tensorflow as tf

    code = float(int(hashlib.sha256(str(setting_name).encode()).hexdigest()[:6], 16))
    local = tf.constant([code, code * code, 1.0], tf.float64)
    total, squares, count = _sum_over_replicas(strategy, local)
    if abs(squares * count - total * total) > 1e-6 * max(squares * count, 1.0):
        raise ValueError(
            "The workers loaded TensorFlow under different runtimes (each timed its own machine): set "
            "TF_ENABLE_ONEDNN_OPTS and TF_NUM_INTEROP_THREADS alike on every worker, or INCEPTION_TF_RUNTIME=default. "
            f"Received: this worker's runtime={setting_name!r}"
        )


# --- Multi-worker roles -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """Where this process sits in a tf.distribute cluster (one process: the chief of one).

    task_type, task_id: as TF_CONFIG names them ("chief" / "worker", index).
    index, count: this worker's input pipeline among all workers (the chief first).
    """

    task_type: str = None
    task_id: int = 0
    index: int = 0
    count: int = 1

    @property
    def is_chief(self):
        """The one process that writes the run directory: "chief", else worker 0."""
        return self.index == 0

    @property
    def name(self):
        return f"{self.task_type}:{self.task_id}" if self.task_type else "single process"


def worker_role(strategy):
    """The `WorkerRole` of this process under `strategy`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type not in ("chief", "worker"):
        return WorkerRole()
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    count = chiefs + len(cluster.get("worker", []))
    task_id = int(resolver.task_id or 0)
    index = task_id if task_type == "chief" else chiefs + task_id
    return WorkerRole(task_type=task_type, task_id=task_id, index=index, count=count)


def weights_digest(model):
    """sha256 of every weight of `model`, in order: equal on workers that agree."""
    digest = hashlib.sha256()
    for value in model.get_weights():
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def synchronize_batchnorm(model):
    """Computes every BatchNormalization's batch statistics over the global batch.

    With several replicas each would otherwise normalise by its own share of the batch
    and keep moving statistics of its own, so that the workers end with different
    weights and the chief's evaluation sees only its share's statistics.
    """
    from inception_tf import keras_fixes

    layers = keras_fixes.batchnorm_layers(model)
    for layer in layers:
        layer.synchronized = True
    return len(layers)
