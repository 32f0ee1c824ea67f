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
    Arithmetic is in the parameters' dtype (float32 for a float32 model).
    Raises UnknownCharactersError if the seed has characters outside the vocabulary, and
    ValueError if the temperature is so small that the scaled logits overflow; both at the
    call, before any character is drawn.

    Per character this is one matrix-vector product and five small NumPy calls: ``Why h``
    and ``Whh h`` share the same h, so they are one product with the stacked matrix
    ``[Why / T; Whh]``, and ``by / T`` is added to each block of Gumbel noise once.
    """
    seed_indices = vocab.encode(seed)
    dtype = np.result_type(params["Whh"].dtype, np.float32)   # float32 or float64
    # Temperature folded into the output layer once: y / T = (Why / T) h + by / T.
    with np.errstate(over="ignore"):
        Why_scaled = np.asarray(params["Why"], dtype) / dtype.type(temperature)      # (V, H)
        by_scaled = np.asarray(params["by"], dtype) / dtype.type(temperature)        # (V,)
    if not (np.isfinite(Why_scaled).all() and np.isfinite(by_scaled).all()):
        raise ValueError(f"temperature {temperature} is too small for this model's logits "
                         f"(they overflow); use a larger one, or greedy sampling")
    return _generate(params, Why_scaled, by_scaled, vocab, seed_indices, length, rng,
                     top_k, greedy)


def _generate(params, Why_scaled, by, vocab, seed_indices, length, rng, top_k, greedy):
    """The generator behind generate(), whose arguments are already checked."""
    dtype = Why_scaled.dtype
    V, H = Why_scaled.shape
    # Rows of Wxh^T plus bh: row c is Wxh onehot(c) + bh, the input term for character c.
    input_rows = np.ascontiguousarray(params["Wxh"].T + params["bh"], dtype=dtype)   # (V, H)
    # [Why / T; Whh] h gives the logits y / T (before + by / T) and Whh h in one product,
    # computed as h^T [Why^T / T, Whh^T] (a row vector times a contiguous matrix is fastest).
    stacked_T = np.empty((H, V + H), dtype)                                          # (H, V+H)
    stacked_T[:, :V] = Why_scaled.T
    stacked_T[:, V:] = params["Whh"].T

    z = np.empty(V + H, dtype)              # the product: z[:V] logits, z[V:] Whh h
    logits, recurrent = z[:V], z[V:]
    Whh_T = stacked_T[:, V:]
    h = np.zeros(H, dtype)
    for c in seed_indices:
        np.dot(h, Whh_T, recurrent)
        np.tanh(np.add(recurrent, input_rows[c], h), h)       # h = tanh(Wxh x + bh + Whh h)

    # The common case adds by / T with the noise (one call); greedy and top-k need y / T alone.
    by_with_noise = not greedy and top_k is None
    noise = None
    for i in range(length):
        np.dot(h, stacked_T, z)                   # z = [(Why / T) h; Whh h]
        row = i % NOISE_BLOCK
        if not greedy and row == 0:               # Gumbel noise for the next block of draws
            noise = gumbel_noise(rng, (NOISE_BLOCK, V)).astype(dtype, copy=False)
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
        np.tanh(np.add(recurrent, input_rows[c], h), h)       # feed the character back in
