"""The vanilla RNN cell, the first lesson.

For a batch of B streams, with ``x_t`` the cell's input at step t (one-hot characters in the
first layer, the layer below's hidden states above it) and ``h_0`` the carried state:

    z_t = Wxh x_t + Whh h_{t-1} + bh        pre-activation, (B, H)
    h_t = tanh(z_t)                         hidden state, (B, H)

Parameters: ``Wxh (H, I)`` for input size I, ``Whh (H, H)``, ``bh (H,)``. The network
computes the input term ``Wxh x_t + bh`` for the whole window before the recurrence (a
gather in the first layer, one matrix product above it) and takes its gradient back from
here: ``backward`` returns dL/dz_t, from which ``dWxh = sum_t dz_t x_t^T`` and
``dbh = sum_t dz_t``. The cell itself owns the recurrence and ``dWhh``.

Backward, from the last step to the first (``dh_t`` arrives from above, the output layer or
the next layer):

    dz_t  = (1 - h_t^2) * (dh_t + Whh^T dz_{t+1})     back through tanh; the second term
                                                      carries the gradient back in time
    dWhh  = sum_t dz_t h_{t-1}^T
    dh_0  = Whh^T dz_1

States are rows, so ``Whh h`` is written ``h Whh^T`` in the code.
"""
from __future__ import annotations

import numpy as np

from .cell import SIGNED

NAME = "rnn"
GATES = 1                  # pre-activations per hidden unit: z has GATES * H columns
STATE_NAMES = ("h",)       # what a stream carries from one window to the next
WINDOW_BUFFERS = 4         # (T, B, H) arrays in the Workspace, for memory estimates
VALUE_RANGES = {"h": SIGNED}
TORCH_MODULE = "RNN"       # torch.nn.RNN(..., nonlinearity="tanh")
TORCH_KWARGS = {"nonlinearity": "tanh"}


def param_shapes(input_size: int, H: int) -> dict[str, tuple[int, ...]]:
    """The cell's parameters, ``{name: shape}``."""
    return {"Wxh": (H, input_size), "Whh": (H, H), "bh": (H,)}


def init_params(p: dict, rng: np.random.Generator, scale: float) -> None:
    """``N(0, scale^2)`` weights drawn from ``rng`` (Wxh then Whh), zero bias; in place."""
    for name in ("Wxh", "Whh"):
        p[name][...] = rng.standard_normal(p[name].shape) * scale


class Workspace:
    """Buffers reused from one window to the next, so the time loops allocate nothing.

    x_proj: (T, B, H) the input term Wxh x_t + bh of every step (filled by the network)
    hs:     (T+1, B, H) hidden states, hs[0] = h_0
    dh:     (T, B, H) dL/dh_t from above (filled by the network), then dL/dz_t in place
    dtanh:  (T, B, H) 1 - h_t^2
    carry:  (B, H) Whh^T dz_{t+1}
    Whh_T:  (H, H) Whh^T, copied contiguous for the forward products

    The loops walk lists of per-step views made once here: slicing an array costs about as
    much as a small NumPy operation.
    """

    def __init__(self, T: int, B: int, H: int, dtype):
        self.x_proj = np.empty((T, B, H), dtype)
        self.hs = np.empty((T + 1, B, H), dtype)
        self.dh = np.empty((T, B, H), dtype)
        self.dtanh = np.empty((T, B, H), dtype)
        self.carry = np.empty((B, H), dtype)
        self.Whh_T = np.empty((H, H), dtype)
        self.hs_steps, self.x_proj_steps = list(self.hs), list(self.x_proj)
        self.dh_steps, self.dtanh_steps = list(self.dh), list(self.dtanh)
        warm_up_blas(dtype)

    def final_state(self) -> tuple[np.ndarray]:
        return (self.hs[-1],)


def warm_up_blas(dtype) -> None:
    """One small matrix product with many columns, which lets OpenBLAS run the later products
    of the process at full speed: some OpenBLAS builds run every product 2-3x slower until
    one with about 350 or more columns has run, and this cell's products at H = 256 have
    fewer (measured in commit a5cd644). Same numbers to the last bit; once per Workspace."""
    np.dot(np.zeros((64, 512), dtype), np.zeros((512, 384), dtype))


def forward(p: dict, state0: tuple, ws: Workspace) -> None:
    """``h_t = tanh(Whh h_{t-1} + x_proj_t)`` for t = 1..T into ``ws.hs``.

    state0: (h_0,), (B, H). Three NumPy calls per step, each writing into its last argument
    (``out``, passed by position: with one stream a call takes about a microsecond, and
    parsing a keyword is a noticeable part of that).
    """
    ws.hs[0] = state0[0]
    # A contiguous copy: OpenBLAS multiplies by a transposed view of Whh at half the speed.
    np.copyto(ws.Whh_T, p["Whh"].T)
    Whh_T = ws.Whh_T
    for h_prev, h, x in zip(ws.hs_steps, ws.hs_steps[1:], ws.x_proj_steps):
        np.dot(h_prev, Whh_T, h)       # h = h_{t-1} Whh^T
        np.add(h, x, h)                # h += Wxh x_t + bh
        np.tanh(h, h)                  # h = tanh(h)


def backward(p: dict, ws: Workspace, grads: dict) -> tuple[np.ndarray, tuple]:
    """Gradients back through the window; ``ws.dh`` holds dL/dh_t on entry.

    Writes ``grads["Whh"]``. Returns ``(dz, (dh_0,))``: dz (T, B, H) is dL/dz_t (a view of
    ws.dh, overwritten by the next call), dh_0 is (B, H).
    """
    Whh = p["Whh"]
    hs, dz = ws.hs, ws.dh
    T, B, H = dz.shape
    np.multiply(hs[1:], hs[1:], out=ws.dtanh)
    np.subtract(1, ws.dtanh, out=ws.dtanh)                 # 1 - h_t^2, all t at once
    dz_steps, dtanh_steps, carry = ws.dh_steps, ws.dtanh_steps, ws.carry
    np.multiply(dz_steps[-1], dtanh_steps[-1], dz_steps[-1])   # the last step has no carry
    for dz_next, dz_t, dtanh_t in zip(dz_steps[:0:-1], dz_steps[-2::-1], dtanh_steps[-2::-1]):
        np.dot(dz_next, Whh, carry)                        # carry = Whh^T dz_{t+1}, as rows
        np.add(dz_t, carry, dz_t)                          # dh_t + carry
        np.multiply(dz_t, dtanh_t, dz_t)                   # dz_t = (1 - h_t^2) * (...)
    dh0 = np.dot(dz[0], Whh)                               # Whh^T dz_1, as rows
    np.dot(dz.reshape(T * B, H).T, hs[:-1].reshape(T * B, H), out=grads["Whh"])  # dWhh
    return dz, (dh0,)


def internals(ws: Workspace) -> dict[str, np.ndarray]:
    """The window's values of each unit after forward, by name, each (T, B, H): here h."""
    return {"h": ws.hs[1:]}


def sampling_step(p: dict, rec: np.ndarray, state: tuple):
    """Prepare one stream's step for sampling; returns ``advance(x)``, which sets
    ``h = tanh(x + rec)`` in place.

    rec: (H,) the buffer where the caller puts Whh h_{t-1} before each call (it stacks Whh
    with the next layer's weights to make one product of h); state: (h,); x: (H,) the input
    term Wxh x_t + bh.
    """
    h, = state

    def advance(x: np.ndarray) -> None:
        np.tanh(np.add(rec, x, h), h)
    return advance


def to_torch(p: dict) -> dict[str, np.ndarray]:
    """The layer under torch.nn.RNN's names. torch adds two biases where we hold one:
    ours is bias_ih, and bias_hh is zero."""
    return {"weight_ih": p["Wxh"], "weight_hh": p["Whh"], "bias_ih": p["bh"],
            "bias_hh": np.zeros_like(p["bh"])}


def from_torch(entries: dict) -> dict[str, np.ndarray]:
    """The inverse of to_torch; torch's two biases added up."""
    return {"Wxh": entries["weight_ih"], "Whh": entries["weight_hh"],
            "bh": entries["bias_ih"] + entries["bias_hh"]}
