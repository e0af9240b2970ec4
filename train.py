"""Train, evaluate, report and export GoogLeNet: `python train.py --help`."""

import sys

from inception_tf.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
