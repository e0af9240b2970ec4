"""The ILSVRC-2012 validation set in its three layouts (`ilsvrc`), written small by the
test: the same images get the same BVLC labels, and `evaluate --dataset imagenet` the
same top-1 and top-5 and per-class rows keyed by WordNet ID, whatever the layout."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from inception_tf import GoogLeNet, cli
from inception_tf.dataloaders import catalog, data, ilsvrc, sources
from inception_tf.modeling import imagenet, model_files

WNIDS = [wnid for wnid, _ in imagenet.class_index()]
# Image number -> BVLC class: three classes, two images each.
LABELS = {1: 999, 2: 5, 3: 600, 4: 5, 5: 999, 6: 600}
# The devkit numbers classes otherwise: ILSVRC2012_ID k names WNIDS[DEVKIT_ORDER[k - 1]].
DEVKIT_ORDER = np.random.default_rng(0).permutation(1000)


def _name(number):
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def _write_image(path, number):
    """Any size; number 2 grayscale and number 3 CMYK, as ImageNet has a few of each."""
    rng = np.random.default_rng(number)
    size = (40 + 7 * number, 64 - 3 * number)
    if number == 3:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).convert("CMYK").save(path, "JPEG")
    else:
        cv2.imwrite(str(path), rng.integers(0, 255, size if number == 2 else (*size, 3), dtype=np.uint8))


def _flat(root):
    images = root / "val"
    images.mkdir(parents=True)
    for number in LABELS:
        _write_image(images / _name(number), number)
    return images


def by_wnid_folders(root):
    for number, label in LABELS.items():
        folder = root / "val" / WNIDS[label]
        folder.mkdir(parents=True, exist_ok=True)
        _write_image(folder / _name(number), number)
    return root / "val"


def flat_with_caffe_labels(root):
    images = _flat(root)
    # Caffe's file lists all 50,000; the folder holds some of them.
    lines = [f"{_name(n)} {LABELS.get(n, 0)}" for n in range(1, 9)]
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return images


def flat_with_devkit_labels(root):
    images = _flat(root)
    data_dir = root / ilsvrc.DEVKIT_DATA
    data_dir.mkdir(parents=True)
    devkit_id = {int(bvlc): position + 1 for position, bvlc in enumerate(DEVKIT_ORDER)}
    truth = [devkit_id[LABELS.get(n, 0)] for n in range(1, 9)]
    (data_dir / ilsvrc.GROUND_TRUTH).write_text("".join(f"{i}\n" for i in truth))
    # 1000 leaf synsets in the devkit's order, and a few inner ones (IDs above 1000).
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.zeros(1003, dtype=fields)
    for position, bvlc in enumerate(DEVKIT_ORDER):
        synsets[position] = (position + 1, WNIDS[bvlc], imagenet.class_names()[bvlc], 0)
    for extra in range(3):
        synsets[1000 + extra] = (1001 + extra, f"n0999999{extra}", "inner", 2)
    savemat(str(data_dir / ilsvrc.META), {"synsets": synsets})
    return images


LAYOUTS = [by_wnid_folders, flat_with_caffe_labels, flat_with_devkit_labels]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_labels_the_images_in_bvlcs_order(tmp_path, layout):
    source = catalog.load_source("imagenet", data_dir=str(layout(tmp_path)))
    split = source.splits["validation"]
    assert source.num_classes == 1000 and source.class_names[LABELS[1]] == WNIDS[999]
    got = {int(ilsvrc.IMAGE_NUMBER.search(path).group(1)): int(label) for path, label in zip(split.files, split.labels)}
    assert got == LABELS
    images = data.images_at(split, range(split.size))
    assert all(image.ndim == 3 and image.shape[2] == 3 for image in images)  # grayscale and CMYK made RGB


@pytest.fixture(scope="module")
def imagenet_model(tmp_path_factory):
    """A small model with ImageNet's 1000 classes and BVLC's input convention."""
    model = GoogLeNet(num_classes=1000, input_shape=(64, 64, 3), variant="bn", aux_heads=False)
    path = tmp_path_factory.mktemp("model") / "imagenet64.keras"
    return model_files.save_keras(model, path, imagenet.class_names(), preprocessing="caffe")


def test_evaluate_gives_the_same_figures_in_every_layout(tmp_path, imagenet_model):
    reports = []
    for layout in LAYOUTS:
        root = tmp_path / layout.__name__
        out = root / "report"
        assert cli.main(["evaluate", "--model", str(imagenet_model), "--dataset", "imagenet",
                         "--data-dir", str(layout(root)), "--test-crops", "10", "--out", str(out)]) == 0
        reports.append(json.loads((out / "metrics.json").read_text()))
    first = reports[0]
    assert first["evaluated_split"] == "validation" and first["validation_examples"] == len(LABELS)
    for report in reports[1:]:
        assert report["validation_accuracy"] == first["validation_accuracy"]
        assert report["validation_top5_accuracy"] == first["validation_top5_accuracy"]
        assert report["per_class"] == first["per_class"]
    rows = {row["class"]: row for row in first["per_class"]}
    assert {wnid for wnid, row in rows.items() if row.get("support")} >= {WNIDS[999], WNIDS[5], WNIDS[600]}
    assert rows[WNIDS[5]]["support"] == 2 and rows[WNIDS[0]]["support"] == 0


def test_bvlc_crops_are_the_centre_and_corners_of_256_with_mirrors():
    from inception_tf.dataloaders import augment

    (centre,) = augment.caffe_view_boxes(1)
    np.testing.assert_allclose(centre, (16 / 256, 16 / 256, 240 / 256, 240 / 256))
    boxes = augment.caffe_view_boxes(10)
    assert len(boxes) == 10 and len(set(boxes)) == 10
    assert (0.0, 0.0, 224 / 256, 224 / 256) in boxes and (0.0, 224 / 256, 224 / 256, 0.0) in boxes  # a corner, mirrored


def test_a_folder_without_labels_says_what_it_looked_for(tmp_path):
    with pytest.raises(sources.DataNotFoundError, match="no WordNet-ID folders, and no val.txt"):
        catalog.load_source("imagenet", data_dir=str(_flat(tmp_path)))
