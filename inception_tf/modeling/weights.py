"""Starting weights for a GoogLeNet: a .keras model, a .weights.h5 file or BVLC's caffemodel.

Layers are matched by name. A classifier whose number of classes differs keeps its fresh
initialisation (fine-tuning on other classes), and so does a head the source lacks; any
other layer must be there with the same shapes, or loading stops naming the first one that
is not.
"""

import pathlib

import keras

from inception_tf.modeling import network

SUFFIXES = (".keras", ".weights.h5", ".caffemodel")


class WeightsError(ValueError):
    """A weights file that does not fit the model."""


def _is_head(name):
    return name.startswith(tuple(f"{head}_" for head in network.HEADS))


def _copy_by_name(source, model, path):
    names = {layer.name for layer in source.layers}
    copied, fresh = 0, []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            if _is_head(layer.name):
                fresh.append(layer.name)
                continue
            raise WeightsError(f"{path} has no layer {layer.name!r}: another variant or layout? Received: weights={str(path)!r}")
        weights = source.get_layer(layer.name).get_weights()
        want = [tuple(v.shape) for v in layer.weights]
        if [w.shape for w in weights] != want:
            if layer.name in map(network.classifier_layer, network.HEADS):
                fresh.append(layer.name)
                continue
            raise WeightsError(
                f"Layer {layer.name!r} of {path} has shapes {[w.shape for w in weights]}, the model's are {want}. "
                f"Received: weights={str(path)!r}"
            )
        layer.set_weights(weights)
        copied += 1
    return copied, fresh


def load(model, path):
    """Copies the weights of `path` (or "imagenet": `pretrained.model_file`) into `model`;
    returns (layers copied, layers left fresh)."""
    from inception_tf.modeling import pretrained

    path = pathlib.Path(pretrained.resolve(path))
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise WeightsError(
            f"`weights` must be None, \"imagenet\" or a path ending in {', '.join(SUFFIXES)}. Received: weights={str(path)!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}. Received: weights={str(path)!r}")
    if name.endswith(".caffemodel"):
        from inception_tf.modeling import caffe

        return caffe.load_into(model, path)
    if name.endswith(".keras"):
        return _copy_by_name(keras.models.load_model(path, compile=False), model, path)
    try:
        model.load_weights(path)
    except ValueError as error:
        first_line = str(error).strip().splitlines()[0]
        raise WeightsError(f"{path} does not fit this model ({first_line}). Received: weights={str(path)!r}") from None
    return len([layer for layer in model.layers if layer.weights]), []
