"""What a recurrent cell is: the contract every cell module keeps, and the registry of cells.

A cell is one module (rnn.py, lstm.py, gru.py) that opens with its equations and provides
the names below; registering it is one line, in network.py's ``CELLS``. The network
(network.py) calls nothing else, so a new cell that keeps this contract trains,
evaluates, samples, saves, exports to PyTorch and shows in `charrnn viz` as the others do,
and the tests that run over ``CELLS`` (gradients, PyTorch parity, checkpoints, sampling)
check it by its registration alone.

Letters: B streams, T steps, H hidden size, I the layer's input size (V in the first layer,
H above it), G = GATES * H the pre-activations per step.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable, Protocol

import numpy as np

# What a unit's values may be, for pages that colour them (`charrnn viz`):
UNIT = "unit"        # within [0, 1]: a sigmoid gate
SIGNED = "signed"    # within [-1, 1]: tanh, and the hidden states built from it
FREE = "free"        # unbounded: the LSTM's cell state
VALUE_RANGES = (UNIT, SIGNED, FREE)

# The entries of one layer of the torch module, without the ``_l<k>`` suffix.
TORCH_ENTRIES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class CellWorkspace(Protocol):
    """Buffers for one (T, B) window, made by ``Workspace(T, B, H, dtype)`` and reused.

    The network fills ``x_proj`` (T, B, G) with the input terms ``Wxh x_t + bh`` before
    forward and ``dh`` (T, B, H) with dL/dh_t from above before backward; forward fills ``hs``
    (T+1, B, H), ``hs[0]`` being the carried h_0, and the layer above reads ``hs[1:]``.
    """
    x_proj: np.ndarray
    hs: np.ndarray
    dh: np.ndarray

    def final_state(self) -> tuple[np.ndarray, ...]:
        """The state at the window's end, one (B, H) array per name of STATE_NAMES."""


class Cell(Protocol):
    """The names a cell module provides (a module satisfies this Protocol)."""

    NAME: str                         # as in --cell
    GATES: int                        # pre-activations per hidden unit: G = GATES * H
    STATE_NAMES: tuple[str, ...]      # what a stream carries between windows, "h" first
    WINDOW_BUFFERS: int               # (T, B, H) arrays' worth in a Workspace (memory estimate)
    VALUE_RANGES: dict[str, str]      # internals' names -> UNIT, SIGNED or FREE
    TORCH_MODULE: str                 # the torch.nn module computing the same: "RNN", "LSTM", ...
    TORCH_KWARGS: dict                # what that module needs besides the sizes

    Workspace: type

    def param_shapes(self, input_size: int, H: int) -> dict[str, tuple[int, ...]]:
        """The layer's parameters, ``{name: shape}``: at least Wxh (G, I), Whh (G, H), bh (G,)."""

    def init_params(self, p: dict, rng: np.random.Generator, scale: float) -> None:
        """Fresh weights ``N(0, scale^2)`` from ``rng`` and the biases, in place."""

    def forward(self, p: dict, state0: tuple, ws: CellWorkspace) -> None:
        """The recurrence over the window, from ``state0`` (one (B, H) per state name)."""

    def backward(self, p: dict, ws: CellWorkspace, grads: dict) -> tuple[np.ndarray, tuple]:
        """Gradients back through the window; writes every parameter's but Wxh's and bh's into
        ``grads``; returns (dL/dz (T, B, G), the initial state's gradients)."""

    def internals(self, ws: CellWorkspace) -> dict[str, np.ndarray]:
        """Each unit's values after forward, by name (keys of VALUE_RANGES), each (T, B, H):
        views of the workspace, valid until backward (which may reuse its memory)."""

    def sampling_step(self, p: dict, rec: np.ndarray,
                      state: tuple) -> Callable[[np.ndarray], None]:
        """Prepare one stream's step for sampling: returns ``advance(x)``, which moves
        ``state`` (one (H,) array per state name) one step in place, given x (G,) the input
        term; before each call the caller puts ``Whh h_{t-1}`` into the buffer ``rec`` (G,)."""

    def to_torch(self, p: dict) -> dict[str, np.ndarray]:
        """The layer's arrays under torch's names (TORCH_ENTRIES), rows in torch's order."""

    def from_torch(self, entries: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inverse of to_torch: this cell's parameters from torch's entries (float64),
        torch's two biases added up wherever the cell holds their sum."""


def check_cell(module: ModuleType) -> None:
    """Raise TypeError naming the first part of the contract ``module`` does not keep: every
    name of Cell, of the right kind, STATE_NAMES starting with "h", ranges from VALUE_RANGES,
    and parameters Wxh, Whh, bh of the shapes the network computes with."""
    for name, kind in (("NAME", str), ("GATES", int), ("STATE_NAMES", tuple),
                       ("WINDOW_BUFFERS", int), ("VALUE_RANGES", dict), ("TORCH_MODULE", str),
                       ("TORCH_KWARGS", dict), ("Workspace", type)):
        if not isinstance(getattr(module, name, None), kind):
            raise TypeError(f"cell {module.__name__} has no {name} ({kind.__name__})")
    for name in ("param_shapes", "init_params", "forward", "backward", "internals",
                 "sampling_step", "to_torch", "from_torch"):
        if not callable(getattr(module, name, None)):
            raise TypeError(f"cell {module.__name__} has no function {name}")
    if module.STATE_NAMES[:1] != ("h",):
        raise TypeError(f"cell {module.NAME}: STATE_NAMES must start with 'h'")
    if "h" not in module.VALUE_RANGES or not set(module.VALUE_RANGES.values()) <= set(VALUE_RANGES):
        raise TypeError(f"cell {module.NAME}: VALUE_RANGES must give 'h' and use {VALUE_RANGES}")
    I, H = 5, 3
    shapes = module.param_shapes(I, H)
    G = module.GATES * H
    for name, shape in (("Wxh", (G, I)), ("Whh", (G, H)), ("bh", (G,))):
        if shapes.get(name) != shape:
            raise TypeError(f"cell {module.NAME}: {name} must have shape {shape}, "
                            f"not {shapes.get(name)}")


def registry(*modules: ModuleType) -> dict[str, ModuleType]:
    """``{NAME: module}`` of cells that keep the contract (check_cell)."""
    for module in modules:
        check_cell(module)
    return {module.NAME: module for module in modules}
