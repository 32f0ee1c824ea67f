"""Generating text: prime the network with a seed, then draw one character at a time."""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from .data import Vocabulary

NOISE_BLOCK = 512   # characters' worth of Gumbel noise drawn from the RNG at once


def gumbel_noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard Gumbel samples, ``-log(-log(u))`` with u uniform in (0, 1)."""
    u = rng.random(shape)
    np.maximum(u, np.finfo(np.float64).tiny, out=u)   # rng.random can return exactly 0
    return -np.log(-np.log(u))


def generate(params: Mapping[str, np.ndarray], vocab: Vocabulary, seed: str, length: int,
             rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
             greedy: bool = False) -> Iterator[str]:
    """Yield ``length`` characters generated after feeding ``seed`` through the network.

    Starting from a zero hidden state, each seed character is fed in with
    ``h = tanh(Wxh x + Whh h + bh)``. Each new character is then drawn from
    ``softmax(y / temperature)`` with ``y = Why h + by`` (only among the ``top_k`` largest
    logits if given; the largest logit if ``greedy``) and fed back in.
    With an empty seed the first character is drawn from the zero state's distribution,
    ``softmax(by / temperature)``.

    The draw uses the Gumbel-max trick: ``argmax(y / temperature + g)`` with g standard Gumbel
    noise is a sample from ``softmax(y / temperature)``, and needs no exp, sum or cumsum.
    Raises UnknownCharactersError if the seed has characters outside the vocabulary.
    """
    seed_indices = vocab.encode(seed)
    dtype = np.float64
    # Rows of Wxh^T plus bh: row c is Wxh onehot(c) + bh, the input term for character c.
    input_rows = np.ascontiguousarray(params["Wxh"].T + params["bh"], dtype=dtype)   # (V, H)
    Whh = np.ascontiguousarray(params["Whh"], dtype=dtype)                           # (H, H)
    # Temperature folded into the output layer once: y / T = (Why / T) h + by / T.
    Why = np.ascontiguousarray(params["Why"] / temperature, dtype=dtype)             # (V, H)
    by = np.asarray(params["by"] / temperature, dtype=dtype)                         # (V,)

    h = np.zeros(Whh.shape[0], dtype)
    for c in seed_indices:
        h = np.tanh(input_rows[c] + Whh @ h)

    noise = None
    for i in range(length):
        logits = Why @ h                          # (Why / T) h
        logits += by                              #   + by / T
        if top_k is not None and top_k < len(logits):
            logits[np.argpartition(logits, -top_k)[:-top_k]] = -np.inf   # keep the k largest
        if not greedy:
            if i % NOISE_BLOCK == 0:
                noise = gumbel_noise(rng, (NOISE_BLOCK, len(logits)))
            logits += noise[i % NOISE_BLOCK]      # Gumbel-max: argmax is a softmax sample
        c = int(logits.argmax())
        yield vocab.chars[c]
        h = np.tanh(input_rows[c] + Whh @ h)      # feed the character back in
