"""The README (and results/README.md, where its figures come from) stays true: its
examples run and its commands use flags that exist."""

import contextlib
import io
import os
import pathlib
import re
import runpy
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "support"))  # as the conftest does, for `python tests/test_readme.py`
import runs  # noqa: E402
from inception_tf import cli  # noqa: E402

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
DOCS = (README, *sorted((README.parent / "results").glob("**/*.md")), README.parent / "docs" / "command_line.md")
LONGEST_README = 350  # lines: what a newcomer reads in one sitting; the history goes to results/


def _blocks(language):
    return [block for doc in DOCS for block in re.findall(rf"```{language}\n(.*?)```", doc.read_text(), flags=re.S)]


def test_the_readme_reads_in_one_sitting():
    assert len(README.read_text().splitlines()) <= LONGEST_README


def _options(command):
    subparsers = cli.build_parser()._subparsers._group_actions[0].choices
    return set(subparsers[command]._option_string_actions)


def _printed_as_commented(code):
    """What a block's `print(...)  # RESULT` lines say they print, in order."""
    return [line.split("  # ", 1)[1].strip() for line in code.splitlines() if line.startswith("print(") and "  # " in line]


def test_python_examples_run_and_print_what_their_comments_say():
    blocks = [code for code in _blocks("python") if "runtime.configure(" not in code]  # that one: the next test
    assert blocks
    compared = 0
    for code in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), {"__name__": "readme"})
        expected = _printed_as_commented(code)
        assert out.getvalue().splitlines() == expected, code
        compared += len(expected)
    assert compared >= 3


def test_the_runtime_example_runs_before_tensorflow_loads():
    """In a fresh process, as a user's script would (the conftest's INCEPTION_TF_RUNTIME=default
    keeps it from timing, and it keeps the conftest's TF_ENABLE_ONEDNN_OPTS)."""
    (code,) = [block for block in _blocks("python") if "runtime.configure(" in block]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(runs.RUNTIME_LINE + "\n"), done.stdout
    assert done.stderr == ""


def test_shell_commands_use_existing_flags():
    checked = 0
    for block in _blocks("sh"):
        for line in block.splitlines():
            line = line.split("#")[0]
            match = re.search(r"(?:train\.py|make train|inception-tf-train)(.*)", line)
            command = "train"
            if match is None:
                match = re.search(r"-m inception_tf (\w+)(.*)", line)
                if match is None:
                    continue
                command, rest = match.group(1), match.group(2)
            else:
                rest = match.group(1)
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                assert flag in _options(command), f"README: {line.strip()!r} uses {flag}, which `{command}` lacks"
                checked += 1
    assert checked > 10


REFERENCE = README.parent / "docs" / "command_line.md"
COMMANDS = ("train", "evaluate", "export", "predict", "serve", "convert", "summary")


def _help(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main([command, "--help"], train_prog="train.py" if command == "train" else None)
    return out.getvalue().strip()


def command_line_reference():
    """docs/command_line.md as the parser prints it (at COLUMNS=100)."""
    lines = [
        "# Command line reference", "",
        "Every command's `--help`, as the parser prints it; `tests/test_readme.py` checks that this",
        "file is current (`python tests/test_readme.py` rewrites it). The [README](../README.md) says",
        "when to use which.", "",
    ]
    for command in COMMANDS:
        how = "`python train.py` (also `inception-tf-train`)" if command == "train" else "`python -m inception_tf`"
        lines += [f"## {command}", "", how, "", "```text", _help(command), "```", ""]
    return "\n".join(lines)


def test_command_line_reference_is_current(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert REFERENCE.read_text() == command_line_reference(), (
        "docs/command_line.md differs from the parser: rewrite it with `python tests/test_readme.py`"
    )


def test_benchmark_commands_use_existing_flags(monkeypatch):
    root = README.parent
    commands = {}
    for block in _blocks("sh"):
        for line in block.splitlines():
            match = re.search(r"(benchmarks/\w+\.py)(.*)", line.split("#")[0])
            if match:
                commands.setdefault(match.group(1), set()).update(
                    # after a lone "--": the flags of the command the script runs
                    re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", match.group(2).split(" -- ")[0])
                )
    assert {"benchmarks/pipeline.py", "benchmarks/throughput.py"} <= set(commands)
    for script, flags in commands.items():
        assert (root / script).is_file(), f"README names {script}, which does not exist"
        # In this process, where TensorFlow is loaded already: the script's own parser,
        # through its main(); tests/test_benchmarks.py runs the scripts themselves.
        monkeypatch.syspath_prepend(str(root / "benchmarks"))  # as `python benchmarks/X.py` has it
        namespace = runpy.run_path(str(root / script), run_name="readme_check")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            namespace["main"](["--help"])
        assert exited.value.code == 0
        help_text = out.getvalue()
        for flag in flags:
            assert flag in help_text, f"README: {script} uses {flag}, which its --help lacks"


RESULTS = README.parent / "results"
LONGEST_RESULTS_INDEX = 300  # lines: an index a reader walks, the history in the topics


def _markdown_files():
    root = README.parent
    return [README, *root.glob("docs/*.md"), *RESULTS.glob("**/*.md"), root / "benchmarks" / "README.md"]


def test_every_relative_link_of_the_docs_resolves():
    checked = 0
    for doc in _markdown_files():
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            assert (doc.parent / target.split("#")[0]).exists(), f"{doc}: the link {target!r} leads nowhere"
            checked += 1
    assert checked > 50


def test_results_are_topics_each_stating_its_finding_and_the_index_links_them_all():
    index = (RESULTS / "README.md").read_text()
    assert len(index.splitlines()) < LONGEST_RESULTS_INDEX
    topics = sorted(path for path in RESULTS.iterdir() if path.is_dir())
    assert len(topics) >= 10
    for topic in topics:
        text = (topic / "README.md").read_text()
        assert text.startswith("# ") and "**Finding.** " in text.split("\n## ")[0], topic
        assert f"]({topic.name}/README.md)" in index, f"results/README.md does not link {topic.name}/"
    scripts = [path for path in RESULTS.rglob("*") if path.suffix in (".py", ".sh", ".ipynb")]
    assert not scripts, f"scripts belong in benchmarks/, not results/: {scripts}"


def test_benchmarks_readme_names_every_script_once():
    root = README.parent / "benchmarks"
    listed = re.findall(r"^\| `([\w/]+\.(?:py|sh))` \|", (root / "README.md").read_text(), flags=re.M)
    scripts = sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.suffix in (".py", ".sh"))
    assert sorted(listed) == scripts


if __name__ == "__main__":
    os.environ["COLUMNS"] = "100"
    REFERENCE.write_text(command_line_reference())
