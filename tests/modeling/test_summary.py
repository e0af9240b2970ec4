
import pytest

from inception_tf import GoogLeNet
from inception_tf.modeling.summary import PAPER_TABLE_1, profile, stage_of

# Szegedy et al. 2014, Table 1, the "ops" column (multiply-adds), typed from the paper:
# the package's own copy (PAPER_TABLE_1, which `summary` prints beside the model's) is
# checked against it, not used as the reference.
PAPER_OPS = {
    "conv1": 34e6, "conv2": 360e6, "inception_3a": 128e6, "inception_3b": 304e6, "inception_4a": 73e6,
    "inception_4b": 88e6, "inception_4c": 100e6, "inception_4d": 119e6, "inception_4e": 170e6,
    "inception_5a": 54e6, "inception_5b": 71e6, "main": 1e6,
}

CHECKED = ["conv2"] + [f"inception_{m}" for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5b")]


@pytest.fixture(scope="module")
def stages():
    return {s.name: s for s in profile(GoogLeNet(num_classes=1000))}


def test_stage_names():
    assert stage_of("inception_4a_3x3_reduce_conv") == "inception_4a"
    assert stage_of("conv2_3x3_relu") == "conv2"
    assert stage_of("aux2_fc") == "aux2"
    assert stage_of("main") == "main"


@pytest.mark.parametrize("name", CHECKED)
def test_macs_agree_with_paper_table_1_within_1_percent(stages, name):
    assert stages[name].macs == pytest.approx(PAPER_OPS[name], rel=0.01)


def test_the_printed_table_is_the_papers():
    assert {name: ops for name, (_, ops) in PAPER_TABLE_1.items()} == PAPER_OPS


def test_paper_table_rows_that_disagree_with_its_own_filter_columns(stages):
    # conv1: 7x7x3x64 at 112x112 is 118M MACs; the table prints 34M (and 2.7K params).
    assert stages["conv1"].macs == 7 * 7 * 3 * 64 * 112 * 112
    assert stages["conv1"].params == 7 * 7 * 3 * 64 + 64
    # 5a: the table's filters give 1,042,432 weights and 51.1M MACs; it prints 54M.
    assert stages["inception_5a"].macs == 49 * 1_042_432
    assert stages["inception_5a"].macs < 0.95 * PAPER_OPS["inception_5a"]


def test_shapes_and_totals(stages):
    assert stages["conv1"].output_shape == (112, 112, 64)
    assert stages["pool2"].output_shape == (28, 28, 192)
    assert stages["inception_5b"].output_shape == (7, 7, 1024)
    assert stages["main"].output_shape == (1000,)
    assert sum(s.params for s in stages.values()) == 13_378_280
    assert sum(s.macs for s in stages.values()) == pytest.approx(1.59e9, rel=0.01)


def test_summary_command(capsys):
    from inception_tf import cli

    assert cli.main(["summary", "--num-classes", "10", "--image-size", "96"]) == 0
    out = capsys.readouterr().out
    assert "10,334,030" in out
    assert "inception_5b   3x3x1024" in out
    assert "paper ops" not in out  # Table 1 is for 224x224 only


def test_summary_command_rejects_bad_values(capsys):
    from inception_tf import cli

    assert cli.main(["summary", "--image-size", "16"]) == 2
    assert "Received: input_shape=(16, 16, 3)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["summary", "--variant", "v3"])
    assert exited.value.code == 2
    assert "invalid choice: 'v3' (choose from 'paper', 'bn')" in capsys.readouterr().err
