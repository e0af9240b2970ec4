"""Data sets (`sources`, `ilsvrc`), tf.data pipelines (`data`) and augmentation."""
