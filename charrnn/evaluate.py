"""Scoring a text with a model: cross-entropy with the hidden state carried through the text."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import eval_stream_count, make_streams
from .model import Network, ParamSet

EVAL_WINDOW = 256   # time steps per forward call when scoring, at most
EVAL_BLOCK_BYTES = 1 << 26   # and no more than 64 MiB of (steps x streams x V) probabilities


def eval_window_steps(num_streams: int, vocab_size: int, itemsize: int) -> int:
    """Time steps per forward call: EVAL_WINDOW, or fewer (at least one) so that the window's
    probabilities, ``steps * num_streams * vocab_size`` values of ``itemsize`` bytes, stay
    within EVAL_BLOCK_BYTES. Below about 2,000 characters of vocabulary this is EVAL_WINDOW."""
    return max(1, min(EVAL_WINDOW, EVAL_BLOCK_BYTES // (num_streams * vocab_size * itemsize)))


@dataclass(frozen=True)
class Score:
    """The summed negative log-likelihood of ``count`` scored characters, in nats."""
    total_nats: float
    count: int

    @property
    def nats_per_char(self) -> float:
        return self.total_nats / self.count if self.count else math.nan

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_char)


def chars_scored(num_chars: int) -> int:
    """How many of ``num_chars`` characters score_text predicts (each stream's first is context)."""
    num_streams = eval_stream_count(num_chars)
    return max(num_chars // num_streams - 1, 0) * num_streams


def score_text(network: Network, params: ParamSet, indices: np.ndarray,
               on_progress=None) -> Score:
    """Cross-entropy of a model on ``indices`` (N,), every character predicted from all before it.

    The text is cut into eval_stream_count(N) contiguous streams scored side by side (for
    speed); each stream starts from a zero state, and its first character is context
    only. ``on_progress(characters_scored)`` is called after each window.
    """
    num_streams = eval_stream_count(len(indices))
    window = eval_window_steps(num_streams, network.vocab_size, network.dtype.itemsize)
    streams = make_streams(indices, num_streams)          # (L, B)
    steps = len(streams) - 1
    state = network.zero_state(num_streams)
    total = 0.0
    for start in range(0, max(steps, 0), window):
        stop = min(start + window, steps)
        loss, cache = network.forward(params, streams[start:stop], streams[start + 1:stop + 1],
                                      state)
        total += loss * num_streams
        network.carry_state(state, cache)
        if on_progress is not None:
            on_progress((stop - start) * num_streams)
    return Score(total, max(steps, 0) * num_streams)
