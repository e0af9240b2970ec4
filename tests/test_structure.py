"""The house rules a reader relies on: short functions, and Keras internals in one module."""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "inception_tf"
LONGEST = 80
# The model builder reads like the paper's table, top to bottom.
EXEMPT = {("model.py", "GoogLeNet")}
# Keras's private modules and attributes; they belong in keras_fixes.py, with a version.
PRIVATE_KERAS = re.compile(r"keras\.src|\._flatten_layers|\._initial_epoch|\._symbolic_build|\._maybe_symbolic_build")


def _functions():
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.name, node


def test_no_function_a_reader_must_scroll_through():
    long = [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, node in _functions()
        if node.end_lineno - node.lineno + 1 > LONGEST and (name, node.name) not in EXEMPT
    ]
    assert not long, f"functions over {LONGEST} lines: {long}"


def test_keras_internals_are_used_in_keras_fixes_only():
    uses = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "keras_fixes.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_KERAS.search(line)
    ]
    assert not uses, uses
