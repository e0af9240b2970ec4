"""`GoogLeNet`, the public factory: the network of `network` (the paper's table), with
`weights=` as `keras.applications` has it. It sits above `weights`, `pretrained` and
`caffe`, which build through `network`, so no import goes in a circle."""

from inception_tf.modeling import imagenet, network, pretrained
from inception_tf.modeling import weights as weights_lib


def _check_weights(weights, variant, include_top, num_classes):
    """The rules of `keras.applications` for `weights="imagenet"`, before anything is fetched."""
    if weights != pretrained.NAME:
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
        input_shape: `(height, width, channels)`, channels last. At least 32x32, and with aux heads, whose pool needs a 4x4 map after stage 4a, 49x49
            ("bn") or 63x63 ("paper": Caffe's pools round down at odd sizes).
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
            downloaded once and cached: `pretrained`; paper variant, and 1000 classes
            with the top), or the path of a `.keras` model, a `.weights.h5` file or
            BVLC's `bvlc_googlenet.caffemodel`. BVLC's input is
            `preprocess_input(images, mode="caffe")`. Layers are matched by name:
            classifiers of another `num_classes` start fresh, the rest must fit (any
            input size does), else the error names the first layer that does not.

    Returns:
        A `keras.Model`.
    """
    arguments = {name: value for name, value in locals().items() if name != "weights"}  # the network's own
    network.check_arguments(
        num_classes, input_shape, variant, aux_heads, include_top, pooling, dropout_rate, aux_dropout_rate
    )
    _check_weights(weights, variant, include_top, num_classes)
    model = network.build(**arguments)
    if weights is not None:
        weights_lib.load(model, weights)
    return model
