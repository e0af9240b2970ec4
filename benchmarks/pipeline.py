"""Iterate the training pipeline without a model: is the input side ever the bottleneck?

    python benchmarks/pipeline.py --dataset fashion_mnist --image-size 224 --batch-size 64 --batches 200

Ends with one line: `images/s=<float> peak_rss_mb=<float>` (after `--warmup` batches).
"""

import argparse
import os
import resource
import sys
import time

from inception_tf.startup import loading  # noqa: E402  (loads nothing)

loading.quiet_import_tensorflow()  # TensorFlow's own runtime: the measured one is for training

from inception_tf.dataloaders import catalog, data  # noqa: E402
from inception_tf import choices  # noqa: E402
from inception_tf.dataloaders.augment import AugmentConfig  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=choices.SOURCES, default="fashion_mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--augment", choices=choices.AUGMENT_POLICIES, default="paper")
    parser.add_argument("--eval", action="store_true", help="the evaluation pipeline instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source = catalog.load_source(args.dataset, data_dir=args.data_dir)
    dataset = data.make_dataset(
        source.splits["train"], data.InputSpec(args.image_size, args.batch_size), training=not args.eval,
        augment=AugmentConfig(policy=args.augment), seed=args.seed,
    ).repeat()
    iterator = iter(dataset)
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        images, _ = next(iterator)
    elapsed = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"dataset={args.dataset} image_size={args.image_size} batch_size={args.batch_size} "
        f"augment={'none (eval)' if args.eval else args.augment} batches={args.batches} "
        f"shape={tuple(images.shape)} cpus={os.cpu_count()}"
    )
    print(f"images/s={args.batches * args.batch_size / elapsed:.1f} peak_rss_mb={peak_rss_mb:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
