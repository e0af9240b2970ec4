"""A training run (`experiment`) and its parts: compile and losses (`training`), schedules,
callbacks (backups, exact resumes), stopping on a signal (`preemption`), the measured
precision and runtime, strategies and worker roles (`distribute`), evaluation reports.

Importing this folder loads nothing: `runtime.configure()` must run before TensorFlow."""
