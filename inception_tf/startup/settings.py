"""The runtime variables TensorFlow reads once, as it loads: what the user set, the
settings a run may choose between, and applying the chosen one before TensorFlow loads.

`runtime.choose_setting` decides which (by timing them); this module only reads and sets
the environment. Importing it loads neither TensorFlow nor Keras.
"""

import dataclasses
import os
import sys

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
INTER_OP = "TF_NUM_INTEROP_THREADS"
INTRA_OP = "TF_NUM_INTRAOP_THREADS"
VARIABLES = (ONEDNN, INTER_OP, INTRA_OP)
# "default": keep TensorFlow's own settings and time nothing (the tests' choice); "auto" times.
MODE = "INCEPTION_TF_RUNTIME"
MODES = ("auto", "default")

@dataclasses.dataclass(frozen=True)
class Setting:
    """One runtime: oneDNN on or off (None: as TensorFlow decides), TensorFlow's inter-op
    pool (0: its own choice) and XLA compilation of the train step."""

    onednn: bool = None
    inter_op_threads: int = 0
    jit_compile: bool = False

    def environment(self):
        env = {} if self.onednn is None else {ONEDNN: "1" if self.onednn else "0"}
        if self.inter_op_threads:
            env[INTER_OP] = str(self.inter_op_threads)
        return env

    @property
    def name(self):
        parts = ["TensorFlow's own settings" if self.onednn is None else f"oneDNN {'on' if self.onednn else 'off'}"]
        if self.inter_op_threads:
            parts.append(f"{self.inter_op_threads} inter-op thread{'s' if self.inter_op_threads > 1 else ''}")
        if self.jit_compile:
            parts.append("XLA")
        return ", ".join(parts)


# oneDNN both ways. One inter-op thread and XLA were candidates too, until measurements
# dropped them (results/peers/d-peers/runtime.json). `jit_compile` stays False, said
# explicitly to Keras, whose "auto" would compile with XLA.
CANDIDATES = (
    Setting(onednn=False),
    Setting(onednn=True),
)


# --- What the user set -----------------------------------------------------------------------

def flag(name, value):
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name} must be 0 or 1. Received: {name}={value!r}")


def count(name, value):
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{name} must be a non-negative integer. Received: {name}={value!r}")
    return count


def given_variables(environ=None):
    """The runtime variables the user set, checked: `{name: value}`."""
    environ = os.environ if environ is None else environ
    given = {name: environ[name] for name in VARIABLES if environ.get(name, "") != ""}
    if ONEDNN in given:
        flag(ONEDNN, given[ONEDNN])
    for name in (INTER_OP, INTRA_OP):
        if name in given:
            count(name, given[name])
    return given


def settings_to_time(given):
    """CANDIDATES with the user's variables imposed, without repeats, in order."""
    found = []
    for setting in CANDIDATES:
        if ONEDNN in given:
            setting = dataclasses.replace(setting, onednn=flag(ONEDNN, given[ONEDNN]))
        if INTER_OP in given:
            setting = dataclasses.replace(setting, inter_op_threads=count(INTER_OP, given[INTER_OP]))
        if setting not in found:
            found.append(setting)
    return found


def as_given(given):
    """TensorFlow's own settings, with the user's variables (`given_variables`) imposed."""
    return Setting(onednn=flag(ONEDNN, given[ONEDNN]) if ONEDNN in given else None,
                   inter_op_threads=count(INTER_OP, given.get(INTER_OP, 0)))


# --- Applying a setting, before TensorFlow loads ----------------------------------------------

_applied = None


def apply(choice):
    """Sets the variables of `choice` that the user did not set. Raises RuntimeError once
    TensorFlow has loaded: it would no longer read them."""
    global _applied
    check_not_loaded()
    for name, value in choice.value.environment().items():
        if name not in choice.given:
            os.environ[name] = value
    _applied = choice
    return choice


def check_not_loaded():
    if "tensorflow" in sys.modules:
        raise RuntimeError(
            "The runtime must be chosen before TensorFlow loads: call inception_tf.startup.runtime.configure() "
            "before importing tensorflow, keras or a name from inception_tf. Received: tensorflow already imported"
        )


def applied():
    """The `measured.Choice` this process loaded TensorFlow with, or None."""
    return _applied


def loaded_setting():
    """The runtime TensorFlow runs under in this process, as it reports it."""
    return Setting(onednn=onednn_enabled(), inter_op_threads=count(INTER_OP, os.environ.get(INTER_OP) or 0),
                   jit_compile=jit_compile() is True)


def jit_compile():
    """For `Model.compile`: the chosen XLA setting, else Keras's "auto"."""
    return _applied.value.jit_compile if _applied else "auto"


def onednn_enabled():
    """Whether the TensorFlow loaded here runs oneDNN (its own answer, after the variable)."""
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's one report of it (2.21)

    return bool(_pywrap_util_port.IsMklEnabled())
