"""Gradient clipping, the Adagrad update and its learning-rate schedule. NumPy only."""
from __future__ import annotations

import numpy as np

ADAGRAD_EPS = 1e-8


def clip_gradients(grad: np.ndarray, clip: float) -> np.ndarray:
    """Clip every gradient element to ``[-clip, clip]``, in place; returns ``grad``."""
    return np.clip(grad, -clip, clip, out=grad)


class Adagrad:
    """Adagrad with one memory element per parameter element.

        m += g * g
        p -= lr * g / sqrt(m + eps)        eps = 1e-8

    ``memory`` is a flat array the size of the parameters (it is saved in checkpoints).
    The arithmetic follows min-char-rnn's order, ``p += (-lr * g) / sqrt(m + eps)``, so that
    with the same inputs the two agree to the last bit.
    """

    def __init__(self, memory: np.ndarray, learning_rate: float):
        self.memory = memory
        self.learning_rate = learning_rate
        self._step = np.empty_like(memory)
        self._denominator = np.empty_like(memory)

    def update(self, param: np.ndarray, grad: np.ndarray) -> None:
        """Apply one update to the flat array ``param`` in place, given its gradient ``grad``."""
        step, denominator = self._step, self._denominator
        np.multiply(grad, grad, out=step)
        self.memory += step
        np.add(self.memory, ADAGRAD_EPS, out=denominator)
        np.sqrt(denominator, out=denominator)
        np.multiply(grad, -self.learning_rate, out=step)
        step /= denominator
        param += step


def scheduled_learning_rate(peak: float, iteration: int, max_iters: int,
                            warmup_fraction: float, decay_fraction: float) -> float:
    """The learning rate of the update made after ``iteration`` completed iterations.

    Warm-up, hold, cool-down; at every iteration the smallest of:

        peak * (iteration + 1) / (warmup_fraction * max_iters)       rising at the start
        peak                                                         holding
        peak * (max_iters - iteration) / (decay_fraction * max_iters)  falling at the end

    A fraction of 0 turns its phase off. The last update (iteration max_iters - 1) uses
    peak / (decay_fraction * max_iters); the rate would be 0 at max_iters, where no update is
    made. If the two fractions add up to more than 1, the rate never reaches the peak.

    Why warm up: Adagrad's first update moves nearly every weight by the full learning rate
    (g / sqrt(g^2 + eps) is about +-1), which at a good peak rate knocks a fresh network
    about; rising to it lets the peak be higher. The cool-down ends training on small steps,
    which settles the weights into a lower loss. A function of the iteration alone, so a
    resumed run follows the same schedule.
    """
    factor = 1.0
    if warmup_fraction > 0:
        factor = min(factor, (iteration + 1) / (warmup_fraction * max_iters))
    if decay_fraction > 0:
        factor = min(factor, (max_iters - iteration) / (decay_fraction * max_iters))
    return peak * max(factor, 0.0)
