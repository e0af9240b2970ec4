import keras
import numpy as np
import pytest

from inception_tf import CosineDecay, LinearDecay, StepDecay, paper_schedule


def test_paper_schedule_first_drop_is_at_epoch_index_8():
    schedule = paper_schedule(0.01)
    assert [schedule(e) for e in range(8)] == [0.01] * 8
    assert schedule(8) == pytest.approx(0.0096)
    assert schedule(15) == pytest.approx(0.0096)
    assert schedule(16) == pytest.approx(0.01 * 0.96**2)
    assert schedule(80) == pytest.approx(0.01 * 0.96**10)


def test_paper_schedule_through_learning_rate_scheduler():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    x = np.zeros((4, 3), "float32")
    history = model.fit(
        x, np.zeros((4, 1)), epochs=10, verbose=0,
        callbacks=[keras.callbacks.LearningRateScheduler(paper_schedule(0.02))],
    )
    rates = history.history["learning_rate"]
    np.testing.assert_allclose(rates, [0.02] * 8 + [0.0192] * 2, rtol=1e-6)


def test_cosine_decay_warms_up_and_ends_at_alpha():
    schedule = CosineDecay(0.1, total_epochs=10, warmup_epochs=2, alpha=0.01)
    assert schedule(0) == pytest.approx(0.1 / 3)
    assert schedule(2) == pytest.approx(0.1)
    assert schedule(10) == pytest.approx(0.001)
    rates = [schedule(e) for e in range(2, 11)]
    assert rates == sorted(rates, reverse=True)


def test_linear_decay_warms_up_then_falls_by_equal_steps_to_half_a_step():
    schedule = LinearDecay(0.1, total_epochs=5, warmup_epochs=2)
    rates = [schedule(e) for e in range(5)]
    # Warm-up as the cosine's; then the rate a per-step decay to 0 has mid-epoch: 5/6, 3/6, 1/6.
    np.testing.assert_allclose(rates, [0.1 / 3, 0.2 / 3, 0.1 * 5 / 6, 0.1 / 2, 0.1 / 6], rtol=1e-9)
    assert LinearDecay(0.1, total_epochs=4)(3) == pytest.approx(0.1 / 8)
    assert LinearDecay(0.1, total_epochs=4)(9) == 0.0  # past the budget


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: StepDecay(0), r"Received: initial_learning_rate=0"),
        (lambda: StepDecay(0.1, decay=1.5), r"Received: decay=1.5"),
        (lambda: StepDecay(0.1, every_epochs=0), r"Received: every_epochs=0"),
        (lambda: CosineDecay(0.1, total_epochs=0), r"Received: total_epochs=0"),
        (lambda: CosineDecay(0.1, total_epochs=5, warmup_epochs=5), r"Received: warmup_epochs=5"),
        (lambda: LinearDecay(-1, total_epochs=5), r"Received: initial_learning_rate=-1"),
    ],
)
def test_schedules_reject_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
