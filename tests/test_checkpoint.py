"""Checkpoint files: round-trip of every field, pickle-free format, atomic and failure-safe
saving, and validation on load (every broken or hostile file is a CheckpointError).
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from charrnn.checkpoint import (FORMAT_VERSION, HISTORY_COLUMNS, Checkpoint, CheckpointError,
                                load_checkpoint, save_checkpoint)
from charrnn.config import TrainConfig
from charrnn.data import Vocabulary
from charrnn.model import ModelSpec, Network, ParamSet

# The parameters of one vanilla layer (the model of TrainConfig's defaults), and its state.
PARAM_NAMES = ("l1.Wxh", "l1.Whh", "l1.bh", "Why", "by")
CARRY_NAMES = ("l1.h",)
PARAM_KEYS = (tuple("params." + name for name in PARAM_NAMES)
              + tuple("adagrad." + name for name in PARAM_NAMES))
CARRY_KEYS = tuple("carry." + name for name in CARRY_NAMES)
ALL_KEYS = ("format_version", "vocab", "config", "state", "history") + PARAM_KEYS + CARRY_KEYS


def param_shapes(V, H) -> dict:
    return Network(ModelSpec(V, H)).param_shapes


def random_checkpoint(rng: np.random.Generator, chars="abc\n é日🙂", hidden_size=4,
                      batch_size=2, dtype="float64", history_rows=3) -> Checkpoint:
    """A checkpoint with random contents (every field differs from its default)."""
    vocab = Vocabulary(chars)
    V, H = len(vocab), hidden_size
    config = TrainConfig(hidden_size=H, seq_length=7, batch_size=batch_size, learning_rate=0.05,
                         clip=3.0, max_iters=123, val_fraction=0.2, eval_every=11,
                         checkpoint_every=13, sample_every=0, dtype=dtype, random_seed=42,
                         init_scale=0.02)
    params = Network(config.model_spec(V), dtype).zeros()
    params.flat[...] = rng.standard_normal(params.flat.size)
    memory = params.zeros_like()
    memory.flat[...] = rng.random(memory.flat.size) * 10
    carry = {"l1.h": np.tanh(rng.standard_normal((batch_size, H))).astype(dtype)}
    state = {"iteration": 77, "position": 14, "chars_seen": 77 * 7 * batch_size,
             "smooth_loss": 1.2345678901234567, "elapsed_seconds": 3.25,
             "rng_state": np.random.default_rng(5).bit_generator.state,
             "text_sha256": "ab" * 32, "best_val_loss": 1.5, "last_val_loss": 1.75}
    history = rng.random((history_rows, len(HISTORY_COLUMNS)))
    if history_rows:
        history[0, 3] = math.nan   # no validation text at that evaluation
    return Checkpoint(config, vocab, params, {"adagrad": memory}, carry, state, history)


def assert_same_checkpoint(a: Checkpoint, b: Checkpoint) -> None:
    """Every field equal, arrays bit for bit (so -0.0 and NaN payloads count too)."""
    assert a.config == b.config
    assert a.vocab.chars == b.vocab.chars
    for name in PARAM_NAMES:
        for x, y in ((a.params[name], b.params[name]),
                     (a.optimizer_state["adagrad"][name], b.optimizer_state["adagrad"][name])):
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes(), name
    assert list(a.params) == list(b.params) == list(PARAM_NAMES)
    assert list(a.optimizer_state) == list(b.optimizer_state) == ["adagrad"]
    assert (list(a.optimizer_state["adagrad"]) == list(b.optimizer_state["adagrad"])
            == list(PARAM_NAMES))
    assert a.carry.keys() == b.carry.keys() == set(CARRY_NAMES)
    for name in CARRY_NAMES:
        x, y = a.carry[name], b.carry[name]
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert a.state == b.state
    assert a.history.shape == b.history.shape
    assert np.asarray(a.history).tobytes() == np.asarray(b.history, dtype=np.float64).tobytes()


def write_npz(path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture
def checkpoint():
    return random_checkpoint(np.random.default_rng(1))


@pytest.fixture
def saved(tmp_path, checkpoint):
    """A valid checkpoint file; returns its path."""
    path = tmp_path / "model.npz"
    save_checkpoint(path, checkpoint)
    return path


# --- round trip and format --------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_every_field(tmp_path, dtype):
    original = random_checkpoint(np.random.default_rng(2), dtype=dtype)
    path = tmp_path / "m.npz"
    save_checkpoint(path, original)
    assert_same_checkpoint(load_checkpoint(path), original)
    assert load_checkpoint(str(path)).params["l1.Wxh"].dtype == np.dtype(dtype)


def test_round_trip_of_empty_history(tmp_path):
    original = random_checkpoint(np.random.default_rng(3), history_rows=0)
    save_checkpoint(tmp_path / "m.npz", original)
    loaded = load_checkpoint(tmp_path / "m.npz")
    assert loaded.history.shape == (0, len(HISTORY_COLUMNS))


def test_file_is_pickle_free_npz_with_documented_keys(saved, checkpoint):
    """np.load with allow_pickle=False reads every key; config and state are JSON strings."""
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    assert set(arrays) == set(ALL_KEYS)
    assert all(a.dtype != object for a in arrays.values())
    assert int(arrays["format_version"]) == FORMAT_VERSION
    assert "".join(arrays["vocab"].tolist()) == "".join(checkpoint.vocab.chars)
    assert json.loads(str(arrays["config"])) == checkpoint.config.to_dict()
    assert json.loads(str(arrays["state"])) == checkpoint.state.to_dict()
    V, H = len(checkpoint.vocab), checkpoint.config.hidden_size
    for name, shape in param_shapes(V, H).items():
        assert arrays["params." + name].shape == shape and arrays["adagrad." + name].shape == shape
    assert arrays["carry.l1.h"].shape == (checkpoint.config.batch_size, H)
    assert arrays["history"].shape == (3, len(HISTORY_COLUMNS))


def test_saving_over_an_existing_checkpoint_replaces_it(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, random_checkpoint(np.random.default_rng(4)))
    second = random_checkpoint(np.random.default_rng(5))
    save_checkpoint(path, second)
    assert_same_checkpoint(load_checkpoint(path), second)
    assert os.listdir(tmp_path) == ["m.npz"]


# --- atomic and failure-safe saving -----------------------------------------------------

def test_save_leaves_no_temporary_files(tmp_path, checkpoint):
    for name in ("a.npz", "b.best.npz", "a.npz"):
        save_checkpoint(tmp_path / name, checkpoint)
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.best.npz"]


def test_save_writes_a_temporary_in_the_same_folder_then_renames(tmp_path, checkpoint, monkeypatch):
    """The rename must be within one folder (one file system), so that it is atomic."""
    renames = []
    real_replace = os.replace

    def spy(src, dst, *args, **kwargs):
        renames.append((os.fspath(src), os.fspath(dst)))
        assert os.path.getsize(src) > 0 and not os.path.exists(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    save_checkpoint(tmp_path / "m.npz", checkpoint)
    assert len(renames) == 1
    src, dst = renames[0]
    assert os.path.abspath(dst) == str(tmp_path / "m.npz")
    assert os.path.dirname(os.path.abspath(src)) == str(tmp_path)
    assert src != dst


def full_disk_savez(file, *args, **kwargs):
    """Like np.savez on a full disk: some bytes get written, then ENOSPC."""
    file.write(b"PK\x03\x04 partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_replace(src, dst, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("target, failure", [(np, ("savez", full_disk_savez)),
                                             (os, ("replace", full_disk_replace))],
                         ids=["savez", "os.replace"])
def test_failed_write_keeps_previous_checkpoint(tmp_path, checkpoint, monkeypatch, target, failure):
    path = tmp_path / "m.npz"
    save_checkpoint(path, checkpoint)
    before = path.read_bytes()
    monkeypatch.setattr(target, *failure)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(path, random_checkpoint(np.random.default_rng(9)))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
    assert_same_checkpoint(load_checkpoint(path), checkpoint)


def test_failed_first_write_leaves_nothing(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(np, "savez", full_disk_savez)
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "m.npz", checkpoint)
    assert os.listdir(tmp_path) == []


def test_save_into_missing_folder_is_a_checkpoint_error(tmp_path, checkpoint):
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "no" / "such" / "m.npz", checkpoint)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", PARAM_NAMES)
def test_save_refuses_non_finite_parameters(tmp_path, checkpoint, name, bad):
    path = tmp_path / "m.npz"
    save_checkpoint(path, checkpoint)
    before = path.read_bytes()
    broken = random_checkpoint(np.random.default_rng(6))
    broken.params[name].reshape(-1)[0] = bad
    with pytest.raises(CheckpointError):
        save_checkpoint(path, broken)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_whatever_save_accepts_load_reads_back(tmp_path, name):
    """A NaN Adagrad memory must be refused when saving, since load_checkpoint refuses it:
    otherwise training writes a checkpoint that can never be resumed."""
    broken = random_checkpoint(np.random.default_rng(7))
    broken.optimizer_state["adagrad"][name].reshape(-1)[0] = math.nan
    path = tmp_path / "m.npz"
    try:
        save_checkpoint(path, broken)
    except CheckpointError:
        assert not path.exists()
        return
    load_checkpoint(path)   # must not raise if the save succeeded


# --- validation on load -----------------------------------------------------------------

def load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_load_missing_file(tmp_path):
    assert "no-such.npz" in load_error(tmp_path / "no-such.npz")


def test_load_directory(tmp_path):
    load_error(tmp_path)


def test_load_empty_file(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"")
    load_error(tmp_path / "m.npz")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_load_truncated_file(saved, fraction):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * fraction)])
    load_error(saved)


def test_load_random_bytes(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    load_error(path)


def test_load_npy_instead_of_npz(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 4)))
    load_error(path)


def test_load_text_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_text("this is not a checkpoint\n")
    load_error(path)


@pytest.mark.parametrize("key", ALL_KEYS)
def test_load_missing_key(tmp_path, checkpoint, key):
    arrays = checkpoint.to_arrays()
    del arrays[key]
    write_npz(tmp_path / "m.npz", arrays)
    assert key in load_error(tmp_path / "m.npz")


@pytest.mark.parametrize("key, shape", [("params.l1.Wxh", (4, 9)), ("params.l1.Whh", (4, 5)),
                                        ("params.Why", (4, 8)), ("params.l1.bh", (5,)),
                                        ("params.by", (8, 1)), ("adagrad.l1.Whh", (5, 4)),
                                        ("adagrad.by", (7,)), ("carry.l1.h", (3, 4)),
                                        ("carry.l1.h", (4,)),
                                        ("history", (3, 4)), ("history", (5,))])
def test_load_inconsistent_shapes(tmp_path, checkpoint, key, shape):
    assert len(checkpoint.vocab) == 8 and checkpoint.config.hidden_size == 4
    arrays = checkpoint.to_arrays()
    arrays[key] = np.zeros(shape, dtype=arrays[key].dtype)
    write_npz(tmp_path / "m.npz", arrays)
    load_error(tmp_path / "m.npz")


@pytest.mark.parametrize("key", ["params.l1.Wxh", "adagrad.l1.Whh", "carry.l1.h"])
def test_load_wrong_dtype(tmp_path, checkpoint, key):
    arrays = checkpoint.to_arrays()
    arrays[key] = arrays[key].astype(np.float32)   # the config says float64
    write_npz(tmp_path / "m.npz", arrays)
    load_error(tmp_path / "m.npz")


def test_load_non_finite_parameters(tmp_path, checkpoint):
    arrays = checkpoint.to_arrays()
    arrays["params.l1.Whh"] = arrays["params.l1.Whh"].copy()
    arrays["params.l1.Whh"][0, 0] = math.nan
    write_npz(tmp_path / "m.npz", arrays)
    load_error(tmp_path / "m.npz")


def test_checkpoint_from_before_the_schedule_resumes_at_a_constant_rate(tmp_path, checkpoint):
    """Models saved before warmup_fraction and decay_fraction existed were trained at a constant
    learning rate: loading one must not switch on today's default schedule."""
    arrays = checkpoint.to_arrays()
    config = json.loads(str(arrays["config"]))
    del config["warmup_fraction"], config["decay_fraction"]
    arrays["config"] = np.array(json.dumps(config))
    write_npz(tmp_path / "m.npz", arrays)
    loaded = load_checkpoint(tmp_path / "m.npz").config
    assert (loaded.warmup_fraction, loaded.decay_fraction) == (0.0, 0.0)
    assert TrainConfig().warmup_fraction > 0 and TrainConfig().decay_fraction > 0


def test_load_newer_format_version(tmp_path, checkpoint):
    arrays = checkpoint.to_arrays()
    arrays["format_version"] = np.array(FORMAT_VERSION + 1, dtype=np.int64)
    write_npz(tmp_path / "m.npz", arrays)
    assert str(FORMAT_VERSION + 1) in load_error(tmp_path / "m.npz")


@pytest.mark.parametrize("key, value", [
    ("config", "not json"), ("config", "[1, 2]"), ("config", '{"hidden_size": "big"}'),
    ("config", '{"no_such_setting": 1}'), ("state", "{}"), ("state", '{"iteration": "x"}'),
    ("vocab", None), ("format_version", None)])
def test_load_bad_metadata(tmp_path, checkpoint, key, value):
    arrays = checkpoint.to_arrays()
    if key == "vocab":
        arrays[key] = np.array(["b", "a", "c", "d", "e", "f", "g", "h"])   # not sorted
    elif key == "format_version":
        arrays[key] = np.array("1")
    else:
        arrays[key] = np.array(value)
    write_npz(tmp_path / "m.npz", arrays)
    load_error(tmp_path / "m.npz")


class Trap:
    """Unpickling this creates the marker file: proof that the file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("key", ["evil", "vocab", "state"])
def test_load_refuses_pickled_object_array_without_unpickling(tmp_path, checkpoint, key):
    marker = tmp_path / "unpickled"
    arrays = checkpoint.to_arrays()
    trap = np.empty(1, dtype=object)
    trap[0] = Trap(marker)
    arrays[key] = trap
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)   # np.savez pickles object arrays
    assert "pickle" in load_error(path)
    assert not marker.exists()
    # Control: the trap is armed, so the assertion above could fail.
    with np.load(path, allow_pickle=True) as npz:
        npz[key][0].close()   # unpickling ran open(marker, "w")
    assert marker.exists()


def test_load_refuses_a_plain_pickle(tmp_path, checkpoint):
    marker = tmp_path / "unpickled"
    path = tmp_path / "m.npz"
    path.write_bytes(pickle.dumps(Trap(marker)))
    load_error(path)
    assert not marker.exists()


# --- property-based ---------------------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)
vocab_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@st.composite
def checkpoints(draw):
    chars = draw(st.sets(vocab_chars, min_size=1, max_size=6))
    V = len(chars)
    H = draw(st.integers(1, 5))
    B = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    config = TrainConfig(
        hidden_size=H, batch_size=B, dtype=dtype,
        seq_length=draw(st.integers(1, 100)),
        learning_rate=draw(st.floats(1e-6, 10, **finite)),
        warmup_fraction=draw(st.floats(0, 1, **finite)),
        decay_fraction=draw(st.floats(0, 1, **finite)),
        max_iters=draw(st.integers(1, 10 ** 9)),
        val_fraction=draw(st.floats(0, 0.99, **finite)),
        random_seed=draw(st.integers(0, 2 ** 64 - 1)))
    vocab = Vocabulary(chars)

    def floats(shape):
        return draw(hnp.arrays(dtype, shape, elements=st.floats(width=32 if dtype == "float32" else 64,
                                                                **finite)))

    shapes = param_shapes(V, H)
    params, memory = ParamSet(shapes, dtype), ParamSet(shapes, dtype)
    for name, shape in shapes.items():
        params[name] = floats(shape)
        memory[name] = np.abs(floats(shape))
    state = {"iteration": draw(st.integers(0, 10 ** 12)), "position": draw(st.integers(0, 10 ** 9)),
             "chars_seen": draw(st.integers(0, 10 ** 15)),
             "smooth_loss": draw(st.floats(0, 100, **finite)),
             "elapsed_seconds": draw(st.floats(0, 1e9, **finite)),
             "text_sha256": draw(st.text(max_size=10)),
             "best_val_loss": draw(st.none() | st.floats(0, 100, **finite))}
    history = draw(hnp.arrays(np.float64, (draw(st.integers(0, 4)), len(HISTORY_COLUMNS)),
                              elements=st.floats(allow_infinity=False, allow_nan=False)))
    return Checkpoint(config, vocab, params, {"adagrad": memory}, {"l1.h": floats((B, H))},
                      state, history)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(checkpoint=checkpoints())
def test_round_trip_of_random_checkpoints(tmp_path, checkpoint):
    path = tmp_path / "h.npz"
    save_checkpoint(path, checkpoint)
    assert_same_checkpoint(load_checkpoint(path), checkpoint)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000) | st.binary(max_size=500).map(lambda b: b"PK\x03\x04" + b)
       | st.binary(max_size=500).map(lambda b: b"\x93NUMPY" + b))
def test_arbitrary_bytes_give_checkpoint_error(tmp_path, data):
    path = tmp_path / "h.npz"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def valid_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **random_checkpoint(np.random.default_rng(8), chars="ab",
                                         hidden_size=1, batch_size=1, history_rows=1).to_arrays())
    return buffer.getvalue()


VALID = valid_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                      min_size=1, max_size=4),
       cut=st.integers(1, len(VALID)))
def test_corrupted_checkpoint_loads_or_gives_checkpoint_error(tmp_path, edits, cut):
    """Byte flips and truncations of a valid file: a checkpoint or CheckpointError, nothing else."""
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    path = tmp_path / "h.npz"
    path.write_bytes(bytes(data[:cut]))
    try:
        loaded = load_checkpoint(path)
    except CheckpointError:
        return
    assert isinstance(loaded, Checkpoint)


def test_valid_bytes_is_a_zip_with_every_key():
    """The corruption test above starts from a genuine checkpoint."""
    with zipfile.ZipFile(io.BytesIO(VALID)) as archive:
        assert sorted(archive.namelist()) == sorted(key + ".npy" for key in ALL_KEYS)
