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

Each step's factors that do not depend on the carried gradients (the products after ``dh *``
and ``dc *``) are computed first, then the recurrence: one matrix product and seven
elementwise calls. The nonlinearities
are built on exp (activations.py), the fastest of NumPy's float32 transcendentals here.
"""
from __future__ import annotations

import numpy as np

from .activations import sigmoid_from_negated, tanh, tanh_from_sigmoid
from .cell import FREE, SIGNED, UNIT

NAME = "lstm"
GATES = 4
STATE_NAMES = ("h", "c")
WINDOW_BUFFERS = 12        # (T, B, H) arrays' worth in the Workspace, for memory estimates
# The order of the gates' rows in our stacking (torch.nn.LSTM's is i, f, g, o).
GATE_ORDER = ("i", "f", "o", "g")
VALUE_RANGES = {"h": SIGNED, "c": FREE, "i": UNIT, "f": UNIT, "o": UNIT, "g": SIGNED}
TORCH_MODULE = "LSTM"
TORCH_KWARGS: dict = {}


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


class Workspace:
    """Buffers reused from one window to the next.

    x_proj: (T, B, 4H) input terms Wxh x_t + bh (filled by the network), then dL/dz_t
    gates:  (T, B, 4H) z_t, then the activated gates [i f o g]
    hs, cs: (T+1, B, H) hidden and cell states, hs[0] = h_0, cs[0] = c_0
    tanh_c: (T, B, H) tanh(c_t)
    dh:     (T, B, H) dL/dh_t from above (filled by the network)
    factor: (B, 4H) one step's factors of dz: [g i(1-i), c_prev f(1-f), tanh(c) o(1-o),
            i (1-g^2)]
    dc_dh:  (B, H) one step's o (1 - tanh(c)^2), how c_t's gradient takes in h_t's
    """

    def __init__(self, T: int, B: int, H: int, dtype):
        self.x_proj = np.empty((T, B, 4 * H), dtype)
        self.gates = np.empty((T, B, 4 * H), dtype)
        self.hs = np.empty((T + 1, B, H), dtype)
        self.cs = np.empty((T + 1, B, H), dtype)
        self.tanh_c = np.empty((T, B, H), dtype)
        self.dh = np.empty((T, B, H), dtype)
        self.factor = np.empty((B, 4 * H), dtype)
        self.dc_dh = np.empty((B, H), dtype)
        self.Whh_T = np.empty((H, 4 * H), dtype)
        self.dW_T = np.empty((H, 4 * H), dtype)
        self.gate_scale = np.array([-1] * (3 * H) + [-2] * H, dtype)   # see forward
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
    # One exp per step for all four gates: sigma(a) = 1 / (1 + exp(-a)) for i, f, o, and
    # g = tanh(a) = 2 sigma(2a) - 1, with the factors -1 and -2 folded into a contiguous
    # copy of Whh^T and into the input terms once per window (exact: powers of two).
    # Measured at H=256, B=32: the forward step 30% faster than np.tanh on every gate.
    Whh_T = ws.Whh_T
    np.multiply(p["Whh"].T, ws.gate_scale, out=Whh_T)
    ws.x_proj *= ws.gate_scale
    tmp = ws.tmp
    with np.errstate(over="ignore"):          # exp(-a) = inf is sigma(a) = 0, exactly
        for t in range(ws.gates.shape[0]):
            z = ws.gates[t]
            np.dot(ws.hs[t], Whh_T, z)        # -(Whh h_{t-1}), -2 (...) for g
            np.add(z, ws.x_proj[t], z)        #   - (Wxh x_t + bh)
            sigmoid_from_negated(z)           # i, f, o; sigma(2 a_g) in g's place
            g = tanh_from_sigmoid(z[:, 3 * H:])
            c = ws.cs[t + 1]
            np.multiply(z[:, H:2 * H], ws.cs[t], c)          # c = f * c_{t-1}
            np.multiply(z[:, :H], g, tmp)
            np.add(c, tmp, c)                                # c += i * g
            tanh(c, ws.tanh_c[t])
            np.multiply(z[:, 2 * H:3 * H], ws.tanh_c[t], ws.hs[t + 1])   # h = o * tanh(c)


def backward(p: dict, ws: Workspace, grads: dict) -> tuple[np.ndarray, tuple]:
    """Gradients back through the window; ``ws.dh`` holds dL/dh_t on entry.

    Writes ``grads["Whh"]``. Returns ``(dz, (dh_0, dc_0))``: dz (T, B, 4H) is dL/dz_t in
    [i f o g] order (a view of ws.x_proj), dh_0 and dc_0 are (B, H).
    """
    H = ws.H
    Whh = p["Whh"]
    T, B, _ = ws.gates.shape
    dz = ws.x_proj                          # the input terms are spent: reuse for dz
    factor, dc_dh, dc, tmp, carry = ws.factor, ws.dc_dh, ws.dc, ws.tmp, ws.carry
    fi, ff, fo, fg = (factor[:, k * H:(k + 1) * H] for k in range(4))
    factor_if = factor.reshape(B, 4, H)[:, :2]           # (B, 2, H): i's and f's factors
    dc.fill(0)
    for t in range(T - 1, -1, -1):
        gates = ws.gates[t]
        i, f, o, g = (gates[:, k * H:(k + 1) * H] for k in range(4))
        # This step's factors, computed here rather than for the whole window before the
        # loop: a (B, 4H) block stays in cache (measured: the backward 15% faster at H=256).
        np.subtract(1, gates[:, :3 * H], factor[:, :3 * H])
        np.multiply(factor[:, :3 * H], gates[:, :3 * H], factor[:, :3 * H])   # s (1 - s)
        np.multiply(fi, g, fi)                             # g i (1 - i)
        np.multiply(ff, ws.cs[t], ff)                      # c_{t-1} f (1 - f)
        np.multiply(fo, ws.tanh_c[t], fo)                  # tanh(c) o (1 - o)
        np.multiply(g, g, fg)
        np.subtract(1, fg, fg)
        np.multiply(fg, i, fg)                             # i (1 - g^2)
        np.multiply(ws.tanh_c[t], ws.tanh_c[t], dc_dh)
        np.subtract(1, dc_dh, dc_dh)
        np.multiply(dc_dh, o, dc_dh)                       # o (1 - tanh(c)^2)
        dh = ws.dh[t]
        if t < T - 1:
            np.dot(dz[t + 1], Whh, carry)                  # Whh^T dz_{t+1}, as rows
            np.add(dh, carry, dh)                          # dh = dh_t + carry
        np.multiply(dh, dc_dh, tmp)
        np.add(dc, tmp, dc)                                # dc += dh o (1 - tanh(c)^2)
        np.multiply(dh, fo, dz[t, :, 2 * H:3 * H])         # dz_o
        np.multiply(dc[:, None, :], factor_if, dz[t].reshape(B, 4, H)[:, :2])  # dz_i, dz_f
        np.multiply(dc, fg, dz[t, :, 3 * H:])              # dz_g
        np.multiply(dc, f, dc)                             # dc_{t-1} = dc f_t
    dh0 = np.dot(dz[0], Whh)
    # dWhh = dz^T h, computed as (h^T dz)^T: OpenBLAS (its Haswell kernels, on this AMD
    # CPU) runs the product with 4H output rows 3x slower (H=256, T*B=2048, one thread:
    # 100 against 32 ms).
    np.dot(ws.hs[:-1].reshape(T * B, H).T, dz.reshape(T * B, 4 * H), out=ws.dW_T)
    np.copyto(grads["Whh"], ws.dW_T.T)
    return dz, (dh0, dc.copy())


def internals(ws: Workspace) -> dict[str, np.ndarray]:
    """The window's values of each unit after forward, by name, each (T, B, H): h, c and
    the gates i, f, o, g."""
    H = ws.H
    values = {"h": ws.hs[1:], "c": ws.cs[1:]}
    for k, name in enumerate(GATE_ORDER):
        values[name] = ws.gates[..., k * H:(k + 1) * H]
    return values


def sampling_step(p: dict, rec: np.ndarray, state: tuple):
    """Prepare one stream's step for sampling; returns ``advance(x)``, which moves
    ``state = (h, c)`` one step in place.

    rec: (4H,) the buffer where the caller puts Whh h_{t-1} before each call; x: (4H,) the
    input term Wxh x_t + bh. On vectors this short a NumPy call costs more than its
    arithmetic, so the views and constants are made here, once (slicing in the step and
    Python floats as operands cost about as much as the calls), and the gates use np.tanh,
    one call for all four, rather than the exp-based functions of training.
    """
    h, c = state
    H = h.shape[-1]
    z = np.empty(4 * H, h.dtype)
    sig, i, f, o, g = z[:3 * H], z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
    half = np.array(0.5, h.dtype)

    def advance(x: np.ndarray) -> None:
        np.add(x, rec, z)
        np.multiply(sig, half, sig)
        np.tanh(z, z)                                  # g = tanh(.); tanh(. / 2) for i, f, o
        np.multiply(sig, half, sig)
        np.add(sig, half, sig)                         # i, f, o = 0.5 tanh(. / 2) + 0.5
        np.multiply(f, c, c)                           # c = f * c
        np.multiply(i, g, i)
        np.add(c, i, c)                                # c += i * g
        np.tanh(c, h)
        np.multiply(h, o, h)                           # h = o * tanh(c)
    return advance


def _swap_o_g(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with its last two gate blocks of rows swapped: our (i, f, o, g) <->
    torch's (i, f, g, o). Its own inverse."""
    H = len(a) // 4
    return np.concatenate([a[:2 * H], a[3 * H:], a[2 * H:3 * H]])


def to_torch(p: dict) -> dict[str, np.ndarray]:
    """The layer under torch.nn.LSTM's names, gate rows in its order (i, f, g, o); torch adds
    two biases where we hold one: ours is bias_ih, and bias_hh is zero."""
    return {"weight_ih": _swap_o_g(p["Wxh"]), "weight_hh": _swap_o_g(p["Whh"]),
            "bias_ih": _swap_o_g(p["bh"]), "bias_hh": np.zeros_like(p["bh"])}


def from_torch(entries: dict) -> dict[str, np.ndarray]:
    """The inverse of to_torch; torch's two biases added up."""
    return {"Wxh": _swap_o_g(entries["weight_ih"]), "Whh": _swap_o_g(entries["weight_hh"]),
            "bh": _swap_o_g(entries["bias_ih"] + entries["bias_hh"])}
