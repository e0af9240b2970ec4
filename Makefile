# The README's two commands: `make train` and `make test`.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Three workers, chosen on 2 cores (while a worker waits on the processes its test started,
# the third takes the core; each worker holds a TensorFlow of its own, 1-3 GB: more cores
# may take more, `make test WORKERS=N`), one test file each (module fixtures train once),
# the files in the order tests/conftest.py gives them (xdist's own order is by test
# count); the 15 slowest printed.
WORKERS ?= 3
PYTEST_ARGS ?= -n $(WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

.PHONY: train test install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,notebook]"
	touch $@

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info build dist
