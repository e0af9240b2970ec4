"""Every use of Keras and TensorFlow internals, and every workaround of a bug of either,
in one place.

Each entry names the version it was written against (Keras 3.15, TensorFlow 2.21) and,
for a bug, the upstream issue, so an upgrade means reading this file: check each against the new
version, and drop the ones it fixes.
"""

import contextlib
import gc

import keras


def seed_generator_states(model):
    """The state variables of every `SeedGenerator` in `model` (its dropout layers'), in
    a fixed order.

    Keras 3.15's `save_weights` leaves them out (they are in `model.variables`, not in
    `model.weights`), so a model loaded from a backup would draw other dropout masks
    than the run it was saved from. Internal: the variables' path ends with
    `seed_generator_state`, the name Keras gives them.
    """
    return [variable for variable in model.variables if variable.path.endswith("seed_generator_state")]


def build_metrics(model, element_spec):
    """Creates the variables of a compiled model's optimizer, metrics and per-head losses,
    from the `element_spec` of its training data, before any step.

    Keras 3.15 creates them in the first training step (`Trainer._symbolic_build` runs
    before it only under a tf.distribute strategy). That is too late for an epoch resumed
    mid-way to set them to the backup's, and a `tf.function` whose first trace creates
    variables is traced again before it runs (tensorflow/tensorflow#48851): the training
    step, the costliest trace of a run, was traced twice. Internal:
    `Trainer._symbolic_build`, which reads only the shapes and dtypes of the batch it is
    given and does nothing once everything is built.
    """
    model._symbolic_build(data_batch=element_spec)


def reopen_tensorboard(callback):
    """Lets one `keras.callbacks.TensorBoard` serve another `fit`: Keras 3.15 closes its
    file writers when a `fit` ends and opens new ones only in `set_model`, which would
    also write the model's graph again. Internal: `TensorBoard._writers`, the writers it
    opens again when they are missing."""
    callback._writers = {}


def batchnorm_layers(model):
    """Every BatchNormalization in `model`, nested models included.

    Internal (Keras 3.15): `Layer._flatten_layers`; `model.layers` lists the top level only.
    """
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def float32_config(config):
    """A functional model's `get_config()` with every layer's dtype policy float32.

    Keras 3.15 has no public way to change a built model's policies; rewriting the
    serialised `DTypePolicy` entries (their format is Keras's) and rebuilding does it.
    """
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [float32_config(value) for value in config]
    return config


class ServedModel:
    """Holds a Keras model for a `tf.Module` to serve, out of its SavedModel.

    A Keras 3.15 model saved inside a `tf.Module` loads with `tf.saved_model.load`, but
    the session-based loader of TensorFlow Serving and `saved_model_cli run` does not
    restore its variables ("Could not find variable ...", keras-team/keras#20095,
    tensorflow/serving#2250): the object graph holds Keras's variable wrappers, the
    functions capture the TensorFlow variables inside them. `track_captured_variables`
    lists the captured variables on the module, as Keras's own `ExportArchive` does
    (`_filter_and_track_resources`); the model itself must then stay out of the object
    graph, or every weight is written twice (once per wrapper, once per variable). A
    plain object is not trackable, so `module.served = ServedModel(model)` keeps it out.
    """

    def __init__(self, model):
        self.model = model


def track_captured_variables(module, model):
    """Lists on `module` the TensorFlow variables that its functions running `model`
    capture, so that TensorFlow Serving can load the SavedModel of `module` (see
    `ServedModel`): the ones inside `model.weights` (not `model.variables`, which adds
    the dropout layers' random state that inference leaves alone).

    Read from the model, not from the functions' concrete functions: tracing those before
    `tf.saved_model.save` did not spare save its own trace of each. Internal:
    `Variable._value`, the TensorFlow variable inside Keras's.
    """
    module.captured_variables = [weight._value for weight in model.weights]


@contextlib.contextmanager
def closing_failed_h5_writes():
    """Closes the HDF5 files a failed `save_weights` / `save` leaves open.

    Keras 3.15's `saving_lib.save_weights_only` closes its `H5IOStore` only on success.
    When a write fails (a full disk), the open h5py file lives on in the traceback, and
    HDF5's flush of it at interpreter exit fails again and crashes the process
    (segmentation fault, exit 139). No upstream issue found as of 3.15.1.
    """
    try:
        yield
    except BaseException:
        import h5py

        for handle in [obj for obj in gc.get_objects() if isinstance(obj, h5py.File)]:
            with contextlib.suppress(Exception):
                if handle.id.valid and handle.mode == "r+":
                    handle.close()
        raise


@contextlib.contextmanager
def weight_average_held(model):
    """Keeps the optimizer's moving average of the weights (`use_ema`) out of the model
    until the block ends, however many `fit` calls it holds.

    Keras 3.15's `fit` ends by copying the average into the model's weights
    (`optimizer.finalize_variable_values`): right after one `fit` of the whole training,
    but a run that resumes mid-epoch trains in two, and the first copy would replace
    the weights it goes on training. The caller copies the average in once, at the end
    (`optimizer.finalize_variable_values(model.trainable_variables)`).
    """
    optimizer = model.optimizer
    optimizer.finalize_variable_values = lambda var_list: None  # the instance's, over the class's
    try:
        yield
    finally:
        del optimizer.finalize_variable_values


@contextlib.contextmanager
def distributed_fit(model):
    """Works around two bugs of Keras 3.15's `fit` under several replicas
    (keras-team/keras#20585, open), for the duration of the block:

    - before training, `fit` averages a first batch with `strategy.reduce` to build the
      metrics, which fails on a nested `(images, {head: labels})` batch (Mirrored and
      MultiWorkerMirrored strategies alike: "Expected float32, but got main of type
      'str'"): this builds them from the first replica's part of the batch, as Keras
      does without a strategy;
    - under MultiWorkerMirroredStrategy each step averages the replicas' scalar logs
      with `strategy.reduce("MEAN", v, axis=0)`, an invalid axis for a scalar: the mean
      across replicas is `axis=None`, what Keras computes on one machine.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return model.distribute_strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(local, next(batches))
                break
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    model._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield model
    finally:
        tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build


def deterministic_gradient_sums():
    """Turns Grappler's memory optimizer off for every function this process runs, so
    that the same training step on the same weights and batch gives the same bits.

    TensorFlow 2.21's memory optimizer rewrites a large `AddN` of gradients (the sum over
    a tensor's consumers: five where an inception output also feeds an aux head) into
    in-place accumulation in the order the terms arrive, which the thread scheduling
    decides; float addition being not associative, repeated calls of one step differ in
    the last bits from inception 4d backwards, and two identical runs drift apart.
    `tf.config.experimental.enable_op_determinism()` leaves that rewrite on, and
    `tf.config.optimizer.set_experimental_options` has no key for it, so the setting goes
    into the ConfigProto the eager context starts with. Upstream: tensorflow/tensorflow#51716
    (Grappler's rewrites can add nondeterminism).

    Call it before TensorFlow runs its first operation; returns False (and changes
    nothing) when the context has already started, as it would no longer read the setting.
    """
    from tensorflow.core.protobuf import rewriter_config_pb2
    from tensorflow.python.eager import context

    if context.context()._initialized:
        return False
    cls = type(context.context())
    if getattr(cls, "_memory_optimizer_off", False):
        return True
    compute = cls.config.fget

    def config(self):
        proto = compute(self)
        proto.graph_options.rewrite_options.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        return proto

    cls.config = property(config, cls.config.fset)
    cls._memory_optimizer_off = True
    return True
