"""GoogLeNet (Inception v1), Szegedy et al. 2014, "Going Deeper with Convolutions": the
paper's Table 1, the blocks, and the factory `GoogLeNet(weights=)` as `keras.applications`
has it (the weights' sources are `weights`). Known deviations from other ports:

- The third branch of every module is a true 5x5 convolution, as in the paper and the
  Caffe reference model. torchvision's `googlenet` and TF-slim's `inception_v1` use a 3x3
  kernel there (torchvision issue #906 calls it a known bug kept for its weights).
- The "paper" variant has the geometry of the Caffe reference model (BVLC GoogLeNet), so
  its weights load exactly: conv1 pads 3 on every side, and the 3x3/2 max pools round
  their output size up as Caffe does (`caffe_pool_padding`). With "same" padding instead,
  conv1 would pad 2 before and 3 after (the same size, shifted by a pixel) and the pools
  would give one more row at odd sizes. The "bn" variant keeps "same" padding, as
  TF-slim does (and as the runs under results/ were trained).
- The auxiliary heads pool the 4a / 4d maps to a 4x4 grid for every accepted input size
  (see `aux_pool_geometry`); at 224x224 that is exactly the paper's 5x5 stride-3 pool,
  at other sizes Caffe's pool would give another grid and the heads' weights would not fit.
- The last pool is global, as in every Keras application; the Caffe model's 7x7 pool is
  the same at 224x224 only.
"""

import functools

import keras

from inception_tf import choices
from inception_tf.modeling import imagenet
from inception_tf.modeling import weights as weights_lib
from inception_tf.modeling.geometry import aux_pool_geometry, caffe_pool_padding, min_input_size
from inception_tf.modeling.layers import FusedBatchNormalization, LocalResponseNormalization


# Paper Table 1: (module, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
# A 3x3/2 max pool comes before the first module of stages 4 and 5.
INCEPTION_TABLE = (
    ("3a", 64, 96, 128, 16, 32, 32),  # 28x28x256
    ("3b", 128, 128, 192, 32, 96, 64),  # 28x28x480
    ("4a", 192, 96, 208, 16, 48, 64),  # 14x14x512
    ("4b", 160, 112, 224, 24, 64, 64),  # 14x14x512
    ("4c", 128, 128, 256, 24, 64, 64),  # 14x14x512
    ("4d", 112, 144, 288, 32, 64, 64),  # 14x14x528
    ("4e", 256, 160, 320, 32, 128, 128),  # 14x14x832
    ("5a", 256, 160, 320, 32, 128, 128),  # 7x7x832
    ("5b", 384, 192, 384, 48, 128, 128),  # 7x7x1024
)
POOL_BEFORE = {"4a": "pool3", "5a": "pool4"}
AUX_AFTER = {"4a": "aux1", "4d": "aux2"}
# The heads, by output name: the main head first. Each ends in a Dense layer named
# `classifier_layer(head)` followed by its softmax, which carries the head's name.
MAIN_HEAD = "main"
HEADS = (MAIN_HEAD, *AUX_AFTER.values())

def _conv_block(x, filters, kernel_size, variant, name, **conv):
    """Conv + ReLU ("paper": with bias 0.2) or conv + BatchNorm + ReLU ("bn"). `conv`:
    Conv2D's `strides` and `padding` (default: 1, "same")."""
    paper = variant == "paper"
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=conv.get("strides", 1),
        padding=conv.get("padding", "same"),
        use_bias=paper,
        kernel_initializer="glorot_uniform",
        # The Caffe reference model starts every conv bias at 0.2.
        bias_initializer=keras.initializers.Constant(0.2),
        name=f"{name}_conv",
    )(x)
    if not paper:
        # Momentum 0.9 (PyTorch's 0.1, as torchvision): Keras's 0.99 leaves the moving
        # statistics useless for evaluation until several hundred steps have passed.
        x = FusedBatchNormalization(momentum=0.9, epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _check_filters(**filters):
    for key, value in filters.items():
        _check_positive_int(key, value)


def inception_module(x, filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce, filters_5x5,
                     filters_pool_proj, name=None, variant="paper"):
    """The four-branch Inception module (paper Figure 2b).

    Branches: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5 (a true 5x5, as in the paper);
    3x3/1 max pool -> 1x1 projection. They are concatenated on the channel axis, so the
    output has `filters_1x1 + filters_3x3 + filters_5x5 + filters_pool_proj` channels and
    the input's height and width.

    Args:
        x: a 4-D functional tensor, `(batch, height, width, channels)`.
        filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce, filters_5x5,
        filters_pool_proj: the branch widths, as the columns of the paper's Table 1.
        name: prefix of the module's layer names (default: a unique `inception_N`).
        variant: "paper" (conv with bias + ReLU) or "bn" (conv + BatchNorm + ReLU).

    Returns:
        The concatenated output tensor.
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            "`inception_module` expects a 4-D tensor (batch, height, width, channels). "
            f"Received: x.shape={shape}"
        )
    _check_variant(variant)
    _check_filters(
        filters_1x1=filters_1x1,
        filters_3x3_reduce=filters_3x3_reduce,
        filters_3x3=filters_3x3,
        filters_5x5_reduce=filters_5x5_reduce,
        filters_5x5=filters_5x5,
        filters_pool_proj=filters_pool_proj,
    )
    if name is None:
        name = f"inception_{keras.backend.get_uid('inception_module')}"

    def conv(t, filters, kernel_size, suffix):
        return _conv_block(t, filters, kernel_size, variant=variant, name=f"{name}_{suffix}")

    branch_1x1 = conv(x, filters_1x1, 1, "1x1")
    branch_3x3 = conv(x, filters_3x3_reduce, 1, "3x3_reduce")
    branch_3x3 = conv(branch_3x3, filters_3x3, 3, "3x3")
    branch_5x5 = conv(x, filters_5x5_reduce, 1, "5x5_reduce")
    # torchvision and TF-slim use a 3x3 kernel here; the paper's is 5x5.
    branch_5x5 = conv(branch_5x5, filters_5x5, 5, "5x5")
    branch_pool = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = conv(branch_pool, filters_pool_proj, 1, "pool_proj")
    # Named as the module (Caffe's `inception_3a/output`): `get_layer("inception_4e")`.
    return keras.layers.Concatenate(axis=-1, name=name)(
        [branch_1x1, branch_3x3, branch_5x5, branch_pool]
    )


def _aux_head(x, name, num_classes, variant, dropout_rate, classifier_activation):
    """avg pool to 4x4 -> conv 1x1 (128) -> fc 1024 -> dropout 0.7 -> fc -> softmax."""
    (kh, sh), (kw, sw) = aux_pool_geometry(x.shape[1]), aux_pool_geometry(x.shape[2])
    x = keras.layers.AveragePooling2D((kh, kw), strides=(sh, sw), name=f"{name}_pool")(x)  # 4x4
    x = _conv_block(x, 128, 1, variant=variant, name=f"{name}_reduce")  # 4x4x128
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)  # 2048
    x = keras.layers.Dense(
        1024,
        activation="relu",
        bias_initializer=keras.initializers.Constant(0.2 if variant == "paper" else 0.0),
        name=f"{name}_fc",
    )(x)
    x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    return _classifier(x, num_classes, classifier_activation, name)


def classifier_layer(head):
    return f"{head}_classifier"


def main_head(output_names):
    """The main head among a model's `output_names` (a one-output model's only one)."""
    names = list(output_names)
    return MAIN_HEAD if MAIN_HEAD in names else names[0]


def _classifier(x, num_classes, activation, name):
    x = keras.layers.Dense(num_classes, name=classifier_layer(name))(x)
    # Float32 probabilities under mixed precision: bfloat16 softmax loses the small ones.
    return keras.layers.Activation(activation, dtype="float32", name=name)(x)


def _max_pool(x, variant, name):
    """The 3x3/2 max pool: Caffe's rounding for "paper", "same" padding for "bn"."""
    if variant != "paper":
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)
    after = {caffe_pool_padding(side) for side in x.shape[1:3]}
    if after == {1}:
        # Caffe's row and column after an even side are what "same" pads there, with -inf
        # for zero: the same maximum (and gradient) over the ReLU outputs this pool sees,
        # without a padded copy of the map.
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)
    if after == {0, 1}:
        padding = tuple((0, caffe_pool_padding(side)) for side in x.shape[1:3])
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def _check_variant(variant):
    if variant not in choices.VARIANTS:
        raise ValueError(f"`variant` must be one of {choices.VARIANTS}. Received: variant={variant!r}")


def _check_positive_int(key, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{key}` must be a positive integer. Received: {key}={value!r}")


def _check_input_shape(input_shape, variant, with_aux):
    """`input_shape` as a tuple of three integers, at least the network's smallest input."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else input_shape
    if not isinstance(shape, tuple) or len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ValueError(f"`input_shape` must be three integers (height, width, channels). Received: input_shape={input_shape!r}")
    height, width, channels = shape
    minimum = min_input_size(variant, with_aux)
    if height < minimum or width < minimum:
        why = f" (variant {variant!r}, aux_heads=True)" if with_aux else ""
        raise ValueError(f"GoogLeNet needs inputs of at least {minimum}x{minimum}{why}. Received: input_shape={shape}")
    if channels < 1:
        raise ValueError(f"`input_shape` needs at least one channel (channels last). Received: input_shape={shape}")
    return shape


def _check_weights(weights, variant, include_top, num_classes):
    """The rules of `keras.applications` for `weights="imagenet"`, before anything is fetched."""
    if weights != imagenet.WEIGHTS:
        return
    if variant != "paper":
        raise ValueError(
            f'`weights="imagenet"` are BVLC\'s, for the paper variant (LRN, conv biases); variant "bn" has none. '
            f"Received: variant={variant!r}"
        )
    if include_top and num_classes != imagenet.NUM_CLASSES:
        raise ValueError(
            f'With `weights="imagenet"` and include_top=True, `num_classes` must be {imagenet.NUM_CLASSES} (to '
            f"fine-tune on other classes, build without weights and load them with `--init-from imagenet`, or "
            f"include_top=False). Received: num_classes={num_classes!r}"
        )


def _check_arguments(arguments):
    """Every argument of `GoogLeNet` (a dict of them), before anything is built or fetched;
    returns the input shape as a tuple."""
    _check_variant(arguments["variant"])
    if arguments["include_top"]:
        _check_positive_int("num_classes", arguments["num_classes"])
    if arguments["pooling"] not in choices.POOLINGS:
        raise ValueError(f"`pooling` must be one of {choices.POOLINGS}. Received: pooling={arguments['pooling']!r}")
    for key in ("dropout_rate", "aux_dropout_rate"):
        rate = arguments[key]
        if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"`{key}` must be in [0, 1). Received: {key}={rate!r}")
    with_aux = arguments["include_top"] and arguments["aux_heads"]
    shape = _check_input_shape(arguments["input_shape"], arguments["variant"], with_aux)
    _check_weights(arguments["weights"], arguments["variant"], arguments["include_top"], arguments["num_classes"])
    return shape


def _stem(inputs, variant):
    """conv 7x7/2, max pool, (LRN), conv 1x1, conv 3x3, (LRN), max pool: 224x224x3 -> 28x28x192."""
    paper = variant == "paper"
    if paper:
        x = keras.layers.ZeroPadding2D(3, name="conv1_7x7_pad")(inputs)
        x = _conv_block(x, 64, 7, strides=2, variant=variant, name="conv1_7x7", padding="valid")
    else:
        x = _conv_block(inputs, 64, 7, strides=2, variant=variant, name="conv1_7x7")  # 112x112x64
    x = _max_pool(x, variant, "pool1")  # 56x56x64
    if paper:
        x = LocalResponseNormalization(name="lrn1")(x)
    x = _conv_block(x, 64, 1, variant=variant, name="conv2_reduce")  # 56x56x64
    x = _conv_block(x, 192, 3, variant=variant, name="conv2_3x3")  # 56x56x192
    if paper:
        x = LocalResponseNormalization(name="lrn2")(x)
    return _max_pool(x, variant, "pool2")  # 28x28x192


def _inception_stages(x, variant, aux_head=None):
    """Stages 3, 4 and 5 (shapes in INCEPTION_TABLE): the 5b map, and the aux heads'
    outputs (`aux_head(x, name)` after 4a and 4d; none without it)."""
    aux_outputs = []
    for module, *filters in INCEPTION_TABLE:
        if module in POOL_BEFORE:
            x = _max_pool(x, variant, POOL_BEFORE[module])
        x = inception_module(x, *filters, name=f"inception_{module}", variant=variant)
        if aux_head is not None and module in AUX_AFTER:
            aux_outputs.append(aux_head(x, AUX_AFTER[module]))
    return x, aux_outputs


def _top(x, arguments):
    """The main head (global average pool, dropout, classifier), or without the top the
    `pooling` of the 5b map."""
    if arguments["include_top"]:
        x = keras.layers.GlobalAveragePooling2D(name="pool5")(x)  # 1024
        x = keras.layers.Dropout(arguments["dropout_rate"], name="main_dropout")(x)
        return _classifier(x, arguments["num_classes"], arguments["classifier_activation"], MAIN_HEAD)
    if arguments["pooling"] == "avg":
        return keras.layers.GlobalAveragePooling2D(name="pool5")(x)
    if arguments["pooling"] == "max":
        return keras.layers.GlobalMaxPooling2D(name="pool5")(x)
    return x


def GoogLeNet(
    num_classes=1000,
    input_shape=(224, 224, 3),
    variant="paper",
    aux_heads=True,
    include_top=True,
    pooling="avg",
    dropout_rate=0.4,
    aux_dropout_rate=0.7,
    classifier_activation="softmax",
    name="googlenet",
    weights=None,
):
    """Builds GoogLeNet (Inception v1) as a functional `keras.Model`.

    Args:
        num_classes: number of classes of the classifier (and of the aux heads).
        input_shape: `(height, width, channels)`, channels last. At least 32x32, and with
            aux heads, whose pool needs a 4x4 map after stage 4a, 49x49 ("bn") or 63x63
            ("paper": Caffe's pools round down at odd sizes).
        variant: "paper" (conv with bias 0.2, ReLU, LocalResponseNormalization in the stem,
            Glorot-uniform weights) or "bn" (conv without bias + BatchNormalization + ReLU,
            no LRN: the torchvision / TF-slim style).
        aux_heads: add the two auxiliary classifiers after 4a and 4d. The model then has
            three outputs, in this order: `main`, `aux1`, `aux2`. Only used with
            `include_top=True`.
        include_top: end with the classifier. False gives a feature extractor.
        pooling: with `include_top=False`: "avg" or "max" global pooling of the 5b map
            (1024 features), or None for the map itself.
        dropout_rate: dropout before the main classifier (paper: 0.4).
        aux_dropout_rate: dropout in the aux heads (paper: 0.7).
        classifier_activation: activation of the classifiers ("softmax", or None for
            logits). Computed in float32 under mixed precision.
        name: the model's name.
        weights: None (random initialisation), "imagenet" (BVLC's ImageNet weights,
            downloaded once and cached: `weights`; paper variant, and 1000 classes with
            the top), or the path of a `.keras` model, a `.weights.h5` file or BVLC's
            `bvlc_googlenet.caffemodel`. BVLC's input is
            `preprocess_input(images, mode="caffe")`. Layers are matched by name:
            classifiers of another `num_classes` start fresh, the rest must fit (any
            input size does), else the error names the first layer that does not.

    Returns:
        A `keras.Model`.
    """
    arguments = dict(locals())
    shape = _check_arguments(arguments)
    inputs = keras.Input(shape=shape, name="image")
    aux_head = None
    if include_top and aux_heads:
        aux_head = functools.partial(_aux_head, num_classes=num_classes, variant=variant,
                                     dropout_rate=aux_dropout_rate, classifier_activation=classifier_activation)
    x, aux_outputs = _inception_stages(_stem(inputs, variant), variant, aux_head)
    main = _top(x, arguments)
    model = keras.Model(inputs, [main, *aux_outputs] if aux_outputs else main, name=name)
    if weights is not None:
        weights_lib.load(model, weights)
    return model


def inference_model(model):
    """The main head of a (three-output) GoogLeNet, sharing its weights.

    The aux heads exist for training; at inference the paper drops them.
    """
    if len(model.outputs) == 1:
        return model
    try:
        main = model.get_layer(MAIN_HEAD).output
    except ValueError:
        raise ValueError(
            f"`inference_model` expects a model with an output layer named {MAIN_HEAD!r}. "
            f"Received: outputs={[t.name for t in model.outputs]}"
        ) from None
    # `model.input`, not `.inputs`: a list of one would make Keras warn at every call on
    # an image batch that the inputs' structure does not match.
    return keras.Model(model.input, main, name=f"{model.name}_inference")

