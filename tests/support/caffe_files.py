"""BVLC GoogLeNet as its authors published it, typed here layer by layer from
`models/bvlc_googlenet/deploy.prototxt` (never derived from the package's INCEPTION_TABLE
or GoogLeNet, so that a wrong number there cannot be wrong here too), and caffemodels in
its layout with random weights, in protobuf's wire format (field numbers of Caffe's
caffe.proto), so no Caffe is needed to make one."""

import struct

import numpy as np

V1_TYPES = {"conv": 4, "fc": 14}  # V1LayerParameter.LayerType CONVOLUTION, INNER_PRODUCT


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


# deploy.prototxt's inception modules: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
BVLC_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
BVLC_POOL_BEFORE = {"4a": "pool3/3x3_s2", "5a": "pool4/3x3_s2"}
BVLC_LOSS_AFTER = {"4a": "loss1", "4d": "loss2"}


def _layer(name, kind, bottoms, top=None, **params):
    body = "".join(f'  bottom: "{b}"\n' for b in ([bottoms] if isinstance(bottoms, str) else bottoms))
    body += "".join(f"  {key} {{ {value} }}\n" for key, value in params.items())
    return f'layer {{\n  name: "{name}"\n  type: "{kind}"\n{body}  top: "{top or name}"\n}}\n'


def _conv(name, bottom, outputs, kernel=1, stride=1, pad=0):
    spec = f"num_output: {outputs} pad: {pad} kernel_size: {kernel} stride: {stride}"
    return _layer(name, "Convolution", bottom, convolution_param=spec) + _layer(f"{name}_relu", "ReLU", name, name)


def _pool(name, bottom, pool, kernel, stride, pad=0):
    return _layer(name, "Pooling", bottom, pooling_param=f"pool: {pool} kernel_size: {kernel} stride: {stride} pad: {pad}")


LRN = "local_size: 5 alpha: 0.0001 beta: 0.75"


def bvlc_deploy_prototxt(input_size=224, include_top=True):
    """deploy.prototxt, with the aux heads' `loss1/prob` and `loss2/prob` as outputs beside
    `prob` (train_val.prototxt's heads, dropout off); without the top, up to inception_5b."""
    text = (
        'name: "GoogleNet"\nlayer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
        f"  input_param {{ shape {{ dim: 1 dim: 3 dim: {input_size} dim: {input_size} }} }}\n}}\n"
    )
    text += _conv("conv1/7x7_s2", "data", 64, kernel=7, stride=2, pad=3)
    text += _pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, 2)
    text += _layer("pool1/norm1", "LRN", "pool1/3x3_s2", lrn_param=LRN)
    text += _conv("conv2/3x3_reduce", "pool1/norm1", 64)
    text += _conv("conv2/3x3", "conv2/3x3_reduce", 192, kernel=3, pad=1)
    text += _layer("conv2/norm2", "LRN", "conv2/3x3", lrn_param=LRN)
    text += _pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2)
    bottom = "pool2/3x3_s2"
    for module, (n1, n3r, n3, n5r, n5, npool) in BVLC_MODULES.items():
        if module in BVLC_POOL_BEFORE:
            text += _pool(BVLC_POOL_BEFORE[module], bottom, "MAX", 3, 2)
            bottom = BVLC_POOL_BEFORE[module]
        m = f"inception_{module}"
        text += _conv(f"{m}/1x1", bottom, n1)
        text += _conv(f"{m}/3x3_reduce", bottom, n3r) + _conv(f"{m}/3x3", f"{m}/3x3_reduce", n3, kernel=3, pad=1)
        text += _conv(f"{m}/5x5_reduce", bottom, n5r) + _conv(f"{m}/5x5", f"{m}/5x5_reduce", n5, kernel=5, pad=2)
        text += _pool(f"{m}/pool", bottom, "MAX", 3, 1, pad=1) + _conv(f"{m}/pool_proj", f"{m}/pool", npool)
        text += _layer(f"{m}/output", "Concat", [f"{m}/1x1", f"{m}/3x3", f"{m}/5x5", f"{m}/pool_proj"])
        bottom = f"{m}/output"
        loss = BVLC_LOSS_AFTER.get(module)
        if include_top and loss:
            text += _pool(f"{loss}/ave_pool", bottom, "AVE", 5, 3) + _conv(f"{loss}/conv", f"{loss}/ave_pool", 128)
            text += _layer(f"{loss}/fc", "InnerProduct", f"{loss}/conv", inner_product_param="num_output: 1024")
            text += _layer(f"{loss}/relu_fc", "ReLU", f"{loss}/fc", f"{loss}/fc")
            text += _layer(f"{loss}/classifier", "InnerProduct", f"{loss}/fc", inner_product_param="num_output: 1000")
            text += _layer(f"{loss}/prob", "Softmax", f"{loss}/classifier")
    if not include_top:
        return text
    text += _pool("pool5/7x7_s1", bottom, "AVE", 7, 1)
    text += _layer("loss3/classifier", "InnerProduct", "pool5/7x7_s1", inner_product_param="num_output: 1000")
    return text + _layer("prob", "Softmax", "loss3/classifier")


def bvlc_blob_shapes():
    """{Caffe layer: (weights shape, bias shape)} of every layer with weights, from the
    numbers above: convolutions (out, in, h, w), inner products (out, in)."""
    shapes = {"conv1/7x7_s2": ((64, 3, 7, 7), (64,)), "conv2/3x3_reduce": ((64, 64, 1, 1), (64,)),
              "conv2/3x3": ((192, 64, 3, 3), (192,))}
    channels = 192
    for module, (n1, n3r, n3, n5r, n5, npool) in BVLC_MODULES.items():
        m = f"inception_{module}"
        shapes.update({
            f"{m}/1x1": ((n1, channels, 1, 1), (n1,)),
            f"{m}/3x3_reduce": ((n3r, channels, 1, 1), (n3r,)), f"{m}/3x3": ((n3, n3r, 3, 3), (n3,)),
            f"{m}/5x5_reduce": ((n5r, channels, 1, 1), (n5r,)), f"{m}/5x5": ((n5, n5r, 5, 5), (n5,)),
            f"{m}/pool_proj": ((npool, channels, 1, 1), (npool,)),
        })
        channels = n1 + n3 + n5 + npool
        loss = BVLC_LOSS_AFTER.get(module)
        if loss:  # 4x4 grid of 128 channels after the 5x5/3 average pool at 224
            shapes.update({f"{loss}/conv": ((128, channels, 1, 1), (128,)), f"{loss}/fc": ((1024, 2048), (1024,)),
                           f"{loss}/classifier": ((1000, 1024), (1000,))})
    shapes["loss3/classifier"] = ((1000, channels), (1000,))
    return shapes


def random_blobs(seed=0):
    """{caffe layer: [weights, bias]} in BVLC's shapes; He-scaled, so activations keep
    their size through 22 layers, and classifiers scaled to give softmaxes far from 0 and 1."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, (weight_shape, bias_shape) in bvlc_blob_shapes().items():
        fan_in = int(np.prod(weight_shape[1:]))
        scale = 7e-4 if name.endswith("/classifier") else 2.0  # logits of std ~2
        blobs[name] = [
            rng.normal(0.0, np.sqrt(scale / fan_in), weight_shape).astype(np.float32),
            rng.uniform(-0.1, 0.1, bias_shape).astype(np.float32),
        ]
    return blobs


def write_caffemodel(path, blobs, v1=False):
    """A NetParameter with a layer per entry of `blobs`, as `layer` (V2) or `layers` (V1)."""
    parts = [_field(1, b"GoogleNet")]
    for name, arrays in blobs.items():
        encoded = [_blob(a, legacy=v1) for a in arrays]
        conv = np.ndim(arrays[0]) == 4  # else an inner product's (out, in)
        if v1:
            layer = _field(4, name.encode()) + _int_field(5, V1_TYPES["conv" if conv else "fc"])
            layer += b"".join(_field(6, b) for b in encoded)
            parts.append(_field(2, layer))
        else:
            kind = "Convolution" if conv else "InnerProduct"
            layer = _field(1, name.encode()) + _field(2, kind.encode()) + b"".join(_field(7, b) for b in encoded)
            parts.append(_field(100, layer))
    path.write_bytes(b"".join(parts))
    return path
