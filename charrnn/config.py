"""Training settings: every default in one place, and the rules for changing them on resume."""
from __future__ import annotations

import codecs
import dataclasses
import math
from dataclasses import dataclass

from .model import CELLS, ModelSpec
from .model.network import MAX_HIDDEN_SIZE, MAX_LAYERS
from .optim import OPTIMIZERS

DTYPES = ("float32", "float64")
# No run gets near this (a year at 30 microseconds an iteration); beyond it counts are typos,
# and past about 10**308 they no longer fit in a float (the learning-rate schedule's maths).
MAX_ITERS = 10**12
MAX_WINDOW = 10**9        # T and B: a window needs T * B characters of text, and memory
MAX_SEED = 2**64 - 1      # seeds are 64-bit numbers, as in most libraries
# The upper bound of every whole-number setting (the lower bounds are in validate()), so that
# an absurd value from the command line or a hand-edited checkpoint is refused in one line
# before anything is allocated, and never reaches NumPy as an integer it cannot hold.
INT_LIMITS = {"num_layers": MAX_LAYERS, "hidden_size": MAX_HIDDEN_SIZE,
              "seq_length": MAX_WINDOW, "batch_size": MAX_WINDOW, "max_iters": MAX_ITERS,
              "eval_every": MAX_ITERS, "checkpoint_every": MAX_ITERS,
              "sample_every": MAX_ITERS, "random_seed": MAX_SEED}

# Checkpoints written before a setting existed were trained as if it had these values.
SETTINGS_BEFORE_THEY_EXISTED = {"warmup_fraction": 0.0, "decay_fraction": 0.0,
                                "cell": "rnn", "num_layers": 1, "dropout": 0.0,
                                "optimizer": "adagrad", "time_budget": 0.0, "max_passes": 0.0}
# The optimiser of each cell, and the peak learning rate of each optimiser, when the user
# does not choose them: the settings that learnt most in 5 minutes (docs/benchmarks.md).
# Adam's 0.006 was best for runs of 2,000-3,000 iterations; a 5-minute run is 9,000 now, and
# over that many a 2-layer GRU at 0.006 with dropout blew up half-way (3.1 bits/char at the
# end), where 0.003 ended at 2.11 (1.460 nats), and without dropout as well as 0.006.
DEFAULT_OPTIMIZERS = {"rnn": "adagrad", "lstm": "adam", "gru": "adam"}
DEFAULT_LEARNING_RATES = {"adagrad": 0.07, "adam": 0.003}
# The schedule of each optimiser (warm-up, cool-down fractions): Adam's best held the peak
# rate for less of the run and cooled down over its second half (README's tables).
DEFAULT_SCHEDULES = {"adagrad": (0.1, 0.25), "adam": (0.05, 0.5)}
# How long a run is when the user gives no --max-iters or --time: a time budget, and at most
# this many passes over the training text (a small text is learnt by heart long before).
DEFAULT_TIME_BUDGET = 300.0
DEFAULT_MAX_PASSES = 30.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Saved in every checkpoint as JSON."""

    cell: str = "rnn"               # the recurrent cell: rnn (vanilla), lstm or gru
    num_layers: int = 1             # L, cells stacked, each reading the one below
    hidden_size: int = 256          # H, size of the hidden state (of every layer)
    dropout: float = 0.0            # inverted dropout on each layer's output, in training
    seq_length: int = 32            # T, time steps per window of truncated BPTT
    batch_size: int = 32            # B, parallel streams the text is cut into
    optimizer: str = "adagrad"      # adagrad or adam (charrnn.optim); see DEFAULT_OPTIMIZERS
    learning_rate: float = DEFAULT_LEARNING_RATES["adagrad"]   # step size at the schedule's peak
    warmup_fraction: float = 0.1    # first fraction of max_iters: the learning rate rises to LR
    decay_fraction: float = 0.25    # last fraction of max_iters: it falls to 0
    clip: float = 5.0               # gradients are clipped elementwise to [-clip, clip]
    max_iters: int = 36000          # total iterations; a resumed run continues up to it
    time_budget: float = 0.0        # seconds the run may take (0: none); max_iters fits it
    max_passes: float = 0.0         # at most this many passes over the training text (0: any)
    val_fraction: float = 0.1       # the last part of the text held out for validation
    eval_every: int = 500           # iterations between validation losses
    checkpoint_every: int = 500     # iterations between checkpoint writes
    sample_every: int = 2000        # iterations between samples shown during training (0: never)
    dtype: str = "float32"          # float32 trains about twice as fast as float64
    random_seed: int = 0            # seeds the initial weights
    init_scale: float = 0.06        # standard deviation of the initial weights
    encoding: str = "utf-8"         # how the text file is decoded

    @classmethod
    def for_new_run(cls, **settings) -> "TrainConfig":
        """The settings of a new run: ``settings`` over the defaults, the cell's default
        optimiser if none is given, and that optimiser's default learning rate if none is
        given, and that optimiser's schedule (DEFAULT_SCHEDULES) for the fractions not given.
        Raises ValueError for a bad value."""
        if "optimizer" not in settings:
            cell = settings.get("cell", cls.cell)
            settings["optimizer"] = DEFAULT_OPTIMIZERS.get(cell, cls.optimizer)
        optimizer = settings.get("optimizer", cls.optimizer)
        if "learning_rate" not in settings and optimizer in DEFAULT_LEARNING_RATES:
            settings["learning_rate"] = DEFAULT_LEARNING_RATES[optimizer]
        warmup, decay = DEFAULT_SCHEDULES.get(optimizer, (cls.warmup_fraction, cls.decay_fraction))
        settings.setdefault("warmup_fraction", warmup)
        settings.setdefault("decay_fraction", decay)
        config = cls(**settings)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_spec(self, vocab_size: int) -> ModelSpec:
        """The model these settings describe, for a vocabulary of ``vocab_size`` characters."""
        return ModelSpec(vocab_size=vocab_size, hidden_size=self.hidden_size, cell=self.cell,
                         num_layers=self.num_layers, dropout=self.dropout)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A TrainConfig from a dict (as read back from a checkpoint), checking names and types.

        A setting missing from ``values`` takes its value from SETTINGS_BEFORE_THEY_EXISTED,
        so a model saved before the setting existed resumes the way it was trained.
        Raises ValueError naming the first bad field.
        """
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = set(values) - set(fields)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))} "
                             f"(saved by a newer charrnn?)")
        values = {**SETTINGS_BEFORE_THEY_EXISTED, **values}   # older checkpoints lack these
        checked = {}
        for name, value in values.items():
            kind = type(fields[name].default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not kind:
                raise ValueError(f"setting {name} should be {kind.__name__}, not {value!r}")
            checked[name] = value
        config = cls(**checked)
        try:
            config.validate()
        except ValueError as error:   # its messages begin with the setting's name
            raise ValueError(f"config.{error}") from None
        return config

    def validate(self) -> None:
        """Raise ValueError if a value is out of its range."""
        for name, most in INT_LIMITS.items():
            if getattr(self, name) > most:
                raise ValueError(f"{name} must be at most {most:,}, not "
                                 f"{shown_number(getattr(self, name))}")
        for name in ("hidden_size", "seq_length", "batch_size", "max_iters",
                     "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.random_seed < 0:
            raise ValueError(f"random_seed must be 0 or more, not {self.random_seed}")
        for name in ("time_budget", "max_passes"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, 0 or more, not {value}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be 0 or more, not {self.sample_every}")
        for name in ("warmup_fraction", "decay_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        for name in ("learning_rate", "clip", "init_scale"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number greater than 0, not "
                                 f"{getattr(self, name)}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, not {self.num_layers}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"not {self.optimizer!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")


def shown_number(value) -> str:
    """A number for a message: as it is, or ``a 401-digit number`` when it is too long to read."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"{value!r:.40}"
    text = f"{value:,}" if isinstance(value, int) else str(value)
    digits = len(str(abs(value))) if isinstance(value, int) else 0
    return f"a {digits:,}-digit number" if digits > 24 else text


def describe_model(config: TrainConfig) -> str:
    """``2-layer lstm, hidden size 256, dropout 0.1``."""
    dropout = f", dropout {config.dropout:g}" if config.dropout else ""
    return (f"{config.num_layers}-layer {config.cell}, hidden size {config.hidden_size}"
            f"{dropout}")


def encoding_name(name: str) -> str:
    """Python's own name for an encoding (``UTF8`` -> ``utf-8``), or ``name`` if it has none."""
    try:
        return codecs.lookup(name).name
    except (LookupError, TypeError, ValueError):
        return name


# Settings that fix the model or the data it sees: a resumed run must keep them.
FIXED_ON_RESUME = ("cell", "num_layers", "hidden_size", "optimizer", "seq_length",
                   "batch_size", "val_fraction", "dtype", "random_seed", "init_scale", "encoding")


def resumed_config(saved: TrainConfig, overrides: dict) -> TrainConfig:
    """The saved config with the user's ``overrides`` applied, for a resumed run.

    Raises ValueError if an override changes a setting in FIXED_ON_RESUME. Two names of one
    encoding (``UTF-8`` and ``utf8``) are the same setting: the saved name is kept.
    """
    overrides = dict(overrides)
    if "encoding" in overrides and (
            encoding_name(overrides["encoding"]) == encoding_name(saved.encoding)):
        del overrides["encoding"]
    for name in FIXED_ON_RESUME:
        if name in overrides and overrides[name] != getattr(saved, name):
            raise ValueError(
                f"--{name.replace('_', '-')} {overrides[name]} conflicts with the checkpoint, "
                f"which was trained with {getattr(saved, name)}; drop the option to resume, "
                f"or use --force to start a new model")
    config = dataclasses.replace(saved, **overrides)
    config.validate()
    return config
