"""Compiling and training GoogLeNet with the paper's recipe."""

import json
import os

import keras

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

def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision="auto"):
    """`(policy, reason)`: the dtype policy to train in and why.

    auto: mixed_float16 on a GPU with tensor cores (compute capability 7.0 or newer),
    mixed_bfloat16 on a CPU with AMX or AVX-512 bf16, else float32.
    """
    import tensorflow as tf

    if precision != "auto":
        return precision, "asked for"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability") or (0, 0)
        name = details.get("device_name", "GPU")
        if tuple(capability) >= (7, 0):
            return "mixed_float16", f"{name} has tensor cores (compute capability {capability[0]}.{capability[1]})"
        return "float32", f"{name} (compute capability {capability[0]}.{capability[1]}) gains nothing from float16"
    flags = _cpu_flags()
    fast = sorted(flags & {"amx_bf16", "avx512_bf16"})
    if fast:
        return "mixed_bfloat16", f"no GPU; this CPU has {' and '.join(fast)}"
    return "float32", "no GPU and no bfloat16 instructions on this CPU"


def _tf_config_workers():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except ValueError:
        raise ValueError(f"TF_CONFIG is not valid JSON. Received: TF_CONFIG={raw!r}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_strategy(strategy="auto"):
    """`(name, reason)` of the tf.distribute strategy to use.

    auto: multi_worker when TF_CONFIG names several workers, mirrored with more than one
    GPU, one_device with one GPU (its distributed data set prefetches batches onto the
    GPU), else default.
    """
    import tensorflow as tf

    if strategy != "auto":
        return strategy, "asked for"
    workers = _tf_config_workers()
    if workers > 1:
        return "multi_worker", f"TF_CONFIG names {workers} workers"
    gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus > 1:
        return "mirrored", f"{gpus} GPUs"
    if gpus == 1:
        return "one_device", "one GPU: batches are prefetched onto it"
    return "default", "no GPU"


def make_strategy(name):
    import tensorflow as tf

    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0")
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy. Received: strategy={name!r}")
