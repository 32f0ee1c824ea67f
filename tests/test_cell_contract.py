"""The cell contract (charrnn/model/cell.py, issue 18): every registered cell keeps it, the
check refuses a module that does not, and a new cell is one module plus its registration:
it then trains, traces and exports like the others.
"""
import types

import numpy as np
import pytest

from charrnn.model import CELLS, ModelSpec, Network, rnn
from charrnn.model.cell import SIGNED, UNIT, VALUE_RANGES, check_cell, registry
from charrnn.model.torch_names import from_torch_state_dict, to_torch_state_dict
from gradcheck import check_gradient


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_registered_cell_keeps_the_contract(cell):
    module = CELLS[cell]
    check_cell(module)
    assert module.NAME == cell


@pytest.mark.parametrize("cell", list(CELLS))
def test_declared_value_ranges_name_every_internal_and_hold(cell, rng):
    """What a cell declares of its units is what they do, on weights large enough to saturate
    the gates: UNIT within [0, 1], SIGNED within [-1, 1] (FREE: anything)."""
    net = Network(ModelSpec(7, 6, cell, 2), np.float64)
    params = net.zeros()
    for name, shape in net.param_shapes.items():
        params[name] = rng.standard_normal(shape) * 3
    indices = rng.integers(0, 7, 60)
    _, values = net.trace(params, indices)
    ranges = net.value_ranges()
    assert set(values) == set(ranges)
    assert set(ranges.values()) <= set(VALUE_RANGES)
    for name, array in values.items():
        if ranges[name] == UNIT:
            assert array.min() >= 0 and array.max() <= 1, name
        elif ranges[name] == SIGNED:
            assert array.min() >= -1 and array.max() <= 1, name


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_torch_names_round_trip_through_each_cell(cell, rng):
    net = Network(ModelSpec(5, 4, cell, 2), np.float64)
    params = net.zeros()
    params.flat[:] = rng.standard_normal(params.flat.size)
    back = from_torch_state_dict(net, to_torch_state_dict(net, params))
    assert back.flat.tobytes() == params.flat.tobytes()


def fake_cell(**changes) -> types.ModuleType:
    """A new cell module: the vanilla cell's maths under another name."""
    module = types.ModuleType("charrnn.model.echo")
    for name in ("GATES", "STATE_NAMES", "WINDOW_BUFFERS", "VALUE_RANGES", "TORCH_MODULE",
                 "TORCH_KWARGS", "Workspace", "param_shapes", "init_params", "forward",
                 "backward", "internals", "sampling_step", "to_torch", "from_torch"):
        setattr(module, name, getattr(rnn, name))
    module.NAME = "echo"
    for name, value in changes.items():
        if value is None:
            delattr(module, name)
        else:
            setattr(module, name, value)
    return module


@pytest.mark.parametrize("changes,word", [
    ({"sampling_step": None}, "sampling_step"),
    ({"VALUE_RANGES": None}, "VALUE_RANGES"),
    ({"STATE_NAMES": ("c", "h")}, "start with 'h'"),
    ({"VALUE_RANGES": {"h": "bounded"}}, "VALUE_RANGES"),
    ({"param_shapes": lambda I, H: {"Wxh": (I, H), "Whh": (H, H), "bh": (H,)}}, "Wxh"),
])
def test_a_module_that_breaks_the_contract_is_refused(changes, word):
    with pytest.raises(TypeError, match=word):
        registry(fake_cell(**changes))


def test_a_new_cell_is_one_module_and_one_registration(monkeypatch, rng):
    """Registered, the new cell validates as a --cell, trains (its gradients are right),
    traces for viz and exports under its torch module's names."""
    echo = fake_cell()
    monkeypatch.setitem(CELLS, "echo", registry(echo)["echo"])
    net = Network(ModelSpec(6, 4, "echo", 2), np.float64)
    params = net.zeros()
    params.flat[:] = rng.standard_normal(params.flat.size) * 0.5
    inputs, targets = rng.integers(0, 6, (3, 2)), rng.integers(0, 6, (3, 2))
    state = net.zero_state(2)

    grads = net.zeros()
    net.backward(params, net.forward(params, inputs, targets, state)[1], grads)
    for name in net.param_shapes:
        check_gradient(lambda: net.forward(params, inputs, targets, state)[0], params[name],
                       grads[name], name=f"d{name}")
    _, values = net.trace(params, rng.integers(0, 6, 10))
    assert set(values) == {"l1.h", "l2.h"}
    assert "weight_ih_l1" in to_torch_state_dict(net, params)
