"""The names a run's configuration chooses among, importable without TensorFlow.

The command line is built from these before TensorFlow loads (its runtime settings must
be chosen first, and `--help` need not wait for it); the modules that act on a name
(`model`, `data`, `augment`) take theirs from here.
"""

VARIANTS = ("paper", "bn")
SOURCES = ("fashion_mnist", "mnist", "cifar10", "cifar100", "folder", "tfrecord")
EVALUATION_SOURCES = SOURCES + ("imagenet",)  # the ILSVRC-2012 validation set: evaluation only
AUGMENT_POLICIES = ("paper", "standard", "none")
TEST_CROPS = (1, 2, 10)
