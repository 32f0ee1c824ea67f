"""Scoring a text with a model: the cross-entropy of every character but the first, each
predicted from the text before it (streams side by side, each warmed up on the text before
its segment)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import eval_segments, eval_streams
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
        """``exp(nats_per_char)``; inf when that is too large for a float (above about 709
        nats/char, which a model trained at a reckless learning rate can reach)."""
        return perplexity(self.nats_per_char)


def perplexity(nats_per_char: float) -> float:
    """``exp(nats_per_char)``, or inf when it is too large for a float."""
    try:
        return math.exp(nats_per_char)
    except OverflowError:
        return math.inf


def perplexity_text(nats_per_char: float) -> str:
    """The perplexity for people: ``5.123``, or ``e^1234.5678 (too large for a float)``."""
    value = perplexity(nats_per_char)
    if math.isinf(value) and math.isfinite(nats_per_char):
        return f"e^{nats_per_char:.4f} (too large for a float)"
    return f"{value:.3f}"


def chars_scored(num_chars: int) -> int:
    """How many of ``num_chars`` characters score_text predicts: all but the first."""
    return max(num_chars - 1, 0)


def score_text(network: Network, params: ParamSet, indices: np.ndarray,
               on_progress=None, num_streams: int | None = None,
               warmup: int | None = None) -> Score:
    """Cross-entropy of a model on ``indices`` (N,): every character but the first, each
    predicted from the text before it (the state carried from a zero state at the start).

    For speed, the text is scored by eval_stream_count(N) streams side by side, laid out by
    data.eval_segments: stream 0 reads from the start (exact), every other stream starts
    ``warmup`` characters before the segment it scores, so that its state has read the text
    just before it, and the last stream scores the remainder to the end. A text of one stream
    (under 2 * EVAL_MIN_STREAM_LENGTH characters) is scored exactly; a longer one within a
    measured distance of the exact figure (README, benchmarks/eval_exactness.py).
    ``num_streams`` and ``warmup`` (default: data.EVAL_WARMUP) override the layout (one
    stream: the exact figure, for any length).
    ``on_progress(characters_scored)`` is called after each window.
    """
    layout = eval_segments(len(indices), num_streams, warmup)
    if layout.scored == 0:
        return Score(0.0, 0)
    S, W = layout.num_streams, layout.warmup
    window = eval_window_steps(S, network.vocab_size, network.dtype.itemsize)
    streams = eval_streams(indices, layout)               # (W + segment + 1, S)
    total = 0.0

    def run(columns, start, stop, state, scored):
        """Forward ``columns`` over steps [start, stop) window by window, carrying ``state``;
        add the loss to the total when ``scored``."""
        nonlocal total
        B = columns.shape[1]
        for first in range(start, stop, window):
            last = min(first + window, stop)
            loss, cache = network.forward(params, columns[first:last],
                                          columns[first + 1:last + 1], state)
            network.carry_state(state, cache)
            if scored:
                total += loss * B
                if on_progress is not None:
                    on_progress((last - first) * B)

    if S > 1:
        # Stream 0's first W predictions are exact and scored; meanwhile every stream reads
        # its W characters of warm-up (stream 0's again, in the batch), not scored.
        run(streams[:, :1], 0, W, network.zero_state(1), scored=True)
    state = network.zero_state(S)
    run(streams, 0, W, state, scored=False)
    run(streams, W, W + layout.segment, state, scored=True)
    if layout.remainder:
        # The last stream goes on alone to the end of the text.
        tail = np.asarray(indices)[len(indices) - layout.remainder - 1:].reshape(-1, 1)
        last_state = {name: value[S - 1:].copy() for name, value in state.items()}
        run(tail, 0, layout.remainder, last_state, scored=True)
    return Score(total, layout.scored)
