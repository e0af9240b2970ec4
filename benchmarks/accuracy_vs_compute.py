"""Test accuracy against training compute, one row per finished run directory.

    python benchmarks/accuracy_vs_compute.py results/recipes/*/ --rate 125

Reads each run's `config.json` and `metrics.json`. Compute is in compute-epochs
(`inception_tf.tasks.budget`), so runs from different machines share one column; `--rate`
(images/s of the default network at 64x64 on some machine) projects the training time
there. Settings are shown where they differ from the defaults.
"""

import argparse
import json
import pathlib
import sys

from inception_tf import config as config_lib
from inception_tf.tasks import budget


def settings(config):
    """The flags of `train.py` that give a run's config.json from the defaults, leaving out
    where it ran and how it was backed up."""
    defaults = config_lib.RunConfig().to_dict()
    skip = {"run_dir", "backup_every", "precision", "strategy", "init_from", "data_dir"}
    changed = []
    for section in ("data", "model", "train"):
        fields = {field.name: field for field in config_lib.fields(config_lib.SECTIONS[section])}
        for key, value in config.get(section, {}).items():
            if key in skip or defaults[section].get(key) in (value, "auto"):
                continue
            flag = fields[key].metadata["flag"] or "--" + key.replace("_", "-")
            changed.append(flag if isinstance(value, bool) else f"{flag} {value}")
    return " ".join(changed) or "defaults"


def counted(config, metrics):
    """The run's compute-epochs; for runs whose metrics.json predates them, counted again
    from the network they trained, every epoch at the configured size."""
    if "compute_epochs" in metrics:
        return metrics["compute_epochs"]
    from inception_tf import GoogLeNet

    size, model = config["data"]["image_size"], config["model"]
    network = GoogLeNet(
        num_classes=len(metrics["confusion_matrix"]), input_shape=(size, size, 3), variant=model["variant"],
        aux_heads=model["aux_heads"], weights=None,
    )
    return budget.compute_epochs([(metrics["train_examples"], budget.training_macs(network))] * metrics["epochs"])


def row(run_dir, rate):
    run_dir = pathlib.Path(run_dir)
    config = json.loads((run_dir / config_lib.CONFIG_FILE).read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    compute = counted(config, metrics)
    hours = budget.projected_seconds(compute, rate) / 3600
    single = metrics.get("test_single_crop_accuracy")
    return {
        "run": str(run_dir).rstrip("/"),
        "settings": settings(config),
        "compute_epochs": round(compute, 3),
        "test_accuracy": metrics["test_accuracy"],
        "test_crops": metrics.get("test_crops", 1),
        "single_crop": single if single is not None else metrics["test_accuracy"],
        "training_min": metrics["training_time_s"] / 60,
        "images_per_second": metrics.get("train_images_per_second"),
        "projected_hours": hours,
    }


def markdown(rows, rate):
    lines = [
        f"| run | flags (`python train.py ...`) | compute-epochs | test accuracy | crops | single crop | "
        f"training here (min) | images/s here | projected at {rate:g} images/s (h) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (round(r["compute_epochs"], 1), -r["test_accuracy"])):
        lines.append(
            f"| {r['run']} | {r['settings']} | {r['compute_epochs']:.2f} | {r['test_accuracy']:.4f} | "
            f"{r['test_crops']} | {r['single_crop']:.4f} | {r['training_min']:.1f} | "
            f"{r['images_per_second'] or 0:.0f} | {r['projected_hours']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="finished run directories (with metrics.json)")
    parser.add_argument("--rate", type=float, default=125.0,
                        help="images/s of the default network at 64x64 on the machine to project to (default: "
                        "machine C's, benchmarks/peers.py)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    finished = [d for d in args.run_dirs if (pathlib.Path(d) / "metrics.json").is_file()]
    if not finished:
        raise SystemExit(f"No finished run (with metrics.json) among the directories. Received: {args.run_dirs}")
    rows = [row(d, args.rate) for d in finished]
    print(markdown(rows, args.rate))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
