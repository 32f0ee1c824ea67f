"""Scoring a text with a model: cross-entropy with the hidden state carried through the text."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .data import eval_stream_count, make_streams
from .rnn import forward

EVAL_WINDOW = 256   # time steps per forward call when scoring


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


def score_text(params: Mapping[str, np.ndarray], indices: np.ndarray, on_progress=None) -> Score:
    """Cross-entropy of a model on ``indices`` (N,), every character predicted from all before it.

    The text is cut into eval_stream_count(N) contiguous streams scored side by side (for
    speed); each stream starts from a zero hidden state, and its first character is context
    only. ``on_progress(characters_scored)`` is called after each window.
    """
    H = params["Whh"].shape[0]
    num_streams = eval_stream_count(len(indices))
    streams = make_streams(indices, num_streams)          # (L, B)
    steps = len(streams) - 1
    hidden = np.zeros((num_streams, H), dtype=params["Whh"].dtype)
    total = 0.0
    ws = None
    for start in range(0, max(steps, 0), EVAL_WINDOW):
        stop = min(start + EVAL_WINDOW, steps)
        loss, cache = forward(params, streams[start:stop], streams[start + 1:stop + 1], hidden, ws)
        total += loss * num_streams
        hidden, ws = cache.hs[-1], cache.ws   # forward copies hidden into ws before overwriting
        if on_progress is not None:
            on_progress((stop - start) * num_streams)
    return Score(total, max(steps, 0) * num_streams)
