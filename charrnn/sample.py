"""Generating text: prime the network with a seed, then draw one character at a time."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .data import Vocabulary
from .model import Network, ParamSet, Stream

NOISE_BLOCK = 512   # characters' worth of Gumbel noise drawn from the RNG at once, at most
NOISE_BLOCK_BYTES = 1 << 22   # and no more than 4 MiB of it, whatever the vocabulary size


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


def generate(network: Network, params: ParamSet, vocab: Vocabulary, seed: str, length: int,
             rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
             greedy: bool = False) -> Iterator[str]:
    """Yield ``length`` characters generated after feeding ``seed`` through the network.

    Starting from a zero state, each seed character is fed in. Each new character is then
    drawn from ``softmax(y / temperature)``, with ``y`` the network's logits (only among the
    ``top_k`` largest if given; the largest if ``greedy``), and fed back in. With an empty
    seed the first character is drawn from the zero state's distribution.

    The draw uses the Gumbel-max trick: ``argmax(y / temperature + g)`` with g standard Gumbel
    noise is a sample from ``softmax(y / temperature)``, and needs no exp, sum or cumsum.
    Arithmetic is in the parameters' dtype (float32 for a float32 model).
    Raises UnknownCharactersError if the seed has characters outside the vocabulary, and
    ValueError if the temperature is so small that the scaled logits overflow; both at the
    call, before any character is drawn.
    """
    seed_indices = vocab.encode(seed)
    try:
        # The largest logit is the largest at any temperature: greedy needs no scaling, so
        # no temperature is too small for it.
        with np.errstate(divide="ignore", over="ignore"):   # a tiny temperature: found below
            stream = network.stream(params, 1.0 if greedy else temperature)
    except ValueError as error:
        advice = "use a larger one" if greedy else "use a larger one, or --greedy"
        raise ValueError(f"{error}; {advice}") from None
    return _generate(stream, vocab, seed_indices, length, rng, top_k, greedy)


def _generate(stream: Stream, vocab, seed_indices, length, rng, top_k, greedy):
    """The generator behind generate(), whose arguments are already checked."""
    for c in seed_indices:
        stream.prime(c)
    by = stream.by_scaled                         # by / temperature, (V,)
    V, dtype = len(by), by.dtype
    # The common case adds by / T with the noise (one call); greedy and top-k need y / T alone.
    by_with_noise = not greedy and top_k is None
    noise = None
    block_rows = noise_block_rows(V)
    for i in range(length):
        logits = stream.logits_scaled()           # (Why h) / T
        row = i % block_rows
        if not greedy and row == 0:               # Gumbel noise for the next block of draws
            noise = gumbel_noise(rng, (block_rows, V)).astype(dtype, copy=False)
            if by_with_noise:
                noise += by
        if by_with_noise:
            logits += noise[row]                  # y / T + g: its argmax is a softmax sample
        else:
            logits += by                          # y / T
            if top_k is not None and top_k < V:
                logits[np.argpartition(logits, -top_k)[:-top_k]] = -np.inf   # keep the k largest
            if not greedy:
                logits += noise[row]
        c = int(logits.argmax())
        yield vocab.chars[c]
        stream.feed(c)                            # feed the character back in
