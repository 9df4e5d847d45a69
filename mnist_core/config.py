"""Training configuration: one frozen, validated dataclass, the named presets, and the caps a
hosted demo sets on what a visitor may ask for.

A `TrainConfig` that exists is a valid one: `__post_init__` checks every field and raises
`ConfigError` naming the field and its allowed range, so nothing invalid ever reaches training.
`DemoLimits` reads tighter caps from the environment (`MNIST_MAX_EPOCHS`, ...) for the dashboard.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mnist_core.errors import ConfigError

ARCHITECTURES = ("mlp", "cnn", "vgg", "strided", "deep")
CONVNETS = ("cnn", "vgg", "strided", "deep")  # the architectures built from `conv_filters`
# Each vgg, strided or deep block shrinks 28x28 to 12x12, then 4x4: a third has no room.
TWO_BLOCK_NETS = ("vgg", "strided", "deep")
DEEP_MAX_BLOCKS = 2
OPTIMIZERS = ("adam", "sgd", "rmsprop")

# Allowed ranges, shared by validation, the command line and the dashboard's widgets.
# The upper bounds refuse absurd requests (a batch of 10^6, 10^7 units) before anything is
# allocated; a hosted demo tightens them further with `DemoLimits`.
LIMITS: dict[str, tuple[float, float]] = {
    "hidden_units": (1, 2048),  # units per dense layer
    "hidden_layers": (1, 4),  # number of dense hidden layers
    "conv_filters": (1, 256),  # filters per convolution block
    "conv_blocks": (1, 3),  # number of convolution blocks
    "dropout_rate": (0.0, 0.9),
    "learning_rate": (1e-6, 1.0),
    "batch_size": (1, 4096),
    "epochs": (1, 200),
    "patience": (0, 50),
    "validation_split": (0.0, 0.5),
    "shift": (0.0, 0.3),  # fraction of the image's width and height
    "seed": (0, 2**31 - 1),
}
RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9]+-[0-9a-f]{6}$")  # how runs are named
MAX_UPLOAD_BYTES = 5_000_000  # largest uploaded image; `DemoLimits` may lower it


def _setting(default: Any, description: str) -> Any:
    """A `TrainConfig` field with its default and the description the command line shows."""
    return field(default=default, metadata={"help": description})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is built and trained.

    Two runs with equal configs (seed included) on the same machine give the same history.
    """

    architecture: str = _setting(
        "mlp",
        "mlp: dense layers on raw pixels; cnn: convolution blocks; vgg: blocks of two "
        "batch-normalised 3x3 convolutions; strided: vgg whose first block shrinks the digit "
        "by a step-2 convolution instead of pooling, cheaper; deep: blocks of three, slower",
    )
    hidden_units: tuple[int, ...] = _setting(
        (256, 128), "units of each dense layer after the input (MLP) or the convolutions (CNN)"
    )
    conv_filters: tuple[int, ...] = _setting(
        (32, 64), "filters of each convolution block (convnets only)"
    )
    dropout_rate: float = _setting(
        0.4, "dropout after every hidden dense layer (and the CNN's last convolution block)"
    )
    optimizer: str = _setting("adam", "adam, sgd (with momentum 0.9) or rmsprop")
    learning_rate: float = _setting(1e-3, "the optimizer's (initial) learning rate")
    lr_decay: bool = _setting(False, "cosine decay of the learning rate to 0 over all epochs")
    batch_size: int = _setting(128, "images per training step")
    epochs: int = _setting(20, "epochs to train at most (early stopping may end sooner)")
    patience: int = _setting(
        5, "epochs without a lower validation loss before stopping early; 0 = never"
    )
    # End with the weights of the epoch with the lowest validation loss; False: those of the
    # last finished epoch, which is what a fixed schedule (cosine decay) is designed to reach.
    restore_best: bool = _setting(
        True, "keep the epoch with the lowest validation loss (else the last epoch)"
    )
    validation_split: float = _setting(
        0.1, "last fraction of the training set held out for validation"
    )
    seed: int = _setting(42, "seed of the weights, shuffling, dropout and augmentation")
    augment: bool = _setting(
        False, "random shifts (by 0.1 unless shift is set), rotations and zoom of training images"
    )
    shift: float = _setting(
        0.0,
        "random shifts of training images, by up to this fraction of their size "
        "(0.08: 2 pixels); 0 = none",
    )
    elastic: bool = _setting(
        False, "elastic distortion of training images: strokes bend and wobble"
    )
    drawings: bool = _setting(False, "mix your own drawings (Sketch page) into training")
    start_from: str = _setting("", "fine-tune this run's model (same architecture); '' = anew")

    def __post_init__(self) -> None:
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_int_tuple("hidden_units", self.hidden_units, "hidden_layers", allow_empty=True)
        _check_int_tuple("conv_filters", self.conv_filters, "conv_blocks", allow_empty=False)
        _check_float("dropout_rate", self.dropout_rate, closed_low=True)
        _check_float("learning_rate", self.learning_rate, closed_low=True)
        _check_float("validation_split", self.validation_split, closed_low=True)
        _check_float("shift", self.shift, closed_low=True)
        for name in ("batch_size", "epochs", "patience", "seed"):
            _check_int(name, getattr(self, name))
        if not isinstance(self.start_from, str) or not (
            self.start_from == "" or RUN_ID.match(self.start_from)
        ):
            raise ConfigError(
                "start_from", f"must be a run id (or empty to train anew), got {self.start_from!r}"
            )
        for name in ("augment", "elastic", "lr_decay", "drawings", "restore_best"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        if self.architecture in TWO_BLOCK_NETS and len(self.conv_filters) > DEEP_MAX_BLOCKS:
            raise ConfigError(
                "conv_filters",
                f"a {self.architecture} network has room for at most {DEEP_MAX_BLOCKS} blocks "
                f"on 28x28 digits, got {len(self.conv_filters)}; remove some",
            )
        if self.patience > 0 and self.validation_split == 0:
            raise ConfigError(
                "patience",
                "early stopping watches the validation loss: set validation_split above 0 "
                "or patience to 0",
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The preset called `name` ("mlp", "cnn" or "deep") with some fields replaced.

        Raises ConfigError for an unknown preset, an unknown field or an invalid value.
        """
        if name not in PRESETS:
            raise ConfigError("preset", f"unknown preset {name!r}; choose one of {list(PRESETS)}")
        return PRESETS[name].replace(**overrides)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, validated again."""
        known = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise ConfigError(name, f"unknown setting; known settings: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config saved by `to_dict`; raises ConfigError for unknown or invalid fields."""
        if not isinstance(values, dict):
            raise ConfigError("config", "must be a JSON object of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known settings: {sorted(known)}")
        fixed: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**fixed)


def setting_help(name: str) -> str:
    """What the `TrainConfig` setting `name` does, as a sentence (for help texts)."""
    text = next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata["help"]
    return text[0].upper() + text[1:] + "."


def parse_sizes(name: str, text: str) -> tuple[int, ...]:
    """Layer sizes typed as text ("256, 128") as a tuple; raises ConfigError naming `name`."""
    parts = [part.strip() for part in str(text).replace(";", ",").split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError as error:
        raise ConfigError(
            name, f"expected whole numbers separated by commas, like 256, 128; got {text!r}"
        ) from error


# How a switch may be written as text, in a link or a sweep's grid.
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
# Each field's type as written in the class ("int", "float", "bool", "str", "tuple[int, ...]").
# Each field's annotation as text ("float", "tuple[int, ...]"): the module's annotations are
# strings (`from __future__ import annotations`).
_KINDS = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def parse_setting(name: str, text: str) -> Any:
    """The `TrainConfig` setting `name` written as `text`, as `format_setting` writes it: a
    number, true or false (also yes/no, on/off, 1/0), layer sizes separated by commas
    ("256,128"; empty for none) or a word.

    Only the kind of value is checked here; its range is TrainConfig's to check. Raises
    ConfigError naming `name`: an unknown setting, or text that is not of its kind
    ("'abc' is not a number").
    """
    kind = _KINDS.get(name)
    if kind is None:
        raise ConfigError(name, f"unknown setting; known settings: {sorted(_KINDS)}")
    if kind == "str":
        return text
    if kind.startswith("tuple"):
        return parse_sizes(name, text)
    if kind == "bool":
        word = text.strip().lower()
        if word in (*_TRUE, *_FALSE):
            return word in _TRUE
    else:
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            pass
    what = {"bool": "true or false", "int": "a whole number", "float": "a number"}[kind]
    raise ConfigError(name, f"{text!r} is not {what}")


def format_setting(value: Any) -> str:
    """A setting's value as text that `parse_setting` reads back exactly: `0.003`, `3e-05`,
    `256,128` (empty: no layers), `true`, `vgg`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)


# Environment variables a hosted demo sets to cap what one visitor may ask for -> DemoLimits field.
DEMO_LIMIT_VARIABLES: dict[str, str] = {
    "MNIST_MAX_EPOCHS": "epochs",
    "MNIST_MAX_UNITS": "hidden_units",
    "MNIST_MAX_FILTERS": "conv_filters",
    "MNIST_MAX_LAYERS": "layers",
    "MNIST_MAX_BATCH_SIZE": "batch_size",
    "MNIST_MAX_UPLOAD_MB": "upload_mb",
}
# The LIMITS entry each cap tightens; "layers" caps dense layers and convolution blocks alike.
_CAPPED_LIMITS = {
    "epochs": "epochs",
    "hidden_units": "hidden_units",
    "conv_filters": "conv_filters",
    "batch_size": "batch_size",
    "hidden_layers": "layers",
    "conv_blocks": "layers",
}


@dataclass(frozen=True)
class DemoLimits:
    """Caps a hosted demo puts on what one visitor may ask for, so nobody exhausts its memory.

    A cap can only tighten the built-in `LIMITS` (a larger value counts as the built-in
    maximum); None means no cap beyond them. Read the caps with `from_env()`, give widgets their
    ranges with `maximum(name)`, and refuse a config above them with `check(config)`.
    """

    epochs: int | None = None  # most epochs per training
    hidden_units: int | None = None  # most units in any dense layer
    conv_filters: int | None = None  # most filters in any convolution block
    layers: int | None = None  # most dense layers, and most convolution blocks
    batch_size: int | None = None  # largest batch: activation memory grows with it
    upload_mb: float | None = None  # largest uploaded image, megabytes (10^6 bytes)
    problems: tuple[str, ...] = field(default=(), compare=False)  # invalid settings, ignored

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DemoLimits:
        """The caps set in `environ` (default: the process environment), see DEMO_LIMIT_VARIABLES.

        Never raises: an invalid value (not a number, below 1, not finite) leaves its cap unset
        and adds a message naming the variable to `problems`, for the log and the UI.
        """
        environ = os.environ if environ is None else environ
        caps: dict[str, Any] = {}  # int caps, and a float one for upload megabytes
        problems = []
        for variable, name in DEMO_LIMIT_VARIABLES.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                caps[name] = _parse_cap(name, text)
            except ValueError as error:
                problems.append(
                    f"{variable}={text!r} is ignored: {error}. Fix it in the server's environment."
                )
        return cls(**caps, problems=tuple(problems))

    def maximum(self, name: str) -> int:
        """The largest value a visitor may choose for `name`, a capped key of `LIMITS`:
        epochs, hidden_units, conv_filters, batch_size, hidden_layers or conv_blocks."""
        cap = getattr(self, _CAPPED_LIMITS[name])
        high = int(LIMITS[name][1])
        return high if cap is None else min(int(cap), high)

    @property
    def upload_bytes(self) -> int:
        """The largest uploaded image, bytes (`MAX_UPLOAD_BYTES` without a cap)."""
        if self.upload_mb is None:
            return MAX_UPLOAD_BYTES
        return min(int(self.upload_mb * 1_000_000), MAX_UPLOAD_BYTES)

    def check(self, config: TrainConfig) -> None:
        """Raise ConfigError naming the first field of `config` above a cap, and that cap."""
        for name in ("epochs", "batch_size"):
            value, cap = getattr(config, name), self.maximum(name)
            if value > cap:
                raise ConfigError(
                    name, f"this server allows at most {cap}, got {value}; choose {cap} or less"
                )
        layers = [("hidden_units", "hidden_layers", "dense layers")]
        if config.architecture in CONVNETS:  # an MLP ignores its conv_filters
            layers.append(("conv_filters", "conv_blocks", "convolution blocks"))
        for name, count_name, kind in layers:
            sizes, most = getattr(config, name), self.maximum(count_name)
            if len(sizes) > most:
                raise ConfigError(
                    name, f"this server allows at most {most} {kind}, got {len(sizes)}; remove some"
                )
            cap = self.maximum(name)
            if sizes and max(sizes) > cap:
                raise ConfigError(
                    name,
                    f"this server allows at most {cap} per layer, got {max(sizes)}; "
                    f"choose {cap} or less",
                )

    def fit(self, config: TrainConfig) -> TrainConfig:
        """`config` with every value above a cap lowered to it, and layers beyond a cap dropped.

        Presets pass through it, so they work as they are on a server with caps.
        """
        units, filters = self.maximum("hidden_units"), self.maximum("conv_filters")
        return config.replace(
            epochs=min(config.epochs, self.maximum("epochs")),
            batch_size=min(config.batch_size, self.maximum("batch_size")),
            hidden_units=tuple(
                min(size, units) for size in config.hidden_units[: self.maximum("hidden_layers")]
            ),
            conv_filters=tuple(
                min(size, filters) for size in config.conv_filters[: self.maximum("conv_blocks")]
            ),
        )

    def caption(self) -> str:
        """The training caps in one sentence, for the UI; empty when there is none.

        Example: "This server limits training to 3 epochs, 64 units per dense layer and
        batches of 256."
        """
        parts = []
        if self.epochs is not None:
            parts.append(f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}")
        if self.hidden_units is not None:
            parts.append(f"{self.hidden_units} units per dense layer")
        if self.conv_filters is not None:
            parts.append(f"{self.conv_filters} filters per convolution block")
        if self.layers is not None:
            parts.append(f"{self.layers} layer{'s' if self.layers != 1 else ''} of each kind")
        if self.batch_size is not None:
            parts.append(f"batches of {self.batch_size}")
        if not parts:
            return ""
        listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        return f"This server limits training to {listed}."


def _parse_cap(name: str, text: str) -> float:
    """The cap `name` written as `text`, lowered to the built-in maximum; ValueError if invalid."""
    if name == "upload_mb":
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise ValueError("it must be a number of megabytes above 0, like 2 or 0.5")
        return min(value, MAX_UPLOAD_BYTES / 1_000_000)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("it must be a whole number of at least 1")
    limit = ("hidden_layers", "conv_blocks") if name == "layers" else (name,)
    return min(value, max(int(LIMITS[key][1]) for key in limit))


def _describe_range(name: str) -> str:
    low, high = LIMITS[name]
    return f"from {_number(low)} to {_number(high)}"


def _number(value: float) -> str:
    # Whole numbers in full: ":g" would show the largest seed as 2.14748e+09.
    return str(value) if isinstance(value, int) else f"{value:g}"


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"must be one of {list(choices)}, got {value!r}")


def _check_int(name: str, value: object, limit_name: str | None = None) -> None:
    limit_name = limit_name or name
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            name, f"must be a whole number {_describe_range(limit_name)}, got {value!r}"
        )
    low, high = LIMITS[limit_name]
    if not low <= value <= high:
        raise ConfigError(name, f"must be {_describe_range(limit_name)}, got {value}")


def _check_float(name: str, value: object, closed_low: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number {_describe_range(name)}, got {value!r}")
    low, high = LIMITS[name]
    if math.isnan(value) or not low <= value <= high or (not closed_low and value == low):
        raise ConfigError(name, f"must be {_describe_range(name)}, got {value}")


def _check_int_tuple(name: str, value: object, count_name: str, allow_empty: bool) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(name, f"must be a list of whole numbers, got {value!r}")
    low, high = LIMITS[count_name]
    if not (allow_empty and len(value) == 0) and not low <= len(value) <= high:
        raise ConfigError(
            name, f"must have {_describe_range(count_name)} entries, got {len(value)}"
        )
    for item in value:
        _check_int(name, item, limit_name=name)


# The first convnet preset's settings (a 5x5 then a 3x3 block, a dense layer of 128, 20
# annealed epochs, shifts of up to 2 pixels): every convnet preset starts from them. Its epochs,
# shift and dropout were chosen on the test set in an early version; the presets below were
# chosen on validation digits (BENCHMARKS.md, "The accuracy ladder").
_CONVNET = TrainConfig(
    architecture="cnn",
    hidden_units=(128,),
    conv_filters=(32, 64),
    dropout_rate=0.4,
    optimizer="adam",
    learning_rate=1e-3,
    lr_decay=True,
    batch_size=128,
    epochs=20,
    patience=0,  # a short fixed schedule, annealed to its end: the last epoch is kept
    restore_best=False,
    validation_split=0.1,
    shift=0.08,
)
# Blocks of two batch-normalised 3x3 convolutions (32, 64), a normalised dense layer of 256,
# 6 epochs at 3e-3 annealed to 0, shifts of up to 2 pixels: the cnn preset until 2026-12-06,
# chosen on validation digits; `cnn` and `deep` start from it.
_VGG = _CONVNET.replace(
    architecture="vgg", hidden_units=(256,), dropout_rate=0.3, learning_rate=3e-3, epochs=6
)
PRESETS: dict[str, TrainConfig] = {
    # The original script's recipe (its network, 20 epochs, early stopping with patience 5, the
    # best epoch's weights) with its learning rate annealed by a cosine.
    # `TrainConfig()` (or `--no-lr-decay`, or the toggle off on Train) is the script exactly.
    "mlp": TrainConfig(lr_decay=True),
    # Past 99 % in about two keras-io convnet epochs' time, for "tweak a slider and retrain":
    # the first convnet, 2 epochs, a higher learning rate annealed to 0, light dropout, no shifts.
    # lr 3e-3 read more validation digits than 2e-3 with each of 3 seeds (BENCHMARKS.md).
    "quick": _CONVNET.replace(epochs=2, learning_rate=3e-3, dropout_rate=0.2, shift=0.0),
    # Like `deep`, shrinking the digit in its first block by a step-2 convolution instead of
    # pooling, with 24 and 48 filters: 6 epochs at 3e-3 annealed to 0, shifts of up to 2 pixels.
    # About half of `deep`'s network's time per epoch, within its 15 E budget on the Intel
    # Xeon (the most accurate such network on validation digits, BENCHMARKS.md).
    "cnn": _VGG.replace(architecture="strided", conv_filters=(24, 48)),
    # Blocks of two batch-normalised 3x3 convolutions (32, 64), a normalised dense layer of 256,
    # 25 epochs at 3e-3 annealed to 0, shifts of up to 2 pixels: the most accurate preset on
    # validation digits within the deep target's budget (BENCHMARKS.md, "`deep` chosen again":
    # 25 epochs read 99.66 % of them over seeds 11-13, 15 epochs 99.64 % over seeds 1-3). The
    # earlier deep preset (blocks of three batch-normalised convolutions, the `deep`
    # architecture, shifted, rotated and zoomed digits, 30 epochs) took about twice that budget.
    "deep": _VGG.replace(epochs=25),
}
# How the Train page names each preset; the epochs are read from the presets themselves.
PRESET_LABELS: dict[str, str] = {
    "mlp": "mlp: the original recipe, annealed",
    "quick": f"quick: a convnet past 99 % in {PRESETS['quick'].epochs} epochs",
    "cnn": f"cnn: batch-normalised convnet, {PRESETS['cnn'].epochs} epochs",
    "deep": (
        f"deep: a wider batch-normalised convnet, {PRESETS['deep'].epochs} epochs, most accurate"
    ),
}


@dataclass(frozen=True)
class EnsemblePreset:
    """A preset that trains several runs of one preset, seeds `seed`, `seed + 1`, ..., and
    saves their ensemble (`python -m mnist_core train --preset best`, `ensemble.py`)."""

    member: str  # the preset every member trains (other settings given override it)
    members: int  # how many members
    tta: bool  # whether the ensemble also averages each member over shifted copies
    epochs: int | None = None  # the members' epochs, when not their preset's

    def member_config(self, **changes: Any) -> TrainConfig:
        """The settings of the first member: its preset with this ensemble's epochs, then
        `changes` (settings given on the command line)."""
        own = {} if self.epochs is None else {"epochs": self.epochs}
        return TrainConfig.preset(self.member, **{**own, **changes})

    def runs_text(self) -> str:
        """What it trains, for help texts: "3 deep runs of 25 epochs"."""
        return f"{self.members} {self.member} runs of {self.member_config().epochs} epochs"


# Chosen on validation digits (BENCHMARKS.md, The accuracy ladder, "`best` chosen a third
# time"): three runs of the deep preset, each also over shifted copies; every three of four such
# runs read 99.72-99.73 % of the validation digits against 99.70 % for five 10-epoch cnn runs.
ENSEMBLE_PRESETS: dict[str, EnsemblePreset] = {"best": EnsemblePreset("deep", 3, tta=True)}
