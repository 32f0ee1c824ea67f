"""Gradient clipping, the two optimisers (Adagrad and Adam) and the learning-rate schedule.

An optimiser keeps state arrays the size of the parameters (its "slots"), each a flat array
saved in checkpoints under the slot's name: ``adagrad`` for Adagrad's memory, ``adam.m`` and
``adam.v`` for Adam's moments. NumPy only.
"""
from __future__ import annotations

import math

import numpy as np

ADAGRAD_EPS = 1e-8
ADAM_BETAS = (0.9, 0.999)      # Kingma and Ba's defaults, as torch.optim.Adam's
ADAM_EPS = 1e-8


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

    SLOTS = ("adagrad",)

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


class Adam:
    """Adam (Kingma and Ba, 2015) with torch.optim.Adam's defaults, at update t = 1, 2, ...:

        m = beta1 m + (1 - beta1) g                   first moment, its running mean
        v = beta2 v + (1 - beta2) g^2                 second moment
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    The divisions by (1 - beta^t) undo the bias of m and v towards their zero start.
    ``m`` and ``v`` are flat arrays the size of the parameters (saved in checkpoints);
    ``steps_taken`` is t - 1 for the next update (a resumed run passes its iteration).
    Where Adagrad's step only shrinks as its memory grows, Adam's follows the recent size of
    the gradients, which keeps the gated cells learning through a short run (README).
    """

    SLOTS = ("adam.m", "adam.v")

    def __init__(self, m: np.ndarray, v: np.ndarray, learning_rate: float, steps_taken: int = 0):
        self.m, self.v = m, v
        self.learning_rate = learning_rate
        self.steps_taken = steps_taken
        self._work = np.empty_like(m)
        self._denominator = np.empty_like(m)

    def update(self, param: np.ndarray, grad: np.ndarray) -> None:
        """Apply one update to the flat array ``param`` in place, given its gradient ``grad``."""
        beta1, beta2 = ADAM_BETAS
        self.steps_taken += 1
        t = self.steps_taken
        work, denominator = self._work, self._denominator
        self.m *= beta1
        np.multiply(grad, 1 - beta1, out=work)
        self.m += work                                     # m = beta1 m + (1 - beta1) g
        self.v *= beta2
        np.multiply(grad, grad, out=work)
        work *= 1 - beta2
        self.v += work                                     # v = beta2 v + (1 - beta2) g^2
        np.sqrt(self.v, out=denominator)
        denominator *= 1 / math.sqrt(1 - beta2 ** t)
        denominator += ADAM_EPS                            # sqrt(v / (1 - beta2^t)) + eps
        np.divide(self.m, denominator, out=work)
        work *= -self.learning_rate / (1 - beta1 ** t)
        param += work


OPTIMIZERS = {"adagrad": Adagrad, "adam": Adam}


def make_optimizer(name: str, slots: dict[str, np.ndarray], learning_rate: float,
                   steps_taken: int) -> Adagrad | Adam:
    """The optimiser ``name`` over the flat state arrays ``slots`` ({slot name: array})."""
    kind = OPTIMIZERS[name]
    arrays = [slots[slot] for slot in kind.SLOTS]
    if kind is Adam:
        return Adam(*arrays, learning_rate, steps_taken)
    return Adagrad(*arrays, learning_rate)


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
