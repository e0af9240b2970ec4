import keras
import numpy as np
import pytest

from inception_tf import CosineDecay, StepDecay, paper_schedule


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


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: StepDecay(0), r"Received: initial_learning_rate=0"),
        (lambda: StepDecay(0.1, decay=1.5), r"Received: decay=1.5"),
        (lambda: StepDecay(0.1, every_epochs=0), r"Received: every_epochs=0"),
        (lambda: CosineDecay(0.1, total_epochs=0), r"Received: total_epochs=0"),
        (lambda: CosineDecay(0.1, total_epochs=5, warmup_epochs=5), r"Received: warmup_epochs=5"),
    ],
)
def test_schedules_reject_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
