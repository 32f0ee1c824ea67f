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
"""
from __future__ import annotations

import numpy as np

from .activations import sigmoid_from_negated, tanh

NAME = "gru"
GATES = 3
STATE_NAMES = ("h",)
WINDOW_BUFFERS = 14        # (T, B, H) arrays' worth in the Workspace, for memory estimates
GATE_ORDER = ("r", "z", "n")          # the same as torch.nn.GRU's


def param_shapes(input_size: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"Wxh": (3 * H, input_size), "Whh": (3 * H, H), "bh": (3 * H,), "bhn": (H,)}


def init_params(p: dict, rng: np.random.Generator, scale: float) -> None:
    """``N(0, scale^2)`` weights drawn from ``rng`` (Wxh then Whh), zero biases; in place."""
    for name in ("Wxh", "Whh"):
        p[name][...] = rng.standard_normal(p[name].shape) * scale


class Workspace:
    """Buffers reused from one window to the next.

    x_proj: (T, B, 3H) input terms Wxh x_t + bh (filled by the network), then dL/dz_t
    rec:    (T, B, 3H) a_t = [U_r h, U_u h, U_n h + bhn], then [dz_r, dz_u, dhn] in backward
    gates:  (T, B, 3H) [r u n] after their nonlinearities
    hs:     (T+1, B, H) hidden states, hs[0] = h_0
    dh:     (T, B, H) dL/dh_t from above (filled by the network)
    f_n, f_u, f_r: (T, B, H) the factors of dz_n, dz_u and dz_r (see the module docstring)
    """

    def __init__(self, T: int, B: int, H: int, dtype):
        self.x_proj = np.empty((T, B, 3 * H), dtype)
        self.rec = np.empty((T, B, 3 * H), dtype)
        self.gates = np.empty((T, B, 3 * H), dtype)
        self.hs = np.empty((T + 1, B, H), dtype)
        self.dh = np.empty((T, B, H), dtype)
        self.f_n = np.empty((T, B, H), dtype)
        self.f_u = np.empty((T, B, H), dtype)
        self.f_r = np.empty((T, B, H), dtype)
        self.Whh_T = np.empty((H, 3 * H), dtype)
        self.tmp = np.empty((B, H), dtype)
        self.carry = np.empty((B, H), dtype)
        self.H = H

    def final_state(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def forward(p: dict, state0: tuple, ws: Workspace) -> None:
    """The GRU recurrence over the window, into ws.rec, ws.gates and ws.hs.

    state0: (h_0,), (B, H). ws.x_proj holds Wxh x_t + bh on entry.
    """
    H = ws.H
    ws.hs[0] = state0[0]
    # sigma(a) = 1 / (1 + exp(-a)) for r and u, with the minus sign folded into the r, u
    # columns of a contiguous copy of Whh^T and into the input terms once per window
    # (activations.py says why exp rather than np.tanh).
    Whh_T, bhn = ws.Whh_T, p["bhn"]
    np.copyto(Whh_T, p["Whh"].T)
    np.negative(Whh_T[:, :2 * H], out=Whh_T[:, :2 * H])
    np.negative(ws.x_proj[..., :2 * H], out=ws.x_proj[..., :2 * H])
    with np.errstate(over="ignore"):          # exp(-a) = inf is sigma(a) = 0, exactly
        for t in range(ws.gates.shape[0]):
            a, x, gates, h = ws.rec[t], ws.x_proj[t], ws.gates[t], ws.hs[t + 1]
            np.dot(ws.hs[t], Whh_T, a)                   # a = Whh h_{t-1} (r, u negated)
            hn = a[:, 2 * H:]
            np.add(hn, bhn, hn)                          # hn = U_n h_{t-1} + bhn
            ru = gates[:, :2 * H]
            sigmoid_from_negated(np.add(x[:, :2 * H], a[:, :2 * H], ru))   # r, u
            n = gates[:, 2 * H:]
            np.multiply(gates[:, :H], hn, n)
            np.add(n, x[:, 2 * H:], n)
            tanh(n, n)                                   # n = tanh(W_n x + b_n + r hn)
            np.subtract(ws.hs[t], n, h)
            np.multiply(h, gates[:, H:2 * H], h)
            np.add(h, n, h)                              # h = n + u (h_{t-1} - n)


def backward(p: dict, ws: Workspace, grads: dict) -> tuple[np.ndarray, tuple]:
    """Gradients back through the window; ``ws.dh`` holds dL/dh_t on entry.

    Writes ``grads["Whh"]`` and ``grads["bhn"]``. Returns ``(dz, (dh_0,))``: dz (T, B, 3H)
    is [dz_r, dz_u, dz_n] (a view of ws.x_proj), dh_0 is (B, H).
    """
    H = ws.H
    Whh = p["Whh"]
    T, B, _ = ws.gates.shape
    r, u, n = (ws.gates[..., k * H:(k + 1) * H] for k in range(3))
    hn = ws.rec[..., 2 * H:]
    h_prev = ws.hs[:-1]
    # Factors for all steps at once
    np.subtract(1, u, out=ws.f_n)
    np.multiply(n, n, out=ws.f_r); np.subtract(1, ws.f_r, out=ws.f_r)
    ws.f_n *= ws.f_r                                              # (1 - u)(1 - n^2)
    np.subtract(1, u, out=ws.f_u); ws.f_u *= u
    np.subtract(h_prev, n, out=ws.f_r); ws.f_u *= ws.f_r          # (h_prev - n) u (1 - u)
    np.subtract(1, r, out=ws.f_r); ws.f_r *= r; ws.f_r *= hn      # hn r (1 - r)

    dz, dzh = ws.x_proj, ws.rec          # both spent: reuse for dL/dz and [dz_r, dz_u, dhn]
    tmp, carry = ws.tmp, ws.carry
    for t in range(T - 1, -1, -1):
        dh = ws.dh[t]
        if t < T - 1:
            np.dot(dzh[t + 1], Whh, carry)                 # Whh^T [dz_r, dz_u, dhn]_{t+1}
            np.add(dh, carry, dh)
            np.multiply(ws.dh[t + 1], u[t + 1], tmp)
            np.add(dh, tmp, dh)                            # + dh_{t+1} u_{t+1}
        dz_n = dz[t, :, 2 * H:]
        np.multiply(dh, ws.f_n[t], dz_n)                   # dz_n
        np.multiply(dh, ws.f_u[t], dzh[t, :, H:2 * H])     # dz_u
        np.multiply(dz_n, ws.f_r[t], dzh[t, :, :H])        # dz_r
        np.multiply(dz_n, r[t], dzh[t, :, 2 * H:])         # dhn = dz_n r
    dz[..., :2 * H] = dzh[..., :2 * H]                     # dz_r, dz_u are shared
    dh0 = np.dot(dzh[0], Whh)
    dh0 += ws.dh[0] * u[0]
    dzh_flat = dzh.reshape(T * B, 3 * H)
    np.dot(dzh_flat.T, ws.hs[:-1].reshape(T * B, H), out=grads["Whh"])
    np.sum(dzh_flat[:, 2 * H:], axis=0, out=grads["bhn"])
    return dz, (dh0,)


def internals(ws: Workspace) -> dict[str, np.ndarray]:
    """The window's values of each unit after forward, by name, each (T, B, H): h and the
    gates r, z (the update gate, u above) and n."""
    H = ws.H
    values = {"h": ws.hs[1:]}
    for k, name in enumerate(GATE_ORDER):
        values[name] = ws.gates[..., k * H:(k + 1) * H]
    return values


def step(p: dict, x: np.ndarray, rec: np.ndarray, state: tuple, work: np.ndarray) -> None:
    """One step for sampling, in place on ``state = (h,)``.

    x: (3H,) the input term Wxh x_t + bh; rec: (3H,) Whh h_{t-1} from the caller (without
    bhn); work: a (3H,) buffer. On vectors this short a call costs more than its arithmetic,
    so this uses np.tanh (one call) rather than the exp-based functions, and no temporaries.
    """
    h, = state
    H = h.shape[-1]
    ru, n = work[:2 * H], work[2 * H:]
    np.add(x[:2 * H], rec[:2 * H], ru)
    np.multiply(ru, 0.5, ru)
    np.tanh(ru, ru)
    np.multiply(ru, 0.5, ru)
    np.add(ru, 0.5, ru)                                # r, u = sigma(.) = 0.5 tanh(. / 2) + 0.5
    np.add(rec[2 * H:], p["bhn"], n)                   # hn = U_n h + bhn
    np.multiply(n, ru[:H], n)
    np.add(n, x[2 * H:], n)
    np.tanh(n, n)                                      # n = tanh(W_n x + b_n + r hn)
    np.subtract(h, n, h)
    np.multiply(h, ru[H:], h)
    np.add(h, n, h)                                    # h = n + u (h - n)
