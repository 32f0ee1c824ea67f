"""A reusable gradient checker: analytic gradients against centred finite differences.

Usage::

    from gradcheck import check_gradient
    check_gradient(lambda: loss_of_current_x(), x, analytic_grad, name="Wxh")

``x`` is perturbed in place, one element at a time, and restored exactly (the saved value
is written back, not ``x + eps - eps``). Work in float64: in float32 the rounding error of a
finite difference is far above the 1e-6 tolerance.

The per-element relative error is ``|a - n| / max(|a|, |n|, floor)``. The floor keeps
elements whose true gradient is (near) zero from dividing rounding noise by zero: for such
elements the check is an absolute one, ``|a - n| < rtol * floor`` (1e-9 by default).

Why these defaults: a finite difference of a loss of size ~10 carries a rounding error of
about ``1e-16 * 10 / eps`` and a truncation error of about ``eps**2 * (third derivative) / 6``;
eps = 2e-5 keeps both near 1e-10, so an absolute error of 1e-9 is above the noise while a
real mistake in a gradient formula is many orders of magnitude larger.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

DEFAULT_EPS = 2e-5
DEFAULT_RTOL = 1e-6
DEFAULT_FLOOR = 1e-3


def numeric_gradient(f: Callable[[], float], x: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for every element i of ``x``.

    ``f`` takes no arguments and must read ``x`` (which is modified in place and restored).
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64, got {x.dtype}")
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    grad = np.empty(x.shape, dtype=np.float64)
    grad_flat = grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        f_plus = f()
        flat[i] = saved - eps
        f_minus = f()
        flat[i] = saved
        grad_flat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_errors(analytic: np.ndarray, numeric: np.ndarray,
                    floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """Elementwise ``|a - n| / max(|a|, |n|, floor)``."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    return np.abs(analytic - numeric) / scale


def assert_gradients_close(analytic: np.ndarray, numeric: np.ndarray, name: str = "gradient",
                           rtol: float = DEFAULT_RTOL, floor: float = DEFAULT_FLOOR) -> float:
    """Raise AssertionError naming the worst element unless every relative error is < rtol.

    Returns the largest relative error (useful to print when tuning a test).
    """
    analytic = np.asarray(analytic)
    numeric = np.asarray(numeric)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"{name}: analytic gradient has shape {analytic.shape}, "
                             f"numeric gradient has shape {numeric.shape}")
    if not np.all(np.isfinite(analytic)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(analytic))[0])
        raise AssertionError(f"{name}: analytic gradient is not finite at index {bad}")
    errors = relative_errors(analytic, numeric, floor)
    if errors.size == 0:
        return 0.0
    worst_flat = int(np.argmax(errors))
    worst = np.unravel_index(worst_flat, errors.shape)
    worst_error = float(errors[worst])
    if not worst_error < rtol:
        failing = int(np.count_nonzero(errors >= rtol))
        worst_index = tuple(int(i) for i in worst)
        raise AssertionError(
            f"{name}: gradient check failed at {failing} of {errors.size} element(s); worst at "
            f"index {worst_index}: analytic {float(analytic[worst]):.12g} vs numeric "
            f"{float(numeric[worst]):.12g}, relative error {worst_error:.3g} >= {rtol:g} "
            f"(floor {floor:g})")
    return worst_error


def check_gradient(f: Callable[[], float], x: np.ndarray, analytic: np.ndarray,
                   name: str = "gradient", eps: float = DEFAULT_EPS, rtol: float = DEFAULT_RTOL,
                   floor: float = DEFAULT_FLOOR) -> float:
    """Compare ``analytic`` with centred finite differences of ``f`` with respect to ``x``.

    Returns the largest relative error; raises AssertionError (naming the worst index and
    both values) if it is not below ``rtol``.
    """
    numeric = numeric_gradient(f, x, eps)
    return assert_gradients_close(analytic, numeric, name, rtol, floor)
