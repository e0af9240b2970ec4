"""GoogLeNet's spatial arithmetic: the side of each stage's map, the smallest input, the
Caffe pools' padding and the aux heads' pool, in plain Python.

The configuration checks an input size with it before TensorFlow loads; `model` builds
the layers from it.
"""

AUX_GRID = 4
CONV1_FILTERS = 64
# The network downsamples 32x: below 32 pixels the last stage sees less than one pixel
# of the input, whatever the padding makes of it.
MIN_INPUT_SIZE = 32


def caffe_pool_padding(size, pool_size=3, strides=2):
    """Zeros to add after a map of side `size` so a valid pool gives Caffe's output size.

    Caffe rounds a pool's output size up, `ceil((size - pool_size) / strides) + 1`, where a
    "same" pool gives `ceil(size / strides)`: one more at odd sizes. Padding with zeros is
    exact where the model pools, after a ReLU (or an LRN or concatenation of ReLUs).
    """
    outputs = -(-(size - pool_size) // strides) + 1
    return max((outputs - 1) * strides + pool_size - size, 0)


def stage_sizes(size, variant="paper"):
    """The side of the map after conv1 and each 3x3/2 pool (pool1-pool4) for an input side."""
    sizes = [-(-size // 2)]  # conv1: 7x7/2 padded 3 (or "same"), either way ceil(size / 2)
    for _ in range(4):
        side = sizes[-1]
        sizes.append((side + caffe_pool_padding(side) - 3) // 2 + 1 if variant == "paper" else -(-side // 2))
    return sizes


def min_input_size(variant="paper", aux_heads=True):
    """The smallest input side: `MIN_INPUT_SIZE`, and with aux heads a 4a map (after
    pool3) of at least 4x4."""
    size = MIN_INPUT_SIZE
    while aux_heads and stage_sizes(size, variant)[3] < AUX_GRID:
        size += 1
    return size


def aux_pool_geometry(size):
    """Window and stride of the aux heads' average pool along one axis of the 4a map.

    The pool (valid padding) turns a map of side `size` into `AUX_GRID` = 4 cells:
    stride `size // 4`, window `size - 3 * stride`. At 224x224 the 4a map is 14x14 and
    this is the paper's 5x5 pool with stride 3; at 64x64 (map 4x4) it is the identity.
    The dense layer after it therefore always sees 4 * 4 * 128 = 2048 features, and the
    heads have the same weights at every input size.
    """
    if size < AUX_GRID:
        raise ValueError(
            f"The auxiliary heads need a feature map of at least {AUX_GRID}x{AUX_GRID}. "
            f"Received: size={size}"
        )
    stride = size // AUX_GRID
    return size - (AUX_GRID - 1) * stride, stride


def first_map_bytes(size, batch_size=1):
    """Bytes of conv1's float32 output for `batch_size` inputs of side `size`: a floor under
    what a training step holds, which the configuration compares with the machine's memory
    before anything is built."""
    return batch_size * stage_sizes(size)[0] ** 2 * CONV1_FILTERS * 4
