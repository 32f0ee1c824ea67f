"""The vanilla RNN as min-char-rnn writes it: one stream, one-hot column vectors, a dict of
per-step values. Read this first; the rest of the package computes the same numbers faster.

For each step t of a window, with ``x_t`` the one-hot column of the input character:

    h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)     hidden state, (H, 1)
    y_t = Why h_t + by                         logits, (V, 1)
    p_t = exp(y_t) / sum(exp(y_t))             next-character probabilities, (V, 1)
    loss = sum_t -log p_t[target_t]

and backward, from the last step to the first:

    dy_t = p_t - onehot(target_t)
    dh_t = Why^T dy_t + dh_next                dh_next = Whh^T dh_raw_{t+1} (0 at the end)
    dh_raw_t = (1 - h_t^2) * dh_t              back through tanh
    dWhy += dy_t h_t^T      dby += dy_t
    dWxh += dh_raw_t x_t^T  dWhh += dh_raw_t h_{t-1}^T   dbh += dh_raw_t

Parameters are a dict of arrays: ``Wxh (H, V)``, ``Whh (H, H)``, ``Why (V, H)``,
``bh (H, 1)``, ``by (V, 1)``. The tests and benchmarks use this module as their oracle.
"""
from __future__ import annotations

import numpy as np

PARAM_NAMES = ("Wxh", "Whh", "Why", "bh", "by")


def one_hot(c: int, V: int) -> np.ndarray:
    """The (V, 1) column with a 1 in row c."""
    x = np.zeros((V, 1))
    x[c] = 1.0
    return x


def loss_fun(inputs: list[int], targets: list[int], hprev: np.ndarray,
             params: dict) -> tuple[float, dict, np.ndarray]:
    """min-char-rnn's lossFun: the window's loss, every parameter's gradient (a dict keyed
    like ``params``), and the last hidden state (H, 1). Gradients are not clipped."""
    Wxh, Whh, Why, bh, by = (params[name] for name in PARAM_NAMES)
    V = Why.shape[0]
    xs, hs, ps = {}, {-1: np.copy(hprev)}, {}
    loss = 0.0
    for t, c in enumerate(inputs):                      # forward, one step at a time
        xs[t] = one_hot(c, V)
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))   # stable softmax
        loss += -np.log(ps[t][targets[t], 0])
    grads = {name: np.zeros_like(params[name]) for name in PARAM_NAMES}
    dh_next = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):              # backward, from the last step
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1                             # softmax + cross-entropy
        grads["Why"] += dy @ hs[t].T
        grads["by"] += dy
        dh = Why.T @ dy + dh_next                       # from the output and from t+1
        dh_raw = (1 - hs[t] * hs[t]) * dh               # back through tanh
        grads["bh"] += dh_raw
        grads["Wxh"] += dh_raw @ xs[t].T
        grads["Whh"] += dh_raw @ hs[t - 1].T
        dh_next = Whh.T @ dh_raw
    return float(loss), grads, hs[len(inputs) - 1]


def adagrad_update(params: dict, grads: dict, memory: dict, learning_rate: float,
                   clip: float) -> None:
    """min-char-rnn's update, in place: clip each gradient to [-clip, clip], then
    ``m += g * g; p += -lr * g / sqrt(m + 1e-8)``."""
    for name in PARAM_NAMES:
        g = np.clip(grads[name], -clip, clip)
        memory[name] += g * g
        params[name] += -learning_rate * g / np.sqrt(memory[name] + 1e-8)


def sample(h: np.ndarray, seed_ix: int, n: int, params: dict,
           rng: np.random.Generator) -> list[int]:
    """min-char-rnn's sample: ``n`` indices drawn one at a time from softmax(y), feeding each
    back in, starting from state h (H, 1) and input character seed_ix."""
    Wxh, Whh, Why, bh, by = (params[name] for name in PARAM_NAMES)
    V = Why.shape[0]
    x = one_hot(seed_ix, V)
    drawn = []
    for _ in range(n):
        h = np.tanh(Wxh @ x + Whh @ h + bh)
        y = Why @ h + by
        p = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))
        c = int(rng.choice(V, p=p.ravel()))
        x = one_hot(c, V)
        drawn.append(c)
    return drawn


# --------------------------------------------------------------------------- every cell, plainly
# One step of one layer for one stream, straight from each cell's equations (see its module):
# column vectors, explicit sigmoids, no fused or transposed tricks. ``p`` holds the layer's
# arrays under the cell's names (Wxh (G, I), Whh (G, H), bh (G,), and the GRU's bhn (H,));
# x is (I, 1); state a tuple of (H, 1) columns, as the cell's STATE_NAMES. The tests check the
# fast cells against these, and a new cell adds its step here.

def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _gate(p: dict, k: int, x: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
    """Gate block k's pre-activation: ``W_k x + U_k h_{t-1} + b_k``."""
    H = p["Whh"].shape[1]
    rows = slice(k * H, (k + 1) * H)
    return p["Wxh"][rows] @ x + p["Whh"][rows] @ h_prev + p["bh"].reshape(-1, 1)[rows]


def rnn_step(p: dict, x: np.ndarray, state: tuple) -> tuple:
    """``h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)``."""
    h_prev, = state
    return (np.tanh(_gate(p, 0, x, h_prev)),)


def lstm_step(p: dict, x: np.ndarray, state: tuple) -> tuple:
    """Gates stored (i, f, o, g): ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``."""
    h_prev, c_prev = state
    i, f, o = (sigmoid(_gate(p, k, x, h_prev)) for k in range(3))
    g = np.tanh(_gate(p, 3, x, h_prev))
    c = f * c_prev + i * g
    return o * np.tanh(c), c


def gru_step(p: dict, x: np.ndarray, state: tuple) -> tuple:
    """Gates stored (r, z, n): ``n = tanh(W_n x + b_n + r (U_n h + bhn))``,
    ``h_t = (1 - z) n + z h_{t-1}``."""
    h_prev, = state
    H = p["Whh"].shape[1]
    r, z = (sigmoid(_gate(p, k, x, h_prev)) for k in range(2))
    n_rows = slice(2 * H, 3 * H)
    n = np.tanh(p["Wxh"][n_rows] @ x + p["bh"].reshape(-1, 1)[n_rows]
                + r * (p["Whh"][n_rows] @ h_prev + p["bhn"].reshape(-1, 1)))
    return ((1 - z) * n + z * h_prev,)


STEPS = {"rnn": rnn_step, "lstm": lstm_step, "gru": gru_step}
