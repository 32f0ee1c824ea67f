"""The gated cells' nonlinearities, in place, built on ``np.exp``.

NumPy's float32 ``tanh`` is a scalar loop on CPUs without AVX-512, while its ``exp`` is
vectorised: measured here (x86-64 with AVX2) on a (32, 1024) float32 block, tanh 225 us,
exp 112 us, and the sigmoid below 132 us against 235 us for ``0.5 tanh(x / 2) + 0.5``. The
vanilla cell keeps ``np.tanh``, so that its numbers stay exactly those of earlier releases.

    sigma(x) = 1 / (1 + exp(-x))
    tanh(x)  = 2 sigma(2x) - 1 = 2 / (1 + exp(-2x)) - 1

Both saturate cleanly: exp(-x) overflows to inf for very negative x and 1 / (1 + inf) = 0.
The callers silence that overflow warning (np.errstate); the results are exact limits.
"""
from __future__ import annotations

import numpy as np


def sigmoid_from_negated(z: np.ndarray) -> np.ndarray:
    """``sigma(x)`` in place, given ``z = -x`` (the cells fold the minus sign into a copy of
    their weights once per window, which saves a call per step); returns ``z``."""
    np.exp(z, z)
    np.add(z, 1, z)
    return np.reciprocal(z, z)


def tanh_from_sigmoid(s: np.ndarray) -> np.ndarray:
    """``tanh(x)`` in place, given ``s = sigma(2x)``; returns ``s``."""
    np.multiply(s, 2, s)
    return np.subtract(s, 1, s)


def tanh(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``tanh(x)`` into ``out`` (which may be x)."""
    np.multiply(x, -2, out)
    return tanh_from_sigmoid(sigmoid_from_negated(out))

