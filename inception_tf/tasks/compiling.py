"""GoogLeNet compiled for training with the paper's recipe: the three heads' losses and
metrics, SGD with decoupled weight decay, and the weights' moving average."""

import keras

from inception_tf import choices, keras_fixes
from inception_tf.modeling import network
from inception_tf.tasks import optimizers

AUX_LOSS_WEIGHT = 0.3  # the paper's weight of each auxiliary loss
# Variable names left out of weight decay: shrinking a bias or a BatchNorm scale towards
# zero regularises nothing and only fights the normalisation.
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")
# compile_for_training's optimizer settings and their defaults: all off.
OPTIMIZER_OPTIONS = {"weight_decay": None, "ema_momentum": None, "beta_rate": 1.0, "lookahead_steps": None}


def _classifier_is_logits(model):
    try:
        activation = model.get_layer(network.MAIN_HEAD).get_config().get("activation")
    except ValueError:
        return False
    return activation in (None, "linear")


def compile_for_training(model, learning_rate=0.01, momentum=0.9, labels="sparse", aux_loss_weight=AUX_LOSS_WEIGHT,
                         label_smoothing=0.0, jit_compile="auto", **optimizer_options):
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
        jit_compile: passed to `Model.compile`.
        **optimizer_options: the optimizer's other settings, each off unless given:
        weight_decay: decoupled weight decay of the optimizer (each step multiplies the
            weights by `1 - learning_rate * weight_decay`), or None. Biases and
            BatchNorm's scale and offset are left out, as in most recipes.
        ema_momentum: keep an exponential moving average of the weights, updated after
            every step with this momentum (Keras's `use_ema`), or None. `fit` copies it
            into the model when it ends (see `keras_fixes.weight_average_held`).
        beta_rate: BatchNorm's offsets train at this multiple of the rate
            (`optimizers.SGD`).
        lookahead_steps: Lookahead over SGD, synchronising every this many steps, or
            None (`optimizers.SGD`).

    Returns:
        The model, compiled, with the variables of its optimizer, metrics and losses
        (which a resumed epoch sets to a backup's before its first step).
    """
    options = _optimizer_options(optimizer_options)
    _check_rates(learning_rate, momentum, aux_loss_weight, options["weight_decay"], options["ema_momentum"])
    _check_labels(labels, label_smoothing)
    losses, weights, metrics = _losses_and_metrics(model, labels, label_smoothing, aux_loss_weight)
    ema_momentum = options.pop("ema_momentum")
    average = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum is not None else {}
    optimizer = optimizers.SGD(learning_rate=learning_rate, momentum=momentum, **options, **average)
    if options["weight_decay"]:
        optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metrics, jit_compile=jit_compile)
    keras_fixes.build_metrics(model, _batch_spec(model, labels))
    return model


def _batch_spec(model, labels):
    """The shapes and dtypes of a training batch as `fit` takes it: the images, and the
    labels of each head (`labels_for_heads`)."""
    images = keras.KerasTensor((None, *model.input_shape[1:]), model.inputs[0].dtype)
    if labels == "sparse":
        label = keras.KerasTensor((None,), "int32")
    else:
        label = keras.KerasTensor((None, model.outputs[0].shape[-1]), "float32")
    names = list(model.output_names)
    return images, label if len(names) == 1 else {name: label for name in names}


def _optimizer_options(given):
    """`compile_for_training`'s optimizer settings: the defaults, then those given."""
    unknown = sorted(set(given) - set(OPTIMIZER_OPTIONS))
    if unknown:
        raise TypeError(
            f"compile_for_training() takes no argument {unknown[0]!r}; the optimizer's settings are "
            f"{', '.join(OPTIMIZER_OPTIONS)}. Received: {unknown[0]}={given[unknown[0]]!r}"
        )
    return {**OPTIMIZER_OPTIONS, **given}


def _check_rates(learning_rate, momentum, aux_loss_weight, weight_decay, ema_momentum):
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={learning_rate!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
    if aux_loss_weight < 0:
        raise ValueError(f"`aux_loss_weight` must be non-negative. Received: aux_loss_weight={aux_loss_weight!r}")
    if weight_decay is not None and not weight_decay >= 0:
        raise ValueError(f"`weight_decay` must be non-negative or None. Received: weight_decay={weight_decay!r}")
    if ema_momentum is not None and not 0 <= ema_momentum < 1:
        raise ValueError(f"`ema_momentum` must be in [0, 1) or None. Received: ema_momentum={ema_momentum!r}")


def _check_labels(labels, label_smoothing):
    if labels not in choices.LABEL_MODES:
        raise ValueError(f"`labels` must be one of {choices.LABEL_MODES}. Received: labels={labels!r}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing!r}")
    if label_smoothing and labels == "sparse":
        raise ValueError(
            "`label_smoothing` needs one-hot labels: use labels='categorical'. "
            f"Received: labels={labels!r}, label_smoothing={label_smoothing!r}"
        )


def _losses_and_metrics(model, labels, label_smoothing, aux_loss_weight):
    """Per head, by output name: Keras 3 matches dicts to the output layers' names, where
    lists and the order of `model.outputs` have tripped up multi-output models before."""
    from_logits = _classifier_is_logits(model)
    top_k = min(5, model.outputs[0].shape[-1])
    sparse = labels == "sparse"

    def loss():
        if sparse:
            return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)

    def accuracy():
        cls = keras.metrics.SparseCategoricalAccuracy if sparse else keras.metrics.CategoricalAccuracy
        return cls(name="accuracy")

    names = list(model.output_names)
    main = network.main_head(names)
    top_k_metric = keras.metrics.SparseTopKCategoricalAccuracy if sparse else keras.metrics.TopKCategoricalAccuracy
    losses = {name: loss() for name in names}
    weights = {name: 1.0 if name == main else float(aux_loss_weight) for name in names}
    metrics = {name: [accuracy()] for name in names}
    metrics[main].append(top_k_metric(k=top_k, name=f"top{top_k}_accuracy"))
    if len(names) == 1:
        return losses[main], None, metrics[main]
    return losses, weights, metrics


def labels_for_heads(model, y):
    """The same labels for every head of `model`, as Keras expects them in `fit`."""
    names = list(model.output_names)
    if len(names) == 1:
        return y
    return {name: y for name in names}
