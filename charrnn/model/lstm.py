"""The LSTM cell (Hochreiter and Schmidhuber, 1997), as torch.nn.LSTM computes it.

For a batch of B streams, with ``x_t`` the cell's input at step t and ``(h_0, c_0)`` the
carried state, ``sigma`` the logistic sigmoid and ``*`` elementwise:

    i_t = sigma(W_i x_t + U_i h_{t-1} + b_i)     input gate          (B, H)
    f_t = sigma(W_f x_t + U_f h_{t-1} + b_f)     forget gate         (B, H)
    o_t = sigma(W_o x_t + U_o h_{t-1} + b_o)     output gate         (B, H)
    g_t =  tanh(W_g x_t + U_g h_{t-1} + b_g)     candidate cell      (B, H)
    c_t = f_t * c_{t-1} + i_t * g_t              cell state          (B, H)
    h_t = o_t * tanh(c_t)                        hidden state        (B, H)

The four gates are stacked along the rows of ``Wxh (4H, I)``, ``Whh (4H, H)`` and
``bh (4H,)`` in the order i, f, o, g: the three sigmoid gates side by side, so that one call
computes them. torch.nn.LSTM stacks i, f, g, o; our rows [0:H, H:2H, 2H:3H, 3H:4H] are its
rows [0:H, H:2H, 3H:4H, 2H:3H]. torch's two biases only ever appear summed:
``bh = bias_ih + bias_hh``. z_t below is the (B, 4H) pre-activation, [i f o g] before the
nonlinearities.

Backward, from the last step to the first (``dh_t`` from above, ``dc_T = 0``):

    dh    = dh_t + Whh^T dz_{t+1}                      the hidden state's total gradient
    dc    = dc_{t+1} f_{t+1} + dh * o_t * (1 - tanh(c_t)^2)
    dz_o  = dh * tanh(c_t) * o_t (1 - o_t)
    dz_i  = dc * g_t * i_t (1 - i_t)
    dz_f  = dc * c_{t-1} * f_t (1 - f_t)
    dz_g  = dc * i_t * (1 - g_t^2)
    dWhh  = sum_t dz_t h_{t-1}^T       dh_0 = Whh^T dz_1       dc_0 = dc f_1

Every factor that does not depend on the carried gradients (the products after ``dh *`` and
``dc *``) is computed for all steps at once before the loop, so the loop does only the
recurrence: one matrix product and seven elementwise calls per step.
"""
from __future__ import annotations

import numpy as np

NAME = "lstm"
GATES = 4
STATE_NAMES = ("h", "c")
# Where each gate's rows sit in our stacking, and in torch.nn.LSTM's (i, f, g, o).
GATE_ORDER = ("i", "f", "o", "g")
TORCH_GATE_ORDER = ("i", "f", "g", "o")


def param_shapes(input_size: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"Wxh": (4 * H, input_size), "Whh": (4 * H, H), "bh": (4 * H,)}


def init_params(p: dict, rng: np.random.Generator, scale: float) -> None:
    """``N(0, scale^2)`` weights; the forget gate's bias 1, the other biases 0; in place.

    A forget bias of 1 starts f near sigmoid(1) = 0.73, so the cell state (and its gradient)
    survives many steps from the first iteration instead of decaying by half at each step;
    Gers et al. (2000) and Jozefowicz et al. (2015) found it helps to learn long spans.
    """
    for name in ("Wxh", "Whh"):
        p[name][...] = rng.standard_normal(p[name].shape) * scale
    H = p["Whh"].shape[1]
    p["bh"][...] = 0
    p["bh"][H:2 * H] = 1.0


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """``sigma(a) = 0.5 tanh(a / 2) + 0.5``, in place; returns ``a``.

    One tanh is cheaper than exp, add and reciprocal, and never overflows.
    """
    np.multiply(a, 0.5, a)
    np.tanh(a, a)
    np.multiply(a, 0.5, a)
    np.add(a, 0.5, a)
    return a


class Workspace:
    """Buffers reused from one window to the next.

    x_proj: (T, B, 4H) input terms Wxh x_t + bh (filled by the network), then dL/dz_t
    gates:  (T, B, 4H) z_t, then the activated gates [i f o g]
    hs, cs: (T+1, B, H) hidden and cell states, hs[0] = h_0, cs[0] = c_0
    tanh_c: (T, B, H) tanh(c_t)
    dh:     (T, B, H) dL/dh_t from above (filled by the network)
    factor: (T, B, 4H) the per-step factors of dz: [g i(1-i), c_prev f(1-f), tanh(c) o(1-o),
            i (1-g^2)]
    dc_dh:  (T, B, H) o (1 - tanh(c)^2), how c_t's gradient takes in h_t's
    """

    def __init__(self, T: int, B: int, H: int, dtype):
        self.x_proj = np.empty((T, B, 4 * H), dtype)
        self.gates = np.empty((T, B, 4 * H), dtype)
        self.hs = np.empty((T + 1, B, H), dtype)
        self.cs = np.empty((T + 1, B, H), dtype)
        self.tanh_c = np.empty((T, B, H), dtype)
        self.dh = np.empty((T, B, H), dtype)
        self.factor = np.empty((T, B, 4 * H), dtype)
        self.dc_dh = np.empty((T, B, H), dtype)
        self.Whh_T = np.empty((H, 4 * H), dtype)
        self.tmp = np.empty((B, H), dtype)
        self.dc = np.empty((B, H), dtype)
        self.carry = np.empty((B, H), dtype)
        self.H = H

    def final_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hs[-1], self.cs[-1]


def forward(p: dict, state0: tuple, ws: Workspace) -> None:
    """The LSTM recurrence over the window, into ws.gates, ws.cs, ws.tanh_c and ws.hs.

    state0: (h_0, c_0), each (B, H). ws.x_proj holds Wxh x_t + bh on entry.
    """
    H = ws.H
    ws.hs[0], ws.cs[0] = state0
    # sigma(a) = 0.5 tanh(a / 2) + 0.5: with the i, f, o columns of Whh^T and of the input
    # terms halved once per window, one tanh per step serves all four gates (halving is
    # exact in floating point, so the gates are the same numbers). This and the contiguous
    # copy of Whh^T made the forward step about 15% faster at H=256, B=32.
    Whh_T = ws.Whh_T
    np.copyto(Whh_T, p["Whh"].T)
    Whh_T[:, :3 * H] *= 0.5
    ws.x_proj[..., :3 * H] *= 0.5
    tmp = ws.tmp
    for t in range(ws.gates.shape[0]):
        z = ws.gates[t]
        np.dot(ws.hs[t], Whh_T, z)             # z = Whh h_{t-1}   (halved for i, f, o)
        np.add(z, ws.x_proj[t], z)             #   + Wxh x_t + bh
        np.tanh(z, z)                          # g = tanh(z_g); tanh(z / 2) for i, f, o
        sig = z[:, :3 * H]
        np.multiply(sig, 0.5, sig)
        np.add(sig, 0.5, sig)                  # i, f, o = 0.5 tanh(z / 2) + 0.5
        g = z[:, 3 * H:]
        c = ws.cs[t + 1]
        np.multiply(z[:, H:2 * H], ws.cs[t], c)          # c = f * c_{t-1}
        np.multiply(z[:, :H], g, tmp)
        np.add(c, tmp, c)                                # c += i * g
        np.tanh(c, ws.tanh_c[t])
        np.multiply(z[:, 2 * H:3 * H], ws.tanh_c[t], ws.hs[t + 1])   # h = o * tanh(c)


def backward(p: dict, ws: Workspace, grads: dict) -> tuple[np.ndarray, tuple]:
    """Gradients back through the window; ``ws.dh`` holds dL/dh_t on entry.

    Writes ``grads["Whh"]``. Returns ``(dz, (dh_0, dc_0))``: dz (T, B, 4H) is dL/dz_t in
    [i f o g] order (a view of ws.x_proj), dh_0 and dc_0 are (B, H).
    """
    H = ws.H
    Whh = p["Whh"]
    T, B, _ = ws.gates.shape
    i, f, o, g = (ws.gates[..., k * H:(k + 1) * H] for k in range(4))
    fi, ff, fo, fg = (ws.factor[..., k * H:(k + 1) * H] for k in range(4))
    tanh_c = ws.tanh_c
    # Factors for all steps at once (each line: one product of gate values)
    np.subtract(1, i, out=fi); fi *= i; fi *= g                     # g i (1 - i)
    np.subtract(1, f, out=ff); ff *= f; ff *= ws.cs[:-1]            # c_{t-1} f (1 - f)
    np.subtract(1, o, out=fo); fo *= o; fo *= tanh_c                # tanh(c) o (1 - o)
    np.multiply(g, g, out=fg); np.subtract(1, fg, out=fg); fg *= i  # i (1 - g^2)
    np.multiply(tanh_c, tanh_c, out=ws.dc_dh)
    np.subtract(1, ws.dc_dh, out=ws.dc_dh); ws.dc_dh *= o           # o (1 - tanh(c)^2)

    dz = ws.x_proj                          # the input terms are spent: reuse for dz
    dz_if = dz.reshape(T, B, 4, H)[:, :, :2]          # (T, B, 2, H): dz_i, dz_f
    factor_if = ws.factor.reshape(T, B, 4, H)[:, :, :2]
    dc, tmp, carry = ws.dc, ws.tmp, ws.carry
    dc.fill(0)
    for t in range(T - 1, -1, -1):
        dh = ws.dh[t]
        if t < T - 1:
            np.dot(dz[t + 1], Whh, carry)                  # Whh^T dz_{t+1}, as rows
            np.add(dh, carry, dh)                          # dh = dh_t + carry
        np.multiply(dh, ws.dc_dh[t], tmp)
        np.add(dc, tmp, dc)                                # dc += dh o (1 - tanh(c)^2)
        np.multiply(dh, fo[t], dz[t, :, 2 * H:3 * H])      # dz_o
        np.multiply(dc[:, None, :], factor_if[t], dz_if[t])  # dz_i, dz_f
        np.multiply(dc, fg[t], dz[t, :, 3 * H:])           # dz_g
        np.multiply(dc, f[t], dc)                          # dc_{t-1} = dc f_t
    dh0 = np.dot(dz[0], Whh)
    np.dot(dz.reshape(T * B, 4 * H).T, ws.hs[:-1].reshape(T * B, H), out=grads["Whh"])
    return dz, (dh0, dc.copy())


def internals(ws: Workspace) -> dict[str, np.ndarray]:
    """The window's values of each unit after forward, by name, each (T, B, H): h, c and
    the gates i, f, o, g."""
    H = ws.H
    values = {"h": ws.hs[1:], "c": ws.cs[1:]}
    for k, name in enumerate(GATE_ORDER):
        values[name] = ws.gates[..., k * H:(k + 1) * H]
    return values


def step(p: dict, x: np.ndarray, rec: np.ndarray, state: tuple) -> None:
    """One step for sampling, in place on ``state = (h, c)``.

    x: (4H,) the input term Wxh x_t + bh; rec: (4H,) Whh h_{t-1} from the caller.
    """
    h, c = state
    H = h.shape[-1]
    z = np.add(x, rec)
    sigmoid_(z[..., :3 * H])
    np.tanh(z[..., 3 * H:], z[..., 3 * H:])
    np.multiply(z[..., H:2 * H], c, c)                 # c = f * c
    c += z[..., :H] * z[..., 3 * H:]                   # c += i * g
    np.multiply(z[..., 2 * H:3 * H], np.tanh(c), h)    # h = o * tanh(c)
