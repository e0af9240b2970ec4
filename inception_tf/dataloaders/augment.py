"""What a batch of images becomes before the model: training's augmentation and testing's
views, vectorised over a batch and driven by stateless seeds.

Every random draw takes a `seed` tensor of shape [2] (from `tf.data.Dataset.random`), so a
pipeline with a fixed seed gives the same images in every run, whatever the parallelism.

Crops and flips become per-image boxes for `tf.image.crop_and_resize`, which crops,
flips (a box with x1 > x2 is mirrored) and resizes every image of a batch in one op.
"""

import dataclasses
import math

import tensorflow as tf

from inception_tf import choices
from inception_tf.modeling.image_input import resize_images, to_model_input

# The paper's test crops are 224 of a 256 side; ours keep that ratio.
TEST_CORNER_SIDE = 224 / 256


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """What the training pipeline does to each image.

    policy: "paper" (random-resized crop, flip, photometric distortion), "standard"
        (pad-and-crop + flip, for small images such as CIFAR) or "none".
    crop, flip, photometric: switch each part of the policy off on its own.
    alternate_flips: with `flip`, mirror each image in every other epoch instead of at
        random (airbench, Keller Jordan): the first epoch mirrors a random half, each
        later epoch the other images of the one before, so that consecutive epochs see
        both sides of every image. Needs the image's index in the split (`data`).
    area_range, aspect_range: the paper's crop: 8%-100% of the area, aspect 3/4 to 4/3.
    pad_fraction: the standard policy's padding, as a fraction of the side (4 px of 32).
    erasing: the probability of random erasing (Zhong et al., 2017, "Random Erasing Data
        Augmentation"): one rectangle of the image replaced by uniform noise, after the
        other steps. 0 (the paper's recipe) turns it off.
    erasing_area, erasing_aspect: the rectangle's share of the image's area and its
        width/height ratio (Zhong et al.'s defaults: 2%-40%, 0.3 to 1/0.3).
    brightness, contrast, saturation, hue: photometric strengths, as Inception's
        `distort_color` (saturation and hue only touch colour images).
    """

    policy: str = "paper"
    crop: bool = True
    flip: bool = True
    alternate_flips: bool = False
    photometric: bool = True
    area_range: tuple = (0.08, 1.0)
    aspect_range: tuple = (3 / 4, 4 / 3)
    pad_fraction: float = 0.125
    brightness: float = 32 / 255
    contrast: tuple = (0.5, 1.5)
    saturation: tuple = (0.5, 1.5)
    hue: float = 0.2
    erasing: float = 0.0
    erasing_area: tuple = (0.02, 0.4)
    erasing_aspect: tuple = (0.3, 1 / 0.3)

    def __post_init__(self):
        if self.policy not in choices.AUGMENT_POLICIES:
            raise ValueError(f"`policy` must be one of {choices.AUGMENT_POLICIES}. Received: policy={self.policy!r}")
        for name in ("area_range", "erasing_area"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"`{name}` must satisfy 0 < low <= high <= 1. Received: {name}={getattr(self, name)!r}")
        for name in ("aspect_range", "erasing_aspect"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"`{name}` must satisfy 0 < low <= high. Received: {name}={getattr(self, name)!r}")
        if not 0 <= self.erasing <= 1:
            raise ValueError(f"`erasing` must be a probability in [0, 1]. Received: erasing={self.erasing!r}")
        if not 0 <= self.pad_fraction < 1:
            raise ValueError(f"`pad_fraction` must be in [0, 1). Received: pad_fraction={self.pad_fraction!r}")

    @property
    def active(self):
        """Whether this configuration changes any image."""
        if self.policy == "none":
            return False
        return self.crop or self.flip or (self.policy == "paper" and self.photometric) or self.erasing > 0


def alternate_mirrors(seed, count, indices, epoch):
    """Whether each image at `indices` (of a split of `count`) is mirrored in `epoch` under
    `alternate_flips`: a random half in epoch 0, by `seed`, and the rest in every odd one."""
    first = tf.random.stateless_uniform([count], tf.stack([tf.constant(seed, tf.int64), tf.constant(-1, tf.int64)])) < 0.5
    return tf.not_equal(tf.gather(first, indices), tf.equal(tf.math.floormod(tf.cast(epoch, tf.int64), 2), 1))


def _uniform(seed, shape, low, high):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high, dtype=tf.float32)


def random_resized_crop_boxes(seed, batch, height, width, area_range, aspect_range):
    """Normalised boxes [batch, 4] covering `area_range` of each image's area, with a
    width/height ratio in `aspect_range`, at a uniform position.

    Where a draw does not fit (a tall crop from a wide image), its sides are clipped to
    the image: one draw per image instead of Inception's ten rejection-sampled tries.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    area = _uniform(seeds[0], [batch], *area_range)
    log_aspect = _uniform(seeds[1], [batch], math.log(aspect_range[0]), math.log(aspect_range[1]))
    aspect = tf.exp(log_aspect)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    # In pixels: crop_w * crop_h = area * H * W and crop_w / crop_h = aspect.
    crop_w = tf.minimum(tf.sqrt(area * height * width * aspect) / width, 1.0)
    crop_h = tf.minimum(tf.sqrt(area * height * width / aspect) / height, 1.0)
    y0 = _uniform(seeds[2], [batch], 0.0, 1.0) * (1.0 - crop_h)
    x0 = _uniform(seeds[3], [batch], 0.0, 1.0) * (1.0 - crop_w)
    return tf.stack([y0, x0, y0 + crop_h, x0 + crop_w], axis=1)


def pad_and_crop_boxes(seed, batch, pad_fraction):
    """Boxes of the image's own size shifted by up to `pad_fraction` of a side: the
    zero-padded random crop of the CIFAR literature (crop_and_resize fills outside with 0)."""
    shift = _uniform(seed, [batch, 2], -pad_fraction, pad_fraction)
    return tf.concat([shift, shift + 1.0], axis=1)


def flip_boxes(seed, boxes, mirrored=None):
    """Mirror a random half of the boxes horizontally (x1 and x2 swapped), or those
    `mirrored` (bool [batch]) says."""
    flip = _uniform(seed, [tf.shape(boxes)[0]], 0.0, 1.0) < 0.5 if mirrored is None else mirrored
    y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
    return tf.stack([y1, tf.where(flip, x2, x1), y2, tf.where(flip, x1, x2)], axis=1)


def train_boxes(seed, batch, height, width, config, mirrored=None):
    """The crop-and-flip boxes of a batch, or None when the config neither crops nor flips;
    `mirrored`: which images to flip, where the config alternates them."""
    if config.policy == "none" or not (config.crop or config.flip):
        return None
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if config.crop and config.policy == "paper":
        boxes = random_resized_crop_boxes(crop_seed, batch, height, width, config.area_range, config.aspect_range)
    elif config.crop:
        boxes = pad_and_crop_boxes(crop_seed, batch, config.pad_fraction)
    else:
        boxes = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [batch, 1])
    if config.flip:
        boxes = flip_boxes(flip_seed, boxes, mirrored)
    return boxes


def test_view_boxes(crops, config):
    """The normalised boxes (y1, x1, y2, x2) of multi-crop testing, the whole image first.

    The paper averages the softmax over many crops of each test image (144: 4 scales,
    3 squares, 6 crops, and their mirrors). Here, as in AlexNet's 10-crop form:
    1, the whole image (single-crop); 2, it and its mirror; 10, the whole image and four
    corner views, each with its mirror. The corner views follow the training crops: the
    standard policy's images shifted by half its padding, the paper policy's crops of
    224/256 of the side.
    """
    if crops not in choices.TEST_CROPS:
        raise ValueError(f"`crops` must be one of {choices.TEST_CROPS}. Received: crops={crops!r}")
    positions = [(0.0, 0.0, 1.0, 1.0)]
    if crops == 10:
        if config.policy == "standard":
            shift = config.pad_fraction / 2
            positions += [(y, x, y + 1.0, x + 1.0) for y in (-shift, shift) for x in (-shift, shift)]
        else:
            side = TEST_CORNER_SIDE
            positions += [(y, x, y + side, x + side) for y in (0.0, 1.0 - side) for x in (0.0, 1.0 - side)]
    return _with_mirrors(positions, crops)


def _with_mirrors(positions, crops):
    """Each box, followed by its mirror when there is more than one crop."""
    boxes = []
    for y1, x1, y2, x2 in positions:
        boxes.append((y1, x1, y2, x2))
        if crops > 1:
            boxes.append((y1, x2, y2, x1))  # x1 > x2: crop_and_resize mirrors it
    return boxes


def caffe_view_boxes(crops):
    """The boxes of BVLC's own evaluation of GoogLeNet (Caffe's resize to 256x256, then
    `oversample`): 1, the centre 224x224; 2, it and its mirror; 10, the centre and the
    four corners, each with its mirror."""
    if crops not in choices.TEST_CROPS:
        raise ValueError(f"`crops` must be one of {choices.TEST_CROPS}. Received: crops={crops!r}")
    side = TEST_CORNER_SIDE  # 224 of 256, as the paper policy's crops
    margin = (1.0 - side) / 2
    positions = [(margin, margin, margin + side, margin + side)]
    if crops == 10:
        positions += [(y, x, y + side, x + side) for y in (0.0, 1.0 - side) for x in (0.0, 1.0 - side)]
    return _with_mirrors(positions, crops)


def photometric(seed, images, config):
    """Brightness, contrast, saturation and hue, a random strength per image.

    `images`: float32 [batch, height, width, channels] in [0, 1]; the result is clipped
    back to [0, 1]. Saturation and hue only apply to 3-channel images.
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    per_image = [batch, 1, 1, 1]
    images = images + _uniform(seeds[0], per_image, -config.brightness, config.brightness)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    images = (images - mean) * _uniform(seeds[1], per_image, *config.contrast) + mean
    if images.shape[-1] == 3:
        gray = tf.image.rgb_to_grayscale(images)
        images = gray + (images - gray) * _uniform(seeds[2], per_image, *config.saturation)
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 1.0))
        hue = tf.math.floormod(hsv[..., :1] + _uniform(seeds[3], per_image, -config.hue, config.hue), 1.0)
        images = tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))
    return tf.clip_by_value(images, 0.0, 1.0)


def random_erasing(seed, images, config):
    """With probability `AugmentConfig.erasing`, one rectangle of each image (its share of the
    area and aspect drawn as the crops are) becomes uniform noise.

    `images`: float32 [batch, height, width, channels] in [0, 1]. Where a drawn rectangle
    does not fit, its sides are clipped to the image, as for the crops, instead of
    Zhong et al.'s rejection sampling.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    boxes = random_resized_crop_boxes(seeds[0], batch, height, width, config.erasing_area, config.erasing_aspect)
    y1, x1, y2, x2 = (side[:, None] for side in tf.unstack(boxes, axis=1))
    # Pixel centres in the boxes' normalised coordinates.
    ys = (tf.range(height, dtype=tf.float32)[None] + 0.5) / tf.cast(height, tf.float32)
    xs = (tf.range(width, dtype=tf.float32)[None] + 0.5) / tf.cast(width, tf.float32)
    rows = (ys >= y1) & (ys < y2)
    cols = (xs >= x1) & (xs < x2)
    erase = _uniform(seeds[1], [batch], 0.0, 1.0) < config.erasing
    mask = rows[:, :, None] & cols[:, None, :] & erase[:, None, None]
    noise = tf.random.stateless_uniform(shape, seeds[2], dtype=images.dtype)
    return tf.where(mask[..., None], noise, images)


# --- Whole batches: training's augmentation, testing's views, then the model's input ---

def view_images(images, image_size, views, preprocessing="tf"):
    """uint8 [batch, h, w, c] -> float32 [batch, len(views), size, size, 3]: the model
    input of every view box (`test_view_boxes`) of every image."""
    count = len(views)
    batch = tf.shape(images)[0]
    boxes = tf.tile(tf.constant(views, tf.float32), [batch, 1])
    inputs = to_model_input(resize_images(images, image_size, boxes, tf.repeat(tf.range(batch), count)), preprocessing)
    return tf.reshape(inputs, [batch, count, image_size, image_size, 3])


def augment_images(images, image_size, config, seed, preprocessing="tf", mirrored=None):
    """What training does to a batch: crop, flip, resize, photometric distortion, random
    erasing, then the same `to_model_input` as evaluation. `mirrored`: the images to
    flip where `AugmentConfig.alternate_flips` chooses them (`alternate_mirrors`)."""
    shape = tf.shape(images)
    crop_seed, color_seed, erase_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    boxes = train_boxes(crop_seed, shape[0], shape[1], shape[2], config, mirrored)
    resized = resize_images(images, image_size, boxes)
    if config.policy == "paper" and config.photometric:
        resized = photometric(color_seed, resized, config)
    if config.policy != "none" and config.erasing > 0:
        resized = random_erasing(erase_seed, resized, config)
    return to_model_input(resized, preprocessing)
