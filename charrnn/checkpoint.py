"""The checkpoint file: a pickle-free .npz, written atomically, validated on load.

Format 2 (V vocabulary size, B batch size, n evaluations so far; the model's arrays are
named by charrnn.model.Network: ``l1.Wxh``, ``l1.Whh``, ..., ``Why``, ``by``):

    format_version    ()       int64    FORMAT_VERSION of the writer
    vocab             (V,)     <U1      the characters, sorted by code point
    config            ()       str      TrainConfig as JSON, with the model's description
                                        (cell, num_layers, hidden_size, dropout)
    state             ()       str      JSON: TrainingState (iteration, position, chars_seen,
                                        smooth_loss, elapsed_seconds, rng_state, text_sha256,
                                        best_val_loss, last_val_loss, blas_threads; since 0.5.0
                                        corpus_files, train_chars, val_chars, val_total_chars,
                                        full_val_loss when known)
    params.<name>     float    every parameter, shaped as Network.param_shapes says
    adagrad.<name>    float    its Adagrad memory, the same shape (config optimizer "adagrad")
    adam.m.<name>     float    its Adam moments, the same shape (config optimizer "adam",
    adam.v.<name>     float      since 0.4.0; the update count is state.iteration)
    carry.<name>      (B, H)   float    each layer's state carried into the next window
                                        (``carry.l1.h``, and ``carry.l1.c`` for an LSTM)
    history           (n, 5)   float64  rows of HISTORY_COLUMNS, one per evaluation

Format 1 (charrnn 0.2.0 and before, one vanilla layer) named the parameters Wxh, Whh, Why,
bh, by, their memories mWxh, ..., and the carried state ``hidden``; it is read as the
format-2 model it is (a one-layer rnn without dropout).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .config import MAX_ITERS, TrainConfig, shown_number
from .data import Vocabulary
from .model import Network, ParamSet
from .model.network import FORMAT1_PARAM_NAMES, FORMAT1_STATE_NAMES
from .optim import OPTIMIZERS
from .runfiles import HISTORY_COLUMNS, ZIP_MAGIC, atomic_file, not_a_regular_file

FORMAT_VERSION = 2
PARAMS_PREFIX, CARRY_PREFIX = "params.", "carry."
FORMAT1_MEMORY_PREFIX = "m"
# Optimiser slots that hold sums or means of squares, which cannot be negative.
SQUARE_SLOTS = ("adagrad", "adam.v")
META_KEYS = ("format_version", "vocab", "config", "state", "history")
# The numbers a state holds: (type, largest value, required); none may be negative. The
# bounds are far beyond any real run and keep every number usable: counts exact in a float64
# (the history holds them as floats), losses finite, times under 30,000 years.
MAX_COUNT = 2**53
STATE_NUMBERS = {"iteration": (int, MAX_ITERS, True), "position": (int, MAX_COUNT, True),
                 "chars_seen": (int, MAX_COUNT, True), "smooth_loss": (float, sys.float_info.max, True),
                 "elapsed_seconds": (float, 10**12, True),
                 "best_val_loss": (float, sys.float_info.max, False),
                 "last_val_loss": (float, sys.float_info.max, False),
                 "blas_threads": (int, 4096, False), "stream_groups": (int, 4096, False),
                 "train_chars": (int, MAX_COUNT, False), "val_chars": (int, MAX_COUNT, False),
                 "val_total_chars": (int, MAX_COUNT, False),
                 "full_val_loss": (float, sys.float_info.max, False)}
# The state of the PCG64 generator (numpy's default_rng), field by field: (type, limit).
RNG_STATE = {"state": (int, 2**128), "inc": (int, 2**128)}
RNG_FIELDS = {"has_uint32": (int, 2), "uinteger": (int, 2**32)}


class CheckpointError(Exception):
    """A checkpoint cannot be read or written; the message says why in one line."""


class History:
    """The evaluations of a run, one row each: HISTORY_COLUMNS (iteration, characters seen,
    smoothed train loss, validation loss or NaN when there is no held-out text, training
    seconds), losses in nats per character. ``rows`` is the (n, 5) float64 array kept in the
    checkpoint; indexing the History indexes it."""

    def __init__(self, rows=None):
        rows = np.zeros((0, len(HISTORY_COLUMNS))) if rows is None else rows
        self.rows = np.array(rows, dtype=np.float64).reshape(-1, len(HISTORY_COLUMNS))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        return self.rows[key]

    def __array__(self, dtype=None, copy=None):
        return self.rows if dtype is None else self.rows.astype(dtype)

    def __repr__(self) -> str:
        return f"History({len(self)} evaluations)"

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.shape

    @property
    def iteration(self) -> np.ndarray:
        return self.rows[:, 0]

    @property
    def chars_seen(self) -> np.ndarray:
        return self.rows[:, 1]

    @property
    def train_loss(self) -> np.ndarray:
        return self.rows[:, 2]

    @property
    def val_loss(self) -> np.ndarray:
        return self.rows[:, 3]

    @property
    def elapsed_seconds(self) -> np.ndarray:
        return self.rows[:, 4]

    @property
    def last_val_loss(self) -> float:
        """The latest validation loss (NaN if there is none)."""
        return float(self.rows[-1, 3]) if len(self) else math.nan

    def appended(self, iteration: int, chars_seen: int, train_loss: float, val_loss: float,
                 elapsed_seconds: float) -> "History":
        """A new History with one more row."""
        row = [iteration, chars_seen, train_loss, val_loss, elapsed_seconds]
        return History(np.vstack([self.rows, row]))

    def up_to(self, count: int) -> "History":
        return History(self.rows[:count])

    def copy(self) -> "History":
        return History(self.rows.copy())


@dataclass
class TrainingState:
    """Where a run stands, saved as the checkpoint's ``state`` JSON.

    ``position`` is the offset of the next window (the same in every stream);
    ``elapsed_seconds`` is training time without evaluations and saves; ``text_sha256`` the
    corpus's hash and ``corpus_files`` its files as ``[[name, sha256], ...]``;
    ``train_chars`` the length of the training text (a pass over it is an epoch);
    ``val_chars`` how many held-out characters each evaluation scores (a fixed sample when
    the held-out text is longer), ``val_total_chars`` how many there are in all, and
    ``full_val_loss`` the loss on all of them at the end of the run; ``stream_groups`` how
    many groups the batch's streams are computed in (see model/groups.py; None before 0.5.0:
    one, with ``blas_threads`` BLAS threads). Keys written by older
    versions are read as they were; the newer ones are None in their files.
    """
    iteration: int = 0
    position: int = 0
    chars_seen: int = 0
    smooth_loss: float = 0.0
    elapsed_seconds: float = 0.0
    rng_state: dict | None = None
    text_sha256: str | None = None
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    blas_threads: int | None = None
    corpus_files: list | None = None
    train_chars: int | None = None
    val_chars: int | None = None
    val_total_chars: int | None = None
    full_val_loss: float | None = None
    stream_groups: int | None = None

    ALWAYS_WRITTEN = ("iteration", "position", "chars_seen", "smooth_loss", "elapsed_seconds",
                      "best_val_loss", "last_val_loss", "blas_threads")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {key: value for key, value in values.items()
                if value is not None or key in self.ALWAYS_WRITTEN}

    # Mapping-style reading, as callers written when the state was a dict still do.
    def get(self, key: str, default=None):
        value = getattr(self, key, None) if key in self.__dataclass_fields__ else None
        return default if value is None else value

    def __getitem__(self, key: str):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        return self.to_dict().keys()

    def __contains__(self, key: str) -> bool:
        return key in self.__dataclass_fields__ and getattr(self, key) is not None


@dataclass
class Checkpoint:
    """Everything needed to sample from a model, or to resume training it exactly."""
    config: TrainConfig
    vocab: Vocabulary
    params: ParamSet
    optimizer_state: dict            # {slot: ParamSet}, the optimiser's (optim.py's SLOTS)
    carry: dict                      # {name: (B, H) array}: the state carried between windows
    state: TrainingState             # a dict is turned into one
    history: History = field(default_factory=History)

    def __post_init__(self):
        if not isinstance(self.state, TrainingState):
            self.state = TrainingState.from_dict(dict(self.state))
        if not isinstance(self.history, History):
            self.history = History(self.history)

    def network(self) -> Network:
        """The model's maths, as this checkpoint's settings describe it."""
        return Network(self.config.model_spec(len(self.vocab)), self.config.dtype)

    def float_arrays(self) -> dict[str, np.ndarray]:
        """Every array of numbers the model is made of, by its key in the file."""
        groups = {PARAMS_PREFIX: self.params, CARRY_PREFIX: self.carry}
        groups.update({slot + ".": values for slot, values in self.optimizer_state.items()})
        return {prefix + name: value
                for prefix, values in groups.items() for name, value in values.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "vocab": np.array(self.vocab.chars, dtype="<U1"),
            "config": np.array(json.dumps(self.config.to_dict(), sort_keys=True)),
            "state": np.array(json.dumps(self.state.to_dict(), sort_keys=True)),
            "history": np.asarray(self.history, dtype=np.float64).reshape(-1, len(HISTORY_COLUMNS)),
        }
        arrays.update(self.float_arrays())
        return arrays


def save_checkpoint(path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically.

    The file is written to a temporary name in the same folder, flushed to disk, then renamed
    over ``path`` with os.replace: at every moment ``path`` holds either the previous complete
    checkpoint or the new complete one. Raises CheckpointError (and leaves ``path`` as it was)
    if the write fails, for example on a full disk.
    """
    path = os.fspath(path)
    arrays = checkpoint.to_arrays()
    if not all(np.isfinite(value).all() for value in checkpoint.float_arrays().values()):
        raise CheckpointError("refusing to save a model whose weights or optimiser state "
                              "contain NaN or inf")
    try:
        with atomic_file(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as error:
        raise CheckpointError(f"could not write checkpoint {path}: {error.strerror or error}") from None


def load_checkpoint(path) -> Checkpoint:
    """Read and validate a checkpoint; raises CheckpointError with a one-line reason.

    Nothing in the file is executed: arrays are read with allow_pickle=False, so an object
    array (which would need unpickling) is refused.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    kind = not_a_regular_file(path)
    if kind:   # a FIFO or a terminal would block the read
        raise CheckpointError(f"{path} is {kind}, not a checkpoint file")
    arrays = _read_arrays(path)
    try:
        return _checkpoint_from_arrays(arrays)
    except (KeyError, ValueError, TypeError) as error:
        message = error.args[0] if error.args else str(error)
        if isinstance(error, KeyError):
            message = f"key {message!r} is missing"
        raise CheckpointError(f"{path} is not a usable charrnn checkpoint: {message}") from None


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            magic = f.read(len(ZIP_MAGIC))
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None
    if magic != ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (not an .npz file)")
    try:
        # Our own file object: np.load leaves its own open when the archive is damaged.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as error:
        if "pickle" in str(error):
            raise CheckpointError(
                f"{path} holds a pickled object array; charrnn never unpickles files") from None
        reason = "not a valid .npz file"
    except AttributeError:
        reason = "a single .npy array, not an .npz archive"
    except OSError as error:
        reason = error.strerror or "not a valid .npz file"
    # Any other failure of the parser on arbitrary bytes (zip or header errors of many kinds)
    # means the same thing to the user: this is not a checkpoint.
    except Exception:
        reason = "not a valid .npz file"
    raise CheckpointError(f"{path} is not a charrnn checkpoint ({reason})")


def _json_dict(array: np.ndarray, name: str) -> dict:
    if array.shape != () or array.dtype.kind != "U":
        raise ValueError(f"{name} should be a JSON string")
    try:
        value = json.loads(str(array))
    except ValueError as error:   # not JSON, or an integer too long for Python to read
        reason = ("an integer too long to read" if "digits" in str(error) else "invalid JSON")
        raise ValueError(f"{name} holds {reason}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} should be a JSON object")
    return value


def _checkpoint_from_arrays(arrays: dict[str, np.ndarray]) -> Checkpoint:
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise ValueError("format_version should be an integer")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"it has format version {int(version)}, newer than this charrnn "
                         f"reads ({FORMAT_VERSION}); upgrade charrnn")
    if int(version) < 1:
        raise ValueError(f"format_version {int(version)} is not a charrnn format (1 or 2)")

    vocab_array = arrays["vocab"]
    if vocab_array.ndim != 1 or vocab_array.dtype.kind != "U" or len(vocab_array) < 1:
        raise ValueError("vocab should be a 1-D array of characters")
    chars = [str(c) for c in vocab_array]
    if any(len(c) != 1 for c in chars) or chars != sorted(set(chars)):
        raise ValueError("vocab should hold distinct single characters in code-point order")
    vocab = Vocabulary(chars)

    config = TrainConfig.from_dict(_json_dict(arrays["config"], "config"))
    state = _json_dict(arrays["state"], "state")
    check_state(state)
    history = arrays["history"]
    if history.ndim != 2 or history.shape[1] != len(HISTORY_COLUMNS) or history.dtype.kind != "f":
        raise ValueError(f"history should be an (n, {len(HISTORY_COLUMNS)}) float array")
    for column, name in enumerate(HISTORY_COLUMNS):
        values = history[:, column]
        # Only the validation loss may be missing (NaN: there was no held-out text).
        bad = ~np.isfinite(values)
        if name == "val_loss":
            bad &= ~np.isnan(values)
        if bad.any():
            raise ValueError(f"history column {name} holds {values[bad][0]}, not a finite "
                             f"number")

    network = Network(config.model_spec(len(vocab)), config.dtype)
    if int(version) == 1:
        arrays = _format1_as_format2(arrays)
    slots = OPTIMIZERS[config.optimizer].SLOTS
    expected = {PARAMS_PREFIX: network.param_shapes,
                CARRY_PREFIX: network.state_shapes(config.batch_size)}
    expected.update({slot + ".": network.param_shapes for slot in slots})
    described = set(META_KEYS) | {prefix + name
                                  for prefix, shapes in expected.items() for name in shapes}
    unexpected = sorted(set(arrays) - described)
    if unexpected:
        raise ValueError(f"it holds {unexpected[0]}, which its model ({_describe(config)}, "
                         f"optimizer {config.optimizer}) does not have")
    loaded = {}
    for prefix, shapes in expected.items():
        loaded[prefix] = {}
        for name, shape in shapes.items():
            key = prefix + name
            value = arrays[key]
            if value.shape != shape:
                raise ValueError(f"{key} has shape {value.shape}, expected {shape} for "
                                 f"{_describe(config)} with {len(vocab)} characters")
            if value.dtype != np.dtype(config.dtype):
                raise ValueError(f"{key} has dtype {value.dtype}, expected {config.dtype}")
            if not np.isfinite(value).all():
                raise ValueError(f"{key} contains NaN or inf")
            if prefix[:-1] in SQUARE_SLOTS and (value < 0).any():
                raise ValueError(f"{key} (a sum or mean of squares) has negative values")
            loaded[prefix][name] = value

    return Checkpoint(
        config=config, vocab=vocab,
        params=network.params_from_arrays(loaded[PARAMS_PREFIX]),
        optimizer_state={slot: network.params_from_arrays(loaded[slot + "."]) for slot in slots},
        carry={name: value.copy() for name, value in loaded[CARRY_PREFIX].items()},
        state=TrainingState.from_dict(state), history=History(history))


def check_state(state: dict) -> None:
    """Raise ValueError naming the first field of a checkpoint's state that is missing, of the
    wrong type or out of its bounds (STATE_NUMBERS), before any of it is used."""
    for name, (kind, most, required) in STATE_NUMBERS.items():
        value = state.get(name)
        if value is None and not required:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise ValueError(f"state.{name} should be a{'' if required else ' null or a'} "
                             f"{'whole number' if kind is int else 'number'}, not {value!r:.40}")
        least = 1 if name in ("blas_threads", "stream_groups") else 0
        if not least <= value <= most:   # (exact for huge integers, and false for NaN)
            bounds = (f"a finite number of at least {least}" if most == sys.float_info.max
                      else f"a number from {least} to {most:,}")
            raise ValueError(f"state.{name} should be {bounds}, not {shown_number(value)}")
    if not isinstance(state.get("text_sha256", ""), str):
        raise ValueError("state.text_sha256 should be a string")
    files = state.get("corpus_files")
    if files is not None and not (isinstance(files, list) and all(
            isinstance(entry, list) and len(entry) == 2
            and all(isinstance(part, str) for part in entry) for entry in files)):
        raise ValueError("state.corpus_files should be a list of [name, sha256] pairs")
    if "rng_state" in state:
        _check_rng_state(state["rng_state"])


def _check_rng_state(rng_state) -> None:
    """Raise ValueError unless ``rng_state`` is a PCG64 generator's state with every number in
    its range (numpy would raise OverflowError, or take the numbers modulo 2**64)."""
    def fields(values, limits: dict, where: str) -> None:
        if not isinstance(values, dict):
            raise ValueError(f"{where} is not a random generator state")
        for name, (kind, limit) in limits.items():
            value = values.get(name)
            if isinstance(value, bool) or not isinstance(value, kind) or not 0 <= value < limit:
                raise ValueError(f"{where}.{name} should be a whole number from 0 to "
                                 f"{limit - 1}, not {shown_number(value)}")

    fields(rng_state, RNG_FIELDS, "state.rng_state")
    if rng_state.get("bit_generator") != "PCG64":
        raise ValueError("state.rng_state.bit_generator should be PCG64")
    fields(rng_state.get("state"), RNG_STATE, "state.rng_state.state")
    try:
        np.random.default_rng().bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ValueError("state.rng_state is not a random generator state") from None


def _describe(config: TrainConfig) -> str:
    return (f"{config.num_layers}-layer {config.cell}, hidden size {config.hidden_size}, "
            f"batch size {config.batch_size}")


def _format1_as_format2(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A format-1 file's arrays under format 2's keys (KeyError names a missing one)."""
    renamed = {key: arrays[key] for key in META_KEYS}
    for old, new in FORMAT1_PARAM_NAMES.items():
        renamed[PARAMS_PREFIX + new] = arrays[old]
        renamed["adagrad." + new] = arrays[FORMAT1_MEMORY_PREFIX + old]
    for old, new in FORMAT1_STATE_NAMES.items():
        renamed[CARRY_PREFIX + new] = arrays[old]
    return renamed
