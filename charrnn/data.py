"""Text in, integer arrays out: the vocabulary, reading a corpus, and the window streams.

Characters are stored as small integer arrays (uint8 when V <= 256), never as one-hot
matrices: a 100 MB text costs 100 MB, not 100 MB times V.
"""
from __future__ import annotations

import codecs
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from .runfiles import not_a_regular_file

READ_BLOCK_BYTES = 1 << 22   # the corpus is read and decoded 4 MiB at a time
MAX_CODE_POINT = 0x10FFFF


class CorpusError(ValueError):
    """The text cannot be used; the message says why in one line."""


class UndecodableTextError(CorpusError):
    """Bytes the encoding cannot decode. The message advises --encoding; ``without_advice``
    is the same message without that advice (for a model whose encoding is fixed)."""

    def __init__(self, message: str, without_advice: str):
        super().__init__(message)
        self.without_advice = without_advice


BYTE_ORDER_MARK = "\ufeff"
SURROGATES = (0xD800, 0xE000)   # code points that are halves of UTF-16 pairs, not characters


def text_encoding(name: str) -> str:
    """The codec's own name for the text encoding ``name`` (``UTF8`` and ``utf_8`` give
    ``utf-8``). Raises CorpusError for an unknown name, or for a codec that is not a text
    encoding (``rot13``, ``zlib``, ``hex``, ``base64``: Python has them, but they do not turn
    bytes into text)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, TypeError, ValueError):
        raise CorpusError(f"unknown text encoding {name!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise CorpusError(f"{name!r} is not a text encoding (it is one of Python's bytes-to-bytes "
                          f"or text-to-text codecs); name one such as utf-8 or latin-1")
    return info.name


class UnknownCharactersError(ValueError):
    """Characters that are not in the vocabulary; ``chars`` lists them, sorted."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        shown = " ".join(repr(c) for c in self.chars[:20])
        more = f" and {len(self.chars) - 20} more" if len(self.chars) > 20 else ""
        super().__init__(f"{len(self.chars)} character(s) not in the model's vocabulary: {shown}{more}")


def _code_points(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as a uint32 array (one per character)."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def index_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that can hold indices 0..vocab_size-1."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class Vocabulary:
    """The characters a model knows, sorted by code point: index i is ``chars[i]``.

    Sorting makes the vocabulary a function of the set of characters alone, so the same text
    always gives the same indices (``list(set(text))`` would not).
    """

    def __init__(self, chars):
        chars = sorted(set(chars))
        if any(len(c) != 1 for c in chars):
            raise ValueError("a vocabulary holds single characters")
        self.chars = tuple(chars)
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        # code point -> index, -1 where the character is unknown
        self._lookup = np.full(int(codes.max()) + 1 if len(codes) else 1, -1, dtype=np.int64)
        self._lookup[codes] = np.arange(len(codes))

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls(set(text))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __repr__(self) -> str:
        preview = "".join(self.chars[:30])
        return f"Vocabulary({len(self)} chars: {preview!r}{'...' if len(self) > 30 else ''})"

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """int64 indices for an array of code points, -1 where the character is unknown."""
        inside = codes < len(self._lookup)
        indices = np.full(codes.shape, -1, dtype=np.int64)
        indices[inside] = self._lookup[codes[inside]]
        return indices

    def encode_code_points(self, codes: np.ndarray) -> np.ndarray:
        """Indices for an array of code points; raises UnknownCharactersError for strangers."""
        indices = self.lookup(codes)
        unknown = indices < 0
        if unknown.any():
            raise UnknownCharactersError(chr(c) for c in np.unique(codes[unknown]))
        return indices.astype(index_dtype(len(self)))

    def encode(self, text: str) -> np.ndarray:
        """(len(text),) integer indices of the characters of ``text``."""
        return self.encode_code_points(_code_points(text))

    def decode(self, indices) -> str:
        return "".join(self.chars[i] for i in np.asarray(indices).reshape(-1))


@dataclass
class Corpus:
    """An encoded text: ``indices`` (N,) into ``vocab``, and a SHA-256 of the file's bytes.

    ``skipped`` counts characters left out because they were not in the vocabulary
    (only when read with ``skip_unknown``); ``byte_order_mark`` is True when the text began
    with one, which was left out.
    """
    vocab: Vocabulary
    indices: np.ndarray
    sha256: str
    skipped: int = 0
    byte_order_mark: bool = False


def _decoded_blocks(path: str, encoding: str, found_bom: list | None = None):
    """Yield ``(code_points, block)`` block by block; CorpusError on undecodable bytes.

    A byte-order mark (U+FEFF) at the start of the text is left out (and True appended to
    ``found_bom``): it marks the encoding, it is not a character of the text. A lone surrogate
    (which utf-7, utf-16 variants or unicode-escape can produce) is refused, naming its
    position: it is not a character, and no model output holding it could be written out.
    """
    decoder = codecs.getincrementaldecoder(text_encoding(encoding))(errors="strict")
    offset = chars = 0
    at_start = True
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BLOCK_BYTES)
            final = not block
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as error:
                bad = offset - pending + error.start
                reason = (f"{path} is not valid {encoding} text: undecodable byte at offset {bad} "
                          f"({error.reason})")
                raise UndecodableTextError(
                    f"{reason}; if the file uses another encoding, pass --encoding", reason
                ) from None
            except UnicodeError as error:   # e.g. the "undefined" codec, or idna's rules
                reason = f"{path} cannot be decoded as {encoding} text ({error})"
                raise UndecodableTextError(
                    f"{reason}; if the file uses another encoding, pass --encoding", reason
                ) from None
            if "\x00" in text:
                raise CorpusError(f"{path} looks like a binary file (it contains NUL bytes), not text")
            if at_start and text:
                at_start = False
                if text[0] == BYTE_ORDER_MARK:
                    text = text[1:]
                    if found_bom is not None:
                        found_bom.append(True)
            codes = _code_points(text)
            # (codes - 0xD800) wraps around for smaller codes: one test for the whole range.
            surrogate = (codes - np.uint32(SURROGATES[0])) < SURROGATES[1] - SURROGATES[0]
            if surrogate.any():
                where = int(surrogate.argmax())
                raise CorpusError(
                    f"{path} decodes ({encoding}) to a lone surrogate, U+{int(codes[where]):04X}, "
                    f"at character {chars + where}: half of a UTF-16 pair, not a character, "
                    f"so a model could not write it out; the file is damaged or not {encoding}")
            chars += len(codes)
            yield codes, block
            offset += len(block)
            if final:
                return


def read_corpus(path, encoding: str = "utf-8", vocab: Vocabulary | None = None,
                skip_unknown: bool = False) -> Corpus:
    """Read and encode a text file without holding more than one block of it as text.

    With ``vocab`` given (resuming, evaluating), the text is encoded with it, and characters
    outside it raise UnknownCharactersError, or with ``skip_unknown`` are left out and counted.
    Otherwise the vocabulary is the sorted set of the text's characters. Two passes: the
    first counts characters and builds the vocabulary, the second fills the preallocated
    index array.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CorpusError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CorpusError(f"{path} is a directory, not a text file")
    kind = not_a_regular_file(path)
    if kind:   # it is read twice, and a pipe or terminal cannot be: refuse it, never block
        raise CorpusError(f"{path} is {kind}, not a regular file; save the text to a file "
                          f"first")

    digest = hashlib.sha256()
    counts = np.zeros(MAX_CODE_POINT + 1, dtype=np.int64)
    found_bom: list = []
    try:
        for codes, block in _decoded_blocks(path, encoding, found_bom):
            digest.update(block)
            counts += np.bincount(codes, minlength=MAX_CODE_POINT + 1)
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror}") from None
    if not counts.any():
        raise CorpusError(f"{path} is empty")
    present = np.flatnonzero(counts)
    skipped = 0
    if vocab is None:
        vocab = Vocabulary(chr(c) for c in present)
    elif skip_unknown:
        skipped = int(counts[present[vocab.lookup(present) < 0]].sum())
    else:
        vocab.encode_code_points(present)   # raises, naming every unknown character

    indices = np.empty(int(counts.sum()) - skipped, dtype=index_dtype(len(vocab)))
    filled = 0
    changed = CorpusError(f"{path} changed while it was being read; try again")
    try:
        for codes, _ in _decoded_blocks(path, encoding):
            block_indices = vocab.lookup(codes)
            if skipped:
                block_indices = block_indices[block_indices >= 0]
            if (block_indices < 0).any() or filled + len(block_indices) > len(indices):
                raise changed
            indices[filled:filled + len(block_indices)] = block_indices
            filled += len(block_indices)
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror}") from None
    if filled != len(indices):
        raise changed
    return Corpus(vocab, indices, digest.hexdigest(), skipped, byte_order_mark=bool(found_bom))


def encode_text(text: str, vocab: Vocabulary, skip_unknown: bool = False) -> Corpus:
    """A text given as a string (not a file), encoded with ``vocab`` as read_corpus would:
    characters outside it raise UnknownCharactersError, or with ``skip_unknown`` are left
    out and counted."""
    skipped = 0
    if skip_unknown:
        known = set(vocab.chars)
        kept = "".join(char for char in text if char in known)
        skipped, text = len(text) - len(kept), kept
    indices = vocab.encode(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Corpus(vocab, indices, digest, skipped)


def validation_size(num_chars: int, val_fraction: float) -> int:
    """How many characters, at the end of a text of ``num_chars``, are held out."""
    return int(num_chars * val_fraction)


def split_validation(indices: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the validation part is the last ``val_fraction`` of the text."""
    n_val = validation_size(len(indices), val_fraction)
    return indices[:len(indices) - n_val], indices[len(indices) - n_val:]


def make_streams(indices: np.ndarray, num_streams: int) -> np.ndarray:
    """Cut the text into B contiguous streams, time-major: (L, B) with L = N // B.

    Column b is ``indices[b*L:(b+1)*L]``; the last ``N - B*L`` characters are unused.
    """
    length = len(indices) // num_streams
    return np.ascontiguousarray(indices[:length * num_streams].reshape(num_streams, length).T)


def min_stream_length(seq_length: int) -> int:
    """A stream must hold at least one window of inputs plus its targets, and one more
    character, because (as in min-char-rnn) a window is used only while p + T + 1 < L."""
    return seq_length + 2


class WindowCursor:
    """Walks the streams window by window for truncated BPTT.

    Each call to ``next_window`` returns ``(inputs, targets, restarted)``: inputs (T, B) are
    ``streams[p:p+T]``, targets (T, B) the characters one step later, and ``restarted`` is True
    when the streams wrapped to the beginning (the hidden state must then be reset to zero).
    With B = 1 the windows are exactly min-char-rnn's.
    """

    def __init__(self, streams: np.ndarray, seq_length: int, position: int = 0):
        self.streams = streams
        self.seq_length = seq_length
        self.position = position

    def next_window(self) -> tuple[np.ndarray, np.ndarray, bool]:
        p, T = self.position, self.seq_length
        restarted = p == 0 or p + T + 1 >= len(self.streams)
        if restarted:
            p = 0
        self.position = p + T
        return self.streams[p:p + T], self.streams[p + 1:p + T + 1], restarted


EVAL_STREAMS = 32               # streams scored in parallel when evaluating
EVAL_MIN_STREAM_LENGTH = 2048   # but no stream for fewer than this many characters of text
EVAL_WARMUP = 1024              # characters each stream but the first reads before it scores


def eval_stream_count(num_chars: int) -> int:
    """How many parallel streams evaluation cuts a text of ``num_chars`` into.

    A function of the length alone, so training's validation loss and ``charrnn eval`` on the
    same text score exactly the same characters in exactly the same way.
    """
    return max(1, min(EVAL_STREAMS, num_chars // EVAL_MIN_STREAM_LENGTH))


@dataclass(frozen=True)
class EvalSegments:
    """How evaluation scores the N - 1 targets of a text of N characters (characters 1..N-1,
    each predicted from all the characters before it) with S streams side by side.

    Stream 0 reads the text from its start, so its predictions are exact: it scores
    characters 1 .. warmup + segment. Stream s (1 <= s < S) reads from character
    ``s * segment``: its first ``warmup`` predictions only warm its state up (they are not
    scored), then it scores the next ``segment`` characters, which follow on from stream s-1's.
    The last stream goes on alone for ``remainder`` (< S) more characters, to the end of the
    text. Every character but the first is scored exactly once.
    """
    num_chars: int
    num_streams: int
    warmup: int       # W: steps every stream runs before stream 1 .. S-1 score (0 if S = 1)
    segment: int      # steps each stream scores after the warm-up
    remainder: int    # steps the last stream runs on alone

    @property
    def scored(self) -> int:
        return max(self.num_chars - 1, 0)


def eval_segments(num_chars: int, num_streams: int | None = None,
                  warmup: int | None = None) -> EvalSegments:
    """The layout evaluation uses for a text of ``num_chars`` characters (see EvalSegments):
    eval_stream_count(num_chars) streams and a warm-up of EVAL_WARMUP, unless given."""
    steps = max(num_chars - 1, 0)
    streams = eval_stream_count(num_chars) if num_streams is None else num_streams
    warmup = EVAL_WARMUP if warmup is None else warmup
    if streams < 1 or warmup < 0:
        raise ValueError("evaluation needs at least one stream and a warm-up of 0 or more")
    if streams == 1:
        return EvalSegments(num_chars, 1, 0, steps, 0)
    segment = (steps - warmup) // streams
    if segment < 1:
        raise ValueError(f"{num_chars} characters are too few for {streams} streams "
                         f"with a warm-up of {warmup}")
    return EvalSegments(num_chars, streams, warmup, segment,
                        steps - warmup - streams * segment)


def eval_streams(indices: np.ndarray, layout: EvalSegments) -> np.ndarray:
    """The streams of ``layout`` side by side, time-major: (W + segment + 1, S), column s is
    ``indices[s * segment : s * segment + W + segment + 1]`` (inputs and their targets;
    neighbouring columns overlap by W + 1 characters). The remainder is not included."""
    length = layout.warmup + layout.segment + 1
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(indices), length)   # a view
    return np.ascontiguousarray(windows[::max(layout.segment, 1)][:layout.num_streams].T)
