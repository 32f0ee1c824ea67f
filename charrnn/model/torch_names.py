"""A model's parameters under PyTorch's names, and back: the spec of ``charrnn export``.

The network is torch's ``nn.RNN`` (tanh) / ``nn.LSTM`` / ``nn.GRU`` with ``input_size = V``
(the one-hot characters), ``hidden_size = H`` and ``num_layers = L``, followed by an
``nn.Linear(H, V)``. The recurrent module's entries keep torch's own names, so that its
``load_state_dict`` takes them as they are; the Linear's carry the prefix ``out.``
(OUTPUT_PREFIX):

    our l<k>.Wxh  -> weight_ih_l<k-1>   (G, I)   layer 1: I = V, the one-hot input's weights
    our l<k>.Whh  -> weight_hh_l<k-1>   (G, H)
    our l<k>.bh   -> bias_ih_l<k-1>     (G,)
                     bias_hh_l<k-1>     (G,)     zero: torch only ever adds the two biases
    GRU:             bias_hh_l<k-1>     rows 2H:3H are our l<k>.bhn (the reset gate
                                        multiplies them), the r and z rows are zero
    our Why, by   -> out.weight (V, H), out.bias (V,)

G is H (rnn), 4H (lstm) or 3H (gru). Gate rows are in torch's order: the LSTM's rows are
stored here as (i, f, o, g) and written as torch's (i, f, g, o); the GRU's (r, z, n) are
torch's already. A one-hot ``x`` times ``weight_ih_l0`` is column ``x`` of it, exactly
charrnn's embedding lookup, so torch's logits are charrnn's (tests/test_export.py).

Reading back (from_torch_state_dict) adds the two biases where charrnn holds their sum, so a
state dict trained further in torch (with non-zero ``bias_hh``) comes back as the same model.
"""
from __future__ import annotations

import numpy as np

from .network import ModelSpec, Network, layer_prefix
from .params import ParamSet

OUTPUT_PREFIX = "out."
TORCH_MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}   # torch.nn.<name>


def gate_rows_to_torch(cell: str, a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with its gate rows (axis 0) in torch's order. LSTM: (i, f, o, g) ->
    (i, f, g, o), a swap of the last two blocks, which is its own inverse; the vanilla cell
    and the GRU are in torch's order already."""
    a = np.asarray(a)
    if cell != "lstm":
        return a.copy()
    H = a.shape[0] // 4
    return np.concatenate([a[:2 * H], a[3 * H:], a[2 * H:3 * H]])


gate_rows_from_torch = gate_rows_to_torch


def describe(network: Network) -> dict:
    """What a reader needs to build the torch modules: plain JSON values.

    ``dropout`` is the rate charrnn trained with, on every layer's output (the top one's too,
    before the Linear); torch's ``dropout=`` argument drops between layers only. Neither
    drops anything when generating text."""
    s = network.spec
    return {"cell": s.cell, "torch_module": TORCH_MODULES[s.cell],
            "nonlinearity": "tanh" if s.cell == "rnn" else None,
            "num_layers": s.num_layers, "vocab_size": s.vocab_size,
            "input_size": s.vocab_size, "hidden_size": s.hidden_size,
            "dropout": s.dropout, "dtype": network.dtype.name,
            "input": "one-hot", "output_prefix": OUTPUT_PREFIX}


def network_from_description(description: dict) -> Network:
    """The Network a description (from describe) is of; ValueError if it is not one."""
    try:
        spec = ModelSpec(vocab_size=description["vocab_size"],
                         hidden_size=description["hidden_size"], cell=description["cell"],
                         num_layers=description["num_layers"], dropout=description["dropout"])
        dtype = np.dtype(description["dtype"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a model description: {error}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"not a model description: dtype {dtype}")
    return Network(spec, dtype)   # (validates the spec)


def torch_shapes(network: Network) -> dict[str, tuple[int, ...]]:
    """Every entry's shape, by its torch name, in the order to_torch_state_dict writes them."""
    s, H, V = network.spec, network.hidden_size, network.vocab_size
    G = network.cells[0].GATES * H
    shapes = {}
    for layer in range(s.num_layers):
        I = V if layer == 0 else H
        shapes.update({f"weight_ih_l{layer}": (G, I), f"weight_hh_l{layer}": (G, H),
                       f"bias_ih_l{layer}": (G,), f"bias_hh_l{layer}": (G,)})
    shapes.update({OUTPUT_PREFIX + "weight": (V, H), OUTPUT_PREFIX + "bias": (V,)})
    return shapes


def to_torch_state_dict(network: Network, params: ParamSet) -> dict[str, np.ndarray]:
    """``params`` under torch's names (see the module docstring), as new C-contiguous arrays
    of the model's dtype."""
    cell, H = network.spec.cell, network.hidden_size
    arrays = {}
    for layer in range(network.spec.num_layers):
        p = {name: np.asarray(params[layer_prefix(layer) + name])
             for name in network.layer_param_shapes(layer)}
        bias_hh = np.zeros_like(p["bh"])
        if cell == "gru":
            bias_hh[2 * H:] = p["bhn"]
        arrays[f"weight_ih_l{layer}"] = gate_rows_to_torch(cell, p["Wxh"])
        arrays[f"weight_hh_l{layer}"] = gate_rows_to_torch(cell, p["Whh"])
        arrays[f"bias_ih_l{layer}"] = gate_rows_to_torch(cell, p["bh"])
        arrays[f"bias_hh_l{layer}"] = gate_rows_to_torch(cell, bias_hh)
    arrays[OUTPUT_PREFIX + "weight"] = np.array(params["Why"])
    arrays[OUTPUT_PREFIX + "bias"] = np.array(params["by"])
    return {name: np.ascontiguousarray(value, dtype=network.dtype)
            for name, value in arrays.items()}


def from_torch_state_dict(network: Network, state_dict) -> ParamSet:
    """The inverse of to_torch_state_dict: charrnn's parameters from torch's entries (NumPy
    arrays, or anything np.asarray takes, e.g. CPU tensors without grad).

    Where charrnn holds the sum of torch's two biases it adds them (rnn, lstm: every row;
    gru: the r and z rows). Raises ValueError naming a missing, unexpected or misshapen entry.
    """
    shapes = torch_shapes(network)
    missing = [name for name in shapes if name not in state_dict]
    if missing:
        raise ValueError(f"{missing[0]} is missing")
    unexpected = sorted(set(state_dict) - set(shapes))
    if unexpected:
        raise ValueError(f"{unexpected[0]} is not an entry of this model")
    arrays = {}
    for name, shape in shapes.items():
        value = np.asarray(state_dict[name])
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
        arrays[name] = value.astype(np.float64)   # the sums below in float64, rounded once
    cell, H = network.spec.cell, network.hidden_size
    ours = {}
    for layer in range(network.spec.num_layers):
        prefix = layer_prefix(layer)
        bias_ih, bias_hh = arrays[f"bias_ih_l{layer}"], arrays[f"bias_hh_l{layer}"]
        if cell == "gru":
            bh = bias_ih.copy()
            bh[:2 * H] += bias_hh[:2 * H]
            ours[prefix + "bhn"] = bias_hh[2 * H:]
        else:
            bh = bias_ih + bias_hh
        ours[prefix + "Wxh"] = gate_rows_from_torch(cell, arrays[f"weight_ih_l{layer}"])
        ours[prefix + "Whh"] = gate_rows_from_torch(cell, arrays[f"weight_hh_l{layer}"])
        ours[prefix + "bh"] = gate_rows_from_torch(cell, bh)
    ours["Why"] = arrays[OUTPUT_PREFIX + "weight"]
    ours["by"] = arrays[OUTPUT_PREFIX + "bias"]
    return network.params_from_arrays(ours)
