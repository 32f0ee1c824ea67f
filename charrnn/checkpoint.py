"""The checkpoint file: a pickle-free .npz, written atomically, validated on load.

Keys (V vocabulary size, H hidden size, B batch size, n evaluations so far):

    format_version  ()       int64    FORMAT_VERSION of the writer
    vocab           (V,)     <U1      the characters, sorted by code point
    config          ()       str      TrainConfig as JSON
    state           ()       str      JSON: iteration, position, chars_seen, smooth_loss,
                                      elapsed_seconds, rng_state, text_sha256, best_val_loss,
                                      last_val_loss, blas_threads
    Wxh Whh Why bh by        float    parameters, shapes as in charrnn.rnn
    mWxh mWhh mWhy mbh mby   float    Adagrad memories, same shapes
    hidden          (B, H)   float    the hidden state of each stream, carried into the next window
    history         (n, 5)   float64  rows of HISTORY_COLUMNS, one per evaluation
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .config import TrainConfig
from .data import Vocabulary
from .rnn import PARAM_NAMES, ParamSet, param_shapes

FORMAT_VERSION = 1
HISTORY_COLUMNS = ("iteration", "chars_seen", "train_loss", "val_loss", "elapsed_seconds")
MEMORY_PREFIX = "m"
# The non-negative numbers a state must hold, with their types.
REQUIRED_STATE = {"iteration": int, "position": int, "chars_seen": int,
                  "smooth_loss": float, "elapsed_seconds": float}
FLOAT_ARRAYS = PARAM_NAMES + tuple(MEMORY_PREFIX + name for name in PARAM_NAMES) + ("hidden",)


class CheckpointError(Exception):
    """A checkpoint cannot be read or written; the message says why in one line."""


@dataclass
class Checkpoint:
    """Everything needed to sample from a model, or to resume training it exactly."""
    config: TrainConfig
    vocab: Vocabulary
    params: ParamSet
    memory: ParamSet                 # Adagrad memories
    hidden: np.ndarray               # (B, H)
    state: dict                      # see the module docstring
    history: np.ndarray = field(default_factory=lambda: np.zeros((0, len(HISTORY_COLUMNS))))

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "vocab": np.array(self.vocab.chars, dtype="<U1"),
            "config": np.array(json.dumps(self.config.to_dict(), sort_keys=True)),
            "state": np.array(json.dumps(self.state, sort_keys=True)),
            "hidden": self.hidden,
            "history": np.asarray(self.history, dtype=np.float64).reshape(-1, len(HISTORY_COLUMNS)),
        }
        for name in PARAM_NAMES:
            arrays[name] = self.params[name]
            arrays[MEMORY_PREFIX + name] = self.memory[name]
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
    if not all(np.isfinite(arrays[name]).all() for name in FLOAT_ARRAYS):
        raise CheckpointError("refusing to save a model whose weights or optimiser state "
                              "contain NaN or inf")
    try:
        with atomic_file(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as error:
        raise CheckpointError(f"could not write checkpoint {path}: {error.strerror or error}") from None


@contextmanager
def atomic_file(path: str, mode: str, **open_options):
    """Open a temporary file beside ``path`` for writing; when the block ends without an
    error, flush it to disk and rename it over ``path`` (os.replace, atomic within a folder).

    If the block or the write fails, the temporary is removed and ``path`` is untouched; the
    OSError propagates. Temporaries are named ``.<name>.<random>.tmp`` (see
    remove_stale_temporaries).
    """
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode, **open_options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        temporary = None
        _fsync_directory(directory)
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)


def remove_stale_temporaries(path) -> None:
    """Delete temporary files that a killed save of ``path`` left behind.

    They are never mistaken for a checkpoint (their names end in .tmp), but they take space.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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
    arrays = _read_arrays(path)
    try:
        return _checkpoint_from_arrays(arrays)
    except (KeyError, ValueError, TypeError) as error:
        message = error.args[0] if error.args else str(error)
        if isinstance(error, KeyError):
            message = f"key {message!r} is missing"
        raise CheckpointError(f"{path} is not a usable charrnn checkpoint: {message}") from None


ZIP_MAGIC = b"PK\x03\x04"   # an .npz is a zip archive


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            magic = f.read(len(ZIP_MAGIC))
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None
    if magic != ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (not an .npz file)")
    try:
        with np.load(path, allow_pickle=False) as npz:
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
    value = json.loads(str(array))
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

    vocab_array = arrays["vocab"]
    if vocab_array.ndim != 1 or vocab_array.dtype.kind != "U" or len(vocab_array) < 1:
        raise ValueError("vocab should be a 1-D array of characters")
    chars = [str(c) for c in vocab_array]
    if any(len(c) != 1 for c in chars) or chars != sorted(set(chars)):
        raise ValueError("vocab should hold distinct single characters in code-point order")
    vocab = Vocabulary(chars)

    config = TrainConfig.from_dict(_json_dict(arrays["config"], "config"))
    state = _json_dict(arrays["state"], "state")
    for name, kind in REQUIRED_STATE.items():
        value = state.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise ValueError(f"state.{name} should be a {kind.__name__}")
        if not value >= 0:
            raise ValueError(f"state.{name} should not be negative")
    for name in ("best_val_loss", "last_val_loss"):
        value = state.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError(f"state.{name} should be a finite number or null")
    if not isinstance(state.get("text_sha256", ""), str):
        raise ValueError("state.text_sha256 should be a string")
    threads = state.get("blas_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError("state.blas_threads should be a positive integer or null")
    if "rng_state" in state:
        try:
            np.random.default_rng().bit_generator.state = state["rng_state"]
        except (TypeError, ValueError, KeyError):
            raise ValueError("state.rng_state is not a random generator state") from None

    V, H = len(vocab), config.hidden_size
    dtype = np.dtype(config.dtype)
    shapes = param_shapes(V, H)
    for name in PARAM_NAMES:
        for key in (name, MEMORY_PREFIX + name):
            if arrays[key].shape != shapes[name]:
                raise ValueError(f"{key} has shape {arrays[key].shape}, expected {shapes[name]} "
                                 f"for {V} characters and hidden size {H}")
            if arrays[key].dtype != dtype:
                raise ValueError(f"{key} has dtype {arrays[key].dtype}, expected {dtype}")
    hidden = arrays["hidden"]
    if hidden.shape != (config.batch_size, H) or hidden.dtype != dtype:
        raise ValueError(f"hidden has shape {hidden.shape}, expected {(config.batch_size, H)}")
    for key in FLOAT_ARRAYS:
        if not np.isfinite(arrays[key]).all():
            raise ValueError(f"{key} contains NaN or inf")
    for name in PARAM_NAMES:
        if (arrays[MEMORY_PREFIX + name] < 0).any():
            raise ValueError(f"{MEMORY_PREFIX + name} (a sum of squares) has negative values")
    history = arrays["history"]
    if history.ndim != 2 or history.shape[1] != len(HISTORY_COLUMNS) or history.dtype.kind != "f":
        raise ValueError(f"history should be an (n, {len(HISTORY_COLUMNS)}) float array")

    return Checkpoint(
        config=config, vocab=vocab,
        params=ParamSet.from_arrays({n: arrays[n] for n in PARAM_NAMES}, dtype),
        memory=ParamSet.from_arrays({n: arrays[MEMORY_PREFIX + n] for n in PARAM_NAMES}, dtype),
        hidden=hidden.copy(), state=state, history=history.astype(np.float64))
