"""The README stays true: its examples run and its commands use flags that exist."""

import pathlib
import re

import pytest

from inception_tf import cli

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _options(command):
    subparsers = cli.build_parser()._subparsers._group_actions[0].choices
    return set(subparsers[command]._option_string_actions)


def test_python_examples_run():
    blocks = _blocks("python")
    assert blocks
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})


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


def test_train_help_in_readme_is_current(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"], train_prog="train.py")
    help_text = capsys.readouterr().out
    assert help_text.strip() in README.read_text(), (
        "README's `python train.py --help` block differs from the parser: regenerate it with "
        "COLUMNS=100 python train.py --help"
    )
