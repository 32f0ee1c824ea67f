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

from .cell import TORCH_ENTRIES
from .network import ModelSpec, Network, layer_prefix
from .params import ParamSet

OUTPUT_PREFIX = "out."


def describe(network: Network) -> dict:
    """What a reader needs to build the torch modules: plain JSON values.

    ``dropout`` is the rate charrnn trained with, on every layer's output (the top one's too,
    before the Linear); torch's ``dropout=`` argument drops between layers only. Neither
    drops anything when generating text."""
    s, cell = network.spec, network.cells[0]
    return {"cell": s.cell, "torch_module": cell.TORCH_MODULE,
            "nonlinearity": cell.TORCH_KWARGS.get("nonlinearity"),
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
    """``params`` under torch's names (see the module docstring; each cell's ``to_torch``
    names its layer), as new C-contiguous arrays of the model's dtype."""
    arrays = {}
    for layer, cell in enumerate(network.cells):
        p = {name: np.asarray(params[layer_prefix(layer) + name])
             for name in network.layer_param_shapes(layer)}
        for entry, value in cell.to_torch(p).items():
            arrays[f"{entry}_l{layer}"] = value
    arrays[OUTPUT_PREFIX + "weight"] = np.array(params["Why"])
    arrays[OUTPUT_PREFIX + "bias"] = np.array(params["by"])
    return {name: np.ascontiguousarray(value, dtype=network.dtype)
            for name, value in arrays.items()}


def from_torch_state_dict(network: Network, state_dict) -> ParamSet:
    """The inverse of to_torch_state_dict: charrnn's parameters from torch's entries (NumPy
    arrays, or anything np.asarray takes, e.g. CPU tensors without grad).

    Where charrnn holds the sum of torch's two biases it adds them (each cell's
    ``from_torch``). Raises ValueError naming a missing, unexpected or misshapen entry.
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
        arrays[name] = value.astype(np.float64)   # the sums in float64, rounded once
    ours = {}
    for layer, cell in enumerate(network.cells):
        entries = {entry: arrays[f"{entry}_l{layer}"] for entry in TORCH_ENTRIES}
        for name, value in cell.from_torch(entries).items():
            ours[layer_prefix(layer) + name] = value
    ours["Why"] = arrays[OUTPUT_PREFIX + "weight"]
    ours["by"] = arrays[OUTPUT_PREFIX + "bias"]
    return network.params_from_arrays(ours)
