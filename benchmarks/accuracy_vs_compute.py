"""Test accuracy against training compute, one row per finished run directory.

    python benchmarks/accuracy_vs_compute.py results/recipes/* --rate 88

Reads each run's `config.json`, `metrics.json` and `history.csv`. Compute is in
epoch-equivalents (`inception_tf.tasks.budget`), so runs from different machines share
one column; `--rate` (images/s at 64x64, as a machine's probe measured it) projects the
training time there. Settings are shown where they differ from the defaults.
"""

import argparse
import json
import pathlib
import sys

from inception_tf import config as config_lib
from inception_tf.tasks import budget


def settings(config):
    """`key=value` for the settings of a run's config.json that are not the defaults,
    leaving out where it ran and how it was backed up."""
    defaults = config_lib.RunConfig().to_dict()
    skip = {"run_dir", "backup_every", "precision", "strategy", "init_from", "data_dir"}
    changed = []
    for section in ("data", "model", "train"):
        for key, value in config.get(section, {}).items():
            if key not in skip and defaults[section].get(key) != value and defaults[section].get(key) != "auto":
                changed.append(f"{key}={value}")
    return ", ".join(changed) or "defaults"


def row(run_dir, rate):
    run_dir = pathlib.Path(run_dir)
    config = json.loads((run_dir / config_lib.CONFIG_FILE).read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    size = config["data"]["image_size"]
    # Runs written before metrics.json counted them: every epoch at the configured size.
    equivalents = metrics.get("epoch_equivalents", budget.epoch_equivalents([size] * metrics["epochs"]))
    hours = budget.projected_seconds(equivalents, metrics["train_examples"], rate) / 3600
    single = metrics.get("test_single_crop_accuracy")
    return {
        "run": str(run_dir).rstrip("/"),
        "settings": settings(config),
        "epoch_equivalents": round(equivalents, 2),
        "test_accuracy": metrics["test_accuracy"],
        "test_crops": metrics.get("test_crops", 1),
        "single_crop": single if single is not None else metrics["test_accuracy"],
        "training_min": metrics["training_time_s"] / 60,
        "images_per_second": metrics.get("train_images_per_second"),
        "projected_hours": hours,
    }


def markdown(rows, rate):
    lines = [
        f"| run | settings (not the defaults) | epoch-equivalents | test accuracy | crops | single crop | "
        f"training here (min) | images/s here | projected at {rate:g} images/s (h) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["epoch_equivalents"], -r["test_accuracy"])):
        lines.append(
            f"| {r['run']} | {r['settings']} | {r['epoch_equivalents']:.2f} | {r['test_accuracy']:.4f} | "
            f"{r['test_crops']} | {r['single_crop']:.4f} | {r['training_min']:.1f} | "
            f"{r['images_per_second'] or 0:.0f} | {r['projected_hours']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="finished run directories (with metrics.json)")
    parser.add_argument("--rate", type=float, default=88.0,
                        help="images/s at 64x64 of the machine to project to (machine C's probe: 88)")
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
