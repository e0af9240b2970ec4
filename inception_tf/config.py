"""Run configuration as dataclasses, presets, and the JSON written next to the checkpoints.

A run's configuration is resolved once (every "auto" replaced by what it chose), written
to `RUN_DIR/config.json` before training starts, and read back by `--config FILE`.
"""

import dataclasses
import json
import math
import os
import pathlib

from inception_tf import choices
from inception_tf.modeling import geometry
from inception_tf.startup import precision as precision_lib

CONFIG_FILE = "config.json"  # in every run directory


@dataclasses.dataclass(frozen=True)
class Interval:
    low: float
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = False

    def __contains__(self, value):
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self):
        return f"{'[' if self.low_closed else '('}{self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"


PROBABILITY = Interval(0, 1, high_closed=True)
FRACTION = Interval(0, 1)  # [0, 1)
NON_NEGATIVE = Interval(0)
POSITIVE = Interval(0, low_closed=False)


def option(default, help, choices=None, interval=None, positive=False, flag=None, metavar=None, show_default=True):
    """A configuration field with what its flag and `RunConfig.validate` need: one place
    for a setting's default, its allowed values and its help (`cli` builds the flags).

    choices: the allowed values; interval: an `Interval` a number must lie in (None
    passes); positive: a positive integer (None passes);
    flag: the flag's name where it is not `--field-name` (`--no-aux-heads`); metavar:
    its argument's name in the help; help: may
    place the default with `{default}`, else it is appended (unless `show_default` is
    False).
    """
    metadata = dict(help=help, choices=choices, interval=interval, positive=positive, flag=flag, metavar=metavar,
                    show_default=show_default)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class DataConfig:
    dataset: str = option("fashion_mnist", "", choices=choices.SOURCES)
    data_dir: str = option(None, "where the data set is (required for folder and tfrecord)", show_default=False)
    image_size: int = option(64, "model input side", positive=True)
    validation_split: float = option(0.1, "held-out fraction of the training split", interval=FRACTION)
    limit: int = option(
        None, "keep the first N examples of each split (quick runs)", positive=True, metavar="N",
        show_default=False,
    )
    skip_corrupt: bool = option(False, "leave unreadable image files out", show_default=False)
    augment: str = option(
        "auto", "default: auto (standard for 28-32 px data sets, paper otherwise)",
        choices=("auto",) + choices.AUGMENT_POLICIES, show_default=False,
    )
    alternate_flips: bool = option(
        False, "mirror each training image in every other epoch, not at random (in-memory data sets)",
        show_default=False,
    )
    # Zhong et al. erase with p=0.5, for runs of hundreds of epochs; a run of tens of
    # epochs has less time to fit through that much noise, so the default erases less
    # (results/default_run/README.md has the runs behind it).
    random_erasing: float = option(
        0.25, "probability of erasing a random rectangle of a training image", interval=PROBABILITY, metavar="P"
    )
    # The paper's multi-crop testing: the softmax averaged over crops and mirrors costs
    # 10x the evaluation time, and nothing in training.
    test_crops: int = option(
        10, "crops per test image, softmax averaged (10: corners, centre, mirrors)", choices=choices.TEST_CROPS
    )


@dataclasses.dataclass
class ModelConfig:
    # BatchNorm (with cosine decay, label smoothing and weight decay) is the recipe that
    # trains well in few epochs, as TF-slim and torchvision train it; `--preset paper`
    # restores the paper's.
    variant: str = option("bn", "", choices=choices.VARIANTS)
    aux_heads: bool = option(True, "train without the two aux heads", flag="--no-aux-heads", show_default=False)
    dropout_rate: float = option(0.4, "", interval=FRACTION)
    # The weights' input convention: "auto" follows the --init-from model, whose weights
    # expect its own.
    preprocessing: str = option(
        "auto",
        "input convention: tf ([-1, 1]) or caffe (BGR minus the ImageNet mean), default: auto (the --init-from model's, else tf)",
        choices=("auto",) + choices.PREPROCESSING, show_default=False,
    )


@dataclasses.dataclass
class TrainConfig:
    # A larger batch takes fewer, better-filled steps on a CPU (the rate is scaled to it);
    # results/recipes/README.md holds the runs behind the epochs and the batch.
    epochs: int = option(30, "", positive=True)
    batch_size: int = option(128, "global batch", positive=True)
    learning_rate: float = option(0.1, "initial rate", interval=POSITIVE)
    momentum: float = option(0.9, "", interval=FRACTION)
    schedule: str = option(
        "cosine", "default: {default} (paper: 4%% lower every 8 epochs; linear: to zero at the last epoch)",
        choices=choices.SCHEDULES,
    )
    label_smoothing: float = option(0.1, "", interval=FRACTION)
    # Decoupled (per step, without momentum): 5e-3 shrinks the weights as the usual
    # coupled 5e-4 does with momentum 0.9.
    weight_decay: float = option(5e-3, "decoupled weight decay", interval=NON_NEGATIVE)
    # Polyak averaging: the average of the last steps' weights is what is evaluated and
    # exported; the validation of each epoch still sees the trained weights.
    ema: float = option(
        0.0, "momentum of a moving average of the weights, updated every step, evaluated and exported as the "
        "model (0: off; 0.999 averages about the last 1,000 steps)", interval=FRACTION, metavar="M",
    )
    beta_rate: float = option(
        1.0, "BatchNorm's offsets train at this multiple of the rate", interval=POSITIVE, metavar="X"
    )
    lookahead: int = option(
        None, "Lookahead over SGD: every K steps the weights move back half way to where they were K steps "
        "before (default: off)", positive=True, metavar="K", show_default=False,
    )
    precision: str = option(
        "auto", "default: auto (the fastest here, timed once per machine and stored)", choices=("auto",) + choices.PRECISIONS,
        show_default=False,
    )
    strategy: str = option("auto", "default: auto (by GPUs and TF_CONFIG)", choices=("auto",) + choices.STRATEGIES, show_default=False)
    seed: int = option(0, "")
    # How often the state is saved changes nothing that is trained: a resumed run may
    # set it otherwise (RESUMABLE_CHANGES).
    backup_every: int = option(
        None, "back up every N training steps, default: every 10 minutes of training (and at every epoch's end)",
        positive=True, metavar="N", show_default=False,
    )


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclasses.dataclass
class RunConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    init_from: str = option(
        None, "start from the weights of a .keras model, BVLC's .caffemodel, or imagenet (BVLC's, downloaded once); "
        "classifiers fresh if the classes differ",
        show_default=False,
    )
    run_dir: str = option(None, "default: runs/DATASET-VARIANT-SIZEpx-EPOCHSep[-limitN]", show_default=False)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        sections = {}
        for field in dataclasses.fields(cls):
            if field.name in SECTIONS:
                section_cls = SECTIONS[field.name]
                section = values.pop(field.name, {}) or {}
                known = {f.name for f in dataclasses.fields(section_cls)}
                unknown = sorted(set(section) - known)
                if unknown:
                    raise ValueError(f"Unknown keys in the `{field.name}` section of the configuration: {unknown}")
                sections[field.name] = section_cls(**section)
        unknown = sorted(set(values) - {"run_dir", "init_from"})
        if unknown:
            raise ValueError(f"Unknown keys in the configuration: {unknown}")
        return cls(**sections, **values)

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def replace(self, **dotted):
        """A copy with `section.field` keys replaced, e.g. `{"train.epochs": 3}`."""
        values = self.to_dict()
        for key, value in dotted.items():
            section, _, name = key.rpartition(".")
            target = values.get(section) if section else values
            if not isinstance(target, dict) or name not in target:
                raise ValueError(f"Unknown configuration key. Received: {key!r}")
            target[name] = value
        return RunConfig.from_dict(values)

    def validate(self):
        """Every value checked before anything is built, with Keras-style messages."""
        for section in (self, self.data, self.model, self.train):
            for field in fields(section):
                _check(field, getattr(section, field.name))
        minimum = geometry.min_input_size(self.model.variant, self.model.aux_heads)
        if self.data.image_size < minimum:
            raise ValueError(f"`image_size` must be at least {minimum}. Received: image_size={self.data.image_size}")
        _check_memory(self.data.image_size)
        if self.data.alternate_flips and self.data.dataset not in choices.SMALL_IMAGE_SOURCES:
            raise ValueError(
                f"`alternate_flips` needs an in-memory data set, one of {choices.SMALL_IMAGE_SOURCES}. "
                f"Received: dataset={self.data.dataset!r}"
            )
        self._checked = self.to_json()
        return self

    def checked(self):
        """This configuration, validated: `validate()`, unless it was already, as it is now."""
        return self if getattr(self, "_checked", None) == self.to_json() else self.validate()

    def workload(self, replicas=1):
        """What the runtime and precision probes time: a training step of this model at
        the batch of one of `replicas` (which share the global batch)."""
        return precision_lib.Workload(self.model.variant, self.data.image_size, self.train.batch_size // replicas,
                                  self.model.aux_heads)

    def resolved_run_dir(self):
        """`run_dir`, else `runs/fashion_mnist-bn-64px-30ep`: the same command finds its run
        again, and a --preset quick run does not collide with the full one."""
        if self.run_dir:
            return self.run_dir
        limit = f"-limit{self.data.limit}" if self.data.limit else ""
        return f"runs/{self.data.dataset}-{self.model.variant}-{self.data.image_size}px-{self.train.epochs}ep{limit}"

    def resolved_augment(self):
        if self.data.augment != "auto":
            return self.data.augment
        return "standard" if self.data.dataset in choices.SMALL_IMAGE_SOURCES else "paper"


def data_beside(model_path):
    """The `data` section of the run's config.json in the folder of `model_path` (a run
    directory's model.keras), or {} when there is none: what the model was trained on."""
    saved = pathlib.Path(model_path).parent / CONFIG_FILE
    return json.loads(saved.read_text()).get("data", {}) if saved.is_file() else {}


def fields(section):
    """The settings of a section (or of RunConfig itself: its own, not the sections)."""
    return [field for field in dataclasses.fields(section) if field.name not in SECTIONS]


def _check_memory(image_size):
    """An input too large for this machine's memory, refused before TensorFlow tries:
    one image's first feature map alone would not fit (a batch's is checked by TensorFlow,
    and an out-of-memory error then ends the run in one line, `experiment.OutOfMemory`)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = geometry.first_map_bytes(image_size)
    if need > memory:
        raise ValueError(
            f"`image_size` {image_size} needs {need / 2**30:,.0f} GiB for one image's first feature map alone, and this "
            f"machine has {memory / 2**30:,.0f} GiB: lower --image-size. Received: image_size={image_size}"
        )


def _check(field, value):
    name, rules = field.name, field.metadata
    if rules.get("choices") is not None and value not in rules["choices"]:
        raise ValueError(f"`{name}` must be one of {tuple(rules['choices'])}. Received: {name}={value!r}")
    if value is None:
        return
    if rules.get("positive") and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    interval = rules.get("interval")
    if interval is not None and (not isinstance(value, (int, float)) or value not in interval):
        raise ValueError(f"`{name}` must be in {interval}. Received: {name}={value!r}")


def read_overrides(path):
    """A configuration file as `{"section.field": value}` for the keys it sets, so that it
    overrides only those (a preset fills the rest). Errors name the file."""
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the configuration file {path}: {error}. Received: config={str(path)!r}") from None
    if not isinstance(values, dict):
        raise ValueError(f"The configuration file {path} must hold a JSON object. Received: config={str(path)!r}")
    known = [field.name for field in dataclasses.fields(RunConfig)]
    dotted = {}
    for key, value in values.items():
        if key not in known:
            # An unknown section, even an empty one, is a typo: its settings would be lost.
            raise ValueError(
                f"The configuration file {path} has an unknown key {key!r} (known: {', '.join(known)}). "
                f"Received: config={str(path)!r}"
            )
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"The section {key!r} of {path} must be a JSON object. Received: {key}={value!r}")
            dotted.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            dotted[key] = value
    return dotted


RESUMABLE_CHANGES = ("train.backup_every",)  # settings a resumed run may change


def diff(old, new, prefix=""):
    """`["train.epochs: 2 -> 3", ...]`: the keys where two configuration dicts differ,
    leaving out RESUMABLE_CHANGES."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += diff(a, b, f"{prefix}{key}.")
        elif a != b and f"{prefix}{key}" not in RESUMABLE_CHANGES:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


PRESETS = {
    # A few minutes on 2 CPU cores, every stage of a run exercised. One test view: ten
    # would make the evaluation the longest stage of a check of the pipeline.
    "quick": {
        "data.image_size": 64,
        "data.limit": 4096,
        "data.test_crops": 1,
        "train.epochs": 2,
        "train.batch_size": 64,
    },
    # One hour of training on a 2-core AVX2 laptop: 8 epochs at 64x64 is 432,000 images,
    # 8.0 compute-epochs, with the levers of issue #51 that each paid alone at 5
    # (results/recipes/README.md, "Fast-training levers").
    "laptop": {
        "data.image_size": 64,
        "data.alternate_flips": True,
        "train.epochs": 8,
        "train.schedule": "linear",
        "train.label_smoothing": 0.2,
        "train.beta_rate": 8.0,
        "train.lookahead": 5,
    },
    # The paper's recipe as published: 224x224, its crops and colour distortion, LRN and
    # no BatchNorm, SGD momentum 0.9, 4% lower every 8 epochs, no label smoothing, no
    # random erasing. The paper gives no weight decay (Caffe's reproduction used 2e-4 coupled).
    "paper": {
        "data.image_size": 224,
        "data.augment": "paper",
        "data.random_erasing": 0.0,
        "model.variant": "paper",
        "train.schedule": "paper",
        "train.learning_rate": 0.01,
        "train.momentum": 0.9,
        "train.batch_size": 32,
        "train.label_smoothing": 0.0,
        "train.weight_decay": None,
    },
}
