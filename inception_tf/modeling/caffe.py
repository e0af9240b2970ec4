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

`deploy_prototxt()` writes the network's Caffe description from `network.INCEPTION_TABLE`,
aux heads included (BVLC's own deploy file leaves them out).
"""

import pathlib
import re

import numpy as np

from inception_tf.modeling import geometry, network

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

def layout():
    """[(Keras layer, Caffe layer, kind)] of every layer with weights, in network order.

    kind: "conv", "fc", or "fc_chw" (an inner product after a channel-first flatten).
    """
    rows = [
        ("conv1_7x7_conv", "conv1/7x7_s2", "conv"),
        ("conv2_reduce_conv", "conv2/3x3_reduce", "conv"),
        ("conv2_3x3_conv", "conv2/3x3", "conv"),
    ]
    for module, *_ in network.INCEPTION_TABLE:
        rows += [(f"inception_{module}_{b}_conv", f"inception_{module}/{b}", "conv") for b in BRANCHES]
        aux = network.AUX_AFTER.get(module)
        if aux:
            loss = AUX_CAFFE[aux]
            rows += [
                (f"{aux}_reduce_conv", f"{loss}/conv", "conv"),
                (f"{aux}_fc", f"{loss}/fc", "fc_chw"),
                (network.classifier_layer(aux), f"{loss}/classifier", "fc"),
            ]
    return rows + [(network.classifier_layer(network.MAIN_HEAD), "loss3/classifier", "fc")]


def _is_classifier(keras_name):
    return keras_name in map(network.classifier_layer, network.HEADS)


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


def load_into(model, path):
    """Sets the BVLC weights of a caffemodel into a paper-variant GoogLeNet, layer by layer.

    Classifiers of another number of classes keep their fresh initialisation; a model
    without top or aux heads takes what it has. Returns (layers copied, classifiers left
    fresh). Raises `CaffeFormatError` naming the first layer that does not fit.
    """
    blobs = read_blobs(path)
    names = {layer.name for layer in model.layers}
    if "lrn1" not in names:
        raise CaffeFormatError(
            'The BVLC weights are for the paper variant (LRN, conv biases). Received: variant="bn"'
        )
    copied, fresh = 0, []
    for keras_name, caffe_name, kind in layout():
        if keras_name not in names:
            continue
        layer = model.get_layer(keras_name)
        if caffe_name not in blobs:
            raise CaffeFormatError(
                f"{path} has no layer {caffe_name!r} (for {keras_name}): not BVLC GoogLeNet's layout. "
                f"Its first layers: {list(blobs)[:4]}"
            )
        shapes = [tuple(v.shape) for v in layer.weights]
        weights = _to_keras(kind, blobs[caffe_name], shapes)
        if weights is None and _is_classifier(keras_name):
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


# --- the deploy description ---------------------------------------------------------------

def _layer(name, kind, bottom, top=None, **params):
    top = top or name
    body = "".join(f"  {key} {{ {value} }}\n" for key, value in params.items())
    return f'layer {{\n  name: "{name}"\n  type: "{kind}"\n  bottom: "{bottom}"\n  top: "{top}"\n{body}}}\n'


def _conv(name, bottom, outputs, kernel=1, stride=1, pad=0):
    spec = f"num_output: {outputs} pad: {pad} kernel_size: {kernel} stride: {stride}"
    return _layer(name, "Convolution", bottom, convolution_param=spec) + _layer(f"{name}/relu", "ReLU", name, name)


def _pool(name, bottom, pool, kernel, stride, pad=0):
    return _layer(name, "Pooling", bottom, pooling_param=f"pool: {pool} kernel_size: {kernel} stride: {stride} pad: {pad}")


def _lrn(name, bottom):
    return _layer(name, "LRN", bottom, lrn_param="local_size: 5 alpha: 0.0001 beta: 0.75")


def _inception(module, bottom, filters):
    f1, f3r, f3, f5r, f5, fp = filters
    p = f"inception_{module}"
    text = _conv(f"{p}/1x1", bottom, f1)
    text += _conv(f"{p}/3x3_reduce", bottom, f3r) + _conv(f"{p}/3x3", f"{p}/3x3_reduce", f3, 3, pad=1)
    text += _conv(f"{p}/5x5_reduce", bottom, f5r) + _conv(f"{p}/5x5", f"{p}/5x5_reduce", f5, 5, pad=2)
    text += _pool(f"{p}/pool", bottom, "MAX", 3, 1, pad=1) + _conv(f"{p}/pool_proj", f"{p}/pool", fp)
    bottoms = "".join(f'  bottom: "{p}/{b}"\n' for b in ("1x1", "3x3", "5x5", "pool_proj"))
    return text + f'layer {{\n  name: "{p}/output"\n  type: "Concat"\n{bottoms}  top: "{p}/output"\n}}\n'


def _classifier(name, bottom, num_classes, prob):
    return _layer(name, "InnerProduct", bottom, inner_product_param=f"num_output: {num_classes}") + _layer(
        prob, "Softmax", name
    )


def _aux(loss, bottom, num_classes):
    text = _pool(f"{loss}/ave_pool", bottom, "AVE", 5, 3)
    text += _conv(f"{loss}/conv", f"{loss}/ave_pool", 128)
    text += _layer(f"{loss}/fc", "InnerProduct", f"{loss}/conv", inner_product_param="num_output: 1024")
    text += _layer(f"{loss}/relu_fc", "ReLU", f"{loss}/fc", f"{loss}/fc")
    text += _layer(f"{loss}/drop_fc", "Dropout", f"{loss}/fc", f"{loss}/fc", dropout_param="dropout_ratio: 0.7")
    return text + _classifier(f"{loss}/classifier", f"{loss}/fc", num_classes, f"{loss}/prob")


def deploy_prototxt(input_size=INPUT_SIZE, num_classes=1000, aux_heads=True, include_top=True):
    """BVLC GoogLeNet's network as a Caffe prototxt, with the aux heads' softmax outputs
    `loss1/prob` and `loss2/prob` beside `prob` when `aux_heads`; without the top, it
    ends at `inception_5b/output` (whose size any input gives)."""
    text = (
        'name: "GoogleNet"\nlayer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
        f"  input_param {{ shape {{ dim: 1 dim: 3 dim: {input_size} dim: {input_size} }} }}\n}}\n"
    )
    text += _conv("conv1/7x7_s2", "data", 64, 7, 2, pad=3)
    text += _pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, 2) + _lrn("pool1/norm1", "pool1/3x3_s2")
    text += _conv("conv2/3x3_reduce", "pool1/norm1", 64) + _conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, pad=1)
    text += _lrn("conv2/norm2", "conv2/3x3") + _pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2)
    bottom = "pool2/3x3_s2"
    for module, *filters in network.INCEPTION_TABLE:
        if module in network.POOL_BEFORE:
            pool = f"{network.POOL_BEFORE[module]}/3x3_s2"
            text += _pool(pool, bottom, "MAX", 3, 2)
            bottom = pool
        text += _inception(module, bottom, filters)
        bottom = f"inception_{module}/output"
        if include_top and aux_heads and module in network.AUX_AFTER:
            text += _aux(AUX_CAFFE[network.AUX_AFTER[module]], bottom, num_classes)
    if not include_top:
        return text
    text += _pool("pool5/7x7_s1", bottom, "AVE", 7, 1)
    text += _layer("pool5/drop_7x7_s1", "Dropout", "pool5/7x7_s1", "pool5/7x7_s1", dropout_param="dropout_ratio: 0.4")
    return text + _classifier("loss3/classifier", "pool5/7x7_s1", num_classes, "prob")


def _layer_params(text):
    """{layer name: "param text"} of a prototxt, for the layers in `layout()`'s terms."""
    params = {}
    for block in re.split(r"\blayers?\s*\{", text)[1:]:
        name = re.search(r'name:\s*"([^"]+)"', block)
        sizes = re.findall(r"\b(num_output|kernel_size|stride|pad):\s*(\d+)", block)
        if name:
            params[name.group(1)] = {key: int(value) for key, value in sizes}
    return params


def check_prototxt(path):
    """Compares a deploy prototxt with BVLC GoogLeNet's; raises naming the first layer that
    differs (the aux heads, absent from BVLC's deploy file, may be missing)."""
    expected = _layer_params(deploy_prototxt())
    given = _layer_params(pathlib.Path(path).read_text())
    for _, caffe_name, _ in layout():
        if caffe_name not in given:
            if caffe_name.startswith(tuple(AUX_CAFFE.values())):
                continue
            raise CaffeFormatError(f"{path} has no layer {caffe_name!r}: not BVLC GoogLeNet. Received: prototxt={str(path)!r}")
        want = expected[caffe_name]
        got = {key: given[caffe_name].get(key, {"stride": 1, "pad": 0}.get(key)) for key in want}
        if got != want:
            raise CaffeFormatError(f"Layer {caffe_name!r} of {path} is {got}, BVLC GoogLeNet's is {want}")


def convert_caffemodel(caffemodel, out, prototxt=None, image_size=INPUT_SIZE, log=print):
    """BVLC's caffemodel -> a `.keras` GoogLeNet (paper variant, three heads, 1000 ImageNet
    classes) that records its "caffe" preprocessing and the class names."""
    from inception_tf.modeling import imagenet, model_files

    if prototxt is not None:
        check_prototxt(prototxt)
    model = network.build(num_classes=imagenet.NUM_CLASSES, input_shape=(image_size, image_size, 3), variant="paper")
    load_into(model, caffemodel)
    path = model_files.save_keras(model, out, imagenet.class_names(), preprocessing="caffe")
    log(f"{caffemodel} -> {path}: {len(layout())} layers, {model.count_params():,} parameters, input {image_size}x{image_size}")
    return path
