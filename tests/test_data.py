"""The data layer (charrnn.data): vocabulary, corpus reading, validation split, streams, windows.

Reading is checked on real files in tmp_path, with the read block size patched down to a few
bytes so that multibyte characters and undecodable bytes fall across block boundaries cheaply
(plus one file that straddles the real 4 MiB boundary).
"""
import hashlib
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charrnn.data as data
from charrnn.data import (Corpus, CorpusError, UnknownCharactersError, Vocabulary, WindowCursor,
                          eval_stream_count, index_dtype, make_streams, read_corpus,
                          split_validation)

MIXED_TEXT = "Hello, wörld! Ça va? 你好，世界。😀👍🏽 naïve e\u0301\nÅngström\t🎉!\n"
BLOCK_SIZES = [1, 2, 3, 7, data.READ_BLOCK_BYTES]


def write_bytes(tmp_path, raw: bytes, name="text.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


# --------------------------------------------------------------------------- Vocabulary

def test_vocabulary_is_sorted_by_code_point():
    vocab = Vocabulary("zaé中A 😀\nﬁzz")
    # code points: \n 10, ' ' 32, A 65, a 97, z 122, é 233, 中 20013, ﬁ 64257, 😀 128512
    # (UTF-16 order would put 😀, stored as surrogates D83D DE00, before ﬁ)
    assert vocab.chars == ("\n", " ", "A", "a", "z", "é", "中", "ﬁ", "😀")
    assert len(vocab) == 9
    np.testing.assert_array_equal(vocab.encode("a\n😀ﬁ"), [3, 0, 8, 7])


def test_vocabulary_is_stable_under_order_and_repetition(rng):
    """The same set of characters, in any order and with repeats, gives the same indices."""
    chars = list(set(MIXED_TEXT))
    reference = Vocabulary(chars)
    for _ in range(5):
        shuffled = [chars[i] for i in rng.permutation(len(chars))]
        shuffled += shuffled[:3]
        vocab = Vocabulary(shuffled)
        assert vocab == reference
        np.testing.assert_array_equal(vocab.encode(MIXED_TEXT), reference.encode(MIXED_TEXT))
    assert Vocabulary.from_text(MIXED_TEXT) == reference
    assert Vocabulary.from_text(MIXED_TEXT[::-1]) == reference
    assert Vocabulary("ab") != Vocabulary("abc")


def test_vocabulary_refuses_multi_character_strings():
    with pytest.raises(ValueError):
        Vocabulary(["a", "bc"])


@pytest.mark.parametrize("text", [
    "你好，世界！今天天气很好。",
    "😀👍🏽🎉🇫🇷",                          # astral code points, a skin-tone modifier, a flag pair
    "café naïve Ångström façade e\u0301",  # precomposed and combining accents
    MIXED_TEXT,
])
def test_encode_decode_round_trip(text):
    vocab = Vocabulary.from_text(text)
    indices = vocab.encode(text)
    assert indices.shape == (len(text),)
    assert [vocab.chars[i] for i in indices] == list(text)
    assert vocab.decode(indices) == text


@given(st.text(min_size=1, max_size=200))
def test_encode_decode_round_trip_any_text(text):
    vocab = Vocabulary.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text


def test_unknown_characters_error_names_them():
    vocab = Vocabulary("abc ")
    with pytest.raises(UnknownCharactersError) as caught:
        vocab.encode("a bz x😀zz")
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.chars == ["x", "z", "😀"]                 # sorted, each once
    message = str(error)
    for c in ("'x'", "'z'", "'😀'"):
        assert c in message
    assert "3" in message


def test_unknown_characters_error_with_many_characters_stays_one_line():
    vocab = Vocabulary("a")
    strangers = "".join(chr(0x4E00 + i) for i in range(25))
    with pytest.raises(UnknownCharactersError) as caught:
        vocab.encode("a" + strangers)
    assert len(caught.value.chars) == 25
    assert "\n" not in str(caught.value) and "25" in str(caught.value)


def test_index_dtypes():
    assert index_dtype(1) == np.uint8
    assert index_dtype(256) == np.uint8
    assert index_dtype(257) == np.uint16
    assert index_dtype(65536) == np.uint16
    assert index_dtype(65537) == np.uint32
    small = "".join(chr(0x100 + i) for i in range(256))      # 256 characters, all above 255
    big = small + "a"                                        # 257
    assert Vocabulary.from_text(small).encode(small).dtype == np.uint8
    indices = Vocabulary.from_text(big).encode(big)
    assert indices.dtype == np.uint16
    assert indices.max() == 256


# --------------------------------------------------------------------------- read_corpus

@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_read_corpus_utf8_across_block_boundaries(block, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "READ_BLOCK_BYTES", block)
    raw = MIXED_TEXT.encode("utf-8")
    path = write_bytes(tmp_path, raw)
    corpus = read_corpus(path)
    assert isinstance(corpus, Corpus)
    assert corpus.vocab == Vocabulary.from_text(MIXED_TEXT)
    assert corpus.indices.dtype == np.uint8
    assert corpus.vocab.decode(corpus.indices) == MIXED_TEXT
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest()


@settings(max_examples=40, deadline=None)
@given(text=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                    min_size=1, max_size=20),
       block=st.integers(1, 9))
def test_read_corpus_round_trip_any_text_any_block(text, block):
    raw = text.encode("utf-8")
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(data, "READ_BLOCK_BYTES", block):
        path = Path(folder) / "t.txt"
        path.write_bytes(raw)
        corpus = read_corpus(str(path))
    assert corpus.vocab == Vocabulary.from_text(text)
    assert corpus.vocab.decode(corpus.indices) == text
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest()


def test_read_corpus_character_straddling_the_real_4_mib_boundary(tmp_path):
    block = data.READ_BLOCK_BYTES
    assert block == 4 * 1024 * 1024
    # The emoji's four bytes are block-2 .. block+1; the é's two bytes are further on.
    raw = b"a" * (block - 2) + "😀".encode() + "é\n".encode()
    path = write_bytes(tmp_path, raw)
    corpus = read_corpus(path)
    assert corpus.vocab.chars == ("\n", "a", "é", "😀")
    assert len(corpus.indices) == block - 2 + 3
    assert corpus.vocab.decode(corpus.indices[-4:]) == "a😀é\n"
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest()


def test_invalid_utf8_after_the_real_4_mib_boundary_gives_its_offset(tmp_path):
    block = data.READ_BLOCK_BYTES
    # é straddles the boundary (bytes block-1, block); the bad byte is at block+1.
    raw = b"a" * (block - 1) + "é".encode() + b"\xff" + b"tail"
    path = write_bytes(tmp_path, raw)
    with pytest.raises(CorpusError, match=rf"offset {block + 1}\b"):
        read_corpus(path)


# (bytes, offset of the first undecodable byte), offsets counted by hand
INVALID_UTF8 = [
    (b"hello\xffworld", 5),                               # a byte that never occurs in UTF-8
    ("héllo".encode() + b"\x80xyz", 6),                   # a stray continuation byte (é is 2 bytes)
    ("中文".encode() + b"\xe4\xb8X more", 6),             # a 3-byte sequence cut short by 'X'
    ("ab😀".encode() + b"\xf0\x9f\x98", 6),               # a 4-byte sequence cut by end of file
    (b"\xc3", 0),                                         # nothing but half a character
    ("ok ".encode() + b"\xed\xa0\x80", 3),                # an encoded surrogate is invalid UTF-8
]


@pytest.mark.parametrize("block", BLOCK_SIZES)
@pytest.mark.parametrize("raw,offset", INVALID_UTF8)
def test_invalid_utf8_reports_the_byte_offset(raw, offset, block, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "READ_BLOCK_BYTES", block)
    path = write_bytes(tmp_path, raw)
    with pytest.raises(CorpusError) as caught:
        read_corpus(path)
    message = str(caught.value)
    assert f"offset {offset}" in message and f"offset {offset}0" not in message, message
    assert "--encoding" in message and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_latin1_encoding(tmp_path):
    text = "café, niño, ÿ ± ½\n"
    path = write_bytes(tmp_path, text.encode("latin-1"))
    corpus = read_corpus(path, encoding="latin-1")
    assert corpus.vocab.decode(corpus.indices) == text
    with pytest.raises(CorpusError):
        read_corpus(path)                                 # not valid UTF-8


def test_latin1_every_byte_value(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "READ_BLOCK_BYTES", 7)
    raw = bytes(range(1, 256))
    corpus = read_corpus(write_bytes(tmp_path, raw), encoding="latin-1")
    assert len(corpus.vocab) == 255 and corpus.indices.dtype == np.uint8
    assert corpus.vocab.decode(corpus.indices) == raw.decode("latin-1")
    np.testing.assert_array_equal(corpus.indices, np.arange(255))


def test_unknown_encoding_is_a_corpus_error(tmp_path):
    path = write_bytes(tmp_path, b"abc")
    with pytest.raises(CorpusError, match="encoding"):
        read_corpus(path, encoding="no-such-codec")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(CorpusError, match="nowhere.txt"):
        read_corpus(path)


def test_directory(tmp_path):
    with pytest.raises(CorpusError, match="directory"):
        read_corpus(tmp_path)


def test_empty_file(tmp_path):
    with pytest.raises(CorpusError, match="empty"):
        read_corpus(write_bytes(tmp_path, b""))


def test_binary_file_with_nul_bytes(tmp_path):
    with pytest.raises(CorpusError, match="NUL|binary"):
        read_corpus(write_bytes(tmp_path, b"abc\x00def"))


def test_read_corpus_accepts_str_and_path(tmp_path):
    path = write_bytes(tmp_path, "abcab".encode())
    np.testing.assert_array_equal(read_corpus(str(path)).indices, read_corpus(path).indices)


def test_read_corpus_with_a_given_vocabulary(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "READ_BLOCK_BYTES", 3)
    vocab = Vocabulary("abcdxyz中é")                      # a superset of the text's characters
    path = write_bytes(tmp_path, "cab中é".encode())
    corpus = read_corpus(path, vocab=vocab)
    assert corpus.vocab == vocab
    # a b c d x y z é 中 -> a0 b1 c2 d3 x4 y5 z6 é7 中8
    np.testing.assert_array_equal(corpus.indices, [2, 0, 1, 8, 7])
    assert corpus.indices.dtype == np.uint8


def test_read_corpus_with_a_given_vocabulary_names_unknown_characters(tmp_path):
    path = write_bytes(tmp_path, "abq€ab€".encode())
    with pytest.raises(UnknownCharactersError) as caught:
        read_corpus(path, vocab=Vocabulary("ab"))
    assert caught.value.chars == ["q", "€"]


def test_read_corpus_large_vocabulary_uses_uint16(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "READ_BLOCK_BYTES", 64)
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 2 + "end"
    corpus = read_corpus(write_bytes(tmp_path, text.encode()))
    assert len(corpus.vocab) == 303
    assert corpus.indices.dtype == np.uint16
    assert corpus.vocab.decode(corpus.indices) == text


def test_sha256_is_of_the_file_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "READ_BLOCK_BYTES", 5)
    raw = ("line one\r\nline two — ünïcödé\n" * 7).encode()
    corpus = read_corpus(write_bytes(tmp_path, raw))
    assert corpus.sha256 == hashlib.sha256(raw).hexdigest()
    other = read_corpus(write_bytes(tmp_path, raw + b"!", "other.txt"))
    assert other.sha256 != corpus.sha256


# --------------------------------------------------------------------------- split_validation

def test_split_validation_takes_the_last_fraction():
    indices = np.arange(100, dtype=np.uint8)
    train, val = split_validation(indices, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert train.dtype == val.dtype == np.uint8


def test_split_validation_zero_fraction_and_rounding_down():
    indices = np.arange(10)
    train, val = split_validation(indices, 0.0)
    np.testing.assert_array_equal(train, indices)
    assert len(val) == 0
    train, val = split_validation(indices, 0.25)          # 2.5 characters -> 2
    np.testing.assert_array_equal(train, np.arange(8))
    np.testing.assert_array_equal(val, [8, 9])


# --------------------------------------------------------------------------- make_streams

def test_make_streams_layout():
    indices = np.arange(23, dtype=np.uint8)
    streams = make_streams(indices, 4)                    # L = 23 // 4 = 5; 20, 21, 22 unused
    expected = np.array([[0, 5, 10, 15],
                         [1, 6, 11, 16],
                         [2, 7, 12, 17],
                         [3, 8, 13, 18],
                         [4, 9, 14, 19]])
    np.testing.assert_array_equal(streams, expected)
    assert streams.dtype == np.uint8
    assert streams.flags.c_contiguous                     # each time step's row is contiguous
    for b in range(4):
        np.testing.assert_array_equal(streams[:, b], indices[b * 5:(b + 1) * 5])


def test_make_streams_one_stream_is_the_whole_text():
    indices = np.arange(17)
    streams = make_streams(indices, 1)
    assert streams.shape == (17, 1)
    np.testing.assert_array_equal(streams[:, 0], indices)


# --------------------------------------------------------------------------- WindowCursor

def test_window_cursor_one_stream_by_hand():
    """L = 20, T = 4: windows start at 0, 4, 8, 12; at 16, 16 + 4 + 1 >= 20, so wrap to 0."""
    streams = make_streams(np.arange(20), 1)
    cursor = WindowCursor(streams, 4)
    starts, flags = [], []
    for _ in range(7):
        inputs, targets, restarted = cursor.next_window()
        assert inputs.shape == targets.shape == (4, 1)
        start = int(inputs[0, 0])
        np.testing.assert_array_equal(inputs[:, 0], np.arange(start, start + 4))
        np.testing.assert_array_equal(targets[:, 0], np.arange(start + 1, start + 5))
        starts.append(start)
        flags.append(restarted)
        assert cursor.position == start + 4
    assert starts == [0, 4, 8, 12, 0, 4, 8]
    assert flags == [True, False, False, False, True, False, False]


def test_window_cursor_several_streams_by_hand():
    streams = make_streams(np.arange(24), 2)              # L = 12: columns 0..11 and 12..23
    cursor = WindowCursor(streams, 3)
    inputs, targets, restarted = cursor.next_window()
    assert restarted
    np.testing.assert_array_equal(inputs, [[0, 12], [1, 13], [2, 14]])
    np.testing.assert_array_equal(targets, [[1, 13], [2, 14], [3, 15]])
    inputs, targets, restarted = cursor.next_window()
    assert not restarted
    np.testing.assert_array_equal(inputs, [[3, 15], [4, 16], [5, 17]])
    np.testing.assert_array_equal(targets, [[4, 16], [5, 17], [6, 18]])
    inputs, targets, restarted = cursor.next_window()     # p = 6: 6 + 4 = 10 < 12
    assert not restarted
    np.testing.assert_array_equal(targets[-1], [9, 21])
    inputs, targets, restarted = cursor.next_window()     # p = 9: 9 + 4 = 13 >= 12, wrap
    assert restarted
    np.testing.assert_array_equal(inputs[0], [0, 12])


def test_window_cursor_wrap_rule_is_min_char_rnns():
    """Wrap when p + T + 1 >= L (so with L = p + T + 1 exactly, it wraps), as in min-char-rnn."""
    cursor = WindowCursor(make_streams(np.arange(10), 1), 4)   # p = 4: 9 < 10, used
    cursor.next_window()
    inputs, targets, restarted = cursor.next_window()
    assert not restarted
    np.testing.assert_array_equal(targets[:, 0], [5, 6, 7, 8])
    cursor = WindowCursor(make_streams(np.arange(9), 1), 4)    # p = 4: 9 >= 9, wrap
    cursor.next_window()
    inputs, targets, restarted = cursor.next_window()
    assert restarted and inputs[0, 0] == 0


def test_window_cursor_resumes_from_a_position():
    cursor = WindowCursor(make_streams(np.arange(20), 1), 4, position=8)
    inputs, targets, restarted = cursor.next_window()
    assert not restarted
    assert inputs[0, 0] == 8 and targets[-1, 0] == 12
    assert cursor.position == 12


@given(T=st.integers(1, 20), extra=st.integers(0, 40), B=st.integers(1, 4), steps=st.integers(1, 30))
def test_window_cursor_properties(T, extra, B, steps):
    """Windows stay inside the streams, targets are inputs shifted by one, and the
    restarted flag is set exactly when a window starts at 0."""
    L = data.min_stream_length(T) + extra
    streams = make_streams(np.arange(L * B), B)
    cursor = WindowCursor(streams, T)
    previous_end = None
    for _ in range(steps):
        inputs, targets, restarted = cursor.next_window()
        p = int(inputs[0, 0])
        assert p + T + 1 < L or p == 0
        np.testing.assert_array_equal(inputs, streams[p:p + T])
        np.testing.assert_array_equal(targets, streams[p + 1:p + T + 1])
        assert restarted == (p == 0)
        if previous_end is not None and not restarted:
            assert p == previous_end                    # consecutive windows, no gap
        previous_end = p + T


# --------------------------------------------------------------------------- eval_stream_count

def test_eval_stream_count():
    most, min_length = data.EVAL_STREAMS, data.EVAL_MIN_STREAM_LENGTH
    assert eval_stream_count(0) == 1
    assert eval_stream_count(1) == 1
    assert eval_stream_count(2 * min_length - 1) == 1
    assert eval_stream_count(2 * min_length) == 2
    assert eval_stream_count(most * min_length) == most
    assert eval_stream_count(10 ** 9) == most
    counts = [eval_stream_count(n) for n in range(0, 40 * min_length, 97)]
    assert all(a <= b for a, b in zip(counts, counts[1:]))       # never decreases
    for n in range(0, 40 * min_length, 97):
        k = eval_stream_count(n)
        assert 1 <= k <= most
        assert k == 1 or n // k >= min_length                        # no stream too short
