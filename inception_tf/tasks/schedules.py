"""Learning-rate schedules for `keras.callbacks.LearningRateScheduler`.

Each schedule is a picklable callable `schedule(epoch, lr=None) -> float`, `epoch` being
Keras's 0-based epoch index.
"""

import math


class StepDecay:
    """The paper's schedule: the rate drops by `decay` (4%) every `every_epochs` (8) epochs.

    `rate(epoch) = initial_learning_rate * (1 - decay) ** (epoch // every_epochs)`, so
    epochs 0-7 (Keras's 0-based indices) run at the initial rate and epoch index 8, the
    ninth epoch, is the first at 0.96x.
    """

    def __init__(self, initial_learning_rate, decay=0.04, every_epochs=8):
        if not initial_learning_rate > 0:
            raise ValueError(
                "`initial_learning_rate` must be positive. "
                f"Received: initial_learning_rate={initial_learning_rate!r}"
            )
        if not 0 <= decay < 1:
            raise ValueError(f"`decay` must be in [0, 1). Received: decay={decay!r}")
        if not isinstance(every_epochs, int) or every_epochs < 1:
            raise ValueError(
                f"`every_epochs` must be a positive integer. Received: every_epochs={every_epochs!r}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay = float(decay)
        self.every_epochs = every_epochs

    def __call__(self, epoch, lr=None):
        return self.initial_learning_rate * (1.0 - self.decay) ** (epoch // self.every_epochs)

    def __repr__(self):
        return (
            f"StepDecay(initial_learning_rate={self.initial_learning_rate}, "
            f"decay={self.decay}, every_epochs={self.every_epochs})"
        )


def paper_schedule(initial_learning_rate=0.01):
    """The paper's recipe: 4% lower every 8 epochs (Szegedy et al. 2014, section 6)."""
    return StepDecay(initial_learning_rate, decay=0.04, every_epochs=8)


class _WarmupDecay:
    """A linear warm-up over the first `warmup_epochs` epochs, then a decay over the rest
    that `_decayed(progress)` shapes, progress running from 0 to 1."""

    def __init__(self, initial_learning_rate, total_epochs, warmup_epochs=0):
        if not initial_learning_rate > 0:
            raise ValueError(
                "`initial_learning_rate` must be positive. "
                f"Received: initial_learning_rate={initial_learning_rate!r}"
            )
        if not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(
                f"`total_epochs` must be a positive integer. Received: total_epochs={total_epochs!r}"
            )
        if not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs < total_epochs:
            raise ValueError(
                "`warmup_epochs` must be an integer in [0, total_epochs). "
                f"Received: warmup_epochs={warmup_epochs!r}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_epochs = total_epochs
        self.warmup_epochs = warmup_epochs

    def __call__(self, epoch, lr=None):
        if epoch < self.warmup_epochs:
            return self.initial_learning_rate * (epoch + 1) / (self.warmup_epochs + 1)
        return self.initial_learning_rate * self._decayed(epoch - self.warmup_epochs, max(1, self.total_epochs - self.warmup_epochs))


class CosineDecay(_WarmupDecay):
    """Per-epoch cosine decay from `initial_learning_rate` to `alpha` times it, with an
    optional linear warm-up over the first `warmup_epochs` epochs."""

    def __init__(self, initial_learning_rate, total_epochs, warmup_epochs=0, alpha=0.0):
        super().__init__(initial_learning_rate, total_epochs, warmup_epochs)
        self.alpha = float(alpha)

    def _decayed(self, step, span):
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / span)))
        return self.alpha + (1.0 - self.alpha) * cosine

    def __repr__(self):
        return (
            f"CosineDecay(initial_learning_rate={self.initial_learning_rate}, "
            f"total_epochs={self.total_epochs}, warmup_epochs={self.warmup_epochs}, "
            f"alpha={self.alpha})"
        )


class LinearDecay(_WarmupDecay):
    """Linear decay to zero at the end of the budget (Li, Yumer and Ramanan, "Budgeted
    Training", ICLR 2020), after an optional linear warm-up.

    The rate is set once an epoch (`LearningRateScheduler`), so each epoch runs at the
    rate a per-step decay to zero has at the epoch's middle: the epochs' mean is that
    decay's, and the last epoch still trains.
    """

    def _decayed(self, step, span):
        return max(0.0, 1.0 - (step + 0.5) / span)

    def __repr__(self):
        return (
            f"LinearDecay(initial_learning_rate={self.initial_learning_rate}, "
            f"total_epochs={self.total_epochs}, warmup_epochs={self.warmup_epochs})"
        )
