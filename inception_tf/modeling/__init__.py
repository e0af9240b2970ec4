"""The network: GoogLeNet as the paper's table, behind its public factory with
`weights=` (`network`), its layers, starting weights (a `.keras` file, BVLC's caffemodel,
`weights="imagenet"`), input conventions and what a `.keras` file carries.

Importing this folder loads nothing: `geometry` and `preprocessing` are read by the
configuration before TensorFlow loads."""
