"""Every list of names a user chooses among, in one place, importable without TensorFlow.

The command line is built from these before TensorFlow loads (its runtime settings must
be chosen first, and `--help` need not wait for it); the modules that act on a name
(the network, the data, the schedules, the strategies, the precision, LiteRT) take
theirs from here. "auto" is the configuration's, added where it offers it.
"""

VARIANTS = ("paper", "bn")
POOLINGS = ("avg", "max", None)  # GoogLeNet(include_top=False)
LABEL_MODES = ("sparse", "categorical")  # compile_for_training(labels=)
SMALL_IMAGE_SOURCES = ("fashion_mnist", "mnist", "cifar10", "cifar100")  # 28-32 px
SOURCES = SMALL_IMAGE_SOURCES + ("folder", "tfrecord")
EVALUATION_SOURCES = SOURCES + ("imagenet",)  # the ILSVRC-2012 validation set: evaluation only
AUGMENT_POLICIES = ("paper", "standard", "none")
TEST_CROPS = (1, 2, 10)
# The input conventions of a GoogLeNet's weights (`modeling.preprocessing`).
PREPROCESSING = ("tf", "caffe")
SCHEDULES = ("paper", "cosine", "linear", "constant")
# Keras's dtype policies a run trains in (float16 on a CPU only as a stand-in for a GPU).
FLOAT32, FLOAT16, BFLOAT16 = "float32", "mixed_float16", "mixed_bfloat16"
PRECISIONS = (FLOAT32, FLOAT16, BFLOAT16)
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")
LITERT_QUANTIZATIONS = ("float32", "float16", "int8")
