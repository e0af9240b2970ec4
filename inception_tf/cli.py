"""Command line: `python -m inception_tf SUBCOMMAND ...` and the `inception-tf` script."""

import argparse
import contextlib
import dataclasses
import os
import sys

from inception_tf import choices, files
from inception_tf.modeling.weights import DownloadError
from inception_tf.serving.litert import LiteRTMissing


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_summary(subparsers):
    parser = subparsers.add_parser(
        "summary",
        help="per-stage output shapes, parameters and multiply-accumulates",
        description="Per-stage output shape, parameters and multiply-accumulates (MACs) "
        "of GoogLeNet, with the paper's Table 1 beside them at 224x224.",
    )
    parser.add_argument("--variant", choices=choices.VARIANTS, default="paper")
    parser.add_argument("--image-size", type=_positive_int, default=224)
    parser.add_argument("--num-classes", type=_positive_int, default=1000)
    parser.add_argument(
        "--no-aux-heads", dest="aux_heads", action="store_false", help="leave out the two aux heads"
    )
    parser.set_defaults(handler=_run_summary)


def _run_summary(args):
    from inception_tf.modeling import network
    from inception_tf.modeling import summary

    model = network.GoogLeNet(
        num_classes=args.num_classes,
        input_shape=(args.image_size, args.image_size, 3),
        variant=args.variant,
        aux_heads=args.aux_heads,
    )
    title = (
        f"GoogLeNet variant={args.variant} input={args.image_size}x{args.image_size}x3 "
        f"classes={args.num_classes} aux_heads={args.aux_heads}"
    )
    paper = args.image_size == summary.PAPER_IMAGE_SIZE
    print(summary.format_profile(summary.profile(model), title, paper=paper))
    return 0


def _add_train(subparsers, prog=None):
    from inception_tf import config

    parser = subparsers.add_parser(
        "train",
        **({"prog": prog} if prog else {}),
        help="train, evaluate, report and export in one run directory",
        description="Train GoogLeNet, evaluate it on the test split, write plots and reports, and export "
        "a SavedModel, all into one run directory. Flags not given come from --config, then --preset, "
        "then the defaults (Fashion-MNIST).",
        epilog="Stopping: SIGTERM or Ctrl-C during training finishes the current step, backs up the run "
        "(weights, optimizer, data position) and exits with 75; the same command resumes at that step. "
        "The grace period needed is one training step and one backup write; a second signal stops at once, "
        "keeping the last complete backup. Before training starts (a first run's measurements, loading "
        "the data) a signal ends the command at once, with 143 for SIGTERM and 130 for Ctrl-C: nothing is "
        "stored half, no probe process is left, and the same command starts again. Exit codes: 0 done, "
        "1 disk full, out of memory or a failed download, 2 bad input, 3 diverged, 75 stopped by a signal during training "
        "(resumable), 130 or 143 stopped before training.",
    )
    for title, section in (("data", "data"), ("model", "model"), ("training", "train")):
        group = parser.add_argument_group(title)
        for field in config.fields(config.SECTIONS[section]):
            _add_flag(group, field)
        if section == "model":
            _add_flag(group, _field(config.RunConfig, "init_from"))
    group = parser.add_argument_group("run")
    _add_flag(group, _field(config.RunConfig, "run_dir"))
    group.add_argument("--config", help="a config.json to run again (flags given here override it)")
    group.add_argument("--preset", choices=sorted(config.PRESETS), help="quick: a few minutes on 2 CPU cores; laptop: about an hour of training on 2 cores; paper: the paper's recipe")
    group.add_argument("--overwrite", action="store_true", help="replace what the run directory holds")
    parser.set_defaults(handler=_run_train)


def _field(cls, name):
    return next(field for field in dataclasses.fields(cls) if field.name == name)


def _add_flag(group, field):
    """The flag of a configuration field, from its `config.option` metadata. Its default
    is None, "not given": `config_from_args` then keeps what --config, --preset or the
    defaults say."""
    rules = field.metadata
    flag = rules["flag"] or "--" + field.name.replace("_", "-")
    help_text = rules["help"]
    if rules["show_default"] and "{default}" not in help_text:
        help_text = f"{help_text}, default: {{default}}" if help_text else "default: {default}"
    kwargs = dict(dest=field.name, default=None, help=help_text.format(default=field.default))
    if field.type is bool:
        kwargs["action"] = "store_false" if flag.startswith("--no-") else "store_true"
    else:
        kwargs["type"] = _positive_int if rules["positive"] else field.type
        if rules["choices"] is not None:
            kwargs["choices"] = rules["choices"]
    if rules["metavar"]:
        kwargs["metavar"] = rules["metavar"]
    group.add_argument(flag, **kwargs)


def config_from_args(args):
    """The defaults, then the preset over them, then --config over both, then the flags given."""
    from inception_tf import config

    run_config = config.RunConfig()
    if args.preset:
        run_config = run_config.replace(**config.PRESETS[args.preset])
    if args.config:
        run_config = run_config.replace(**config.read_overrides(args.config))
    given = {}
    for section, cls in [("", config.RunConfig), *((f"{name}.", cls) for name, cls in config.SECTIONS.items())]:
        for field in config.fields(cls):
            if getattr(args, field.name) is not None:
                given[section + field.name] = getattr(args, field.name)
    run_config = run_config.replace(**given)
    # Resolved once, here: the lock, the run and the messages read the same directory.
    return run_config.replace(run_dir=run_config.resolved_run_dir()).validate()


def _run_train(args):
    from inception_tf.tasks import experiment, preemption, task

    run_config = args.run_config  # resolved before TensorFlow loaded (`_load_tensorflow`)
    try:
        experiment.run(run_config, overwrite=args.overwrite)
    except task.TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except experiment.RunDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (files.DiskFull, experiment.OutOfMemory) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except preemption.Preempted as error:
        print(f"\n{error}", file=sys.stderr)
        return preemption.EXIT_CODE
    except KeyboardInterrupt:  # outside training, where nothing is lost
        print(f"\nInterrupted. Run the same command again to resume {run_config.run_dir}.", file=sys.stderr)
        return 130
    return 0


def _add_evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained model: metrics.json, per-class table, confusion matrix",
        description="Evaluate a .keras model on a data set split and write the same report as a training run.",
    )
    parser.add_argument("--model", required=True, help="a .keras model (e.g. RUN_DIR/model.keras), or imagenet (BVLC's weights)")
    parser.add_argument("--dataset", choices=choices.EVALUATION_SOURCES, default="fashion_mnist",
                        help="imagenet: the ILSVRC-2012 validation images in --data-dir (see the README)")
    parser.add_argument("--data-dir")
    parser.add_argument("--split", choices=("test", "validation", "train"), help="default: test, else validation")
    parser.add_argument("--validation-split", type=float, default=0.0, help="needed for --split validation on data sets without one")
    parser.add_argument("--limit", type=_positive_int)
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--test-crops", type=int, choices=choices.TEST_CROPS, help="crops per image, softmax averaged (10: corners, centre, mirrors), default: the run's config.json beside --model, else 1")
    parser.add_argument("--augment", choices=choices.AUGMENT_POLICIES, help="the training policy the 10 crops follow, default: the run's config.json beside --model, else the data set's")
    parser.add_argument("--out", help="report folder, default: MODEL_DIR/evaluation-DATASET-SPLIT")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args):
    import json
    import pathlib

    import keras

    from inception_tf import config
    from inception_tf.dataloaders import data
    from inception_tf.modeling import convert, imagenet, model_files
    from inception_tf.tasks import task

    # A report on BVLC's weights goes to the working folder, not into Keras's cache.
    folder = pathlib.Path(".") if args.model == imagenet.WEIGHTS else pathlib.Path(args.model).parent
    args.model = convert.resolve(args.model)

    run_data = config.data_beside(args.model)  # what the run beside the model did, unless the flags say otherwise
    policy = args.augment or run_data.get("augment")
    if policy not in choices.AUGMENT_POLICIES:
        policy = config.RunConfig().replace(**{"data.dataset": args.dataset}).resolved_augment()
    data_config = config.DataConfig(  # tested as a run tests (ImageNet: as BVLC did)
        dataset=args.dataset, data_dir=args.data_dir, validation_split=args.validation_split, limit=args.limit,
        augment=policy, test_crops=args.test_crops or run_data.get("test_crops") or 1,
    )
    source = task.open_source(data_config, log=lambda line: None)
    args.split = args.split or ("test" if "test" in source.splits else "validation")
    if args.split not in source.splits:
        raise ValueError(f"{args.dataset} has no {args.split} split here: {sorted(source.splits)}. Received: split={args.split!r}")
    model = keras.models.load_model(args.model, compile=False)
    classes = model.outputs[0].shape[-1]
    if classes != source.num_classes:
        raise ValueError(
            f"The model has {classes} classes and {args.dataset} has {source.num_classes}. Received: model={args.model!r}"
        )
    out = pathlib.Path(args.out or folder / f"evaluation-{args.dataset}-{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    spec = data.InputSpec(model.inputs[0].shape[1], args.batch_size, preprocessing=model_files.read_info(args.model).preprocessing)
    metrics = task.evaluate_split(model, source, args.split, data_config, spec, out)
    metrics.update(evaluated_split=args.split, dataset=args.dataset, model=str(args.model))
    files.write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(metrics["report"])
    accuracy, top5 = metrics[f"{args.split}_accuracy"], metrics[f"{args.split}_top5_accuracy"]
    print(f"{args.split} accuracy {accuracy:.4f}, top-5 {top5:.4f}; report in {out}")
    return 0


def _add_export(subparsers):
    from inception_tf.serving import litert

    parser = subparsers.add_parser(
        "export",
        help="export a .keras model as a SavedModel (and LiteRT files) that serve without this package",
        description="Write the inference SavedModel (main head, float32, uint8 images of any size in) and, with "
        "--tflite, LiteRT flatbuffers of it on preprocessed input beside it (OUT-float32.tflite, ...).",
    )
    parser.add_argument("--model", required=True, help="a .keras model, or imagenet (BVLC's weights)")
    parser.add_argument("--out", required=True, help="the SavedModel folder to write (new, empty, or an earlier export)")
    parser.add_argument("--overwrite", action="store_true", help="into a folder of other files too: replace only the export's")
    parser.add_argument("--labels", help="class names, one per line (default: those saved with the model)")
    parser.add_argument("--top-k", type=_positive_int, default=5, metavar="K", help="classes serving_default ranks, default: 5")
    parser.add_argument("--tflite", nargs="+", choices=choices.LITERT_QUANTIZATIONS, metavar="{" + ",".join(choices.LITERT_QUANTIZATIONS) + "}",
                        help="LiteRT files to write beside the SavedModel; int8 is full-integer, calibrated on training images")
    group = parser.add_argument_group("int8 calibration (default: the data set of the run's config.json beside --model)")
    group.add_argument("--dataset", choices=choices.SOURCES)
    group.add_argument("--data-dir")
    group.add_argument("--calibration-images", type=_positive_int, default=litert.CALIBRATION_IMAGES, metavar="N",
                       help=f"training images to calibrate on, default: {litert.CALIBRATION_IMAGES}")
    parser.set_defaults(handler=_run_export)


def _calibration_source(args):
    """`(dataset, data_dir)` of the int8 calibration images: the flags', else the run's."""
    from inception_tf import config

    run_data = config.data_beside(args.model)
    dataset = args.dataset or run_data.get("dataset")
    if dataset is None:
        raise ValueError(
            "int8 calibration needs training images: name their data set with --dataset (and --data-dir), or "
            f"export the model.keras of a run directory, whose config.json names it. Received: model={args.model!r}"
        )
    return dataset, args.data_dir if args.dataset else run_data.get("data_dir")


def _calibration(source, count, image_size, preprocessing):
    """int8's calibration inputs from `source` (`_calibration_source`), and a line saying
    what they are."""
    from inception_tf.dataloaders import catalog, data

    dataset, data_dir = source
    split = catalog.load_source(dataset, data_dir=data_dir).splits["train"]
    inputs = data.calibration_inputs(split, image_size, count, preprocessing)
    return inputs, f"{len(inputs)} images of the {dataset} training split"


def _run_export(args):
    import keras

    from inception_tf.modeling import convert, model_files
    from inception_tf.serving import export, litert

    export.check_target(args.out, args.overwrite)  # before the model loads
    args.model = convert.resolve(args.model)
    # A missing data set fails before the model loads.
    source = _calibration_source(args) if "int8" in (args.tflite or ()) else None
    model = keras.models.load_model(args.model, compile=False)
    info = model_files.read_info(args.model)
    if args.labels:
        with open(args.labels) as f:
            info.class_names = model_files.parse_labels(f.read())
    calibration = described = None
    if source is not None:
        calibration, described = _calibration(source, args.calibration_images, model.inputs[0].shape[1], info.preprocessing)
    path = export.export_saved_model(
        model, args.out, info.class_names, top_k=args.top_k, preprocessing=info.preprocessing, overwrite=args.overwrite
    )
    print(f"SavedModel written to {path}")
    for quantization in dict.fromkeys(args.tflite or ()):
        written = litert.write_tflite(
            path, litert.tflite_path(path, quantization), quantization, calibration=calibration,
            class_names=info.class_names, preprocessing=info.preprocessing, calibrated_on=described,
        )
        print(f"LiteRT {quantization} written to {written} ({written.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _add_predict(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="top-5 classes of image files, in batches; Grad-CAM overlays",
        description="Classify image files (any format OpenCV reads) with a SavedModel, a .keras or a .tflite model.",
    )
    parser.add_argument("--model", required=True, help="a SavedModel folder, a .keras file, a .tflite file, or imagenet (BVLC's weights)")
    parser.add_argument("images", nargs="+", help="image files or folders of them")
    parser.add_argument("--top-k", type=_positive_int, default=5, metavar="K", help="classes per image, default: 5")
    parser.add_argument("--batch-size", type=_positive_int, default=32, metavar="N", help="images per model call, default: 32")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--output", metavar="FILE", help="write the predictions to FILE.csv or FILE.jsonl instead")
    parser.add_argument("--explain", metavar="DIR", help="write a Grad-CAM overlay PNG per image into DIR (.keras models)")
    parser.set_defaults(handler=_run_predict)


def _run_predict(args):
    from inception_tf.modeling import convert
    from inception_tf.serving import predict

    return predict.main(
        convert.resolve(args.model), args.images, top_k=args.top_k, as_json=args.json, batch_size=args.batch_size,
        output=args.output, explain=args.explain,
    )


def _add_convert(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="BVLC's Caffe GoogLeNet weights -> a .keras model (ImageNet, 1000 classes)",
        description="Read bvlc_googlenet.caffemodel (Caffe's model zoo) into the paper variant, main and aux "
        "heads, and save it as a .keras model that carries its class names and 'caffe' preprocessing.",
    )
    parser.add_argument("--caffemodel", required=True, help="bvlc_googlenet.caffemodel")
    parser.add_argument("--prototxt", help="its deploy.prototxt, checked against the layout expected")
    parser.add_argument("--out", required=True, help="the .keras file to write")
    parser.add_argument("--image-size", type=_positive_int, default=224, help="model input side, default: 224 (BVLC's)")
    parser.set_defaults(handler=_run_convert)


def _run_convert(args):
    from inception_tf.modeling import convert

    convert.convert_caffemodel(args.caffemodel, args.out, prototxt=args.prototxt, image_size=args.image_size)
    return 0


def _add_serve(subparsers):
    from inception_tf.serving import server

    parser = subparsers.add_parser(
        "serve",
        help="TensorFlow Serving's REST API for a model, with batching, and a page to try it",
        description="Serve MODEL over TensorFlow Serving's REST API (POST /v1/models/NAME:predict, GET /v1/models/NAME "
        "and .../metadata), joining concurrent requests into one model call, with a page at / that classifies the "
        "images dropped on it. The first line printed is the page's URL. SIGTERM or Ctrl-C finishes the requests in "
        "flight and exits 0. Exit codes: 0 stopped, 2 a model that cannot be loaded or a port that cannot be opened.",
    )
    parser.add_argument("model", metavar="MODEL", help="a SavedModel folder, a run directory, a .keras file, numbered "
                        "version folders (TensorFlow Serving's model base path), or imagenet (BVLC's weights)")
    parser.add_argument("--port", type=int, default=server.DEFAULT_PORT,
                        help=f"TensorFlow Serving's --rest_api_port; 0 picks a free one; default: {server.DEFAULT_PORT}")
    parser.add_argument("--host", default=server.DEFAULT_HOST, help=f"address to bind, default: {server.DEFAULT_HOST} (this machine only)")
    parser.add_argument("--model-name", metavar="NAME", help="the NAME in the URLs, default: the model's own (its run directory's or folder's name)")
    parser.add_argument("--no-batching", dest="batching", action="store_false",
                        help="one model call per request, as TensorFlow Serving without --enable_batching")
    parser.add_argument("--max-batch-size", type=_positive_int, default=server.DEFAULT_MAX_BATCH_SIZE, metavar="N",
                        help=f"most rows in one joined model call, default: {server.DEFAULT_MAX_BATCH_SIZE}")
    parser.add_argument("--batch-timeout-ms", type=float, default=server.DEFAULT_BATCH_TIMEOUT_MS, metavar="MS",
                        help=f"longest wait for a batch to fill, default: {server.DEFAULT_BATCH_TIMEOUT_MS:g}")
    parser.add_argument("--max-request-bytes", type=_positive_int, default=server.DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                        help=f"larger request bodies are refused (413) unread, default: {server.DEFAULT_MAX_REQUEST_BYTES}")
    parser.set_defaults(handler=_run_serve)


def _run_serve(args):
    from inception_tf.serving import server

    flags = {field.name: getattr(args, field.name) for field in dataclasses.fields(server.ServeOptions)}
    return server.serve(server.ServeOptions(**flags))


def build_parser(train_prog=None):
    """The command line; `train_prog` names the train command in its usage line when it
    runs as `train.py` or `inception-tf-train`."""
    parser = argparse.ArgumentParser(
        prog="inception_tf", description="GoogLeNet (Inception v1) in Keras 3 on TensorFlow."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(subparsers, prog=train_prog)
    _add_evaluate(subparsers)
    _add_export(subparsers)
    _add_predict(subparsers)
    _add_serve(subparsers)
    _add_convert(subparsers)
    _add_summary(subparsers)
    return parser


def main(argv=None, train_prog=None):
    args = build_parser(train_prog).parse_args(argv)
    try:
        with contextlib.ExitStack() as held:
            _load_tensorflow(args, held)
            return args.handler(args)
    except files.LockHeld as error:
        print(f"error: {error}. Wait for it to finish, or choose another --run-dir.", file=sys.stderr)
        return 2
    except (ValueError, OSError, LiteRTMissing) as error:  # a path that cannot be read or written, too
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before training (a run's own handler takes it there)
        print("\nInterrupted: nothing was kept half-done; run the same command again.", file=sys.stderr)
        return 130


def _load_tensorflow(args, held):
    """Training takes its run directory's lock (in `held`, until the command ends), then
    chooses its runtime (`runtime.configure`, from the resolved flags): a second process on
    the run directory is refused before it loads or times anything. Every command then
    loads TensorFlow without its start-up lines."""
    from inception_tf.startup import backend, cluster, loading, runtime

    backend.check_tensorflow_backend(args.command)  # before a whole run, which would fail at its end
    if args.command == "train":
        args.run_config = config_from_args(args)
        cluster.check_tf_config()  # before the runtime's timings, which a bad cluster would waste
        if cluster.writes_run_dir(args.run_config.train.strategy):
            held.enter_context(files.exclusive_lock(args.run_config.run_dir))
    if args.command == "train" and "tensorflow" in sys.modules:
        # Called in a process that loaded TensorFlow already (a notebook, a test).
        print("runtime: as TensorFlow was loaded before this command", flush=True)
    elif args.command == "train":
        workload = args.run_config.workload(cluster.cpu_replicas(args.run_config.train.strategy))
        runtime.configure(**dataclasses.asdict(workload), precision=args.run_config.train.precision)
    else:
        loading.quiet_import_tensorflow()


def train_main(argv=None):
    """`train.py` and the `inception-tf-train` script: `inception_tf train ...`."""
    return main(["train", *(sys.argv[1:] if argv is None else argv)], train_prog=os.path.basename(sys.argv[0]))
