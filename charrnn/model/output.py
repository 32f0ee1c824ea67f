"""The output layer: logits, softmax and cross-entropy, and their gradients.

For N rows of top-layer states ``h`` (N = T*B, one per step and stream):

    y = Why h + by                       logits, (N, V)
    p = softmax(y)                       next-character probabilities, (N, V)
    loss = sum_n -log p_n[target_n] / B  summed over the window's steps, averaged over streams

    dy   = (p - onehot(target)) / B      (N, V)
    dWhy = sum_n dy_n h_n^T     dby = sum_n dy_n     dh = Why^T dy
"""
from __future__ import annotations

import numpy as np


def param_shapes(V: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"Why": (V, H), "by": (V,)}


def init_params(p: dict, rng: np.random.Generator, scale: float) -> None:
    """``N(0, scale^2)`` weights, zero bias, in place. Small weights make every logit near
    zero, so the first loss is close to ``log(V)`` per character: a check of initialisation."""
    p["Why"][...] = rng.standard_normal(p["Why"].shape) * scale


class Workspace:
    """probs: (N, V) logits, then probabilities, then dL/dlogits; and small row buffers."""

    def __init__(self, N: int, V: int, dtype):
        self.probs = np.empty((N, V), dtype)
        self.row_max = np.empty((N, 1), dtype)
        self.row_sum = np.empty(N, dtype)
        # Row n's target has the flat index row_starts[n] + target into probs (one 1-D
        # index is cheaper than a (rows, columns) pair).
        self.row_starts = np.arange(N) * V
        self.target_index = np.empty(N, np.intp)
        self.ones_V = np.ones(V, dtype)     # sums within rows as products: y 1 is sum_c y_c


def logits(Why: np.ndarray, by: np.ndarray, h_flat: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``y = Why h + by`` for every row of h_flat (N, H), into ``out`` (N, V)."""
    np.dot(h_flat, Why.T, out=out)           # h Why^T, as rows
    out += by
    return out


def forward(Why: np.ndarray, by: np.ndarray, h_flat: np.ndarray, targets: np.ndarray,
            num_streams: int, ws: Workspace) -> float:
    """The loss (a Python float) of predicting ``targets`` (N,) from ``h_flat`` (N, H).

    Leaves the probabilities in ws.probs for backward.
    """
    y = logits(Why, by, h_flat, ws.probs)
    # Stable softmax and cross-entropy: -log p[target] = log(sum(exp(y - max))) - (y - max)[target]
    y -= y.max(axis=1, keepdims=True, out=ws.row_max)
    target_index = np.add(ws.row_starts, targets, out=ws.target_index)
    target_logits = y.take(target_index)                    # (y - max)[target], (N,)
    probs = np.exp(y, out=y)
    sums = np.dot(probs, ws.ones_V, out=ws.row_sum)        # row sums, as a product (faster)
    loss = float((np.log(sums, dtype=np.float64) - target_logits).sum()) / num_streams
    probs /= sums[:, None]
    return loss


def backward(Why: np.ndarray, h_flat: np.ndarray, num_streams: int, ws: Workspace,
             ones: np.ndarray, grads: dict, dh_flat: np.ndarray) -> None:
    """Write dWhy and dby into ``grads`` and ``dh = Why^T dy`` into dh_flat (N, H).

    Consumes ws.probs (overwritten with dy). ``ones`` is an (N,) array of ones: ``1^T dy`` is
    a BLAS sum over rows.
    """
    dy = ws.probs
    dy.reshape(-1)[ws.target_index] -= 1                   # p - onehot(target)
    if num_streams > 1:   # (dividing by 1 changes nothing, and costs a call)
        dy /= num_streams
    np.dot(dy.T, h_flat, out=grads["Why"])                 # dWhy = dy^T h
    np.dot(ones, dy, out=grads["by"])                      # dby = 1^T dy
    np.dot(dy, Why, out=dh_flat)                           # dh = Why^T dy, as rows
