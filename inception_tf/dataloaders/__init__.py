"""Data sets by name (`catalog`): in memory (`arrays`), folders and TFRecord shards
(`sources`), the ILSVRC-2012 validation set (`ilsvrc`); tf.data pipelines (`data`) and
augmentation."""
