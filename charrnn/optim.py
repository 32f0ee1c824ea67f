"""Gradient clipping and the Adagrad update, over flat parameter buffers. NumPy only."""
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
