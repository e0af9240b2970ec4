"""Compiling and training GoogLeNet with the paper's recipe."""

import contextlib
import dataclasses
import hashlib
import json
import os

import keras
import numpy as np

AUX_LOSS_WEIGHT = 0.3  # the paper's weight of each auxiliary loss
LABEL_MODES = ("sparse", "categorical")
# Variable names left out of weight decay: shrinking a bias or a BatchNorm scale towards
# zero regularises nothing and only fights the normalisation.
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")


def _classifier_is_logits(model):
    try:
        activation = model.get_layer("main").get_config().get("activation")
    except ValueError:
        return False
    return activation in (None, "linear")


def compile_for_training(
    model,
    learning_rate=0.01,
    momentum=0.9,
    labels="sparse",
    aux_loss_weight=AUX_LOSS_WEIGHT,
    label_smoothing=0.0,
    weight_decay=None,
    jit_compile="auto",
):
    """Compiles a GoogLeNet for training with SGD + momentum and weighted aux losses.

    The loss is `main + aux_loss_weight * (aux1 + aux2)` (paper: 0.3), each term a
    cross-entropy on the head of that name. Metrics: accuracy and top-5 accuracy on the
    main head, accuracy on each aux head. Labels are the same for the three heads: pass
    `y` as a dict `{"main": y, "aux1": y, "aux2": y}` (or a list in output order).

    Args:
        model: a model from `GoogLeNet` (one output, or `main`, `aux1`, `aux2`).
        learning_rate: SGD's initial rate (the schedule then drives it per epoch).
        momentum: SGD momentum (paper: 0.9).
        labels: "sparse" (integer class ids) or "categorical" (one-hot rows).
        aux_loss_weight: weight of each auxiliary loss.
        label_smoothing: with `labels="categorical"` only.
        weight_decay: decoupled weight decay of the optimizer (each step multiplies the
            weights by `1 - learning_rate * weight_decay`), or None. Biases and
            BatchNorm's scale and offset are left out, as in most recipes.
        jit_compile: passed to `Model.compile`.

    Returns:
        The model, compiled.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"`labels` must be one of {LABEL_MODES}. Received: labels={labels!r}")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={learning_rate!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
    if aux_loss_weight < 0:
        raise ValueError(
            f"`aux_loss_weight` must be non-negative. Received: aux_loss_weight={aux_loss_weight!r}"
        )
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"`weight_decay` must be non-negative or None. Received: weight_decay={weight_decay!r}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing!r}")
    if label_smoothing and labels == "sparse":
        raise ValueError(
            "`label_smoothing` needs one-hot labels: use labels='categorical'. "
            f"Received: labels={labels!r}, label_smoothing={label_smoothing!r}"
        )

    from_logits = _classifier_is_logits(model)
    num_classes = model.outputs[0].shape[-1]
    top_k = min(5, num_classes)

    def loss():
        if labels == "sparse":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        return keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing
        )

    def accuracy():
        if labels == "sparse":
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        return keras.metrics.CategoricalAccuracy(name="accuracy")

    def top_k_accuracy():
        cls = (
            keras.metrics.SparseTopKCategoricalAccuracy
            if labels == "sparse"
            else keras.metrics.TopKCategoricalAccuracy
        )
        return cls(k=top_k, name=f"top{top_k}_accuracy")

    # Losses, weights and metrics go by output name: Keras 3 matches dicts to the
    # output layers' names, where lists and the order of `model.outputs` have tripped
    # up multi-output models before.
    names = list(model.output_names)
    main = "main" if "main" in names else names[0]
    losses = {name: loss() for name in names}
    weights = {name: 1.0 if name == main else float(aux_loss_weight) for name in names}
    metrics = {name: [accuracy()] for name in names}
    metrics[main].append(top_k_accuracy())
    if len(names) == 1:
        losses, weights, metrics = losses[names[0]], None, metrics[names[0]]

    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay
    )
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights=weights,
        metrics=metrics,
        jit_compile=jit_compile,
    )
    return model


def labels_for_heads(model, y):
    """The same labels for every head of `model`, as Keras expects them in `fit`."""
    names = list(model.output_names)
    if len(names) == 1:
        return y
    return {name: y for name in names}


# --- Precision and strategy ---------------------------------------------------------------

def _tf_config_workers():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except ValueError:
        raise ValueError(f"TF_CONFIG is not valid JSON. Received: TF_CONFIG={raw!r}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_strategy(strategy="auto", gpus=None):
    """`(name, reason)` of the tf.distribute strategy to use.

    auto: multi_worker when TF_CONFIG names several workers, mirrored with more than one
    GPU, one_device with one GPU (its distributed data set prefetches batches onto the
    GPU), else default. `gpus`: the GPUs' names (None: those TensorFlow sees).
    """
    if strategy != "auto":
        return strategy, "asked for"
    workers = _tf_config_workers()
    if workers > 1:
        return "multi_worker", f"TF_CONFIG names {workers} workers"
    gpus = _gpu_names() if gpus is None else gpus
    if len(gpus) > 1:
        return "mirrored", f"{len(gpus)} GPUs"
    if len(gpus) == 1:
        return "one_device", "one GPU: batches are prefetched onto it"
    return "default", "no GPU"


def _gpu_names():
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices("GPU")]


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
        if _tf_config_workers() < 1:
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
        gpus = _gpu_names()
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
    """For `precision.choose` under several workers: every worker's measured images/s,
    averaged across the workers with one all-reduce, so that all decide alike. A
    precision that some worker cannot run (another GPU) drops out."""
    import tensorflow as tf

    from inception_tf import precision

    def agree(rates):
        names = precision.ORDER
        # Each replica adds its rates, a 1 for each precision it ran, and a 1 for itself.
        local = tf.constant(
            [float(rates.get(name, 0.0)) for name in names] + [float(name in rates) for name in names] + [1.0],
            tf.float32,
        )
        summed = strategy.reduce("SUM", strategy.run(lambda: tf.identity(local)), axis=None).numpy()
        count = summed[-1]
        return {
            name: float(summed[i] / count)
            for i, name in enumerate(names)
            if summed[len(names) + i] == count
        }

    return agree


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
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


@contextlib.contextmanager
def distributed_fit(model):
    """Works around two bugs of Keras 3.15's `fit` under several replicas
    (keras-team/keras#20585, open), for the duration of the block:

    - before training, `fit` averages a first batch with `strategy.reduce` to build the
      metrics, which fails on a nested `(images, {head: labels})` batch (Mirrored and
      MultiWorkerMirrored strategies alike: "Expected float32, but got main of type
      'str'"): this builds them from the first replica's part of the batch, as Keras
      does without a strategy;
    - under MultiWorkerMirroredStrategy each step averages the replicas' scalar logs
      with `strategy.reduce("MEAN", v, axis=0)`, an invalid axis for a scalar: the mean
      across replicas is `axis=None`, what Keras computes on one machine.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return model.distribute_strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(local, next(batches))
                break
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    model._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield model
    finally:
        tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build
