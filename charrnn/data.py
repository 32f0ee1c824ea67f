"""Text in, integer arrays out: the vocabulary, reading a corpus, and the window streams.

Characters are stored as small integer arrays (uint8 when V <= 256), never as one-hot
matrices: a 100 MB text costs 100 MB, not 100 MB times V.
"""
from __future__ import annotations

import codecs
import dataclasses
import fnmatch
import glob
import hashlib
import io
import os
import sys
from dataclasses import dataclass

import numpy as np

from .runfiles import is_charrnn_file, not_a_regular_file

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


DOCUMENT_BOUNDARY = "\x1c"   # ASCII "file separator": joins the documents of a many-file corpus
STDIN = "-"                   # the corpus path that means standard input
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Document:
    """One file of a corpus: its name (as found), the SHA-256 of its bytes, and where its
    characters sit in ``Corpus.indices`` (``start`` to ``end``, the boundary after it excluded)."""
    name: str
    sha256: str
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Source:
    """A file to read (``path``), or standard input (``path`` None); ``found`` is True for a
    file found inside a folder (a binary one is then skipped, not an error). ``label`` is
    what a checkpoint records of it: its path below the folder it was found in, or a named
    file's own name, so that a corpus moved elsewhere is still the same corpus."""
    name: str
    path: str | None
    found: bool = False
    label: str = ""


@dataclass
class Corpus:
    """An encoded text: ``indices`` (N,) into ``vocab``, and a SHA-256 of its bytes.

    A corpus of several files holds them in order, each followed (but the last) by
    DOCUMENT_BOUNDARY; ``documents`` says where each one is. ``sha256`` is the one file's
    hash, or for several, the hash of their names and hashes. ``skipped`` counts characters
    left out because they were not in the vocabulary (only when read with ``skip_unknown``);
    ``byte_order_mark`` is True when a file began with one, which was left out;
    ``binary_skipped`` counts files found in folders that were not text.
    """
    vocab: Vocabulary
    indices: np.ndarray
    sha256: str
    skipped: int = 0
    byte_order_mark: bool = False
    documents: tuple = ()
    binary_skipped: int = 0

    def file_list(self) -> list[list[str]]:
        """``[[name, sha256], ...]``: what a checkpoint records of the files it learnt."""
        return [[doc.name, doc.sha256] for doc in self.documents]


def _decoded_blocks(path: str, encoding: str, found_bom: list | None = None,
                    data: bytes | None = None):
    """Yield ``(code_points, block)`` block by block; CorpusError on undecodable bytes.

    ``data``: the bytes themselves (standard input, read once), named ``path`` in messages.
    A byte-order mark (U+FEFF) at the start of the text is left out (and True appended to
    ``found_bom``): it marks the encoding, it is not a character of the text. A lone surrogate
    (which utf-7, utf-16 variants or unicode-escape can produce) is refused, naming its
    position: it is not a character, and no model output holding it could be written out.
    """
    decoder = codecs.getincrementaldecoder(text_encoding(encoding))(errors="strict")
    offset = chars = 0
    at_start = True
    with (open(path, "rb") if data is None else io.BytesIO(data)) as f:
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
                raise BinaryFileError(f"{path} looks like a binary file (it contains NUL bytes), not text")
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


class BinaryFileError(CorpusError):
    """A file holds NUL bytes: not text."""


def read_corpus(path, encoding: str = "utf-8", vocab: Vocabulary | None = None,
                skip_unknown: bool = False) -> Corpus:
    """Read and encode one text file without holding more than one block of it as text.

    With ``vocab`` given (resuming, evaluating), the text is encoded with it, and characters
    outside it raise UnknownCharactersError, or with ``skip_unknown`` are left out and counted.
    Otherwise the vocabulary is the sorted set of the text's characters. See read_sources.
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
    return read_sources([Source(path, path)], encoding, vocab, skip_unknown)


def read_stdin_bytes(stream=None) -> bytes:
    """All of standard input, as bytes; CorpusError if it is a terminal or empty."""
    stream = stream if stream is not None else sys.stdin
    if stream is None:
        raise CorpusError("standard input is closed: pipe a text into it (cat a.txt | charrnn train -)")
    if stream.isatty():
        raise CorpusError("standard input is a terminal: pipe a text into it "
                          "(cat a.txt | charrnn train -) or give a file")
    data = getattr(stream, "buffer", stream).read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data:
        raise CorpusError("standard input is empty")
    return data


def read_sources(sources, encoding: str = "utf-8", vocab: Vocabulary | None = None,
                 skip_unknown: bool = False, stdin: bytes | None = None) -> Corpus:
    """Read and encode the files of ``sources`` (see find_sources), one block at a time.

    Two passes over the files, one at a time (never many open at once): the first hashes
    each file, counts its characters and builds the vocabulary; the second fills one
    preallocated index array (one byte per character for V <= 256), each file followed by
    DOCUMENT_BOUNDARY but the last. A file found in a folder that is not text (NUL bytes, or
    bytes the encoding cannot decode) is skipped and counted; a file named on its own is an
    error. ``stdin``: the bytes of standard input, for the source whose path is None.
    """
    found_bom: list = []
    kept, readable, binary = [], [], 0   # the sources that are text, and their Documents
    counts = np.zeros(0, dtype=np.int64)
    lengths = []
    for source in sources:
        digest = hashlib.sha256()
        length = 0
        file_counts = np.zeros(0, dtype=np.int64)
        try:
            for codes, block in _decoded_blocks(_where(source), encoding, found_bom,
                                                _data(source, stdin)):
                digest.update(block)
                length += len(codes)
                if len(codes):
                    block_counts = np.bincount(codes)
                    if len(block_counts) > len(file_counts):
                        file_counts = np.pad(file_counts, (0, len(block_counts) - len(file_counts)))
                    file_counts[:len(block_counts)] += block_counts
        except (BinaryFileError, UndecodableTextError):
            if not source.found:
                raise
            binary += 1
            continue
        except OSError as error:
            raise CorpusError(f"cannot read {source.name}: {error.strerror}") from None
        if length == 0:
            if not source.found:
                raise CorpusError(f"{source.name} is empty")
            continue
        if len(file_counts) > len(counts):
            counts = np.pad(counts, (0, len(file_counts) - len(counts)))
        counts[:len(file_counts)] += file_counts
        kept.append(source)
        readable.append(Document(source.label or source.name, digest.hexdigest()))
        lengths.append(length)
    if not readable:
        raise CorpusError("no text file found" + (f" ({binary} binary file(s) skipped)"
                                                  if binary else ""))
    boundaries = len(readable) - 1
    if boundaries:
        code = ord(DOCUMENT_BOUNDARY)
        if len(counts) <= code:
            counts = np.pad(counts, (0, code + 1 - len(counts)))
        counts[code] += boundaries
    present = np.flatnonzero(counts)
    skipped = 0
    if vocab is None:
        vocab = Vocabulary(chr(c) for c in present)
    elif skip_unknown:
        skipped = int(counts[present[vocab.lookup(present) < 0]].sum())
    else:
        vocab.encode_code_points(present)   # raises, naming every unknown character

    indices = np.empty(int(counts.sum()) - skipped, dtype=index_dtype(len(vocab)))
    boundary = vocab.lookup(np.array([ord(DOCUMENT_BOUNDARY)]))[0]
    filled = 0
    documents = []
    for number, (source, document) in enumerate(zip(kept, readable)):
        changed = CorpusError(f"{source.name} changed while it was being read; try again")
        start = filled
        try:
            for codes, _ in _decoded_blocks(_where(source), encoding, None, _data(source, stdin)):
                block_indices = vocab.lookup(codes)
                if skipped:
                    block_indices = block_indices[block_indices >= 0]
                if (block_indices < 0).any() or filled + len(block_indices) > len(indices):
                    raise changed
                indices[filled:filled + len(block_indices)] = block_indices
                filled += len(block_indices)
        except (BinaryFileError, UndecodableTextError):
            raise changed from None
        except OSError as error:
            raise CorpusError(f"cannot read {source.name}: {error.strerror}") from None
        if not skipped and filled - start != lengths[number]:
            raise changed
        documents.append(dataclasses.replace(document, start=start, end=filled))
        if number < boundaries and boundary >= 0:
            if filled >= len(indices):
                raise changed
            indices[filled] = boundary
            filled += 1
    if filled != len(indices):
        raise CorpusError(f"{kept[-1].name} changed while it was being read; try again")
    if len(documents) == 1:
        sha256 = documents[0].sha256
    else:
        sha256 = hashlib.sha256("".join(f"{doc.name}\0{doc.sha256}\n" for doc in documents)
                                .encode("utf-8", "surrogateescape")).hexdigest()
    return Corpus(vocab, indices, sha256, skipped, byte_order_mark=bool(found_bom),
                  documents=tuple(documents), binary_skipped=binary)


def _where(source: Source) -> str:
    return source.path if source.path is not None else source.name


def _data(source: Source, stdin: bytes | None) -> bytes | None:
    if source.path is not None:
        return None
    if stdin is None:
        raise CorpusError("standard input was not read")
    return stdin


def find_sources(paths, include=()) -> list[Source]:
    """The files named by ``paths``, in order: a file as it is; a folder as every file below
    it, recursively, sorted by path, hidden files and folders (``.git``) and charrnn's own
    files (checkpoints, histories, exports, pages) left out, and with ``include`` patterns
    only the files whose name (or path below the folder) matches one; a glob pattern as the
    sorted files it matches; ``-`` as standard input. Raises CorpusError for a path that is
    missing, a pattern that matches nothing, a folder with no file, or a file named twice."""
    sources: list[Source] = []
    seen: dict = {}

    def add(source: Source) -> None:
        key = STDIN if source.path is None else os.path.realpath(source.path)
        if key in seen:
            raise CorpusError(f"{source.name} is given twice"
                              + (f" (also as {seen[key]})" if seen[key] != source.name else "")
                              + "; give each file once")
        seen[key] = source.name
        sources.append(source)

    for path in paths:
        path = os.fspath(path)
        if path == STDIN:
            add(Source("<stdin>", None, label="<stdin>"))
        elif os.path.isdir(path):
            found = list(_walk(path, include))
            if not found:
                what = " matching --include" if include else ""
                raise CorpusError(f"{path} holds no file{what} to read (hidden files and "
                                  f"charrnn's own files are left out)")
            for name in found:
                add(Source(name, name, found=True, label=_label(name, path)))
        elif os.path.lexists(path):
            if not os.path.exists(path):
                raise CorpusError(f"{path} is a broken symbolic link")
            kind = not_a_regular_file(path)
            if kind:   # read twice: a pipe or a terminal cannot be, refuse it, never block
                raise CorpusError(f"{path} is {kind}, not a regular file; save the text to a "
                                  f"file first, or pipe it in as - (standard input)")
            add(Source(path, path, label=os.path.basename(path)))
        elif any(char in path for char in GLOB_CHARS):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise CorpusError(f"{path} matches no file")
            for match in matches:
                if os.path.isdir(match):
                    for name in _walk(match, include):
                        add(Source(name, name, found=True, label=_label(name, match)))
                elif os.path.isfile(match) and not is_charrnn_file(match):
                    add(Source(match, match, found=True, label=os.path.basename(match)))
        else:
            raise CorpusError(f"no such file or folder: {path}")
    if not sources:
        raise CorpusError(f"{' '.join(paths)} holds no file to read")
    return sources


def _label(path: str, folder: str) -> str:
    """``songs/2019/a.txt`` for a file ``2019/a.txt`` below a folder named ``songs``."""
    return os.path.join(os.path.basename(os.path.abspath(folder)), os.path.relpath(path, folder))


def corpus_name(path: str) -> str:
    """What a corpus path is called in a default checkpoint name: a file's own name, a
    folder's name (``songs/`` -> ``songs``), the folder before a glob pattern's first
    wildcard, ``stdin`` for ``-``."""
    if path == STDIN:
        return "stdin"
    if not os.path.exists(path) and any(char in path for char in GLOB_CHARS):
        cut = min(path.index(char) for char in GLOB_CHARS if char in path)
        path = os.path.dirname(path[:cut]) or "corpus"
    if os.path.isdir(path):
        return os.path.basename(os.path.abspath(path)) or "corpus"
    return path


def _walk(folder: str, include=()):
    """The files below ``folder``, sorted, without hidden ones or charrnn's own."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if include and not any(fnmatch.fnmatch(name, pattern)
                                   or fnmatch.fnmatch(relative, pattern) for pattern in include):
                continue
            if not os.path.isfile(path) or is_charrnn_file(path):
                continue
            yield path


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


def split_corpus(corpus: Corpus, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) of a corpus: the last ``val_fraction`` of every file is held out,
    so that validation covers every kind of text in a folder. Each part keeps the files in
    order, joined by DOCUMENT_BOUNDARY. A one-file corpus splits as split_validation does."""
    documents = corpus.documents
    if len(documents) <= 1:
        return split_validation(corpus.indices, val_fraction)
    boundary = corpus.indices[documents[0].end:documents[0].end + 1]   # the boundary's index
    train, val = [], []
    for doc in documents:
        cut = doc.end - validation_size(doc.end - doc.start, val_fraction)
        train += [corpus.indices[doc.start:cut], boundary]
        if cut < doc.end:
            val += [corpus.indices[cut:doc.end], boundary]
    # (the last boundary of each part ends nothing: left off)
    empty = corpus.indices[:0]
    return np.concatenate(train[:-1]), np.concatenate(val[:-1]) if val else empty


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
