"""``charrnn import``: an export (safetensors), trained further in PyTorch or elsewhere, back
into a charrnn checkpoint that samples, evaluates, vizzes, exports and trains on.

The file must be charrnn's: safetensors (export.py gives the layout) whose ``__metadata__``
holds ``format`` = ``charrnn-export``, the vocabulary and the model's description, and whose
tensors are exactly the entries torch_names.torch_shapes lists. PyTorch's two biases are
folded into charrnn's one where charrnn holds their sum (torch_names.from_torch_state_dict:
every row of the vanilla RNN and LSTM, the GRU's r and z rows; the GRU's n rows of
``bias_hh`` are charrnn's ``bhn``). What has no place in charrnn's model is refused with the
reason: a bidirectional layer (``*_reverse``), an LSTM projection (``weight_hr_l*``), a
missing bias, half-precision weights, NaN or inf.

The checkpoint holds the model and a fresh start for everything else: the default training
settings of its cell (the optimiser's state zero, iteration 0, no history). ``--resume``
from it trains with a fresh optimiser state: the export carries no Adam moments.
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from .checkpoint import Checkpoint
from .config import TrainConfig
from .data import Vocabulary
from .export import FORMAT_VERSION, MARKER, MAX_HEADER
from .model.torch_names import (OUTPUT_PREFIX, from_torch_state_dict, network_from_description,
                                torch_shapes)
from .optim import OPTIMIZERS

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


class ImportModelError(Exception):
    """The file cannot be imported; the message says why in one line."""


def read_safetensors(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(the header's ``__metadata__``, or {} without one; the tensors by name) of a
    safetensors file, every length and offset checked against the file's size.
    Raises ImportModelError."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ImportModelError(f"{path} is truncated or not a safetensors file: "
                                       f"{size} bytes, shorter than the header's length field")
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size - 8:
                raise ImportModelError(
                    f"{path} is truncated or not a safetensors file: its header length "
                    f"({length:,} bytes) points past the end of the file ({size:,} bytes)")
            if length > MAX_HEADER:
                raise ImportModelError(f"{path} is not a safetensors file: a header of "
                                       f"{length:,} bytes")
            try:
                header = json.loads(f.read(length).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise ImportModelError(f"{path} is not a safetensors file (its header is not "
                                       f"JSON)") from None
            if not isinstance(header, dict):
                raise ImportModelError(f"{path} is not a safetensors file (its header is not "
                                       f"a JSON object)")
            metadata = header.pop("__metadata__", None) or {}
            tensors = {}
            for name, entry in header.items():
                tensors[name] = _read_tensor(f, path, name, entry, 8 + length, size)
    except OSError as error:
        raise ImportModelError(f"cannot read {path}: {error.strerror or error}") from None
    return metadata, tensors


def _read_tensor(f, path, name, entry, data_start, size) -> np.ndarray:
    try:
        dtype_name, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not all(isinstance(n, int) and n >= 0 for n in [*shape, begin, end]):
            raise TypeError
    except (KeyError, TypeError, ValueError):
        raise ImportModelError(f"{path} is not a safetensors file: a malformed entry for "
                               f"{name!r}") from None
    if dtype_name not in DTYPES:
        raise ImportModelError(f"{path}: {name} holds {dtype_name} numbers; charrnn imports "
                               f"F32 or F64 (in torch, .float() the weights before saving)")
    dtype = DTYPES[dtype_name]
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise ImportModelError(f"{path} is not a valid safetensors file: {name}'s offsets "
                               f"do not match its shape {shape}")
    if data_start + end > size:
        raise ImportModelError(f"{path} is truncated: {name} ends at byte {data_start + end:,}, "
                               f"past the end of the file ({size:,} bytes)")
    f.seek(data_start + begin)
    return np.frombuffer(f.read(end - begin), dtype).reshape(shape)


def _foreign(name: str, expected: dict) -> str:
    """Why an entry the model does not have cannot be imported."""
    if name.endswith("_reverse"):
        return (f"{name} belongs to a bidirectional layer; charrnn's layers read the text "
                f"left to right only")
    if name.startswith("weight_hr_l"):
        return f"{name} is an LSTM projection (proj_size); charrnn's LSTM has none"
    return (f"{name} is not an entry of this model, which has "
            f"{', '.join(list(expected)[:4])}, ..., {', '.join(list(expected)[-2:])}")


def checkpoint_from_export(path: str) -> Checkpoint:
    """The charrnn model of the export at ``path`` (see the module docstring).
    Raises ImportModelError with a one-line reason."""
    metadata, tensors = read_safetensors(path)
    if metadata.get("format") != MARKER or "vocab" not in metadata or "model" not in metadata:
        raise ImportModelError(
            f"{path} has no charrnn metadata (format {MARKER}, vocab, model): only a file "
            f"made by charrnn export can be imported; when saving from torch, pass the "
            f"export's metadata (safetensors' save_file(..., metadata=...))")
    try:
        version = int(metadata.get("format_version", FORMAT_VERSION))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise ImportModelError(f"{path} has export format {metadata.get('format_version')!r}; "
                               f"this charrnn reads format {FORMAT_VERSION}")
    try:
        vocab = json.loads(metadata["vocab"])
        description = json.loads(metadata["model"])
        network = network_from_description(description)
    except ValueError as error:
        raise ImportModelError(f"{path}: its metadata is not a charrnn model ({error})") from None
    if (not isinstance(vocab, list) or not vocab
            or not all(isinstance(c, str) and len(c) == 1 for c in vocab)
            or vocab != sorted(set(vocab))):
        raise ImportModelError(f"{path}: its vocabulary is not a list of distinct single "
                               f"characters in code-point order")
    expected = torch_shapes(network)
    for name in tensors:
        if name not in expected:
            raise ImportModelError(f"{path}: {_foreign(name, expected)}")
    out_weight = OUTPUT_PREFIX + "weight"
    rows = tensors[out_weight].shape[0] if out_weight in tensors else network.vocab_size
    if len(vocab) != network.vocab_size or rows != len(vocab):
        raise ImportModelError(
            f"{path}: its vocabulary has {len(vocab)} characters, but its model says "
            f"{network.vocab_size} and its output layer ({out_weight}) has {rows} rows")
    for name, value in tensors.items():
        if not np.isfinite(value).all():
            raise ImportModelError(f"{path}: {name} holds NaN or inf")
    try:
        params = from_torch_state_dict(network, tensors)
    except ValueError as error:
        raise ImportModelError(f"{path}: {error}") from None
    s = network.spec
    config = TrainConfig.for_new_run(cell=s.cell, num_layers=s.num_layers,
                                     hidden_size=s.hidden_size, dropout=float(s.dropout),
                                     dtype=network.dtype.name)
    state = {"iteration": 0, "position": 0, "chars_seen": 0,
             "smooth_loss": math.log(len(vocab)), "elapsed_seconds": 0.0,
             "best_val_loss": None, "last_val_loss": None, "blas_threads": None}
    return Checkpoint(config=config, vocab=Vocabulary(vocab), params=params,
                      optimizer_state={slot: params.zeros_like()
                                       for slot in OPTIMIZERS[config.optimizer].SLOTS},
                      carry=network.zero_state(config.batch_size), state=state)
