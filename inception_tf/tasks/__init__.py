"""A training run (`experiment`, `task`) and its parts: compile and losses (`compiling`),
the optimizer (`optimizers`), schedules, what a run cost (`budget`), callbacks (backups, exact resumes), stopping on a signal (`preemption`), the
timed training step behind the measured precision and runtime (`timing`), strategies and
worker roles (`distribute`), evaluation reports.

Importing this folder loads nothing: `startup.runtime.configure()` must run before TensorFlow."""
