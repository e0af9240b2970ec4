"""The house rules a reader relies on: short functions, Keras internals in one module, and
modules in folders by role whose imports go one way."""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "inception_tf"
LONGEST = 80
# The model builder reads like the paper's table, top to bottom.
EXEMPT = {("modeling/network.py", "build")}
# Keras's private modules and attributes; they belong in keras_fixes.py, with a version.
PRIVATE_KERAS = re.compile(r"keras\.src|\._flatten_layers|\._initial_epoch|\._symbolic_build|\._maybe_symbolic_build")


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE).as_posix(), node


def test_no_function_a_reader_must_scroll_through():
    long = [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, node in _functions()
        if node.end_lineno - node.lineno + 1 > LONGEST and (name, node.name) not in EXEMPT
    ]
    assert not long, f"functions over {LONGEST} lines: {long}"


def test_keras_internals_are_used_in_keras_fixes_only():
    uses = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "keras_fixes.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_KERAS.search(line)
    ]
    assert not uses, uses


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """{module: the inception_tf modules it imports}, imports inside functions included:
    a circle through a deferred import still ties the modules together."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("inception_tf"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    is_module = (PACKAGE.parent / f"{full.replace('.', '/')}.py").is_file()
                    imported.add(full if is_module else node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("inception_tf")}
        graph[_module_name(path)] = imported - {_module_name(path)}
    return graph


def _circle(graph):
    """One import circle as a list of modules, or None."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if (found := visit(imported)) is not None:
                return found
        path.pop()
        done.add(module)
        return None

    return next((found for module in sorted(graph) if (found := visit(module)) is not None), None)


def test_no_import_goes_in_a_circle():
    graph = _imports()
    assert "inception_tf.modeling.caffe" in graph["inception_tf.modeling.weights"]  # the graph is read
    assert _circle(graph) is None, " -> ".join(_circle(graph))
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_modules_sit_in_folders_by_role():
    """The top level keeps the entry points and what every folder shares; the package's
    short names (`from inception_tf import runtime`) reach each moved module."""
    import inception_tf

    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "choices.py", "cli.py", "config.py", "files.py", "keras_fixes.py",
                   "native_stderr.py", "registration.py"]
    folders = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
    assert folders == ["dataloaders", "modeling", "serving", "tasks"]
    moved = {path.stem: _module_name(path) for path in PACKAGE.glob("*/*.py") if path.stem != "__init__"}
    assert {name: f"inception_tf.{where}" for name, where in inception_tf._MODULES.items()} == moved


def test_the_old_model_module_still_offers_its_names():
    from inception_tf import model, network

    for name in ("INCEPTION_TABLE", "HEADS", "inception_module", "inference_model"):
        assert getattr(model, name) is getattr(network, name), name
