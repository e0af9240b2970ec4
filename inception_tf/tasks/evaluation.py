"""Test-set metrics, the per-class table, the confusion matrix and the training curves."""

import csv
import dataclasses
import pathlib
import time

import matplotlib.ticker
import numpy as np
import tensorflow as tf

# Figures drawn without pyplot: files only, no display needed on servers and CI, and the
# caller's pyplot backend (a notebook's inline one) left as it was.
from matplotlib.figure import Figure

from inception_tf import files
from inception_tf.dataloaders import augment as augment_lib
from inception_tf.dataloaders import data as data_lib
from inception_tf.modeling import network


def test_views(dataset, crops, policy):
    """The view boxes of `crops`-view testing: BVLC's crops of 224 in 256 for ImageNet,
    else the whole image and shifts by half the training padding (`augment.test_view_boxes`)."""
    if dataset == "imagenet":
        return augment_lib.caffe_view_boxes(crops)
    return augment_lib.test_view_boxes(crops, augment_lib.AugmentConfig(policy=policy))


def predict(model, split, spec, views=None):
    """Probabilities of every head of `model` on `split`, the labels, and images/s, in
    batches of `spec` (a `data.InputSpec`; its `heads` do not matter here).

    With `views` (boxes from `augment.test_view_boxes`) each head's probabilities are
    [examples, views, classes], one row per view, and a batch of `spec.batch_size` views
    holds that many over the view count of images; else [examples, classes].
    """
    count = len(views) if views else 1
    spec = dataclasses.replace(spec, batch_size=max(1, spec.batch_size // count), heads=None, one_hot=None)
    dataset = data_lib.make_dataset(split, spec, views=views)
    image_size = spec.image_size
    heads = list(model.output_names)
    outputs = {head: [] for head in heads}
    labels = []

    @tf.function(reduce_retracing=True)
    def infer(images):
        return model(images, training=False)

    start = time.perf_counter()
    for images, batch_labels in dataset:
        if views:  # every view of the batch in one call
            images = tf.reshape(images, [-1, image_size, image_size, 3])
        result = infer(images)
        result = result if isinstance(result, (list, tuple)) else [result]
        for head, probabilities in zip(heads, result):
            probabilities = np.asarray(probabilities, np.float32)
            if views:
                probabilities = probabilities.reshape(-1, count, probabilities.shape[-1])
            outputs[head].append(probabilities)
        labels.append(batch_labels.numpy())
    elapsed = time.perf_counter() - start
    labels = np.concatenate(labels)
    return {head: np.concatenate(parts) for head, parts in outputs.items()}, labels, len(labels) / elapsed


def top_k_accuracy(probabilities, labels, k):
    k = min(k, probabilities.shape[1])
    top = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def cross_entropy(probabilities, labels):
    picked = probabilities[np.arange(len(labels)), labels]
    return float(np.mean(-np.log(np.clip(picked, 1e-7, 1.0))))


def confusion_matrix(labels, predictions, num_classes):
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_table(matrix, class_names):
    """Precision, recall, F1 and support per class, then macro and weighted averages."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    rows = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    ]
    total = int(support.sum())
    weights = support / max(total, 1)
    averages = [
        {"class": "macro avg", "precision": float(precision.mean()), "recall": float(recall.mean()),
         "f1": float(f1.mean()), "support": total},
        {"class": "weighted avg", "precision": float(precision @ weights), "recall": float(recall @ weights),
         "f1": float(f1 @ weights), "support": total},
    ]
    return rows, averages


def format_table(rows, averages, accuracy):
    """The table as scikit-learn's classification_report prints it."""
    width = max(12, *(len(r["class"]) for r in rows))

    def line(row):
        return f"{row['class']:>{width}} {row['precision']:>9.4f} {row['recall']:>9.4f} {row['f1']:>9.4f} {row['support']:>9}"

    total = averages[0]["support"]
    return "\n".join(
        [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
        + [line(row) for row in rows]
        + ["", f"{'accuracy':>{width}} {'':>9} {'':>9} {accuracy:>9.4f} {total:>9}"]
        + [line(row) for row in averages]
    )


LABELLED_CLASSES = 50  # above, the matrix is drawn without a label per class (ImageNet's 1000)


def plot_confusion_matrix(matrix, class_names, path, title="Confusion matrix"):
    labelled = len(class_names) <= LABELLED_CLASSES
    size = max(6.0, 0.6 * len(class_names) + 2) if labelled else 12.0
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.subplots()
    shown = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    if labelled:
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right")
        ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if len(class_names) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    _save_figure(fig, path)


MISTAKES_SHOWN = 16  # a 4x4 grid


def draw_mistakes(images, true, predicted, scores, class_names, path, title="Most confident mistakes"):
    """The images the model got wrong with the highest confidence, with true and predicted
    names; a figure of the same size says so when there are none."""
    fig = Figure(figsize=(8, 9))
    axes = fig.subplots(4, 4).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, t, p, score in zip(axes, images, true, predicted, scores):
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        ax.set_title(f"true: {class_names[t]}\npredicted: {class_names[p]} ({score:.2f})", fontsize=8)
    if not len(images):
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    fig.suptitle(title)
    fig.tight_layout()
    _save_figure(fig, path)


def most_confident_mistakes(probabilities, labels, count=MISTAKES_SHOWN):
    """`(indices, wrong)`: the examples predicted wrongly, the most confident first (at
    most `count`), and how many were wrong."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count], len(wrong)


def plot_mistakes(split, probabilities, labels, class_names, path, split_name):
    """The most confident mistakes on `split` (`most_confident_mistakes`), drawn into `path`."""
    shown, wrong = most_confident_mistakes(probabilities, labels)
    predicted = probabilities[shown].argmax(axis=1)
    draw_mistakes(
        data_lib.images_at(split, shown), labels[shown], predicted, probabilities[shown, predicted],
        class_names, path, title=f"The {len(shown)} most confident of {wrong} mistakes, {split_name} split",
    )


def _save_figure(fig, path):
    with files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)


def read_history(path):
    """history.csv as {column: np.array}, sorted by epoch."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    rows.sort(key=lambda row: int(row["epoch"]))
    columns = {}
    for key in rows[0]:
        try:
            columns[key] = np.array([float(row[key]) for row in rows])
        except (TypeError, ValueError):
            continue
    return columns


def plot_curves(history_path, path):
    """Loss and accuracy per epoch, train and validation, main and aux heads, and the
    learning rate."""
    history = read_history(history_path)
    if not history:
        raise ValueError(f"No epochs in {history_path}")
    epochs = history["epoch"] + 1
    fig = Figure(figsize=(16, 4.5))
    axes = fig.subplots(1, 3)
    panels = (
        (axes[0], "loss", ["loss", "main_loss", "aux1_loss", "aux2_loss"]),
        (axes[1], "accuracy", ["main_accuracy", "aux1_accuracy", "aux2_accuracy", "accuracy"]),
    )
    for ax, title, keys in panels:
        for key in keys:
            if key not in history:
                continue
            label = {"loss": "total (main + 0.3 aux)"}.get(key, key.replace("_" + title, "") or title)
            line = ax.plot(epochs, history[key], "-", label=f"{label} train")[0]
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], "--", color=line.get_color(), label=f"{label} val")
        ax.set_title(title)
        ax.legend(fontsize=8)
    if "learning_rate" in history:
        axes[2].plot(epochs, history["learning_rate"], "-o", markersize=3)
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def evaluate(model, split, class_names, spec, out_dir, split_name="test", views=None):
    """Metrics of `model` on `split`, in batches of `spec` (a `data.InputSpec`: the
    model's input side and convention); writes `confusion_matrix.png` and `mistakes.png`
    (the most confident mistakes) into `out_dir`.

    With `views` (multi-crop testing, `augment.test_view_boxes`), each head's softmax is
    averaged over the views, as the paper does; with more than one, the whole-image view
    alone is reported beside it as `{split}_single_crop_accuracy`. None is the whole
    image, as one view is.

    Returns a dict: `{split}_accuracy`, `{split}_top5_accuracy`, `{split}_loss` (the main
    head's cross-entropy), each aux head's accuracy, the number of crops, images/s, the
    per-class table, and the confusion matrix.
    """
    outputs, labels, images_per_second = predict(model, split, spec, views)
    crops = len(views) if views else 1
    single = outputs
    if views:  # [examples, views, classes]: the whole image first
        single = {head: probabilities[:, 0] for head, probabilities in outputs.items()}
        outputs = {head: probabilities.mean(axis=1) for head, probabilities in outputs.items()}
    heads = list(outputs)
    main_head = network.main_head(heads)
    main = outputs[main_head]
    predictions = main.argmax(axis=1)
    accuracy = float(np.mean(predictions == labels))
    matrix = confusion_matrix(labels, predictions, len(class_names))
    rows, averages = per_class_table(matrix, class_names)
    metrics = {
        f"{split_name}_accuracy": accuracy,
        f"{split_name}_top5_accuracy": top_k_accuracy(main, labels, 5),
        f"{split_name}_loss": cross_entropy(main, labels),
        f"{split_name}_examples": int(len(labels)),
        f"{split_name}_crops": crops,
        "eval_images_per_second": images_per_second,
    }
    if crops > 1:
        metrics[f"{split_name}_single_crop_accuracy"] = float(np.mean(single[main_head].argmax(axis=1) == labels))
    for head in heads:
        if head != main_head:
            metrics[f"{split_name}_{head}_accuracy"] = float(np.mean(outputs[head].argmax(axis=1) == labels))
    metrics["per_class"] = rows + averages
    metrics["confusion_matrix"] = matrix.tolist()
    metrics["report"] = format_table(rows, averages, accuracy)
    plot_confusion_matrix(
        matrix, class_names, pathlib.Path(out_dir) / "confusion_matrix.png",
        title=f"Confusion matrix, {split_name} split ({len(labels)} images), accuracy {accuracy:.4f}",
    )
    plot_mistakes(split, main, labels, class_names, pathlib.Path(out_dir) / "mistakes.png", split_name)
    return metrics
