"""The house rules a reader relies on: short functions, Keras internals in one module, and
modules in folders by role whose imports go one way."""

import ast
import importlib
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "inception_tf"
LONGEST = 60
LONGEST_MODULE = 450
# A helper (a name starting with "_") takes at most this many, any function at most
# MOST_PUBLIC_PARAMETERS; longer lists travel as a configuration section or a spec.
MOST_PARAMETERS = 6
MOST_PUBLIC_PARAMETERS = 8
# The model's factories are flat and documented, as keras.applications' are: they read
# like the paper's table, and their signatures are the public API.
FLAT_FACTORIES = ("GoogLeNet", "inception_module")
# Low to high: a module imports from its own layer or a lower one.
LAYERS = (
    "files native_stderr choices keras_fixes registration",
    "startup",
    "modeling",
    "dataloaders",
    "config",
    "serving",
    "tasks",
    "cli __main__ __init__",
)
ONCE = ("Choice", "choose", "measure", "candidates", "fastest", "cache_path", "load_source", "convert")
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
        if node.end_lineno - node.lineno + 1 > LONGEST
    ]
    assert not long, f"functions over {LONGEST} lines: {long}"


def _functions_and_classes():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                yield path.relative_to(PACKAGE).as_posix(), node


def _parameters(node):
    arguments = node.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    return len([name for name in names if name not in ("self", "cls")])


def _layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


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
    """The top level keeps the entry points and what every folder shares; each module has
    one name, its path (no short aliases on the package)."""
    import inception_tf

    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "choices.py", "cli.py", "config.py", "files.py", "keras_fixes.py",
                   "native_stderr.py", "registration.py"]
    folders = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
    assert folders == ["dataloaders", "modeling", "serving", "startup", "tasks"]
    modules = {path.stem for path in PACKAGE.glob("*/*.py")} - {"__init__"}
    assert not modules & set(dir(inception_tf)), modules & set(dir(inception_tf))


def test_a_lower_layer_never_imports_a_higher_one():
    """What runs before TensorFlow (startup) knows no model; the model knows no data
    source, no run and no command line; serving knows no run."""
    where = {name: rank for rank, names in enumerate(LAYERS) for name in names.split()}
    graph = _imports()
    assert "inception_tf.startup.measured" in graph["inception_tf.tasks.timing"]  # the graph is read
    upward = [
        f"{module} imports {imported}"
        for module, imports in graph.items()
        for imported in imports
        if where[_layer(imported)] > where[_layer(module)]
    ]
    assert not upward, upward


def test_no_module_too_long_and_no_helper_with_too_many_parameters():
    """A module a reader can hold in mind; a helper whose call names what it passes."""
    long = [f"{path.relative_to(PACKAGE)} ({count} lines)" for path in sorted(PACKAGE.rglob("*.py"))
            if (count := len(path.read_text().splitlines())) > LONGEST_MODULE]
    assert not long, f"modules over {LONGEST_MODULE} lines: {long}"
    many = [f"{name}:{node.lineno} {node.name}" for name, node in _functions()
            if node.name.startswith("_") and _parameters(node) > MOST_PARAMETERS]
    assert not many, f"helpers with over {MOST_PARAMETERS} parameters: {many}"
    many = [f"{name}:{node.lineno} {node.name}" for name, node in _functions()
            if node.name not in FLAT_FACTORIES and _parameters(node) > MOST_PUBLIC_PARAMETERS]
    assert not many, f"functions with over {MOST_PUBLIC_PARAMETERS} parameters: {many}"


def test_one_idea_one_definition():
    """The names that once meant one idea twice (the runtime's and the precision's choice,
    two data loaders, two converters) are defined in one module each."""
    defined = {}
    for name, node in _functions_and_classes():
        if node.name in ONCE:
            defined.setdefault(node.name, []).append(name)
    twice = {name: modules for name, modules in defined.items() if len(modules) > 1}
    assert not twice, twice


def test_static_tools_see_every_public_name_where_it_is_defined():
    """The package loads its public names on first use (TensorFlow must not load with
    `import inception_tf`); its `TYPE_CHECKING` imports give static tools the same names
    from the same modules."""
    import inception_tf

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "typing.TYPE_CHECKING"]
    static = {alias.name: node.module.removeprefix("inception_tf.") for node in block.body for alias in node.names}
    assert static == inception_tf._EXPORTS


def _module_names():
    """A module's or subpackage's own name -> its dotted path, for the names no two share."""
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        paths.setdefault(parts[-1], []).append(".".join(parts))
    return {name: found[0] for name, found in paths.items() if len(found) == 1}


def _named_paths():
    """Each `inception_tf.a.b`, and each backticked `module.name` of the package's own
    modules, that a docstring or message of the package names (file names such as
    `inception_tf.json` left out), with where."""
    modules = _module_names()
    full = re.compile(r"\binception_tf(?:\.[A-Za-z_]\w*)+")
    short = re.compile(r"`([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)")
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            where = f"{path.relative_to(PACKAGE).as_posix()}:{node.lineno}"
            dotted = [m.group() for m in full.finditer(node.value)]
            dotted += [modules[m.group(1)] + m.group(2) for m in short.finditer(node.value) if m.group(1) in modules]
            for name in dotted:
                if name.rsplit(".", 1)[-1] not in ("json", "keras", "tflite", "py", "h5", "txt", "csv", "png", "proto"):
                    yield where, name


def _resolves(dotted):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_docstrings_and_messages_name_modules_and_functions_that_exist():
    named = list(_named_paths())
    assert len(named) > 50  # the walk finds the package's own references
    missing = sorted({f"{where} {dotted}" for where, dotted in named if not _resolves(dotted)})
    assert not missing, "\n".join(missing)


def _aliases(tree):
    """Module-level names bound to another module's name: `NAME = module.NAME`, tuples
    unpacked from one, or a constant imported under another name."""
    imported = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported.add((alias.asname or alias.name).split(".")[0])
                if isinstance(node, ast.ImportFrom) and alias.asname and alias.name.isupper():
                    yield node.lineno, f"{alias.name} as {alias.asname}"
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Name, ast.Attribute)):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported:
                yield node.lineno, ast.unparse(node)


def test_no_module_level_alias_of_an_imported_name():
    found = [
        f"{path.relative_to(PACKAGE).as_posix()}:{line} {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in _aliases(ast.parse(path.read_text()))
    ]
    assert not found, "\n".join(found)


def test_the_tests_of_a_module_are_found_by_its_name():
    """tests/FOLDER/test_NAME.py tests inception_tf/FOLDER/NAME.py; the runs of whole
    commands and the checks of the project stay at the top of tests/."""
    tests = PACKAGE.parent / "tests"
    folders = sorted(path.name for path in tests.iterdir() if path.is_dir() and path.name not in ("support", "__pycache__"))
    assert folders == sorted(path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file())
    stray = [
        path.relative_to(tests).as_posix()
        for folder in folders
        for path in (tests / folder).glob("test_*.py")
        if not (PACKAGE / folder / f"{path.stem.removeprefix('test_')}.py").is_file()
    ]
    assert not stray
