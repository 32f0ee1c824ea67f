"""The network: embedding -> (cell -> dropout) x L -> output. The one interface the rest of
charrnn uses; nothing outside this package reads a parameter by name or knows a cell's state.

Letters used for shapes throughout this package:

    V  vocabulary size            H  hidden size (every layer)     L  layers
    T  time steps in one window   B  parallel streams (batch size)
    G  a cell's pre-activations per step: H (rnn), 4H (lstm), 3H (gru)

Arrays are time-major, ``(T, B, ...)``, so each time step's slice is contiguous.

For one window, with ``x_t`` the one-hot input character and ``h^0_t = x_t``:

    h^l_t = cell_l(h^(l-1)_t * m^(l-1), h^l_{t-1})   l = 1..L (m: dropout masks, m^0 = 1)
    y_t   = Why (h^L_t * m^L) + by                    logits, (B, V)
    loss  = sum_t -log softmax(y_t)[target_t]         summed over T, averaged over B

Parameters are named ``l<l>.<name>`` for layer l's (``l1.Wxh``, ``l2.Whh``, ...; the
cell's module lists them), then ``Why`` and ``by``; carried state ``l<l>.h`` (and
``l<l>.c`` for an LSTM), each (B, H).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np

from . import dropout, embedding, gru, lstm, output, rnn
from .cell import registry
from .params import ParamSet

# The cells, by name: a new cell (model/cell.py says what it provides) is one line here.
CELLS: dict[str, ModuleType] = registry(rnn, lstm, gru)
MAX_WORKSPACES = 3
# Upper bounds on a model's sizes, checked before anything is built. Each layer is Python
# objects and buffers of its own, so a depth no one trains (100,000 layers of 8 units is
# 1.4 M parameters, but minutes of set-up and gigabytes) is refused outright; the others are
# far beyond any machine's memory (training checks that too), and keep absurd integers from
# a hand-edited file away from NumPy.
MAX_LAYERS = 100
MAX_HIDDEN_SIZE = 1_000_000
MAX_VOCAB_SIZE = 0x110000   # every Unicode code point


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: its cell, depth, sizes and dropout rate. Saved in checkpoints."""
    vocab_size: int
    hidden_size: int
    cell: str = "rnn"
    num_layers: int = 1
    dropout: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the first value out of range."""
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name, most in (("vocab_size", MAX_VOCAB_SIZE), ("hidden_size", MAX_HIDDEN_SIZE),
                           ("num_layers", MAX_LAYERS)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
            if value > most:
                raise ValueError(f"{name} must be at most {most:,}, not {value:,}")
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                or not 0 <= self.dropout < 1):   # (NaN fails the comparison too)
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def layer_prefix(layer: int) -> str:
    """The name prefix of layer ``layer`` (counted from 0): ``l1.`` for the first."""
    return f"l{layer + 1}."


class Cache:
    """What forward keeps for backward (names, not positions)."""

    __slots__ = ("inputs", "targets", "masks", "ws", "streams")

    def __init__(self, inputs, targets, masks, ws, streams):
        self.inputs = inputs      # (T, B) int
        self.targets = targets    # (T, B) int
        self.masks = masks        # None, or L masks, one (T, B, H) per layer's output
        self.ws = ws              # the _Workspace the arrays live in
        self.streams = streams    # how many streams the loss is averaged over


class _Workspace:
    """Every buffer of one window size: a workspace per layer, the output layer's, and the
    dropped-out copies of layer outputs."""

    def __init__(self, network: "Network", T: int, B: int):
        H, V, dtype = network.hidden_size, network.vocab_size, network.dtype
        self.layers = [cell.Workspace(T, B, H, dtype) for cell in network.cells]
        self.out = output.Workspace(T * B, V, dtype)
        self.ones = np.ones(T * B, dtype)   # sums over rows as products: 1^T dz is sum_t dz_t
        self.one_hot = embedding.make_one_hot_buffer(T * B, V, dtype)
        self.dropped = ([np.empty((T, B, H), dtype) for _ in network.cells]
                        if network.spec.dropout > 0 else None)


class Network:
    """A model's maths for a ModelSpec: parameters, forward, backward, state, sampling."""

    def __init__(self, spec: ModelSpec, dtype=np.float32):
        spec.validate()
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.vocab_size, self.hidden_size = spec.vocab_size, spec.hidden_size
        self.cells = [CELLS[spec.cell]] * spec.num_layers
        self._workspaces = {}

    def __repr__(self) -> str:
        s = self.spec
        return (f"Network({s.cell}, layers={s.num_layers}, V={s.vocab_size}, "
                f"H={s.hidden_size}, dropout={s.dropout}, {self.dtype})")

    # --- parameters -----------------------------------------------------------------------

    def layer_param_shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        """Layer ``layer``'s parameters (counted from 0), by their names within the cell."""
        input_size = self.vocab_size if layer == 0 else self.hidden_size
        return self.cells[layer].param_shapes(input_size, self.hidden_size)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape, by its full name, in the order of the flat buffer."""
        shapes = {}
        for layer in range(len(self.cells)):
            for name, shape in self.layer_param_shapes(layer).items():
                shapes[layer_prefix(layer) + name] = shape
        shapes.update(output.param_shapes(self.vocab_size, self.hidden_size))
        return shapes

    def zeros(self) -> ParamSet:
        """Parameters (or gradients, or optimiser state) of this model, all zero."""
        return ParamSet(self.param_shapes, dtype=self.dtype)

    def init_params(self, rng: np.random.Generator, scale: float) -> ParamSet:
        """Fresh weights ``N(0, scale^2)`` from ``rng``, layer by layer, then the output
        layer's; biases as each cell sets them. (For one vanilla layer this draws Wxh, Whh,
        Why in that order, as charrnn always has.)"""
        params = self.zeros()
        for layer, cell in enumerate(self.cells):
            cell.init_params(self._layer(params, layer), rng, scale)
        output.init_params(params, rng, scale)
        return params

    def params_from_arrays(self, arrays) -> ParamSet:
        """A ParamSet of copies of ``arrays[name]``; ValueError names a missing or misshapen one."""
        missing = [name for name in self.param_shapes if name not in arrays]
        if missing:
            raise ValueError(f"parameter {missing[0]} is missing")
        return ParamSet.from_arrays(self.param_shapes, arrays, dtype=self.dtype)

    def _layer(self, params, layer: int) -> dict[str, np.ndarray]:
        """Layer ``layer``'s arrays of ``params`` under their names within the cell."""
        prefix = layer_prefix(layer)
        return {name: params[prefix + name] for name in self.layer_param_shapes(layer)}

    def value_ranges(self) -> dict[str, str]:
        """What each of trace's arrays may hold (``l1.h`` -> "signed", ``l1.f`` -> "unit",
        ``l1.c`` -> "free"; see cell.VALUE_RANGES), as each cell declares it."""
        return {layer_prefix(layer) + name: value_range
                for layer, cell in enumerate(self.cells)
                for name, value_range in cell.VALUE_RANGES.items()}

    def layer_summary(self) -> list[tuple[str, str, int]]:
        """(layer name, description, parameter count) for each layer and the output layer."""
        rows = []
        for layer in range(len(self.cells)):
            shapes = self.layer_param_shapes(layer)
            count = sum(int(np.prod(shape)) for shape in shapes.values())
            input_size = self.vocab_size if layer == 0 else self.hidden_size
            rows.append((f"layer {layer + 1}",
                         f"{self.spec.cell}, {input_size} -> {self.hidden_size}", count))
        count = self.vocab_size * self.hidden_size + self.vocab_size
        rows.append(("output", f"linear, {self.hidden_size} -> {self.vocab_size}", count))
        return rows

    def workspace_bytes(self, T: int, B: int) -> int:
        """About how many bytes the buffers of a (T, B) window take: each layer's cell
        workspace, dropout copies and the output layer's (T*B, V) probabilities. Python
        integers, so absurd sizes cannot overflow."""
        H, V = self.hidden_size, self.vocab_size
        per_layer = sum(cell.WINDOW_BUFFERS for cell in self.cells) * T * B * H
        dropped = len(self.cells) * T * B * H if self.spec.dropout > 0 else 0
        return (per_layer + dropped + 2 * T * B * V) * self.dtype.itemsize

    # --- carried state --------------------------------------------------------------------

    def state_shapes(self, num_streams: int) -> dict[str, tuple[int, int]]:
        """Every carried state array's shape, by name (``l1.h``, ``l1.c``, ...)."""
        return {layer_prefix(layer) + name: (num_streams, self.hidden_size)
                for layer, cell in enumerate(self.cells) for name in cell.STATE_NAMES}

    def zero_state(self, num_streams: int) -> dict[str, np.ndarray]:
        """The state of ``num_streams`` streams at the start of a text: all zeros."""
        return {name: np.zeros(shape, self.dtype)
                for name, shape in self.state_shapes(num_streams).items()}

    def _layer_state(self, state, layer: int) -> tuple:
        prefix = layer_prefix(layer)
        return tuple(state[prefix + name] for name in self.cells[layer].STATE_NAMES)

    # --- training -------------------------------------------------------------------------

    def draw_dropout_masks(self, rng: np.random.Generator, T: int, B: int) -> list | None:
        """One fresh mask per layer output for a (T, B) window (None without dropout)."""
        if self.spec.dropout == 0:
            return None
        return [dropout.draw_mask(rng, (T, B, self.hidden_size), self.spec.dropout, self.dtype)
                for _ in self.cells]

    def _workspace(self, T: int, B: int) -> _Workspace:
        """The buffers for a (T, B) window, kept for the next window of that size. A few
        sizes are kept (training's windows, the evaluation's); when more come (an evaluation
        uses up to four), all are dropped and made again as needed: at most one
        reallocation of training's buffers per evaluation."""
        if (T, B) not in self._workspaces:
            if len(self._workspaces) >= MAX_WORKSPACES:
                self._workspaces.clear()
            self._workspaces[T, B] = _Workspace(self, T, B)
        return self._workspaces[T, B]

    def forward(self, params: ParamSet, inputs: np.ndarray, targets: np.ndarray,
                state: dict, masks: list | None = None, streams: int | None = None
                ) -> tuple[float, Cache]:
        """Run one window forward and score it.

        inputs, targets: (T, B) integer character indices (targets are inputs shifted by one).
        state: the carried state before the window (not modified; see carry_state).
        masks: dropout masks from draw_dropout_masks (training), or None (evaluation).
        streams: the number of streams the loss is averaged over; default B. A group of a
        larger batch's streams passes the batch's size, so that the groups' losses and
        gradients add up to the batch's (see groups.py).
        Returns the loss (sum over T of -log p[target], divided by ``streams``; a Python
        float) and a Cache for backward. Buffers are reused by the next call.

        Only the recurrences loop over time; each layer's input term is one gather (layer 1)
        or one matrix product (above it) for the whole window, and so is the output layer.
        """
        T, B = inputs.shape
        H = self.hidden_size
        streams = B if streams is None else streams
        ws = self._workspace(T, B)
        x = None                                   # the layer's input, (T, B, H) above layer 1
        for layer, (cell, lws) in enumerate(zip(self.cells, ws.layers)):
            p = self._layer(params, layer)
            if layer == 0:
                embedding.input_projection(p["Wxh"], inputs, p["bh"], out=lws.x_proj)
            else:                                  # Wxh x_t + bh, all steps in one product
                G = lws.x_proj.shape[-1]
                np.dot(x.reshape(T * B, H), p["Wxh"].T, out=lws.x_proj.reshape(T * B, G))
                lws.x_proj += p["bh"]
            cell.forward(p, self._layer_state(state, layer), lws)
            x = lws.hs[1:]
            if masks is not None:
                x = np.multiply(x, masks[layer], out=ws.dropped[layer])
        loss = output.forward(params["Why"], params["by"], x.reshape(T * B, H),
                              targets.reshape(-1), streams, ws.out)
        return loss, Cache(inputs, targets, masks, ws, streams)

    def backward(self, params: ParamSet, cache: Cache, grads: ParamSet) -> dict[str, np.ndarray]:
        """Gradients of forward's loss: every parameter's into ``grads`` (overwritten), and
        the initial state's, returned as a dict like the state. Consumes the cache."""
        ws, masks = cache.ws, cache.masks
        T, B = cache.inputs.shape
        H = self.hidden_size
        top = len(self.cells) - 1

        def layer_output(layer):                   # what layer ``layer`` passed upwards
            return (ws.dropped[layer] if masks is not None else ws.layers[layer].hs[1:])

        output.backward(params["Why"], layer_output(top).reshape(T * B, H), cache.streams, ws.out,
                        ws.ones, grads, ws.layers[top].dh.reshape(T * B, H))
        dstate = {}
        for layer in range(top, -1, -1):
            cell, lws = self.cells[layer], ws.layers[layer]
            if masks is not None:
                lws.dh *= masks[layer]             # back through the dropout mask
            p, g = self._layer(params, layer), self._layer(grads, layer)
            dz, dstate0 = cell.backward(p, lws, g)
            dz_flat = dz.reshape(T * B, -1)
            np.dot(ws.ones, dz_flat, out=g["bh"])                  # dbh = 1^T dz
            if layer == 0:
                embedding.accumulate_dWxh(g["Wxh"], dz_flat, cache.inputs.reshape(-1),
                                          ws.one_hot)
            else:
                below = layer_output(layer - 1).reshape(T * B, H)
                np.dot(dz_flat.T, below, out=g["Wxh"])             # dWxh = dz^T x
                np.dot(dz_flat, p["Wxh"], out=ws.layers[layer - 1].dh.reshape(T * B, H))
            for name, value in zip(cell.STATE_NAMES, dstate0):
                dstate[layer_prefix(layer) + name] = value
        return dstate

    def carry_state(self, state: dict, cache: Cache) -> None:
        """Copy the state at the end of cache's window into ``state`` (in place), so that the
        next window starts where this one ended (truncated BPTT)."""
        for layer, lws in enumerate(cache.ws.layers):
            for name, value in zip(self.cells[layer].STATE_NAMES, lws.final_state()):
                state[layer_prefix(layer) + name][...] = value

    def trace(self, params: ParamSet, indices: np.ndarray, window: int = 256
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run the network over one text, ``indices`` (N,), from a zero state, the state
        carried through; return what it predicts and what its units do at every step.

        Returns ``(probs, values)``: probs (N-1, V) float64, row t the distribution of
        character t+1 given characters 0..t; values maps ``l<k>.<name>`` (h, and c and the
        gates for gated cells, see each cell's ``internals``) to (N-1, H) arrays, row t
        after reading character t.
        """
        N = len(indices)
        steps = max(N - 1, 0)
        H, V = self.hidden_size, self.vocab_size
        probs = np.empty((steps, V))
        values = {}
        state = self.zero_state(1)
        stream = np.asarray(indices).reshape(-1, 1)
        for start in range(0, steps, window):
            stop = min(start + window, steps)
            _, cache = self.forward(params, stream[start:stop], stream[start + 1:stop + 1], state)
            probs[start:stop] = cache.ws.out.probs
            for layer, (cell, lws) in enumerate(zip(self.cells, cache.ws.layers)):
                for name, value in cell.internals(lws).items():
                    key = layer_prefix(layer) + name
                    if key not in values:
                        values[key] = np.empty((steps, H), self.dtype)
                    values[key][start:stop] = value[:, 0]
            self.carry_state(state, cache)
        return probs, values

    # --- sampling -------------------------------------------------------------------------

    def stream(self, params: ParamSet, temperature: float = 1.0) -> "Stream":
        """One stream through the network, a character at a time, from a zero state."""
        return Stream(self, params, temperature)


class Stream:
    """The network run on one stream, one character at a time (for sampling).

    ``logits_scaled()`` gives ``(Why h^L) / temperature`` for the next character (the caller
    adds ``by_scaled``, where it may fold in noise); ``feed(c)`` advances by character c.
    Per character each layer costs one vector-matrix product: layer l's new state ``h^l``
    multiplies the stacked matrix ``[A; Whh_l]``, whose product gives both this character's
    next input term (``A = Wxh_{l+1}``, or ``Why / temperature`` at the top) and the next
    character's recurrent term ``Whh_l h^l``.
    """

    def __init__(self, network: Network, params: ParamSet, temperature: float):
        dtype = np.result_type(network.dtype, np.float32)
        V, H, L = network.vocab_size, network.hidden_size, len(network.cells)
        with np.errstate(over="ignore"):
            Why_scaled = np.asarray(params["Why"], dtype) / dtype.type(temperature)     # (V, H)
            self.by_scaled = np.asarray(params["by"], dtype) / dtype.type(temperature)  # (V,)
        if not (np.isfinite(Why_scaled).all() and np.isfinite(self.by_scaled).all()):
            raise ValueError(f"temperature {temperature} is too small for this model's logits "
                             f"(they overflow)")
        self.cells = network.cells
        self.layer_params = [{k: np.asarray(v, dtype) for k, v in network._layer(params, l).items()}
                             for l in range(L)]
        # Row c of Wxh_1^T plus bh_1 is the first layer's input term for character c.
        first = self.layer_params[0]
        self.input_rows = np.ascontiguousarray(first["Wxh"].T + first["bh"], dtype)   # (V, G)
        self.stacked_T, self.products, self.recurrent, self.next_input = [], [], [], []
        for layer in range(L):
            Whh = self.layer_params[layer]["Whh"]
            above = Why_scaled if layer == L - 1 else self.layer_params[layer + 1]["Wxh"]
            stacked_T = np.empty((H, len(above) + len(Whh)), dtype)   # h^T [A^T, Whh^T]
            stacked_T[:, :len(above)] = above.T
            stacked_T[:, len(above):] = Whh.T
            product = np.zeros(len(above) + len(Whh), dtype)  # h = 0: both terms start at 0
            self.stacked_T.append(stacked_T)
            self.products.append(product)
            self.next_input.append(product[:len(above)])
            self.recurrent.append(product[len(above):])
        self.states = [tuple(np.zeros(H, dtype) for _ in cell.STATE_NAMES) for cell in self.cells]
        self.advance = [cell.sampling_step(self.layer_params[layer], self.recurrent[layer],
                                           self.states[layer])
                        for layer, cell in enumerate(self.cells)]
        self.upper_bh = [self.layer_params[layer]["bh"].copy() for layer in range(1, L)]
        self._top_Whh_T = self.stacked_T[-1][:, V:]

    def prime(self, c: int) -> None:
        """Feed character c when no prediction of the next one is wanted (a seed)."""
        h_top = self.states[-1][0]
        np.dot(h_top, self._top_Whh_T, self.recurrent[-1])
        self.feed(c)

    def logits_scaled(self) -> np.ndarray:
        """``(Why h^L) / temperature``, (V,): a view that the next call overwrites."""
        np.dot(self.states[-1][0], self.stacked_T[-1], self.products[-1])
        return self.next_input[-1]

    def snapshot(self) -> tuple:
        """A copy of where the stream is (every layer's state and pending products), for
        restore(): beam search keeps one per hypothesis."""
        return ([tuple(a.copy() for a in state) for state in self.states],
                [product.copy() for product in self.products])

    def restore(self, snapshot: tuple) -> None:
        """Go back to a snapshot(), in place (the views into the products stay valid)."""
        states, products = snapshot
        for mine, saved in zip(self.states, states):
            for a, b in zip(mine, saved):
                a[...] = b
        for mine, saved in zip(self.products, products):
            mine[...] = saved

    def feed(self, c: int) -> None:
        """Advance every layer by character c (the top layer's recurrent term must be current:
        after logits_scaled() or inside prime())."""
        self.advance[0](self.input_rows[c])
        for layer, bh in enumerate(self.upper_bh):
            np.dot(self.states[layer][0], self.stacked_T[layer], self.products[layer])
            x = self.next_input[layer]
            np.add(x, bh, x)
            self.advance[layer + 1](x)


# Checkpoint format 1 (charrnn 0.2.0 and before) held one vanilla layer under min-char-rnn's
# names; these are the same arrays' names in a Network(ModelSpec(V, H)).
FORMAT1_PARAM_NAMES = {"Wxh": "l1.Wxh", "Whh": "l1.Whh", "bh": "l1.bh", "Why": "Why", "by": "by"}
FORMAT1_STATE_NAMES = {"hidden": "l1.h"}
