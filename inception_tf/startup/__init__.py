"""What runs before TensorFlow loads: the machine's description (`machine`), the one
mechanism that times candidates here and stores the answer per machine and workload
(`measured`), the two choices made with it (`runtime`: the settings TensorFlow reads as
it loads; `precision`), and the cluster's TF_CONFIG and strategy checks (`cluster`).

Importing this folder loads neither TensorFlow nor Keras."""
