"""SGD with momentum and two levers of the short-budget recipes: a higher rate for
BatchNorm's offsets, and Lookahead.

Registered with Keras under `inception_tf>SGD`, so that a `model.keras` saved with it
loads with its optimizer (`registration` defines it as Keras loads).
"""

import keras
from keras import ops

# Zhang, Lucas, Hinton and Ba, "Lookahead Optimizer: k steps forward, 1 step back"
# (NeurIPS 2019): alpha = 0.5 in all their experiments.
LOOKAHEAD_ALPHA = 0.5
BETA = "beta"  # the name of BatchNorm's offset variable


@keras.saving.register_keras_serializable(package="inception_tf")
class SGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD`, with:

    beta_rate: BatchNorm's offsets (`beta`) step at `beta_rate` times the rate. airbench
        (Keller Jordan) trains the biases at a much higher rate than the weights: a
        BatchNorm offset is one number per channel, moved by the whole batch's gradient,
        and, being out of weight decay, the rate is all that drives it.
    lookahead_steps: every `k` steps the slow weights move `LOOKAHEAD_ALPHA` of the way
        to the weights SGD reached, and SGD goes on from there (Zhang et al., 2019). The
        slow weights are optimizer variables, so a backup carries them. None: off.

    Since SGD's update is linear in the rate, `beta_rate` is exactly a rate per variable:
    the momentum buffer of a beta accumulates its scaled steps.
    """

    def __init__(self, beta_rate=1.0, lookahead_steps=None, **kwargs):
        super().__init__(**kwargs)
        if not beta_rate > 0:
            raise ValueError(f"`beta_rate` must be positive. Received: beta_rate={beta_rate!r}")
        if lookahead_steps is not None and (not isinstance(lookahead_steps, int) or lookahead_steps < 1):
            raise ValueError(f"`lookahead_steps` must be a positive integer or None. Received: lookahead_steps={lookahead_steps!r}")
        self.beta_rate = float(beta_rate)
        self.lookahead_steps = lookahead_steps

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.slow_weights = self.add_optimizer_variables(variables, "slow") if self.lookahead_steps else []
        # By index: `update_step` may see the backend's variable, named otherwise.
        self._betas = {self._get_variable_index(v) for v in variables if v.name == BETA}

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        slow = self.slow_weights[index] if self.lookahead_steps else None
        if slow is not None:  # the slow weights start where training does (after --init-from)
            self.assign(slow, ops.where(ops.equal(self.iterations, 0), variable, slow))
        if self.beta_rate != 1.0 and index in self._betas:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), self.beta_rate)
        super().update_step(gradient, variable, learning_rate)
        if slow is not None:
            sync = ops.equal(ops.mod(self.iterations + 1, self.lookahead_steps), 0)
            moved = ops.add(slow, ops.multiply(ops.subtract(variable, slow), LOOKAHEAD_ALPHA))
            self.assign(slow, ops.where(sync, moved, slow))
            self.assign(variable, ops.where(sync, moved, variable))

    def get_config(self):
        return {**super().get_config(), "beta_rate": self.beta_rate, "lookahead_steps": self.lookahead_steps}
