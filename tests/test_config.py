import json
from pathlib import Path

import pytest

from inception_tf import cli
from inception_tf.config import PRESETS, RunConfig, diff


def _args(*argv):
    return cli.build_parser().parse_args(["train", *argv])


def test_round_trip_through_json(tmp_path):
    config = RunConfig().replace(**{"train.epochs": 7, "data.dataset": "cifar10", "run_dir": "x"})
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert RunConfig.from_json(path) == config


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"`train` section.*\['epochz'\]"):
        RunConfig.from_dict({"train": {"epochz": 3}})
    with pytest.raises(ValueError, match=r"Received: 'train.epochz'"):
        RunConfig().replace(**{"train.epochz": 3})


def test_flags_override_config_file_which_overrides_preset(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(RunConfig().replace(**{"train.epochs": 9, "train.seed": 4}).to_json())
    config = cli.config_from_args(_args("--config", str(path), "--seed", "5"))
    assert (config.train.epochs, config.train.seed) == (9, 5)
    config = cli.config_from_args(_args("--preset", "quick", "--epochs", "3"))
    assert config.train.epochs == 3 and config.data.limit == PRESETS["quick"]["data.limit"]
    config = cli.config_from_args(_args("--no-aux-heads", "--skip-corrupt"))
    assert config.model.aux_heads is False and config.data.skip_corrupt is True


def test_a_config_file_wins_over_a_preset_and_the_preset_fills_what_it_leaves(tmp_path):
    whole = tmp_path / "config.json"
    whole.write_text(RunConfig().replace(**{"train.epochs": 9, "data.limit": 100}).to_json())
    config = cli.config_from_args(_args("--config", str(whole), "--preset", "quick"))
    assert (config.train.epochs, config.data.limit) == (9, 100)  # not the preset's 2 and 4096
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"train": {"epochs": 5}}))
    config = cli.config_from_args(_args("--config", str(partial), "--preset", "quick", "--seed", "3"))
    assert (config.train.epochs, config.data.limit, config.train.seed) == (5, PRESETS["quick"]["data.limit"], 3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{'train': 1}", r"Cannot read the configuration file .*bad.json: Expecting property name.*Received: config='.*bad.json'"),
        ("[1, 2]", r"must hold a JSON object. Received: config='.*bad.json'"),
        ('{"train": {"epochz": 1}}', r"Unknown configuration key. Received: 'train.epochz'"),
        # A misspelt section, empty or not, would leave the whole default job to run.
        ('{"trian": {}}', r"bad.json has an unknown key 'trian' \(known: data, model, train, init_from, run_dir\)"),
        ('{"trian": {"epochs": 1}}', r"unknown key 'trian'"),
        ('{"train": 3}', r"The section 'train' of .*bad.json must be a JSON object. Received: train=3"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        cli.config_from_args(_args("--config", str(path)))
    with pytest.raises(ValueError, match=r"Cannot read the configuration file .*missing.json"):
        cli.config_from_args(_args("--config", str(tmp_path / "missing.json")))


def test_defaults_suit_fashion_mnist():
    config = cli.config_from_args(_args())
    assert config.data.dataset == "fashion_mnist" and config.resolved_augment() == "standard"
    assert cli.config_from_args(_args("--dataset", "folder")).resolved_augment() == "paper"
    assert config.data.random_erasing == 0.25
    assert cli.config_from_args(_args("--preset", "paper")).data.random_erasing == 0.0
    assert cli.config_from_args(_args("--random-erasing", "0.5")).data.random_erasing == 0.5
    assert cli.config_from_args(_args("--test-crops", "10")).data.test_crops == 10


def test_committed_evidence_comes_from_the_default_configuration():
    # results/default_run/a-30ep/ is the README's figure: it must be what `python train.py` runs,
    # with only the run directory and the values resolved from "auto" filled in.
    committed = RunConfig.from_json(Path(__file__).resolve().parents[1] / "results/default_run/a-30ep/config.json")
    defaults = cli.config_from_args(_args())
    resolved = {"run_dir": committed.run_dir, "data.augment": defaults.resolved_augment(),
                "train.precision": "mixed_bfloat16", "train.strategy": "default"}
    assert diff(defaults.replace(**resolved).to_dict(), committed.to_dict()) == []


def test_test_crops_from_a_config_file_are_checked(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(RunConfig().replace(**{"data.test_crops": 3}).to_json())
    with pytest.raises(ValueError, match=r"`test_crops` must be one of \(1, 2, 10\). Received: test_crops=3"):
        cli.config_from_args(_args("--config", str(path)))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--validation-split", "1.5"], r"Received: validation_split=1.5"),
        (["--learning-rate", "-1"], r"Received: learning_rate=-1.0"),
        (["--random-erasing", "2"], r"Received: random_erasing=2.0"),
        (["--image-size", "48"], r"at least 49. Received: image_size=48"),
        (["--no-aux-heads", "--image-size", "31"], r"at least 32. Received: image_size=31"),
    ],
)
def test_bad_values_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        cli.config_from_args(_args(*argv))


def test_diff_lists_changed_keys():
    old = RunConfig().to_dict()
    new = RunConfig().replace(**{"train.epochs": 3, "data.limit": 10}).to_dict()
    assert diff(old, new) == ["data.limit: None -> 10", f"train.epochs: {old['train']['epochs']} -> 3"]
    assert diff(old, json.loads(json.dumps(old))) == []


def test_presets_are_valid():
    for name, values in PRESETS.items():
        RunConfig().replace(**values).validate()


def test_every_setting_is_a_flag_with_its_default_in_its_help():
    from inception_tf import config

    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {action.dest: action for action in train._actions}
    for cls in (config.RunConfig, *config.SECTIONS.values()):
        for field in config.fields(cls):
            action = actions[field.name]
            assert action.default is None, field.name  # "not given": --config and --preset keep theirs
            if field.metadata["show_default"]:
                assert f"default: {field.default}" in action.help, field.name


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.momentum", 1.0, r"`momentum` must be in \[0, 1\). Received: momentum=1.0"),
        ("train.weight_decay", -1e-4, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.0001"),
        ("train.epochs", 0, r"`epochs` must be a positive integer. Received: epochs=0"),
        ("model.variant", "v3", r"`variant` must be one of \('paper', 'bn'\). Received: variant='v3'"),
    ],
)
def test_the_rules_of_a_setting_live_beside_its_default(key, value, message):
    with pytest.raises(ValueError, match=message):
        RunConfig().replace(**{key: value}).validate()


def test_a_resumed_run_may_change_how_often_it_backs_up():
    saved = RunConfig().to_dict()
    now = RunConfig().replace(**{"train.backup_every": 50, "train.epochs": 3}).to_dict()
    assert diff(saved, now) == ["train.epochs: 30 -> 3"]
    with pytest.raises(ValueError, match=r"`backup_every` must be a positive integer. Received: backup_every=0"):
        RunConfig().replace(**{"train.backup_every": 0}).validate()
