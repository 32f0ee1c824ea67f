"""``charrnn export``: a model's weights in a file other programs read, safetensors or JSON.

The weights are under PyTorch's names (charrnn.model.torch_names says which and how), with the
vocabulary and the model's description beside them, so that the file alone is enough to
rebuild the model and sample from it.

safetensors (https://github.com/huggingface/safetensors), written here by hand rather than
with the ``safetensors`` package: the format is a few lines (below), charrnn needs no
package for it, and the package's wheels need Python 3.10 or newer
where charrnn supports 3.9. The tests read our files back with the package and with torch.

    8 bytes     N, the header's length, unsigned little-endian
    N bytes     the header: a JSON object, {name: {"dtype": "F32", "shape": [...],
                "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}, padded
                with spaces so that the data starts at a multiple of 8
    the data    each tensor's bytes, C order, little-endian, back to back; offsets count
                from the start of the data

Our ``__metadata__`` (string values only, as the format requires):

    format            "charrnn-export": how charrnn recognises a file it may replace
    format_version    "1"
    charrnn_version   the version that wrote the file
    vocab             the characters as a JSON list of strings; index i is vocab[i]
    model             JSON: the description (cell, torch_module, num_layers, vocab_size,
                      hidden_size, dropout, dtype, ...; see torch_names.describe)

JSON (``--format json``): one object, ``{"format": "charrnn-export", "format_version": 1,
"charrnn_version": ..., "vocab": [...], "model": {...}, "weights": {name: nested lists}}``,
each number written with enough digits to give back the same float32 (9 significant digits)
or float64, so that ``Float32Array.from(...)`` or ``np.float32(...)`` of it is the exact weight.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from . import __version__
from .model import Network, ParamSet
from .model.torch_names import describe, from_torch_state_dict, network_from_description, \
    to_torch_state_dict
from .runfiles import (RunFilesError, atomic_file, best_path, check_current_folder,
                       checkpoint_target, history_path, is_charrnn_checkpoint, names_folder,
                       not_a_regular_file, refuse_folder, same_file)

FORMATS = {"safetensors": ".safetensors", "json": ".json"}
MARKER = "charrnn-export"
FORMAT_VERSION = 1
SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
MAX_HEADER = 100_000_000       # the safetensors package refuses larger headers too
JSON_PREFIX = '{"format": "%s"' % MARKER   # how every JSON export begins
JSON_WARNING_BYTES = 50_000_000


class ExportError(Exception):
    """The export cannot be made or written; the message says why in one line."""


# --------------------------------------------------------------------------- contents

def export_contents(network: Network, params: ParamSet, vocab_chars) -> tuple[dict, dict]:
    """(the header's fields without the weights, the weights by torch name)."""
    fields = {"format": MARKER, "format_version": FORMAT_VERSION,
              "charrnn_version": __version__, "vocab": list(vocab_chars),
              "model": describe(network)}
    return fields, to_torch_state_dict(network, params)


def safetensors_header_bytes(fields: dict, weights: dict[str, np.ndarray]) -> bytes:
    """The 8-byte length and the padded JSON header for ``weights`` in their order."""
    header, offset = {}, 0
    for name, value in weights.items():
        size = value.size * value.itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {
        "format": fields["format"], "format_version": str(fields["format_version"]),
        "charrnn_version": fields["charrnn_version"],
        "vocab": json.dumps(fields["vocab"], ensure_ascii=False),
        "model": json.dumps(fields["model"])}
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(f, fields: dict, weights: dict[str, np.ndarray]) -> None:
    f.write(safetensors_header_bytes(fields, weights))
    for value in weights.values():
        f.write(np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes())


def _json_numbers(value: np.ndarray) -> str:
    """``value`` (1-D or more) as nested JSON lists of numbers that give back its exact values:
    float32 with 9 significant digits (always enough for a float32, and three times faster
    than finding the shortest form), float64 in Python's shortest exact form."""
    if value.ndim > 1:
        return "[" + ",".join(_json_numbers(row) for row in value) + "]"
    form = "%.9g" if value.dtype == np.float32 else "%r"
    numbers = [form % number for number in value.tolist()]
    if "-0" in numbers:   # "%g" of -0.0; a JSON reader takes -0 for the integer 0
        numbers = ["-0.0" if number == "-0" else number for number in numbers]
    return "[" + ",".join(numbers) + "]"


def write_json(f, fields: dict, weights: dict[str, np.ndarray]) -> None:
    """One JSON object, written piece by piece (a big model's text is never all in memory)."""
    f.write(JSON_PREFIX)
    for key in ("format_version", "charrnn_version", "vocab", "model"):
        f.write(f", {json.dumps(key)}: {json.dumps(fields[key], ensure_ascii=False)}")
    f.write(', "weights": {')
    for i, (name, value) in enumerate(weights.items()):
        f.write(f'{", " if i else ""}\n  {json.dumps(name)}: ')
        f.write(_json_numbers(value))
    f.write("\n}}\n")


# --------------------------------------------------------------------------- reading back

def read_export(path: str) -> tuple[list[str], dict, dict[str, np.ndarray]]:
    """(vocabulary, description, weights by torch name) from an export of either format.
    Raises ExportError if ``path`` is not one."""
    try:
        with open(path, "rb") as f:
            start = f.read(len(JSON_PREFIX))
            f.seek(0)
            if start == JSON_PREFIX.encode():
                document = json.loads(f.read().decode("utf-8"))
                network = network_from_description(document["model"])
                weights = {name: np.asarray(value, dtype=network.dtype)
                           for name, value in document["weights"].items()}
                return document["vocab"], document["model"], weights
            header, data_start = _safetensors_header(f)
            metadata = header.pop("__metadata__")
            if metadata.get("format") != MARKER:
                raise ValueError("no charrnn metadata")
            weights = {}
            for name, entry in header.items():
                dtype = {v: k for k, v in SAFETENSORS_DTYPES.items()}[entry["dtype"]]
                begin, end = entry["data_offsets"]
                f.seek(data_start + begin)
                raw = f.read(end - begin)
                weights[name] = np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype) \
                    .reshape(entry["shape"])
            return json.loads(metadata["vocab"]), json.loads(metadata["model"]), weights
    except OSError as error:
        raise ExportError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError, AttributeError, struct.error):
        raise ExportError(f"{path} is not a charrnn export") from None


def _safetensors_header(f) -> tuple[dict, int]:
    """The header of the safetensors file open as ``f``, and where its data starts."""
    raw = f.read(8)
    if len(raw) != 8:
        raise ValueError("too short")
    (length,) = struct.unpack("<Q", raw)
    if not 2 <= length <= MAX_HEADER:
        raise ValueError("not a safetensors header")
    text = f.read(length)
    if len(text) != length or not text.startswith(b"{"):
        raise ValueError("not a safetensors header")
    header = json.loads(text.decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("not a safetensors header")
    return header, 8 + length


def model_from_export(path: str):
    """(vocabulary, Network, ParamSet) of an export: the model it was made from."""
    vocab, description, weights = read_export(path)
    try:
        network = network_from_description(description)
        return vocab, network, from_torch_state_dict(network, weights)
    except ValueError as error:
        raise ExportError(f"{path} is not a usable charrnn export: {error}") from None


def is_charrnn_export(path: str) -> bool:
    """True if ``path`` is a regular file that begins like an export charrnn wrote (only its
    header is read: the JSON prefix, or the safetensors header with charrnn's metadata)."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            if f.read(len(JSON_PREFIX)) == JSON_PREFIX.encode():
                return True
            f.seek(0)
            header, _ = _safetensors_header(f)
        metadata = header.get("__metadata__")
        return isinstance(metadata, dict) and metadata.get("format") == MARKER
    except Exception:   # any failure to parse arbitrary bytes means the same: not ours
        return False


# --------------------------------------------------------------------------- names and checks

def format_for(output: str | None, requested: str | None) -> str:
    """The format to write: ``requested`` (--format), else the one -o's extension names
    (.json: json), else safetensors. ExportError for an unknown format, or one that
    contradicts the extension (-o m.json --format safetensors)."""
    requested = requested.lower() if requested is not None else None
    if requested is not None and requested not in FORMATS:
        raise ExportError(f"--format {requested}: unknown format; choose "
                          f"{' or '.join(FORMATS)}")
    named = None
    if output is not None and not names_folder(output):   # (a folder is refused later)
        extension = os.path.splitext(output)[1].lower()
        named = next((name for name, ext in FORMATS.items() if ext == extension), None)
    if requested is not None and named is not None and requested != named:
        raise ExportError(f"-o {output} names a {named} file, but --format is {requested}; "
                          f"change one of them")
    return requested or named or "safetensors"


def default_output(checkpoint_path: str, fmt: str) -> str:
    """Beside the checkpoint: ``m.npz`` -> ``m.safetensors`` (``m.best.npz`` ->
    ``m.best.safetensors``, so never the checkpoint's ``m.csv`` history or ``.best.npz``
    twin); a checkpoint not named ``.npz`` keeps its whole name (``m.bin`` -> ``m.bin.json``),
    so that the export is never the checkpoint itself."""
    stem = checkpoint_path[:-len(".npz")] if checkpoint_path.endswith(".npz") else checkpoint_path
    return stem + FORMATS[fmt]


def check_export_output(output: str, checkpoint_path: str, fmt: str = "safetensors") -> None:
    """Refuse an output that would overwrite anything but an export charrnn wrote
    (ExportError): the checkpoint, its best twin or history, any .npz, a folder or special
    file, any other existing file; and a folder that does not exist."""
    try:
        check_current_folder(output, checkpoint_path)
        refuse_folder(output, "-o", os.path.basename(default_output(checkpoint_path, fmt)))
    except RunFilesError as error:
        raise ExportError(str(error)) from None
    target = checkpoint_target(checkpoint_path)
    own = {checkpoint_path: "the checkpoint", target: "the checkpoint",
           best_path(target): "the checkpoint's best twin",
           history_path(target): "the checkpoint's history"}
    for path, what in own.items():
        if os.path.abspath(output) == os.path.abspath(path) or same_file(output, path):
            raise ExportError(f"-o {output} is {what}; name a new file, e.g. "
                              f"{default_output(checkpoint_path, 'safetensors')}")
    if output.lower().endswith(".npz") or is_charrnn_checkpoint(output):
        raise ExportError(f"-o {output} would overwrite a checkpoint; name a .safetensors or "
                          f".json file")
    if os.path.lexists(output):
        kind = not_a_regular_file(output)
        if kind:
            raise ExportError(f"-o {output} is {kind}; name a file")
        if os.path.exists(output) and not is_charrnn_export(output):
            raise ExportError(f"-o {output} exists and is not a charrnn export; charrnn replaces "
                              f"only its own exports: choose another name, or remove it first")
    folder = os.path.dirname(os.path.realpath(output))
    if not os.path.isdir(folder):
        raise ExportError(f"cannot write {output}: the folder {folder} does not exist")


# --------------------------------------------------------------------------- the export

def export_model(network: Network, params: ParamSet, vocab_chars, output: str,
                 fmt: str) -> int:
    """Write the model to ``output`` (atomically: a temporary renamed over it) in ``fmt``.
    Returns the file's size in bytes. Raises ExportError; ``output`` is then untouched."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose {' or '.join(FORMATS)}")
    fields, weights = export_contents(network, params, vocab_chars)
    try:
        if fmt == "json":
            with atomic_file(output, "w", encoding="utf-8", newline="\n") as f:
                write_json(f, fields, weights)
        else:
            with atomic_file(output, "wb") as f:
                write_safetensors(f, fields, weights)
        return os.path.getsize(output)
    except OSError as error:
        raise ExportError(f"cannot write {output}: {error.strerror or error}") from None
