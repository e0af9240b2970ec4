import keras
import numpy as np
import pytest

from inception_tf import GoogLeNet, LocalResponseNormalization, inception_module, inference_model
from inception_tf.modeling.network import INCEPTION_TABLE, aux_pool_geometry

MODULES = [row[0] for row in INCEPTION_TABLE]


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, size, size, 3)).astype("float32")


@pytest.mark.parametrize(
    "num_classes, aux_heads, expected",
    [(10, True, 10_334_030), (10, False, 5_983_802), (1000, False, 6_998_552), (1000, True, 13_378_280)],
)
def test_parameter_counts_of_the_paper_variant(num_classes, aux_heads, expected):
    model = GoogLeNet(num_classes=num_classes, aux_heads=aux_heads)
    assert model.count_params() == expected


def test_module_channels_and_outputs_at_224():
    model = GoogLeNet(num_classes=10)
    channels = [model.get_layer(f"inception_{m}").output.shape[-1] for m in MODULES]
    assert channels == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert [model.get_layer(f"inception_{m}").output.shape[1] for m in MODULES] == [28] * 2 + [14] * 5 + [7] * 2
    assert model.output_names == ["main", "aux1", "aux2"]
    assert [tuple(t.shape) for t in model.outputs] == [(None, 10)] * 3
    # Paper: aux heads pool 14x14 with 5x5/3 to 4x4x128 = 2048 features.
    for head in ("aux1", "aux2"):
        pool = model.get_layer(f"{head}_pool")
        assert pool.pool_size == (5, 5) and pool.strides == (3, 3)
        assert model.get_layer(f"{head}_flatten").output.shape[-1] == 2048
    assert model.get_layer("aux1_pool").input.shape[-1] == 512  # after 4a
    assert model.get_layer("aux2_pool").input.shape[-1] == 528  # after 4d


def test_paper_variant_layers():
    model = GoogLeNet(num_classes=10, input_shape=(64, 64, 3))
    lrn = [layer for layer in model.layers if isinstance(layer, LocalResponseNormalization)]
    assert [layer.name for layer in lrn] == ["lrn1", "lrn2"]
    assert model.get_layer("lrn1").input.shape[1:] == (16, 16, 64)  # after pool1
    assert model.get_layer("lrn2").input.shape[1:] == (16, 16, 192)  # after the 3x3 stem conv
    assert (lrn[0].depth_radius, lrn[0].alpha, lrn[0].beta) == (2, 1e-4, 0.75)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    conv = model.get_layer("inception_3a_5x5_conv")
    assert conv.kernel_size == (5, 5)  # a true 5x5, not torchvision's 3x3
    np.testing.assert_array_equal(conv.bias.numpy(), np.float32(0.2))
    # Unseeded initializers must not give equal-shaped layers equal weights.
    a, b = model.get_layer("inception_4e_3x3_conv"), model.get_layer("inception_5a_3x3_conv")
    assert a.kernel.shape == b.kernel.shape
    assert not np.allclose(a.kernel.numpy(), b.kernel.numpy())


def test_bn_variant_layers():
    model = GoogLeNet(num_classes=10, input_shape=(64, 64, 3), variant="bn")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert convs and not any(conv.use_bias for conv in convs)
    assert len(bns) == len(convs)
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in model.layers)
    assert model.get_layer("inception_5b_5x5_conv").kernel_size == (5, 5)


@pytest.mark.parametrize(
    "variant, shape",
    [(v, s) for v in ("paper", "bn") for s in [(64, 96, 3), (96, 96, 1), (150, 150, 3)]]
    + [("bn", (49, 49, 3)), ("paper", (63, 63, 3)), ("paper", (227, 227, 3))],
)
def test_other_input_sizes_give_three_heads(variant, shape):
    model = GoogLeNet(num_classes=7, input_shape=shape, variant=variant)
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, *shape)).astype("float32")
    outputs = [np.asarray(o) for o in model(x, training=False)]  # eager: no predict function to trace
    assert [o.shape for o in outputs] == [(2, 7)] * 3
    for probabilities in outputs:
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    assert model.get_layer("aux1_flatten").output.shape[-1] == 2048


def test_without_aux_heads_down_to_32():
    model = GoogLeNet(num_classes=10, input_shape=(32, 32, 3), aux_heads=False)
    assert model.output_names == ["main"]
    assert model.output.shape == (None, 10)


@pytest.mark.parametrize("size, expected", [(14, (5, 3)), (4, (1, 1)), (7, (4, 1)), (8, (2, 2)), (28, (7, 7))])
def test_aux_pool_geometry(size, expected):
    assert aux_pool_geometry(size) == expected


def _caffe_pool_output(size, kernel=3, stride=2, pad=0):
    """Caffe's PoolingLayer::Reshape: ceil rounding, and the last window must start inside."""
    out = int(np.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@pytest.mark.parametrize("size", [63, 64, 65, 96, 193, 224, 225, 227, 231, 256, 299, 320])
def test_paper_variant_pools_as_caffe_does(size):
    """Every 3x3/2 pool of the paper variant has Caffe's output size; conv1 pads 3 on each side."""
    model = GoogLeNet(num_classes=10, input_shape=(size, size, 3))
    side = (size + 2 * 3 - 7) // 2 + 1
    assert model.get_layer("conv1_7x7_conv").output.shape[1:3] == (side, side)
    for name in ("pool1", "pool2", "pool3", "pool4"):
        side = _caffe_pool_output(side)
        assert model.get_layer(name).output.shape[1:3] == (side, side), name


def test_bn_variant_keeps_same_padding():
    model = GoogLeNet(num_classes=10, input_shape=(227, 227, 3), variant="bn")
    assert [model.get_layer(f"pool{i}").output.shape[1] for i in range(1, 5)] == [57, 29, 15, 8]
    assert "conv1_7x7_pad" not in [layer.name for layer in model.layers]


def test_aux_pool_geometry_always_gives_a_4x4_grid():
    for size in range(4, 200):
        window, stride = aux_pool_geometry(size)
        assert (size - window) // stride + 1 == 4 and window >= stride


@pytest.mark.parametrize(
    "pooling, shape", [("avg", (None, 1024)), ("max", (None, 1024)), (None, (None, 7, 7, 1024))]
)
def test_feature_extractor(pooling, shape):
    model = GoogLeNet(include_top=False, pooling=pooling)
    assert model.output.shape == shape
    assert not any(layer.name.startswith("aux") for layer in model.layers)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_shape=(48, 48, 3), variant="bn"), r"at least 49x49 \(variant 'bn', aux_heads=True\)\. Received: input_shape=\(48, 48, 3\)"),
        (dict(input_shape=(62, 62, 3)), r"at least 63x63 \(variant 'paper', aux_heads=True\)\. Received: input_shape=\(62, 62, 3\)"),
        (dict(input_shape=(31, 64, 3), aux_heads=False), r"at least 32x32\. Received: input_shape=\(31, 64, 3\)"),
        (dict(input_shape=(16, 16, 3), include_top=False), r"at least 32x32\. Received: input_shape=\(16, 16, 3\)"),
        (dict(input_shape=(3, 224, 224)), r"Received: input_shape=\(3, 224, 224\)"),
        (dict(input_shape=(224, 224, 0)), r"at least one channel.*Received: input_shape=\(224, 224, 0\)"),
        (dict(input_shape=(224, 224)), r"three integers.*Received: input_shape=\(224, 224\)"),
        (dict(input_shape=(224.0, 224, 3)), r"Received: input_shape=\(224.0, 224, 3\)"),
        (dict(variant="resnet"), r"Received: variant='resnet'"),
        (dict(pooling="mean", include_top=False), r"Received: pooling='mean'"),
        (dict(num_classes=0), r"Received: num_classes=0"),
        (dict(dropout_rate=1.0), r"Received: dropout_rate=1.0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GoogLeNet(**kwargs)


def test_inception_module_on_any_4d_tensor():
    inputs = keras.Input((20, 24, 192))
    x = inception_module(inputs, 64, 96, 128, 16, 32, 32, name="block")
    y = inception_module(x, 8, 4, 8, 2, 4, 4)  # unnamed modules get unique names
    z = inception_module(y, 8, 4, 8, 2, 4, 4)
    assert x.shape == (None, 20, 24, 256)
    assert z.shape == (None, 20, 24, 24)
    model = keras.Model(inputs, z)
    assert model.get_layer("block_5x5_conv").kernel_size == (5, 5)
    assert len({layer.name for layer in model.layers}) == len(model.layers)


def test_inception_module_bad_input():
    with pytest.raises(ValueError, match=r"4-D tensor.*Received: x.shape=\(None, 10\)"):
        inception_module(keras.Input((10,)), 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"Received: filters_5x5=0"):
        inception_module(keras.Input((8, 8, 3)), 1, 1, 1, 1, 0, 1)


def test_inference_model_shares_the_main_head():
    model = GoogLeNet(num_classes=5, input_shape=(64, 64, 3))
    inference = inference_model(model)
    x = _images(3, 64)
    assert inference.output_names == ["main"]
    np.testing.assert_allclose(inference(x, training=False), model(x, training=False)[0], rtol=1e-6)
    assert inference.count_params() == GoogLeNet(num_classes=5, input_shape=(64, 64, 3), aux_heads=False).count_params()


@pytest.mark.parametrize("variant", ["paper", "bn"])
def test_keras_file_round_trip_without_custom_objects(tmp_path, variant):
    model = GoogLeNet(num_classes=4, input_shape=(64, 64, 3), variant=variant)
    x = _images(2, 64)
    rng = np.random.default_rng(5)
    for layer in model.layers:  # move the moving statistics away from their initial values
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for ours, theirs in zip(model(x, training=False), loaded(x, training=False)):
        np.testing.assert_array_equal(ours, theirs)
    assert loaded.output_names == ["main", "aux1", "aux2"]
