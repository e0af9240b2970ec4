import sys

from inception_tf.cli import main

sys.exit(main())
