"""Epoch-equivalents: a run's training cost in units that hold on every machine."""

import pytest

from inception_tf.tasks import budget


def test_an_epoch_counts_by_its_pixels_against_64x64():
    assert budget.epoch_equivalents([64] * 30) == pytest.approx(30.0)
    assert budget.epoch_equivalents([49] * 17) == pytest.approx(17 * 49 * 49 / 4096)  # 9.965
    assert budget.epoch_equivalents([32]) == pytest.approx(0.25)
    assert budget.epoch_equivalents([128, 64]) == pytest.approx(5.0)  # sizes summed epoch by epoch
    assert budget.epoch_equivalents([]) == 0.0


def test_a_size_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match=r"Received: epoch_sizes=\[64, 0\]"):
        budget.epoch_equivalents([64, 0])


def test_the_projection_is_the_images_over_the_rate():
    # 10 epoch-equivalents of Fashion-MNIST's 54,000 training images at 88 images/s.
    assert budget.projected_seconds(10, 54_000, 88.0) == pytest.approx(6136.36, abs=0.01)
