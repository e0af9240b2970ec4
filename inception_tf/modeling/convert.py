"""BVLC's caffemodel as a `.keras` model: its Caffe description written from the paper's
table, a given deploy prototxt checked against it, the conversion (paper variant, three
heads, the ImageNet names, "caffe" preprocessing), and for the commands that take a model
file, "imagenet": the conversion of the cached download, made once per download.

The conversion is cached beside the download (`weights.cache_dir()`), named after the
download's sha1 so that another mirror's file is converted afresh, and written under a
temporary name, renamed into place only when whole.
"""

import pathlib
import re

from inception_tf.modeling import caffe, imagenet, model_files, network
from inception_tf.modeling import weights as weights_lib


def resolve(path, log=print):
    """`path`, or for "imagenet" the cached conversion of BVLC's weights (fetched and
    converted on first use)."""
    return model_file(log) if str(path) == imagenet.WEIGHTS else path


def model_file(log=print):
    """The `.keras` conversion of BVLC's caffemodel, made once per download."""
    _, sha1 = weights_lib.source()
    path = weights_lib.cache_dir() / f"bvlc_googlenet-{sha1[:12]}.keras"
    if path.is_file():
        return path
    caffemodel = weights_lib.download(log)
    log(f"converting {caffemodel} to {path} (once)")
    return convert_caffemodel(caffemodel, path, log=log)


def convert_caffemodel(caffemodel, out, prototxt=None, image_size=caffe.INPUT_SIZE, log=print):
    """BVLC's caffemodel -> a `.keras` GoogLeNet (paper variant, three heads, 1000 ImageNet
    classes) that records its "caffe" preprocessing and the class names."""
    if prototxt is not None:
        check_prototxt(prototxt)
    model = network.GoogLeNet(num_classes=imagenet.NUM_CLASSES, input_shape=(image_size, image_size, 3), variant="paper")
    copied, _ = weights_lib.load(model, caffemodel)
    path = model_files.save_keras(model, out, imagenet.class_names(), preprocessing="caffe")
    log(f"{caffemodel} -> {path}: {copied} layers, {model.count_params():,} parameters, input {image_size}x{image_size}")
    return path


# --- The deploy description ---------------------------------------------------------------

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


def deploy_prototxt(input_size=caffe.INPUT_SIZE, num_classes=1000, aux_heads=True, include_top=True):
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
            text += _aux(caffe.AUX_CAFFE[network.AUX_AFTER[module]], bottom, num_classes)
    if not include_top:
        return text
    text += _pool("pool5/7x7_s1", bottom, "AVE", 7, 1)
    text += _layer("pool5/drop_7x7_s1", "Dropout", "pool5/7x7_s1", "pool5/7x7_s1", dropout_param="dropout_ratio: 0.4")
    return text + _classifier("loss3/classifier", "pool5/7x7_s1", num_classes, "prob")


def _layer_params(text):
    """{layer name: {"num_output": ..., "kernel_size": ..., ...}} of a prototxt."""
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
    for caffe_name, want in expected.items():
        if "num_output" not in want:  # a layer without weights
            continue
        if caffe_name not in given:
            if caffe_name.startswith(tuple(caffe.AUX_CAFFE.values())):
                continue
            raise caffe.CaffeFormatError(f"{path} has no layer {caffe_name!r}: not BVLC GoogLeNet. Received: prototxt={str(path)!r}")
        got = {key: given[caffe_name].get(key, {"stride": 1, "pad": 0}.get(key)) for key in want}
        if got != want:
            raise caffe.CaffeFormatError(f"Layer {caffe_name!r} of {path} is {got}, BVLC GoogLeNet's is {want}")
