"""A training run (`experiment`, `task`) and its parts: compile and losses (`training`),
schedules, callbacks (backups, exact resumes), stopping on a signal (`preemption`), the
timed training step behind the measured precision and runtime (`timing`), strategies and
worker roles (`distribute`), evaluation reports.

Importing this folder loads nothing: `startup.runtime.configure()` must run before TensorFlow."""
