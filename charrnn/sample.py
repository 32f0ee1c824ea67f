"""Generating text: prime the network with a prompt, then choose one character at a time, by
a draw (temperature, top-k, top-p, min-p), greedily, or by beam search; optionally with a
guard against repeated runs of words, and stop strings.

The order a draw applies its settings in (llama.cpp's): the loop guard removes characters,
then top-k, top-p and min-p each keep a set of what is left, judged by the model's own
probabilities (temperature 1); the temperature then reshapes the draw among the survivors.
So the filters' sets do not depend on the temperature, and a high temperature cannot bring
back a character a filter removed.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from .data import Vocabulary
from .model import Network, ParamSet, Stream

NOISE_BLOCK = 512   # characters' worth of Gumbel noise drawn from the RNG at once, at most
NOISE_BLOCK_BYTES = 1 << 22   # and no more than 4 MiB of it, whatever the vocabulary size
START_TEXT = "\n"   # an unprompted sample starts after this (where the model saw text begin)
GUARD_WINDOW = 4096  # the loop guard looks for repeats within this many recent characters


@dataclass(frozen=True)
class Settings:
    """How characters are chosen. ``beam`` (K hypotheses) and ``greedy`` are deterministic;
    otherwise each character is drawn. ``no_repeat``: the loop guard's N words (0: off)."""
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    greedy: bool = False
    beam: int | None = None
    no_repeat: int = 0
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        settings = asdict(self)
        settings["stop"] = list(self.stop)
        return settings


def noise_block_rows(vocab_size: int) -> int:
    """How many characters' worth of Gumbel noise to draw at once: NOISE_BLOCK rows of
    ``vocab_size`` float64 values, or fewer (at least one) to stay within NOISE_BLOCK_BYTES.

    The RNG hands out its numbers in order whatever the block shape, so the text drawn with a
    given seed does not depend on the block size; only the memory does.
    """
    return max(1, min(NOISE_BLOCK, NOISE_BLOCK_BYTES // (vocab_size * np.dtype(np.float64).itemsize)))


def gumbel_noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard Gumbel samples, ``-log(-log(u))`` with u uniform in (0, 1)."""
    u = rng.random(shape)
    np.maximum(u, np.finfo(np.float64).tiny, out=u)   # rng.random can return exactly 0
    # -log(-log(u)), in place: one block of memory, not four
    np.log(u, out=u)
    np.negative(u, out=u)
    np.log(u, out=u)
    return np.negative(u, out=u)


def start_indices(vocab: Vocabulary, prompt: str) -> np.ndarray:
    """The characters fed in before the first prediction: the prompt, or without one
    START_TEXT (a newline: what follows it is how the model saw lines begin), or nothing
    for a model whose vocabulary has no newline (the zero state's softmax(by) then)."""
    if prompt:
        return vocab.encode(prompt)
    return vocab.encode(START_TEXT if START_TEXT in vocab.chars else "")


def filter_logits(logits: np.ndarray, temperature: float, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None) -> None:
    """Set to -inf, in place, the logits of the characters the filters leave out.

    logits: (V,) ``y / temperature`` (-inf where a character is already ruled out). With
    ``p = softmax(y)`` the model's own probabilities, each filter keeps, of what is left:
      top-k  the k largest p;
      top-p  the fewest most likely characters whose p sum to at least top_p (nucleus);
      min-p  the characters with p >= min_p * max(p).
    The most likely character always survives, so the set is never empty.
    """
    V = len(logits)
    if top_k is not None and top_k < V:
        logits[np.argpartition(logits, -top_k)[:-top_k]] = -np.inf     # keep the k largest
    if top_p is not None and top_p < 1:
        y = logits.astype(np.float64) * temperature                   # back to y
        order = np.argsort(-y, kind="stable")                         # most likely first
        e = np.exp(y[order] - y[order[0]])                            # p, unnormalised
        cumulative = np.cumsum(e)
        count = int(np.searchsorted(cumulative, top_p * cumulative[-1])) + 1
        logits[order[count:]] = -np.inf
    if min_p is not None and min_p > 0:
        # p_i >= min_p p_max  <=>  y_i - y_max >= log(min_p), compared at temperature 1
        y = logits.astype(np.float64) * temperature
        logits[y < y.max() + math.log(min_p)] = -np.inf


def is_word_char(char: str) -> bool:
    """Words, for the loop guard, are runs of letters and digits (any script)."""
    return char.isalnum()


class RepeatGuard:
    """The loop guard, ``--no-repeat N``: never draw a character that would make the last N
    words begun, from the first letter of the first of them through that character, a copy
    of text earlier in the sample (prompt included; within the last GUARD_WINDOW characters).

    Only a character that begins a word can be refused, so the guard acts where a character
    model loops, on runs of words and whole lines, and never in the middle of a word; a
    character that is not a letter or digit is never refused, so something always survives.
    """

    def __init__(self, vocab: Vocabulary, words: int, context: str = ""):
        if words < 2:
            raise ValueError("the loop guard needs N of at least 2 words")
        self.words = words
        self.index = {char: i for i, char in enumerate(vocab.chars)}
        self.chars: list[str] = []
        self.offset = 0                                  # position of chars[0] in the text
        self.starts: deque[int] = deque(maxlen=words - 1)   # where the last N-1 words began
        for char in context:
            self.push(char)

    def copy(self) -> "RepeatGuard":
        twin = object.__new__(RepeatGuard)
        twin.words, twin.index, twin.offset = self.words, self.index, self.offset
        twin.chars, twin.starts = list(self.chars), deque(self.starts, maxlen=self.words - 1)
        return twin

    def push(self, char: str) -> None:
        """The text goes on with ``char``."""
        if is_word_char(char) and not (self.chars and is_word_char(self.chars[-1])):
            self.starts.append(self.offset + len(self.chars))
        self.chars.append(char)
        if len(self.chars) >= 2 * GUARD_WINDOW:         # trim now and then, not every time
            cut = len(self.chars) - GUARD_WINDOW
            del self.chars[:cut]
            self.offset += cut

    def banned(self) -> list[int]:
        """The indices of the characters refused as the next one (often none)."""
        if (not self.chars or is_word_char(self.chars[-1]) or len(self.starts) < self.words - 1
                or self.starts[0] < self.offset):
            return []                                    # not at a word's start, or too few words
        text = "".join(self.chars)
        begin = self.starts[0] - self.offset
        run = text[begin:]                               # the last N-1 words and what follows
        refused = set()
        i = text.find(run, 0, len(text) - 1)             # earlier copies, followed by a character
        while 0 <= i < begin:
            follower = text[i + len(run)]
            if is_word_char(follower) and follower in self.index:
                refused.add(self.index[follower])
            i = text.find(run, i + 1, len(text) - 1)
        return sorted(refused)


def _stream(network: Network, params: ParamSet, temperature: float, greedy: bool) -> Stream:
    try:
        # The largest logit is the largest at any temperature: greedy needs no scaling, so
        # no temperature is too small for it.
        with np.errstate(divide="ignore", over="ignore"):   # a tiny temperature: found below
            return network.stream(params, 1.0 if greedy else temperature)
    except ValueError as error:
        advice = "use a larger one" if greedy else "use a larger one, or --greedy"
        raise ValueError(f"{error}; {advice}") from None


class _StopWatch:
    """Says when the generated text (not the prompt) ends with one of the stop strings."""

    def __init__(self, stop):
        self.stop = tuple(stop)
        self.keep = max((len(s) for s in self.stop), default=0)
        self.tail = ""

    def done_after(self, char: str) -> bool:
        if not self.stop:
            return False
        self.tail = (self.tail + char)[-self.keep:]
        return self.tail.endswith(self.stop)


def generate(network: Network, params: ParamSet, vocab: Vocabulary, seed: str, length: int,
             rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
             greedy: bool = False, top_p: float | None = None, min_p: float | None = None,
             no_repeat: int = 0, stop=()) -> Iterator[str]:
    """Yield ``length`` characters generated after feeding ``seed`` through the network
    (fewer if a ``stop`` string is generated: it is the last thing yielded).

    Starting from a zero state, each seed character is fed in (without a seed, START_TEXT:
    see start_indices). Each new character is then drawn from ``softmax(y / temperature)``,
    with ``y`` the network's logits, among the characters the loop guard and the filters
    leave (see RepeatGuard, filter_logits); the most likely of them if ``greedy``. It is fed
    back in.

    The draw uses the Gumbel-max trick: ``argmax(y / temperature + g)`` with g standard Gumbel
    noise is a sample from ``softmax(y / temperature)``, and needs no exp, sum or cumsum.
    Arithmetic is in the parameters' dtype (float32 for a float32 model).
    Raises UnknownCharactersError if the seed has characters outside the vocabulary, and
    ValueError if the temperature is so small that the scaled logits overflow; both at the
    call, before any character is drawn.
    """
    indices = start_indices(vocab, seed)
    stream = _stream(network, params, temperature, greedy)
    guard = RepeatGuard(vocab, no_repeat, vocab.decode(indices)) if no_repeat else None
    return _generate(stream, vocab, indices, length, rng, temperature, top_k, top_p, min_p,
                     greedy, guard, _StopWatch(stop))


def _generate(stream: Stream, vocab, seed_indices, length, rng, temperature, top_k, top_p,
              min_p, greedy, guard, stop):
    """The generator behind generate(), whose arguments are already checked."""
    for c in seed_indices:
        stream.prime(c)
    by = stream.by_scaled                         # by / T, (V,)
    V, dtype = len(by), by.dtype
    filtered = any(value is not None for value in (top_k, top_p, min_p))
    # The common case adds by / T with the noise (one call); greedy and filters need y / T alone.
    by_with_noise = not greedy and not filtered
    noise = None
    block_rows = noise_block_rows(V)
    guarded, stopping = guard is not None, bool(stop.stop)
    for i in range(length):
        logits = stream.logits_scaled()           # (Why h) / T
        row = i % block_rows
        if not greedy and row == 0:               # Gumbel noise for the next block of draws
            noise = gumbel_noise(rng, (block_rows, V)).astype(dtype, copy=False)
            if by_with_noise:
                noise += by
        banned = guard.banned() if guarded else None
        if by_with_noise:
            logits += noise[row]                  # y / T + g: its argmax is a softmax sample
            if banned:
                logits[banned] = -np.inf          # (commutes with the noise: same draw otherwise)
        else:
            logits += by                          # y / T
            if banned:
                logits[banned] = -np.inf
            if not greedy:
                filter_logits(logits, temperature, top_k, top_p, min_p)
                logits += noise[row]
        c = int(logits.argmax())
        char = vocab.chars[c]
        yield char
        if guarded:
            guard.push(char)
        if stopping and stop.done_after(char):
            return
        stream.feed(c)                            # feed the character back in


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(y)`` in float64, stable: ``y - max - log(sum(exp(y - max)))``."""
    y = logits.astype(np.float64)
    y -= y.max()
    y -= math.log(np.exp(y).sum())
    return y


class _Path:
    """One hypothesis of beam search: its score (sum of log p), where its stream is, the
    characters not yet written out, and its loop guard."""

    __slots__ = ("score", "snapshot", "pending", "guard")

    def __init__(self, score, snapshot, pending, guard):
        self.score, self.snapshot, self.pending, self.guard = score, snapshot, pending, guard

    def extended(self, stream: Stream, c: int, char: str, score: float) -> "_Path":
        stream.restore(self.snapshot)
        stream.feed(c)
        guard = None
        if self.guard is not None:
            guard = self.guard.copy()
            guard.push(char)
        return _Path(score, stream.snapshot(), self.pending + char, guard)


def beam_search(network: Network, params: ParamSet, vocab: Vocabulary, seed: str, length: int,
                beam: int, no_repeat: int = 0, stop=()) -> Iterator[str]:
    """Yield the most likely continuation of ``length`` characters that beam search finds.

    Every hypothesis is exactly ``length`` characters long, so their sums of ``log p`` under
    the model compare fairly (no length rule is needed): at each step every one of the
    ``beam`` kept hypotheses is extended by every character, and the ``beam`` extensions with
    the largest sums are kept. The greedy continuation (the most likely character each step,
    the K = 1 case) is followed beside them, and the result is whichever of the best beam and
    the greedy continuation is more likely, so it is never less likely than --greedy's.
    The loop guard (``no_repeat``) rules characters out of every hypothesis as in generate().
    Characters are yielded as soon as every hypothesis (and the greedy one) agrees on them,
    so the text streams; the result ends after its first ``stop`` string, if any.
    """
    indices = start_indices(vocab, seed)
    stream = _stream(network, params, 1.0, greedy=False)
    guard = RepeatGuard(vocab, no_repeat, vocab.decode(indices)) if no_repeat else None
    return _beam_search(stream, vocab, indices, length, beam, guard, _StopWatch(stop))


def _beam_search(stream: Stream, vocab, seed_indices, length, beam, guard, stop):
    for c in seed_indices:
        stream.prime(c)
    by = stream.by_scaled
    chars = vocab.chars
    V = len(by)
    paths = [_Path(0.0, stream.snapshot(), "", guard)]
    greedy = paths[0]

    def scores(path):
        """log p of each next character after ``path``; -inf where its guard refuses."""
        stream.restore(path.snapshot)
        logp = log_softmax(stream.logits_scaled() + by)
        path.snapshot = stream.snapshot()   # now with the top layer's recurrent term current
        if path.guard is not None:
            logp[path.guard.banned()] = -np.inf
        return logp

    for _ in range(length):
        totals = np.stack([path.score + scores(path) for path in paths])   # (K, V)
        flat = totals.reshape(-1)
        best = np.argsort(-flat, kind="stable")[:beam]
        best = best[np.isfinite(flat[best])]
        paths = [paths[i // V].extended(stream, i % V, chars[i % V], float(flat[i]))
                 for i in best]
        logp = scores(greedy)
        c = int(logp.argmax())
        greedy = greedy.extended(stream, c, chars[c], greedy.score + float(logp[c]))
        # Write out what every hypothesis agrees on.
        for char in _settled(paths + [greedy]):
            yield char
            if stop.done_after(char):
                return
    best = max(paths, key=lambda path: path.score)
    final = best if best.score >= greedy.score else greedy
    for char in final.pending:
        yield char
        if stop.done_after(char):
            return


def _settled(paths: list[_Path]) -> str:
    """Remove from every path's pending characters the prefix they all share, and return it."""
    shared = paths[0].pending
    for path in paths[1:]:
        n = 0
        limit = min(len(shared), len(path.pending))
        while n < limit and shared[n] == path.pending[n]:
            n += 1
        shared = shared[:n]
        if not shared:
            return ""
    for path in {id(path): path for path in paths}.values():
        path.pending = path.pending[len(shared):]
    return shared


def continuation(network: Network, params: ParamSet, vocab: Vocabulary, prompt: str,
                 length: int, settings: Settings, rng: np.random.Generator) -> Iterator[str]:
    """The characters that follow ``prompt`` under ``settings``: beam_search() with a beam,
    else generate(). Raises as they do, at the call."""
    if settings.beam is not None:
        return beam_search(network, params, vocab, prompt, length, settings.beam,
                           settings.no_repeat, settings.stop)
    return generate(network, params, vocab, prompt, length, rng, settings.temperature,
                    settings.top_k, settings.greedy, settings.top_p, settings.min_p,
                    settings.no_repeat, settings.stop)
