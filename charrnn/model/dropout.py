"""Inverted dropout on a layer's outputs (never on the recurrent state).

In training each output unit is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``,
so its expected value is unchanged and evaluation and sampling use the network as it is:

    mask = (u >= p) / (1 - p),   u ~ U[0, 1)      one mask per layer and window, (T, B, H)
    x_dropped = x * mask         dx = dx_dropped * mask
"""
from __future__ import annotations

import numpy as np


def draw_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """A fresh inverted-dropout mask of ``shape`` from ``rng``: 0 or 1 / (1 - p) per element."""
    keep = rng.random(shape, dtype=np.float64) >= p
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype)
