"""BVLC GoogLeNet (Caffe's model zoo, `bvlc_googlenet.caffemodel`) read into the paper variant.

No Caffe and no compiled `caffe.proto` are needed: a .caffemodel is a protobuf `NetParameter`,
and the few fields its weights live in are read from the wire format directly (field
numbers from Caffe's `src/caffe/proto/caffe.proto`). Both layouts Caffe has written are
read: `layer` (field 100, `LayerParameter`) and the older `layers` (field 2,
`V1LayerParameter`).

Caffe stores a convolution's kernel as (out, in, height, width) and an inner product's as
(out, in); Keras wants (height, width, in, out) and (in, out). The aux heads' first inner
product reads its 128x4x4 input flattened channel-first, Keras's Flatten is
channel-last, so its rows are permuted (`_fc_after_chw`).

Each Keras layer with weights has its Caffe layer by name (`caffe_layer`); `convert`
writes the whole network's Caffe description and converts the file into a `.keras` model.
"""

import pathlib
import re

import numpy as np

from inception_tf.modeling import geometry

# caffe.proto field numbers.
_NET_LAYER, _NET_LAYERS_V1 = 100, 2
_LAYER_NAME, _LAYER_BLOBS = 1, 7
_V1_NAME, _V1_BLOBS = 4, 6
_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH = 1, 2, 3, 4
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1

BRANCHES = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")
AUX_CAFFE = {"aux1": "loss1", "aux2": "loss2"}
INPUT_SIZE = 224  # BVLC's; the weights load at other sizes too (see GoogLeNet)


class CaffeFormatError(ValueError):
    """The file is not a BVLC GoogLeNet caffemodel (or not a caffemodel at all)."""


# --- protobuf wire format ---------------------------------------------------------------

def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CaffeFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of a message: an int, or a memoryview for bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise CaffeFormatError(f"unsupported wire type {wire} (field {number})")
        if pos > end:
            raise CaffeFormatError(f"truncated field {number}")
        yield number, wire, value


def _packed_varints(value, wire):
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


def _blob(buf):
    """A BlobProto as a float32 array of its shape (`shape`, else num/channels/height/width)."""
    legacy, dims, parts = {}, [], []
    for number, wire, value in _fields(buf):
        if number in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH) and wire == 0:
            legacy[number] = value
        elif number == _BLOB_DATA:
            parts.append(np.frombuffer(value, "<f4"))
        elif number == _BLOB_DOUBLE_DATA:
            parts.append(np.frombuffer(value, "<f8").astype(np.float32))
        elif number == _BLOB_SHAPE:
            for dim_number, dim_wire, dim in _fields(value):
                if dim_number == _SHAPE_DIM:
                    dims += _packed_varints(dim, dim_wire)
    data = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if not dims:
        dims = [legacy.get(n, 1) for n in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH)]
    if int(np.prod(dims)) != data.size:
        raise CaffeFormatError(f"a blob of shape {dims} holds {data.size} values")
    return data.reshape(dims)


def read_blobs(path):
    """`{layer name: [blob arrays]}` of every layer with weights, in file order."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No caffemodel at {path}. Received: caffemodel={str(path)!r}")
    buf = memoryview(path.read_bytes())
    layers = {}
    try:
        for number, wire, value in _fields(buf):
            if wire != 2 or number not in (_NET_LAYER, _NET_LAYERS_V1):
                continue
            name_field, blobs_field = (_LAYER_NAME, _LAYER_BLOBS) if number == _NET_LAYER else (_V1_NAME, _V1_BLOBS)
            name, blobs = None, []
            for field, field_wire, item in _fields(value):
                if field == name_field and field_wire == 2:
                    name = bytes(item).decode("utf-8", "replace")
                elif field == blobs_field and field_wire == 2:
                    blobs.append(_blob(item))
            if name is not None and blobs:
                layers[name] = blobs
    except CaffeFormatError as error:
        raise CaffeFormatError(f"{path} is not a readable caffemodel ({error}). Received: caffemodel={str(path)!r}") from None
    return layers


# --- the BVLC layout ----------------------------------------------------------------------

_STEM = {"conv1_7x7_conv": "conv1/7x7_s2", "conv2_reduce_conv": "conv2/3x3_reduce", "conv2_3x3_conv": "conv2/3x3"}
_MODULE_CONV = re.compile(rf"inception_(\w\w)_({'|'.join(BRANCHES)})_conv")
_AUX = {"reduce_conv": ("conv", "conv"), "fc": ("fc", "fc_chw"), "classifier": ("classifier", "fc")}


def caffe_layer(keras_name):
    """`(Caffe layer, kind)` of a Keras layer with weights, or None for one BVLC's model
    lacks. kind: "conv", "fc", or "fc_chw" (an inner product after a channel-first flatten)."""
    if keras_name in _STEM:
        return _STEM[keras_name], "conv"
    if keras_name == "main_classifier":
        return "loss3/classifier", "fc"
    module = _MODULE_CONV.fullmatch(keras_name)
    if module:
        return f"inception_{module.group(1)}/{module.group(2)}", "conv"
    head, _, part = keras_name.partition("_")
    if head in AUX_CAFFE and part in _AUX:
        suffix, kind = _AUX[part]
        return f"{AUX_CAFFE[head]}/{suffix}", kind
    return None


def layout(model):
    """[(Keras layer, Caffe layer, kind)] of every layer of `model` with weights, in its order."""
    rows = []
    for layer in model.layers:
        if layer.weights:
            found = caffe_layer(layer.name)
            if found is None:
                raise CaffeFormatError(f"BVLC GoogLeNet has no layer for {layer.name!r}. Received: layer={layer.name!r}")
            rows.append((layer.name, *found))
    return rows


def _fc_after_chw(weights, channels=128, grid=geometry.AUX_GRID):
    """(out, C*H*W) read channel-first -> (H*W*C, out) for a channel-last Flatten."""
    out = weights.shape[0]
    return weights.reshape(out, channels, grid, grid).transpose(2, 3, 1, 0).reshape(grid * grid * channels, out)


def _to_keras(kind, blobs, shapes):
    """Caffe blobs -> Keras weights of `shapes` (kernel, bias), or None if they do not fit."""
    kernel_shape = shapes[0]
    if len(blobs) != len(shapes) or blobs[0].size != int(np.prod(kernel_shape)):
        return None
    if kind == "conv":
        height, width, inputs, outputs = kernel_shape
        kernel = blobs[0].reshape(outputs, inputs, height, width).transpose(2, 3, 1, 0)
    elif kind == "fc_chw":
        kernel = _fc_after_chw(blobs[0].reshape(kernel_shape[1], kernel_shape[0]))
    else:
        kernel = blobs[0].reshape(kernel_shape[1], kernel_shape[0]).T
    if kernel.shape != tuple(kernel_shape) or blobs[1].size != int(np.prod(shapes[1])):
        return None
    return [np.ascontiguousarray(kernel, np.float32), blobs[1].reshape(shapes[1]).astype(np.float32)]


def load_into(model, path, classifiers=()):
    """Sets the BVLC weights of a caffemodel into a paper-variant GoogLeNet, layer by layer.

    The layers named in `classifiers` keep their fresh initialisation where their number
    of classes differs; a model without top or aux heads takes what it has. Returns
    (layers copied, classifiers left fresh). Raises `CaffeFormatError` naming the first
    layer that does not fit.
    """
    blobs = read_blobs(path)
    names = {layer.name for layer in model.layers}
    if "lrn1" not in names:
        raise CaffeFormatError(
            'The BVLC weights are for the paper variant (LRN, conv biases). Received: variant="bn"'
        )
    copied, fresh = 0, []
    for keras_name, caffe_name, kind in layout(model):
        layer = model.get_layer(keras_name)
        if caffe_name not in blobs:
            raise CaffeFormatError(
                f"{path} has no layer {caffe_name!r} (for {keras_name}): not BVLC GoogLeNet's layout. "
                f"Its first layers: {list(blobs)[:4]}"
            )
        shapes = [tuple(v.shape) for v in layer.weights]
        weights = _to_keras(kind, blobs[caffe_name], shapes)
        if weights is None and keras_name in classifiers:
            fresh.append(keras_name)
            continue
        if weights is None:
            got = [list(b.shape) for b in blobs[caffe_name]]
            raise CaffeFormatError(
                f"Layer {caffe_name!r} of {path} does not fit {keras_name}: Caffe blobs {got}, "
                f"Keras weights {[list(s) for s in shapes]}"
            )
        layer.set_weights(weights)
        copied += 1
    return copied, fresh
