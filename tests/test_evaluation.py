import numpy as np
import pytest

from inception_tf import evaluation


def test_per_class_table_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 1, 0])
    matrix = evaluation.confusion_matrix(labels, predictions, 3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
    rows, averages = evaluation.per_class_table(matrix, ["a", "b", "c"])
    assert rows[0] == {"class": "a", "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "f1": pytest.approx(2 / 3), "support": 3}
    assert rows[2]["precision"] == 0.0 and rows[2]["f1"] == 0.0  # never predicted: no division by zero
    assert averages[1]["recall"] == pytest.approx(4 / 6)  # weighted recall is accuracy
    table = evaluation.format_table(rows, averages, 4 / 6).splitlines()
    assert table[0].split() == ["precision", "recall", "f1-score", "support"]
    assert table[2].split() == ["a", "0.6667", "0.6667", "0.6667", "3"]
    assert table[-3].split() == ["accuracy", "0.6667", "6"]


def test_top_k_and_cross_entropy():
    probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    labels = np.array([2, 1])
    assert evaluation.top_k_accuracy(probabilities, labels, 1) == 0.0
    assert evaluation.top_k_accuracy(probabilities, labels, 2) == 0.5
    assert evaluation.top_k_accuracy(probabilities, labels, 5) == 1.0
    assert evaluation.cross_entropy(probabilities, labels) == pytest.approx(-(np.log(0.3) + np.log(0.2)) / 2)


def test_curves_from_a_history(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,learning_rate,loss,main_accuracy,val_loss,val_main_accuracy\r\n"
        "1,0.01,1.0,0.5,1.1,0.4\r\n0,0.01,2.0,0.3,2.1,0.2\r\n"
    )
    columns = evaluation.read_history(history)
    np.testing.assert_array_equal(columns["epoch"], [0, 1])  # sorted by epoch
    evaluation.plot_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
