"""The GRU cell (Cho et al., 2014), as torch.nn.GRU computes it.

For a batch of B streams, with ``x_t`` the cell's input at step t and ``h_0`` the carried
state, ``sigma`` the logistic sigmoid and ``*`` elementwise:

    r_t = sigma(W_r x_t + U_r h_{t-1} + b_r)               reset gate        (B, H)
    u_t = sigma(W_u x_t + U_u h_{t-1} + b_u)               update gate       (B, H)
    n_t =  tanh(W_n x_t + b_n + r_t * (U_n h_{t-1} + bhn)) candidate         (B, H)
    h_t = (1 - u_t) * n_t + u_t * h_{t-1}                  hidden state      (B, H)

(torch calls the update gate z.) The gates are stacked along the rows of ``Wxh (3H, I)``,
``Whh (3H, H)`` and ``bh (3H,)`` in torch's order r, u, n. The reset gate multiplies the
recurrent term of n only, bias included, so that bias is a parameter of its own,
``bhn (H,)`` (torch's ``bias_hh`` n rows); ``bh`` holds ``bias_ih + bias_hh`` for r and u and
``bias_ih`` for n. Below, ``a_t = Whh h_{t-1}`` plus bhn on its n rows: [U_r h, U_u h, hn].

Backward, from the last step to the first (``dh_t`` from above):

    dh     = dh_t + Whh^T [dz_r, dz_u, dhn]_{t+1} + dh_{t+1} * u_{t+1}
    dz_n   = dh * (1 - u_t) * (1 - n_t^2)       gradient of n's pre-activation
    dz_u   = dh * (h_{t-1} - n_t) * u_t (1 - u_t)
    dz_r   = dz_n * hn_t * r_t (1 - r_t)
    dhn    = dz_n * r_t                          gradient of U_n h + bhn
    dWhh   = sum_t [dz_r, dz_u, dhn]_t h_{t-1}^T     dbhn = sum_t dhn_t

The input terms' gradient (returned to the network for dWxh and dbh) is [dz_r, dz_u, dz_n].

Inside the recurrence every (B, H) array above is held transposed, (H, B) (see Workspace).
"""
from __future__ import annotations

import numpy as np

from .activations import sigmoid_from_negated, tanh
from .cell import SIGNED, UNIT

NAME = "gru"
GATES = 3
STATE_NAMES = ("h",)
WINDOW_BUFFERS = 15        # (T, B, H) arrays' worth in the Workspace, for memory estimates
GATE_ORDER = ("r", "z", "n")          # the same as torch.nn.GRU's
VALUE_RANGES = {"h": SIGNED, "r": UNIT, "z": UNIT, "n": SIGNED}
TORCH_MODULE = "GRU"
TORCH_KWARGS: dict = {}


def param_shapes(input_size: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"Wxh": (3 * H, input_size), "Whh": (3 * H, H), "bh": (3 * H,), "bhn": (H,)}


def init_params(p: dict, rng: np.random.Generator, scale: float) -> None:
    """``N(0, scale^2)`` weights drawn from ``rng`` (Wxh then Whh), zero biases; in place."""
    for name in ("Wxh", "Whh"):
        p[name][...] = rng.standard_normal(p[name].shape) * scale


class Workspace:
    """Buffers reused from one window to the next.

    The recurrence runs on transposed blocks, ``(3H, B)`` per step rather than ``(B, 3H)``:
    OpenBLAS computes ``Whh h^T`` faster than ``h Whh^T``, and each gate is then a contiguous
    (H, B) block where a (B, H) column slice of (B, 3H) is strided (the measurements: commit
    58b6d2a, and ``benchmarks/profile_step.py --cell gru``).

    x_proj: (T, B, 3H) input terms Wxh x_t + bh (filled by the network; read transposed),
            then in backward (T, 3H, B) [dhn, dz_r, dz_u]^T step by step
    gates:  (T, 3H, B) [r u n]^T after their nonlinearities
    hn:     (T, H, B) (U_n h_{t-1} + bhn)^T
    hs:     (T+1, B, H) hidden states, hs[0] = h_0 (what the network reads)
    hs_T:   (T+1, H, B) the same transposed (what the recurrence reads)
    dh:     (T, B, H) dL/dh_t from above (filled by the network; read transposed)
    dz_all: (4H, T*B) [dhn, dz_r, dz_u, dz_n] of every step, column t*B + b: rows 0:3H
            are what Whh multiplies (its rows taken in the order n, r, u), rows H:4H the
            input terms' gradient [dz_r, dz_u, dz_n]; dz_r and dz_u serve both
    Whh_fwd: (3H, H) Whh with its r, u rows negated; Whh_bwd: (H, 3H) [U_n; U_r; U_u]^T
    dW_T:   (H, 3H) dWhh^T, its gates' columns in the order n, r, u
    dz_n:   (T, H, B) dz_n^T, step by step (then copied into dz_all)
    bhn:    (H, B) bhn in every column
    a, dh_T, dh_next, factor, tmp: one step's (3H, B) product and (H, B) scratch
    """

    def __init__(self, T: int, B: int, H: int, dtype):
        self.x_proj = np.empty((T, B, 3 * H), dtype)
        self.gates = np.empty((T, 3 * H, B), dtype)
        self.hn = np.empty((T, H, B), dtype)
        self.hs = np.empty((T + 1, B, H), dtype)
        self.hs_T = np.empty((T + 1, H, B), dtype)
        self.dh = np.empty((T, B, H), dtype)
        self.dz_all = np.empty((4 * H, T * B), dtype)
        self.Whh_fwd = np.empty((3 * H, H), dtype)
        self.Whh_bwd = np.empty((H, 3 * H), dtype)
        self.a = np.empty((3 * H, B), dtype)
        self.dz_n = np.empty((T, H, B), dtype)
        self.bhn = np.empty((H, B), dtype)
        self.dh_T = np.empty((H, B), dtype)
        self.dh_next = np.empty((H, B), dtype)
        self.factor = np.empty((H, B), dtype)
        self.tmp = np.empty((H, B), dtype)
        self.ones = np.ones(T * B, dtype)
        self.dW_T = np.empty((H, 3 * H), dtype)
        self.H = H

    def final_state(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def forward(p: dict, state0: tuple, ws: Workspace) -> None:
    """The GRU recurrence over the window, into ws.gates, ws.hn, ws.hs_T and ws.hs.

    state0: (h_0,), (B, H). ws.x_proj holds Wxh x_t + bh on entry (left unchanged).
    """
    H = ws.H
    ws.hs[0] = state0[0]
    ws.hs_T[0] = state0[0].T
    # sigma(a) = 1 / (1 + exp(-a)) for r and u, with the minus sign folded into the r, u
    # rows of a copy of Whh and into a subtraction of the input terms (activations.py says
    # why exp rather than np.tanh).
    W, a, bhn = ws.Whh_fwd, ws.a, ws.bhn
    np.copyto(bhn, p["bhn"][:, None])        # a contiguous operand: 4x cheaper to add
    np.negative(p["Whh"][:2 * H], out=W[:2 * H])
    np.copyto(W[2 * H:], p["Whh"][2 * H:])
    with np.errstate(over="ignore"):          # exp(-a) = inf is sigma(a) = 0, exactly
        for t in range(ws.gates.shape[0]):
            x, gates, hn, h = ws.x_proj[t].T, ws.gates[t], ws.hn[t], ws.hs_T[t + 1]
            np.dot(W, ws.hs_T[t], a)                     # a = Whh h_{t-1} (r, u negated)
            np.add(a[2 * H:], bhn, hn)                   # hn = U_n h_{t-1} + bhn
            ru = gates[:2 * H]
            sigmoid_from_negated(np.subtract(a[:2 * H], x[:2 * H], ru))   # r, u
            n = gates[2 * H:]
            np.multiply(gates[:H], hn, n)
            np.add(n, x[2 * H:], n)
            tanh(n, n)                                   # n = tanh(W_n x + b_n + r hn)
            np.subtract(ws.hs_T[t], n, h)
            np.multiply(h, gates[H:2 * H], h)
            np.add(h, n, h)                              # h = n + u (h_{t-1} - n)
    np.copyto(ws.hs[1:], ws.hs_T[1:].transpose(0, 2, 1))


def backward(p: dict, ws: Workspace, grads: dict) -> tuple[np.ndarray, tuple]:
    """Gradients back through the window; ``ws.dh`` holds dL/dh_t on entry.

    Writes ``grads["Whh"]`` and ``grads["bhn"]``. Returns ``(dz, (dh_0,))``: dz (T, B, 3H)
    is [dz_r, dz_u, dz_n] (a transposed view of ws.dz_all), dh_0 is (B, H).
    """
    H = ws.H
    Whh = p["Whh"]
    T, _, B = ws.gates.shape
    Wb = ws.Whh_bwd                         # Whh^T, its gates' columns in the order n, r, u
    np.copyto(Wb[:, :H], Whh[2 * H:].T)
    np.copyto(Wb[:, H:], Whh[:2 * H].T)
    # Each step's [dhn, dz_r, dz_u] goes to a contiguous (3H, B) block in x_proj's memory
    # (the input terms are spent) and its dz_n to one of ws.dz_n's, all moved into dz_all
    # by two copies after the loop: writing each step's B-wide column block of dz_all
    # directly cost 5-6 ms a window at H=256 (short rows on cold cache lines), the copies 2.7.
    blocks = ws.x_proj.reshape(T, 3 * H, B)
    dh, dh_next, factor, tmp = ws.dh_T, ws.dh_next, ws.factor, ws.tmp
    for t in range(T - 1, -1, -1):
        gates, block, dz_n = ws.gates[t], blocks[t], ws.dz_n[t]
        r, u, n = gates[:H], gates[H:2 * H], gates[2 * H:]
        dhn, dz_r, dz_u = block[:H], block[H:2 * H], block[2 * H:]
        if t < T - 1:
            np.dot(Wb, blocks[t + 1], dh)                  # Whh^T [dz_r, dz_u, dhn]_{t+1}
            np.add(dh, ws.dh[t].T, dh)
            np.multiply(dh_next, ws.gates[t + 1, H:2 * H], tmp)
            np.add(dh, tmp, dh)                            # + dh_{t+1} u_{t+1}
        else:
            np.copyto(dh, ws.dh[t].T)
        # This step's factors, on (H, B) blocks that stay in cache (as the LSTM's)
        np.subtract(1, u, tmp)                             # 1 - u
        np.multiply(n, n, factor)
        np.subtract(1, factor, factor)
        np.multiply(factor, tmp, factor)                   # (1 - u)(1 - n^2)
        np.multiply(dh, factor, dz_n)                      # dz_n
        np.subtract(ws.hs_T[t], n, factor)
        np.multiply(factor, tmp, factor)
        np.multiply(factor, u, factor)                     # (h_{t-1} - n) u (1 - u)
        np.multiply(dh, factor, dz_u)                      # dz_u
        np.multiply(dz_n, r, dhn)                          # dhn = dz_n r
        np.subtract(1, r, factor)
        np.multiply(factor, ws.hn[t], factor)
        np.multiply(dhn, factor, dz_r)                     # dz_r = dz_n hn r (1 - r)
        dh, dh_next = dh_next, dh
    dh0 = np.dot(Wb, blocks[0])
    np.multiply(dh_next, ws.gates[0, H:2 * H], tmp)
    dh0 += tmp                                             # dh_0 = Whh^T dzh_0 + dh u_0
    dz_all = ws.dz_all
    np.copyto(dz_all[:3 * H].reshape(3 * H, T, B), blocks.transpose(1, 0, 2))
    np.copyto(dz_all[3 * H:].reshape(H, T, B), ws.dz_n.transpose(1, 0, 2))
    h_prev = ws.hs[:-1].reshape(T * B, H)
    # dWhh^T = h^T dz, (H, T*B) (T*B, 3H), then transposed into place. The product the
    # other way round, (3H, T*B) (T*B, H), ran 3x slower in a training process of its own
    # (OpenBLAS's Haswell kernels on this AMD CPU; 75-80 against 25-27 ms at H=256,
    # T*B=2048, a whole training step 190 -> 116 ms).
    np.dot(h_prev.T, dz_all[:3 * H].T, out=ws.dW_T)
    np.copyto(grads["Whh"][:2 * H], ws.dW_T[:, H:].T)
    np.copyto(grads["Whh"][2 * H:], ws.dW_T[:, :H].T)
    np.dot(dz_all[:H], ws.ones, out=grads["bhn"])                # dbhn = sum of dhn
    return dz_all[H:].reshape(3 * H, T, B).transpose(1, 2, 0), (np.ascontiguousarray(dh0.T),)


def internals(ws: Workspace) -> dict[str, np.ndarray]:
    """The window's values of each unit after forward, by name, each (T, B, H): h and the
    gates r, z (the update gate, u above) and n."""
    H = ws.H
    values = {"h": ws.hs[1:]}
    for k, name in enumerate(GATE_ORDER):
        values[name] = ws.gates[:, k * H:(k + 1) * H].transpose(0, 2, 1)
    return values


def sampling_step(p: dict, rec: np.ndarray, state: tuple):
    """Prepare one stream's step for sampling; returns ``advance(x)``, which moves
    ``state = (h,)`` one step in place.

    rec: (3H,) the buffer where the caller puts Whh h_{t-1} (without bhn) before each call;
    x: (3H,) the input term Wxh x_t + bh. As the LSTM's: views and constants made once here,
    and np.tanh (one call for both gates) rather than the exp-based functions.
    """
    h, = state
    H = h.shape[-1]
    ru, n = np.empty(2 * H, h.dtype), np.empty(H, h.dtype)
    r, u = ru[:H], ru[H:]
    rec_ru, rec_n = rec[:2 * H], rec[2 * H:]
    bhn = np.array(p["bhn"], h.dtype)
    half = np.array(0.5, h.dtype)

    def advance(x: np.ndarray) -> None:
        np.add(x[:2 * H], rec_ru, ru)
        np.multiply(ru, half, ru)
        np.tanh(ru, ru)
        np.multiply(ru, half, ru)
        np.add(ru, half, ru)                           # r, u = sigma(.) = 0.5 tanh(. / 2) + 0.5
        np.add(rec_n, bhn, n)                          # hn = U_n h + bhn
        np.multiply(n, r, n)
        np.add(n, x[2 * H:], n)
        np.tanh(n, n)                                  # n = tanh(W_n x + b_n + r hn)
        np.subtract(h, n, h)
        np.multiply(h, u, h)
        np.add(h, n, h)                                # h = n + u (h - n)
    return advance


def to_torch(p: dict) -> dict[str, np.ndarray]:
    """The layer under torch.nn.GRU's names (its gate order, r, z, n, is ours). torch's two
    biases only appear summed in the r and z rows, where ours is bias_ih and bias_hh is
    zero; the reset gate multiplies the n rows of bias_hh, which are our bhn."""
    H = len(p["bhn"])
    bias_hh = np.zeros_like(p["bh"])
    bias_hh[2 * H:] = p["bhn"]
    return {"weight_ih": np.array(p["Wxh"]), "weight_hh": np.array(p["Whh"]),
            "bias_ih": np.array(p["bh"]), "bias_hh": bias_hh}


def from_torch(entries: dict) -> dict[str, np.ndarray]:
    """The inverse of to_torch; the r and z rows of torch's two biases added up."""
    bias_ih, bias_hh = entries["bias_ih"], entries["bias_hh"]
    H = len(bias_hh) // 3
    bh = np.array(bias_ih)
    bh[:2 * H] += bias_hh[:2 * H]
    return {"Wxh": entries["weight_ih"], "Whh": entries["weight_hh"], "bh": bh,
            "bhn": bias_hh[2 * H:]}
