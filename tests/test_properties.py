"""Property-based tests (hypothesis) for the parts that meet arbitrary input (issue 4).

- Vocabulary: encode/decode round-trips on arbitrary Unicode text (lone surrogates included),
  and characters outside the vocabulary are all named.
- read_corpus: any text, in UTF-8 or UTF-16, read block by block with tiny blocks (so that
  multi-byte characters are split across blocks), decodes to exactly that text.
- Checkpoints: save/load round-trips bit for bit; and loading anything that is not a valid
  checkpoint (arbitrary bytes, truncations and byte flips of a valid file, valid archives with
  one array replaced by an arbitrary one) ends in CheckpointError, never another exception.
"""
from __future__ import annotations

import hashlib
import json
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import charrnn.data
from charrnn.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from charrnn.config import TrainConfig
from charrnn.data import CorpusError, UnknownCharactersError, Vocabulary, read_corpus
from charrnn.model import Network

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

any_character = st.one_of(st.characters(exclude_categories=()),   # everything, surrogates too
                          st.characters(categories=["Cs"]),         # lone surrogates, more often
                          st.characters(max_codepoint=0x7F))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder for the files each example writes (module-scoped: hypothesis runs many
    examples per test, and a function-scoped tmp_path would be shared by all of them anyway)."""
    return tmp_path_factory.mktemp("properties")


# --------------------------------------------------------------------------- vocabulary

@FAST
@given(st.text(any_character, max_size=200))
def test_vocabulary_round_trip(text):
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == tuple(sorted(set(text)))
    indices = vocab.encode(text)
    assert indices.shape == (len(text),)
    assert indices.dtype.kind == "u"
    assert (indices < max(len(vocab), 1)).all()
    assert vocab.decode(indices) == text
    assert [vocab.chars[i] for i in indices] == list(text)


@FAST
@given(st.text(any_character, min_size=1, max_size=50), st.text(any_character, min_size=1, max_size=20))
def test_unknown_characters_are_all_named(known, other):
    strangers = set(other) - set(known)
    assume(strangers)
    vocab = Vocabulary.from_text(known)
    with pytest.raises(UnknownCharactersError) as raised:
        vocab.encode(known + other)
    assert raised.value.chars == sorted(strangers)


# --------------------------------------------------------------------------- reading text

def written(path, data: bytes):
    """``path``, after writing ``data`` to it."""
    path.write_bytes(data)
    return path


@settings(FAST, max_examples=40)
@given(text=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                   min_size=1, max_size=80),
       encoding=st.sampled_from(["utf-8", "utf-16"]), block=st.integers(1, 7))
def test_read_corpus_round_trip_in_tiny_blocks(scratch, text, encoding, block):
    data = text.encode(encoding)
    path = written(scratch / "text.txt", data)
    with mock.patch.object(charrnn.data, "READ_BLOCK_BYTES", block):
        corpus = read_corpus(path, encoding)
    assert corpus.vocab.decode(corpus.indices) == text
    assert corpus.vocab.chars == tuple(sorted(set(text)))
    assert corpus.sha256 == hashlib.sha256(data).hexdigest()


@settings(FAST, max_examples=40)
@given(prefix=st.text(st.characters(max_codepoint=0x7FF, exclude_characters="\x00"), max_size=30),
       block=st.integers(1, 7))
def test_invalid_utf8_offset_is_exact_in_any_block_size(scratch, prefix, block):
    """The reported byte offset is that of the first bad byte, whatever the block size."""
    data = prefix.encode("utf-8") + b"\xff" + b"tail"
    path = written(scratch / "bad.txt", data)
    with mock.patch.object(charrnn.data, "READ_BLOCK_BYTES", block):
        with pytest.raises(CorpusError) as raised:
            read_corpus(path, "utf-8")
    assert f"offset {len(prefix.encode('utf-8'))}" in str(raised.value)


# --------------------------------------------------------------------------- checkpoints

@st.composite
def checkpoints(draw) -> Checkpoint:
    # NUL cannot be stored in a <U1 array (NumPy strips trailing NULs), and read_corpus
    # refuses texts holding it, so a vocabulary never contains it.
    chars = draw(st.sets(st.characters(exclude_characters="\x00"), min_size=1, max_size=12))
    hidden_size = draw(st.integers(1, 6))
    batch_size = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    config = TrainConfig(hidden_size=hidden_size, batch_size=batch_size, dtype=dtype,
                         seq_length=draw(st.integers(1, 100)), random_seed=seed,
                         learning_rate=draw(st.floats(1e-6, 10)))
    vocab = Vocabulary(chars)
    network = Network(config.model_spec(len(vocab)), dtype)
    params = network.zeros()
    params.flat[...] = rng.standard_normal(params.flat.size)
    memory = network.zeros()
    memory.flat[...] = rng.random(memory.flat.size) * 100
    carry = {"l1.h": rng.uniform(-1, 1, (batch_size, hidden_size)).astype(dtype)}
    n_rows = draw(st.integers(0, 4))
    history = rng.standard_normal((n_rows, 5))
    state = {"iteration": draw(st.integers(0, 10 ** 9)), "position": draw(st.integers(0, 10 ** 6)),
             "chars_seen": draw(st.integers(0, 10 ** 12)),
             "smooth_loss": draw(st.floats(0, 100)), "elapsed_seconds": draw(st.floats(0, 1e7)),
             "rng_state": rng.bit_generator.state, "text_sha256": "0" * 64,
             "best_val_loss": draw(st.none() | st.floats(0, 100)), "last_val_loss": None}
    return Checkpoint(config, vocab, params, {"adagrad": memory}, carry, state, history)


@settings(FAST, max_examples=40)
@given(checkpoint=checkpoints())
def test_checkpoint_save_load_round_trip(scratch, checkpoint):
    path = scratch / "round.npz"
    save_checkpoint(path, checkpoint)
    loaded = load_checkpoint(path)
    assert loaded.config == checkpoint.config
    assert loaded.vocab == checkpoint.vocab
    assert loaded.state == checkpoint.state
    for name in checkpoint.params:
        for mine, theirs in ((checkpoint.params, loaded.params),
                             (checkpoint.optimizer_state["adagrad"],
                              loaded.optimizer_state["adagrad"])):
            assert theirs[name].dtype == mine[name].dtype
            assert theirs[name].tobytes() == mine[name].tobytes()
    assert loaded.carry.keys() == checkpoint.carry.keys() == {"l1.h"}
    for name in checkpoint.carry:
        assert loaded.carry[name].dtype == checkpoint.carry[name].dtype
        assert loaded.carry[name].tobytes() == checkpoint.carry[name].tobytes()
    assert np.asarray(loaded.history).tobytes() == np.asarray(checkpoint.history).tobytes()


@pytest.fixture(scope="module")
def valid(scratch):
    """The bytes and the arrays of one valid checkpoint."""
    vocab = Vocabulary("abc d")
    rng = np.random.default_rng(0)
    config = TrainConfig(hidden_size=3, batch_size=2)
    params = Network(config.model_spec(len(vocab)), np.float32).zeros()
    params.flat[...] = rng.standard_normal(params.flat.size)
    state = {"iteration": 7, "position": 8, "chars_seen": 112, "smooth_loss": 1.5,
             "elapsed_seconds": 0.25}
    checkpoint = Checkpoint(config, vocab, params, {"adagrad": params.zeros_like()},
                            {"l1.h": np.zeros((2, 3), np.float32)}, state)
    save_checkpoint(scratch / "valid.npz", checkpoint)
    load_checkpoint(scratch / "valid.npz")
    return (scratch / "valid.npz").read_bytes(), checkpoint.to_arrays()


def loads_or_refuses(path) -> None:
    """load_checkpoint either succeeds or raises CheckpointError; anything else fails the test."""
    try:
        load_checkpoint(path)
    except CheckpointError:
        pass


@FAST
@given(st.one_of(st.binary(max_size=2000),
                 st.binary(max_size=2000).map(lambda b: b"PK\x03\x04" + b),     # zip magic
                 st.binary(max_size=2000).map(lambda b: b"PK\x05\x06" + b),     # empty zip
                 st.binary(max_size=500).map(lambda b: b"\x93NUMPY\x01\x00" + b)))  # .npy magic
def test_arbitrary_bytes_are_refused_with_checkpoint_error(scratch, data):
    with pytest.raises(CheckpointError):
        load_checkpoint(written(scratch / "bytes.npz", data))


@FAST
@given(st.data())
def test_truncated_checkpoint_is_refused(scratch, valid, data):
    good, _ = valid
    cut = data.draw(st.integers(0, len(good) - 1))
    with pytest.raises(CheckpointError):
        load_checkpoint(written(scratch / "truncated.npz", good[:cut]))


@FAST
@given(st.data())
def test_checkpoint_with_flipped_bytes_loads_or_is_refused(scratch, valid, data):
    good, _ = valid
    damaged = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(good) - 1))
        damaged[position] ^= data.draw(st.integers(1, 255))
    loads_or_refuses(written(scratch / "flipped.npz", bytes(damaged)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10)
small_arrays = hnp.arrays(
    dtype=st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                    hnp.floating_dtypes(), hnp.complex_number_dtypes(),
                    hnp.unicode_string_dtypes(max_len=3), hnp.byte_string_dtypes(max_len=3)),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))


@FAST
@given(st.data())
def test_checkpoint_with_one_array_replaced_loads_or_is_refused(scratch, valid, data):
    """A well-formed archive whose content is wrong in some way: one key replaced by an
    arbitrary array, by arbitrary JSON, or a state / config value replaced."""
    _, arrays = valid
    arrays = dict(arrays)
    key = data.draw(st.sampled_from(sorted(arrays)))
    how = data.draw(st.sampled_from(["array", "json", "field"]))
    if how == "array":
        arrays[key] = data.draw(small_arrays)
    elif how == "json":
        arrays[key] = np.array(json.dumps(data.draw(json_values)))
    else:
        which = data.draw(st.sampled_from(["state", "config"]))
        values = json.loads(str(arrays[which]))
        values[data.draw(st.sampled_from(sorted(values)))] = data.draw(json_values)
        arrays[which] = np.array(json.dumps(values))
    path = scratch / "replaced.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    loads_or_refuses(path)
