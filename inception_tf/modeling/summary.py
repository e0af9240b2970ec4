"""Per-stage parameters and multiply-accumulates, beside the paper's Table 1."""

import dataclasses

import keras

# Paper Table 1, "params" (K = 1024) and "ops" (M = 10^6) columns, as printed.
PAPER_TABLE_1 = {
    "conv1": ("2.7K", 34e6),
    "conv2": ("112K", 360e6),
    "inception_3a": ("159K", 128e6),
    "inception_3b": ("380K", 304e6),
    "inception_4a": ("364K", 73e6),
    "inception_4b": ("437K", 88e6),
    "inception_4c": ("463K", 100e6),
    "inception_4d": ("580K", 119e6),
    "inception_4e": ("840K", 170e6),
    "inception_5a": ("1072K", 54e6),
    "inception_5b": ("1388K", 71e6),
    "main": ("1000K", 1e6),
}
PAPER_IMAGE_SIZE = 224


@dataclasses.dataclass
class Stage:
    name: str
    output_shape: tuple
    params: int
    macs: int


def stage_of(layer_name):
    """The stage a layer belongs to: `inception_4a_3x3_conv` -> `inception_4a`,
    `conv2_reduce_conv` -> `conv2`, `aux1_fc` -> `aux1`."""
    parts = layer_name.split("_")
    if parts[0] == "inception" and len(parts) > 1:
        return "_".join(parts[:2])
    return parts[0]


def layer_macs(layer):
    """Multiply-accumulates of one layer for one image: convolutions and dense layers.

    Pools, normalizations and activations are left out, as in the paper's ops column.
    """
    if isinstance(layer, keras.layers.Conv2D):
        _, out_h, out_w, out_c = layer.output.shape
        in_c = layer.input.shape[-1]
        kh, kw = layer.kernel_size
        return out_h * out_w * out_c * kh * kw * in_c // layer.groups
    if isinstance(layer, keras.layers.Dense):
        positions = 1
        for dim in layer.input.shape[1:-1]:
            positions *= dim
        return positions * layer.input.shape[-1] * layer.units
    return 0


def profile(model):
    """Stages of `model` in order of first appearance, with their totals."""
    stages = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = stage_of(layer.name)
        stage = stages.setdefault(name, Stage(name, None, 0, 0))
        stage.output_shape = tuple(layer.output.shape[1:])
        stage.params += layer.count_params()
        stage.macs += layer_macs(layer)
    return list(stages.values())


def _human(count):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f}{unit}"
    return str(count)


def format_profile(stages, title, paper=False):
    """A text table of `stages`; `paper=True` adds Table 1's columns and our deviation."""
    header = f"{'stage':<14} {'output shape':<16} {'params':>12} {'MACs':>10}"
    if paper:
        header += f" {'paper params':>13} {'paper ops':>10} {'ops diff':>9}"
    lines = [title, header, "-" * len(header)]
    for stage in stages:
        shape = "x".join(str(d) for d in stage.output_shape)
        line = f"{stage.name:<14} {shape:<16} {stage.params:>12,} {_human(stage.macs):>10}"
        if paper and stage.name in PAPER_TABLE_1:
            paper_params, paper_ops = PAPER_TABLE_1[stage.name]
            diff = (stage.macs - paper_ops) / paper_ops
            line += f" {paper_params:>13} {_human(paper_ops):>10} {diff:>+9.1%}"
        lines.append(line)
    lines.append("-" * len(header))
    params = sum(s.params for s in stages)
    macs = sum(s.macs for s in stages)
    lines.append(f"{'total':<14} {'':<16} {params:>12,} {_human(macs):>10}")
    return "\n".join(lines)
