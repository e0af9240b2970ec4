"""The runtime variables: what the user set is kept, a choice is applied before
TensorFlow loads, and the message after names a function that exists."""

import importlib
import os
import re
import sys

import pytest

from inception_tf.startup import measured, runtime, settings
from inception_tf.startup.settings import INTER_OP, ONEDNN, Setting


@pytest.fixture(autouse=True)
def _nothing_applied(monkeypatch):
    monkeypatch.setattr(settings, "_applied", None)


def test_apply_sets_what_the_user_left_open_and_refuses_once_tensorflow_has_loaded(monkeypatch):
    environ = {INTER_OP: "2"}
    monkeypatch.setattr(os, "environ", environ)
    choice = measured.Choice("runtime", Setting(True, 1), "measured here", given={INTER_OP: "2"})
    with pytest.MonkeyPatch.context() as before_tensorflow:
        before_tensorflow.delitem(sys.modules, "tensorflow")
        settings.apply(choice)
    assert environ == {ONEDNN: "1", INTER_OP: "2"}
    assert settings.applied() is choice and settings.jit_compile() is False
    with pytest.raises(RuntimeError, match="before TensorFlow loads.*Received: tensorflow already imported"):
        runtime.configure("bn", 64, 128)


def test_the_message_after_tensorflow_loaded_names_a_function_that_exists():
    with pytest.raises(RuntimeError, match=r"Received: tensorflow already imported") as caught:
        import tensorflow  # noqa: F401  (what a user's script did first)

        settings.apply(measured.Choice("runtime", Setting(True, 1), "measured here"))
    path = re.search(r"call (inception_tf[\w.]+)\(\)", str(caught.value)).group(1)
    module, _, name = path.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
