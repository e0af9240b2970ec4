"""`python tests/support/standin_two_cpus.py [train.py flags]`: train.py on a CPU split into two
logical devices, the stand-in for a machine with two GPUs (`--strategy mirrored` then
runs two replicas)."""

import pathlib
import runpy
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = [str(pathlib.Path(__file__).resolve().parents[2] / "train.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
