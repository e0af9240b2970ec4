import math

import numpy as np
import pytest
import tensorflow as tf

from inception_tf.dataloaders import augment
from inception_tf.dataloaders.augment import AugmentConfig


def test_random_resized_crop_boxes_follow_the_paper():
    boxes = augment.random_resized_crop_boxes(tf.constant([1, 2]), 2000, 224, 224, (0.08, 1.0), (3 / 4, 4 / 3)).numpy()
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert boxes.min() >= 0 and boxes.max() <= 1 + 1e-6
    area = heights * widths
    assert area.min() >= 0.08 - 1e-4 and area.max() <= 1 + 1e-6
    fits = (heights < 1) & (widths < 1)
    aspect = widths[fits] / heights[fits]
    assert aspect.min() >= 0.75 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    # Areas uniform over [0.08, 1]: the crops that fit span it, around its middle (0.54; the
    # largest fit less often); a side drawn uniform instead of the area would centre near 0.3.
    assert area[fits].min() < 0.09 and area[fits].max() > 0.95 and 0.44 < area[fits].mean() < 0.51
    assert 0.8 < fits.mean() < 0.95 and 0.49 < area.mean() < 0.56


def test_crop_aspect_is_in_pixels_on_wide_images():
    boxes = augment.random_resized_crop_boxes(tf.constant([3, 4]), 500, 100, 300, (0.08, 0.2), (3 / 4, 4 / 3)).numpy()
    pixel_aspect = (boxes[:, 3] - boxes[:, 1]) * 300 / ((boxes[:, 2] - boxes[:, 0]) * 100)
    assert pixel_aspect.min() >= 0.75 - 1e-3 and pixel_aspect.max() <= 4 / 3 + 1e-3


def test_flip_swaps_about_half_the_boxes():
    boxes = tf.tile(tf.constant([[0.0, 0.1, 1.0, 0.9]]), [1000, 1])
    flipped = augment.flip_boxes(tf.constant([5, 6]), boxes).numpy()
    mirrored = flipped[:, 1] > flipped[:, 3]
    assert 400 < mirrored.sum() < 600
    np.testing.assert_allclose(flipped[mirrored][:, [1, 3]], [[0.9, 0.1]] * mirrored.sum())


def test_pad_and_crop_shifts_by_at_most_the_padding():
    boxes = augment.pad_and_crop_boxes(tf.constant([1, 1]), 500, 0.125).numpy()
    assert np.abs(boxes[:, :2]).max() <= 0.125
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], 1.0, atol=1e-6)


def test_parts_switch_off():
    seed = tf.constant([0, 0])
    assert augment.train_boxes(seed, 4, 28, 28, AugmentConfig(crop=False, flip=False)) is None
    assert augment.train_boxes(seed, 4, 28, 28, AugmentConfig(policy="none")) is None
    assert not AugmentConfig(policy="none").active
    assert not AugmentConfig(crop=False, flip=False, photometric=False).active
    only_flip = augment.train_boxes(seed, 64, 28, 28, AugmentConfig(crop=False)).numpy()
    assert set(np.round(np.abs(only_flip[:, 3] - only_flip[:, 1]), 6)) == {1.0}


def test_photometric_stays_in_range_and_changes_colour_images():
    images = tf.random.stateless_uniform([8, 16, 16, 3], [1, 2])
    out = augment.photometric(tf.constant([3, 4]), images, AugmentConfig()).numpy()
    assert out.min() >= 0 and out.max() <= 1
    assert not np.allclose(out, images.numpy())
    gray = augment.photometric(tf.constant([3, 4]), images[..., :1], AugmentConfig()).numpy()
    assert gray.shape == (8, 16, 16, 1)
    assert math.isfinite(float(gray.sum()))


def test_random_erasing_fills_one_rectangle_with_noise_at_its_rate():
    config = AugmentConfig(policy="standard", erasing=1.0)
    images = tf.zeros([256, 32, 32, 1])
    out = augment.random_erasing(tf.constant([5, 6]), images, config).numpy()
    erased = out != 0
    share = erased.mean(axis=(1, 2, 3))
    # Zhong et al.'s 2%-40% of the area (give or take a row of pixels at 32x32).
    assert 0.01 < share.min() and share.max() <= 0.43 and 0.15 < share.mean() < 0.25
    for image in erased[:16, ..., 0]:
        rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        # One solid rectangle: every pixel between its first and last row and column.
        assert image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert image.sum() == len(rows) * len(cols)
    assert out.min() >= 0 and out.max() <= 1
    half = augment.random_erasing(tf.constant([5, 6]), images, AugmentConfig(erasing=0.5)).numpy()
    assert 0.35 < (half != 0).any(axis=(1, 2, 3)).mean() < 0.65
    none = augment.random_erasing(tf.constant([5, 6]), images, AugmentConfig(erasing=0.0)).numpy()
    assert not none.any()


def test_random_erasing_alone_makes_the_config_active():
    assert AugmentConfig(crop=False, flip=False, photometric=False, erasing=0.5).active
    assert not AugmentConfig(policy="none", erasing=0.5).active


def test_test_view_boxes_whole_image_first_then_mirrors_and_corners():
    standard, paper = AugmentConfig(policy="standard"), AugmentConfig(policy="paper")
    assert augment.test_view_boxes(1, standard) == [(0.0, 0.0, 1.0, 1.0)]
    assert augment.test_view_boxes(2, paper) == [(0.0, 0.0, 1.0, 1.0), (0.0, 1.0, 1.0, 0.0)]
    shift = standard.pad_fraction / 2
    boxes = np.array(augment.test_view_boxes(10, standard))
    assert boxes.shape == (10, 4) and tuple(boxes[0]) == (0.0, 0.0, 1.0, 1.0)
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 1.0)  # the image's own size, shifted
    np.testing.assert_allclose(np.abs(boxes[:, 3] - boxes[:, 1]), 1.0)
    assert set(np.round(boxes[2:, 0], 6)) == {-round(shift, 6), round(shift, 6)}
    assert (boxes[1::2, 1] > boxes[1::2, 3]).all() and (boxes[0::2, 1] < boxes[0::2, 3]).all()
    corners = np.array(augment.test_view_boxes(10, paper))[2::2]  # unmirrored corner crops
    np.testing.assert_allclose(corners[:, 2] - corners[:, 0], 224 / 256)
    assert corners.min() == 0.0 and corners.max() == 1.0  # inside the image, at its corners
    assert len({tuple(box) for box in corners}) == 4


def test_test_view_boxes_refuses_other_counts():
    with pytest.raises(ValueError, match=r"Received: crops=5"):
        augment.test_view_boxes(5, AugmentConfig())
