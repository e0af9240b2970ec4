"""Command line: `python -m inception_tf SUBCOMMAND ...` and the `inception-tf` script."""

import argparse
import os
import sys

# TensorFlow's C++ start-up chatter hides the program's own output; TF_CPP_MIN_LOG_LEVEL
# set by the user still wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from inception_tf import model as model_lib  # noqa: E402


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
    parser.add_argument("--variant", choices=model_lib.VARIANTS, default="paper")
    parser.add_argument("--image-size", type=_positive_int, default=224)
    parser.add_argument("--num-classes", type=_positive_int, default=1000)
    parser.add_argument(
        "--no-aux-heads", dest="aux_heads", action="store_false", help="leave out the two aux heads"
    )
    parser.set_defaults(handler=_run_summary)


def _run_summary(args):
    from inception_tf import summary

    model = model_lib.GoogLeNet(
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="inception_tf", description="GoogLeNet (Inception v1) in Keras 3 on TensorFlow."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_summary(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
