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
elementwise calls. The nonlinearities are built on exp (activations.py).

Inside the recurrence every (B, H) array above is held transposed, (H, B), and z_t as a
(4H, B) block (see Workspace).
"""
from __future__ import annotations

import numpy as np

from .activations import sigmoid_from_negated, tanh, tanh_from_sigmoid
from .cell import FREE, SIGNED, UNIT

NAME = "lstm"
GATES = 4
STATE_NAMES = ("h", "c")
WINDOW_BUFFERS = 13        # (T, B, H) arrays' worth in the Workspace, for memory estimates
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

    The recurrence runs on transposed blocks, ``(4H, B)`` per step rather than ``(B, 4H)``, as
    the GRU's: OpenBLAS computes ``Whh h^T`` faster than ``h Whh^T`` (at H=256 and 16 streams,
    one thread: 49 against 113 us with its SkylakeX kernels, 80 against 95 with its Haswell
    ones; benchmarks/product_orientation.py), and each gate is then a contiguous (H, B) block
    where a (B, H) column slice of (B, 4H) is strided.

    x_proj: (T, B, 4H) input terms Wxh x_t + bh (filled by the network; read transposed),
            then in backward (T, 4H, B) dL/dz_t^T step by step
    gates:  (T, 4H, B) z_t^T, then the activated gates [i f o g]^T; after backward's loop,
            (4H, T*B) dL/dz of every step, column t*B + b (dz_all)
    hs:     (T+1, B, H) hidden states, hs[0] = h_0 (what the network reads)
    hs_T, cs_T: (T+1, H, B) hidden and cell states transposed (what the recurrence reads)
    tanh_c: (T, H, B) tanh(c_t)^T
    dh:     (T, B, H) dL/dh_t from above (filled by the network; read transposed)
    factor: (4H, B) one step's factors of dz: [g i(1-i), c_prev f(1-f), tanh(c) o(1-o),
            i (1-g^2)]^T
    dc_dh:  (H, B) one step's o (1 - tanh(c)^2), how c_t's gradient takes in h_t's
    Whh_copy: 4H*H values: in forward, Whh with its rows scaled (4H, H) (see forward); in
            backward, Whh^T (H, 4H), contiguous
    dh_T, dc, tmp: (H, B) one step's dL/dh, dL/dc and scratch
    """

    def __init__(self, T: int, B: int, H: int, dtype):
        self.x_proj = np.empty((T, B, 4 * H), dtype)
        self.gates = np.empty((T, 4 * H, B), dtype)
        self.hs = np.empty((T + 1, B, H), dtype)
        self.hs_T = np.empty((T + 1, H, B), dtype)
        self.cs_T = np.empty((T + 1, H, B), dtype)
        self.tanh_c = np.empty((T, H, B), dtype)
        self.dh = np.empty((T, B, H), dtype)
        self.factor = np.empty((4 * H, B), dtype)
        self.dc_dh = np.empty((H, B), dtype)
        self.Whh_copy = np.empty(4 * H * H, dtype)
        self.gate_scale = np.array([-1] * (3 * H) + [-2] * H, dtype)   # see forward
        self.dh_T = np.empty((H, B), dtype)
        self.dc = np.empty((H, B), dtype)
        self.tmp = np.empty((H, B), dtype)
        self.H = H

    def final_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hs[-1], self.cs_T[-1].T


def forward(p: dict, state0: tuple, ws: Workspace) -> None:
    """The LSTM recurrence over the window, into ws.gates, ws.cs_T, ws.tanh_c, ws.hs_T and
    ws.hs.

    state0: (h_0, c_0), each (B, H). ws.x_proj holds Wxh x_t + bh on entry.
    """
    H = ws.H
    ws.hs[0] = state0[0]
    ws.hs_T[0] = state0[0].T
    ws.cs_T[0] = state0[1].T
    # One exp per step for all four gates: sigma(a) = 1 / (1 + exp(-a)) for i, f, o, and
    # g = tanh(a) = 2 sigma(2a) - 1, with the factors -1 and -2 folded into a copy of Whh
    # and into the input terms once per window (exact: powers of two).
    W = ws.Whh_copy.reshape(4 * H, H)
    np.multiply(p["Whh"], ws.gate_scale[:, None], out=W)
    ws.x_proj *= ws.gate_scale
    tmp = ws.tmp
    with np.errstate(over="ignore"):          # exp(-a) = inf is sigma(a) = 0, exactly
        for t in range(ws.gates.shape[0]):
            z = ws.gates[t]
            np.dot(W, ws.hs_T[t], z)          # -(Whh h_{t-1}), -2 (...) for g
            np.add(z, ws.x_proj[t].T, z)      #   - (Wxh x_t + bh)
            sigmoid_from_negated(z)           # i, f, o; sigma(2 a_g) in g's place
            g = tanh_from_sigmoid(z[3 * H:])
            c = ws.cs_T[t + 1]
            np.multiply(z[H:2 * H], ws.cs_T[t], c)          # c = f * c_{t-1}
            np.multiply(z[:H], g, tmp)
            np.add(c, tmp, c)                               # c += i * g
            tanh(c, ws.tanh_c[t])
            np.multiply(z[2 * H:3 * H], ws.tanh_c[t], ws.hs_T[t + 1])   # h = o * tanh(c)
    np.copyto(ws.hs[1:], ws.hs_T[1:].transpose(0, 2, 1))


def backward(p: dict, ws: Workspace, grads: dict) -> tuple[np.ndarray, tuple]:
    """Gradients back through the window; ``ws.dh`` holds dL/dh_t on entry.

    Writes ``grads["Whh"]``. Returns ``(dz, (dh_0, dc_0))``: dz (T, B, 4H) is dL/dz_t in
    [i f o g] order (a transposed view of ws.gates' memory), dh_0 and dc_0 are (B, H).
    """
    H = ws.H
    T, _, B = ws.gates.shape
    Whh_T = ws.Whh_copy.reshape(H, 4 * H)
    np.copyto(Whh_T, p["Whh"].T)
    # Each step's dz^T goes to a contiguous (4H, B) block in x_proj's memory (the input
    # terms are spent), all moved into dz_all by one copy after the loop, as the GRU does.
    blocks = ws.x_proj.reshape(T, 4 * H, B)
    factor, dc_dh, dc, tmp, dh = ws.factor, ws.dc_dh, ws.dc, ws.tmp, ws.dh_T
    fi, ff, fo, fg = (factor[k * H:(k + 1) * H] for k in range(4))
    factor_if = factor[:2 * H].reshape(2, H, B)          # i's and f's factors
    dc.fill(0)
    for t in range(T - 1, -1, -1):
        gates, dz = ws.gates[t], blocks[t]
        i, f, o, g = (gates[k * H:(k + 1) * H] for k in range(4))
        # This step's factors, computed here rather than for the whole window before the
        # loop: a (4H, B) block stays in cache.
        np.subtract(1, gates[:3 * H], factor[:3 * H])
        np.multiply(factor[:3 * H], gates[:3 * H], factor[:3 * H])   # s (1 - s)
        np.multiply(fi, g, fi)                             # g i (1 - i)
        np.multiply(ff, ws.cs_T[t], ff)                    # c_{t-1} f (1 - f)
        np.multiply(fo, ws.tanh_c[t], fo)                  # tanh(c) o (1 - o)
        np.multiply(g, g, fg)
        np.subtract(1, fg, fg)
        np.multiply(fg, i, fg)                             # i (1 - g^2)
        np.multiply(ws.tanh_c[t], ws.tanh_c[t], dc_dh)
        np.subtract(1, dc_dh, dc_dh)
        np.multiply(dc_dh, o, dc_dh)                       # o (1 - tanh(c)^2)
        if t < T - 1:
            np.dot(Whh_T, blocks[t + 1], dh)               # Whh^T dz_{t+1}
            np.add(dh, ws.dh[t].T, dh)                     # dh = dh_t + Whh^T dz_{t+1}
        else:
            np.copyto(dh, ws.dh[t].T)
        np.multiply(dh, dc_dh, tmp)
        np.add(dc, tmp, dc)                                # dc += dh o (1 - tanh(c)^2)
        np.multiply(dh, fo, dz[2 * H:3 * H])               # dz_o
        np.multiply(dc, factor_if, dz[:2 * H].reshape(2, H, B))   # dz_i, dz_f
        np.multiply(dc, fg, dz[3 * H:])                    # dz_g
        np.multiply(dc, f, dc)                             # dc_{t-1} = dc f_t
    dh0 = np.dot(Whh_T, blocks[0])
    dz_all = ws.gates.reshape(4 * H, T * B)             # the gates are spent
    np.copyto(dz_all.reshape(4 * H, T, B), blocks.transpose(1, 0, 2))
    h_prev = ws.hs[:-1].reshape(T * B, H)
    np.dot(dz_all, h_prev, out=grads["Whh"])            # dWhh = sum_t dz_t h_{t-1}^T
    dz = dz_all.reshape(4 * H, T, B).transpose(1, 2, 0)
    return dz, (np.ascontiguousarray(dh0.T), np.ascontiguousarray(dc.T))


def internals(ws: Workspace) -> dict[str, np.ndarray]:
    """The window's values of each unit after forward, by name, each (T, B, H): h, c and
    the gates i, f, o, g."""
    H = ws.H
    values = {"h": ws.hs[1:], "c": ws.cs_T[1:].transpose(0, 2, 1)}
    for k, name in enumerate(GATE_ORDER):
        values[name] = ws.gates[:, k * H:(k + 1) * H].transpose(0, 2, 1)
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
