"""Compute-epochs: a run's training cost in units that hold on every machine."""

import pytest

from inception_tf import GoogLeNet
from inception_tf.tasks import budget


def test_the_reference_is_the_default_network_at_64x64():
    model = GoogLeNet(num_classes=10, input_shape=(64, 64, 3), variant="bn", weights=None)
    assert budget.training_macs(model) == budget.REFERENCE_MACS


def test_an_epoch_counts_its_images_times_their_multiply_accumulates():
    full = (budget.REFERENCE_IMAGES, budget.REFERENCE_MACS)
    assert budget.compute_epochs([full] * 30) == pytest.approx(30.0)
    assert budget.compute_epochs([(27_000, budget.REFERENCE_MACS)]) == pytest.approx(0.5)
    # Epochs at different sizes each count their own cost.
    assert budget.compute_epochs([full, (54_000, budget.REFERENCE_MACS // 2)]) == pytest.approx(1.5, abs=1e-8)
    assert budget.compute_epochs([]) == 0.0


def test_49x49_counts_what_the_network_does_there_not_its_pixels():
    small = budget.training_macs(GoogLeNet(num_classes=10, input_shape=(49, 49, 3), variant="bn", weights=None))
    share = budget.compute_epochs([(54_000, small)])
    assert 0.8 < share < 0.9  # the maps from inception (4a) on are those of 64x64; pixels would say 0.59


def test_an_epoch_without_a_positive_cost_is_refused():
    with pytest.raises(ValueError, match=r"Received: epochs=\[\(54000, 0\)\]"):
        budget.compute_epochs([(54000, 0)])


def test_the_projection_is_the_images_over_the_rate():
    # 10 compute-epochs at 88 images/s of the default network at 64x64.
    assert budget.projected_seconds(10, 88.0) == pytest.approx(6136.36, abs=0.01)
