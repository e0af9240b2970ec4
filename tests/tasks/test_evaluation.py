import numpy as np
import pytest

from inception_tf.tasks import evaluation


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


def test_the_most_confident_mistakes_come_first():
    labels = np.array([0, 1, 2, 0, 1])
    probabilities = np.array([
        [0.9, 0.1, 0.0],  # right
        [0.6, 0.3, 0.1],  # wrong, 0.6
        [0.05, 0.9, 0.05],  # wrong, 0.9
        [0.2, 0.7, 0.1],  # wrong, 0.7
        [0.1, 0.8, 0.1],  # right
    ])
    shown, wrong = evaluation.most_confident_mistakes(probabilities, labels, count=2)
    assert shown.tolist() == [2, 3] and wrong == 3


@pytest.mark.parametrize("kind", ["arrays", "files", "records"])
def test_images_at_reads_the_images_of_the_evaluation_order(kind, tmp_path):
    from inception_tf.dataloaders import catalog, data

    from fake_data import write_image_folder, write_tfrecords

    if kind == "arrays":
        labels = np.arange(6) % 3
        source = catalog.load_source("mnist", data_dir=str(_mnist(tmp_path, labels)))
    elif kind == "files":
        write_image_folder(tmp_path / "images", per_class=2)
        source = catalog.load_source("folder", data_dir=str(tmp_path / "images"), validation_split=0.5)
    else:
        write_tfrecords(tmp_path / "records", np.arange(6) % 3, prefix="train")
        write_tfrecords(tmp_path / "records", np.arange(4) % 3, prefix="test")
        source = catalog.load_source("tfrecord", data_dir=str(tmp_path / "records"))
    split = source.splits["test" if "test" in source.splits else "validation"]
    every = [image.numpy() for image, _ in data._ordered_examples(split)] if kind != "arrays" else list(split.images)
    indices = [len(every) - 1, 0]
    for got, index in zip(data.images_at(split, indices), indices):
        np.testing.assert_array_equal(got, every[index])


def _mnist(tmp_path, labels):
    from fake_data import write_mnist_npz

    write_mnist_npz(tmp_path / "mnist.npz", labels, labels)
    return tmp_path


def test_mistakes_figure_has_its_size_with_or_without_mistakes(tmp_path):
    from PIL import Image

    images = [np.full((28, 28, 1), 40 * i, np.uint8) for i in range(3)]
    evaluation.draw_mistakes(images, [0, 1, 2], [1, 2, 0], [0.9, 0.8, 0.7], ["a", "b", "c"], tmp_path / "m.png")
    evaluation.draw_mistakes([], [], [], [], ["a", "b", "c"], tmp_path / "none.png")
    assert Image.open(tmp_path / "m.png").size == Image.open(tmp_path / "none.png").size == (880, 990)
