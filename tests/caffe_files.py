"""Writes caffemodels in BVLC GoogLeNet's layout with random weights, in protobuf's wire
format (field numbers of Caffe's caffe.proto), so no Caffe is needed to make one."""

import struct

import numpy as np

from inception_tf import caffe, model as model_lib

V1_TYPES = {"conv": 4, "fc": 14, "fc_chw": 14}  # V1LayerParameter.LayerType CONVOLUTION, INNER_PRODUCT


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number, value):
    return _varint(number << 3) + _varint(value)


def _blob(array, legacy):
    array = np.asarray(array, np.float32)
    if legacy:  # num, channels, height, width: the old BlobProto, right-aligned to 4 axes
        dims = (1,) * (4 - array.ndim) + array.shape
        head = b"".join(_int_field(number, dim) for number, dim in zip((1, 2, 3, 4), dims))
    else:
        head = _field(7, _field(1, b"".join(_varint(d) for d in array.shape)))
    return head + _field(5, struct.pack(f"<{array.size}f", *array.ravel()))


def caffe_shapes(kind, kernel_shape):
    """The Caffe blob shapes of a layer whose Keras kernel is `kernel_shape`."""
    if kind == "conv":
        height, width, inputs, outputs = kernel_shape
        return (outputs, inputs, height, width), (outputs,)
    inputs, outputs = kernel_shape
    return (outputs, inputs), (outputs,)


def random_blobs(seed=0, num_classes=1000):
    """{caffe layer: [weights, bias]} in BVLC's shapes; He-scaled, so activations keep
    their size through 22 layers, and classifiers scaled to give softmaxes far from 0 and 1."""
    reference = model_lib.GoogLeNet(num_classes=num_classes, input_shape=(224, 224, 3))
    rng = np.random.default_rng(seed)
    blobs = {}
    for keras_name, caffe_name, kind in caffe.layout():
        weight_shape, bias_shape = caffe_shapes(kind, reference.get_layer(keras_name).weights[0].shape)
        fan_in = int(np.prod(weight_shape[1:]))
        scale = 7e-4 if keras_name.endswith("_classifier") else 2.0  # logits of std ~2
        blobs[caffe_name] = [
            rng.normal(0.0, np.sqrt(scale / fan_in), weight_shape).astype(np.float32),
            rng.uniform(-0.1, 0.1, bias_shape).astype(np.float32),
        ]
    return blobs


def write_caffemodel(path, blobs, v1=False):
    """A NetParameter with a layer per entry of `blobs`, as `layer` (V2) or `layers` (V1)."""
    kinds = {caffe_name: kind for _, caffe_name, kind in caffe.layout()}
    parts = [_field(1, b"GoogleNet")]
    for name, arrays in blobs.items():
        encoded = [_blob(a, legacy=v1) for a in arrays]
        if v1:
            layer = _field(4, name.encode()) + _int_field(5, V1_TYPES[kinds.get(name, "conv")])
            layer += b"".join(_field(6, b) for b in encoded)
            parts.append(_field(2, layer))
        else:
            kind = "Convolution" if kinds.get(name, "conv") == "conv" else "InnerProduct"
            layer = _field(1, name.encode()) + _field(2, kind.encode()) + b"".join(_field(7, b) for b in encoded)
            parts.append(_field(100, layer))
    path.write_bytes(b"".join(parts))
    return path
