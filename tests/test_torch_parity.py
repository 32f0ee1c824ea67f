"""charrnn.model against PyTorch's nn.RNN (tanh), nn.LSTM and nn.GRU, in float64.

With the same weights (mapped from our names and gate order to torch's state_dict), a one-hot
input, an nn.Linear output and ``cross_entropy(reduction="sum") / B`` (summed over T,
averaged over B), our loss, every parameter's gradient and the initial states' gradients must
equal torch autograd's. With dropout, torch's own inter-layer dropout draws from torch's RNG,
so the stack is built from one-layer torch modules with our masks multiplied in between
(and before the Linear): that checks where our dropout sits.

The mapping to torch's names is charrnn.model.torch_names (what ``charrnn export`` writes), so
these tests check it too; ``to_torch`` and ``layer_to_torch`` below only split its state dict
into the modules' own. The mapping:

    our l<k>.Wxh  -> weight_ih_l<k-1>   (LSTM rows (i, f, o, g) -> torch's (i, f, g, o))
    our l<k>.Whh  -> weight_hh_l<k-1>
    our l<k>.bh   -> bias_ih_l<k-1>,    bias_hh_l<k-1> = 0   (rnn, lstm: only the sum matters)
    GRU: bh's r and z rows -> bias_ih (bias_hh 0 there); bh's n rows -> bias_ih n rows;
         l<k>.bhn -> bias_hh_l<k-1> n rows (the reset gate multiplies it)
    our Why, by   -> Linear weight, bias
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from charrnn.model import CELLS, ModelSpec, Network  # noqa: E402
from charrnn.model.torch_names import OUTPUT_PREFIX, to_torch_state_dict  # noqa: E402

CELL_NAMES = tuple(CELLS)   # every registered cell is checked against its torch module


def torch_module(cell, V, H, L):
    """The torch.nn module the cell declares it computes (cell.TORCH_MODULE), float64."""
    module = CELLS[cell]
    return getattr(torch.nn, module.TORCH_MODULE)(V, H, num_layers=L, dtype=torch.float64,
                                                  **module.TORCH_KWARGS)


def gate_rows_from_torch(cell, a):
    """``a``'s rows (a torch weight or bias, G rows) in our gate order: the cell's own
    from_torch, given ``a`` as weight_ih and zero biases."""
    zeros = np.zeros(a.shape[0])
    return CELLS[cell].from_torch({"weight_ih": a, "weight_hh": a, "bias_ih": zeros,
                                   "bias_hh": zeros})["Wxh"]


# --------------------------------------------------------------------------- mapping helpers

def layer_to_torch(net, params, k, torch_layer=None):
    """Our layer k's (counted from 1) arrays as torch's ``*_l<torch_layer>`` entries."""
    j = k - 1 if torch_layer is None else torch_layer
    state_dict = to_torch_state_dict(net, params)
    return {f"{n}_l{j}": state_dict[f"{n}_l{k - 1}"]
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def to_torch(net, params):
    """(the recurrent module's state_dict, the Linear's) as float64 tensors."""
    state_dict = to_torch_state_dict(net, params)
    recurrent = {n: v for n, v in state_dict.items() if not n.startswith(OUTPUT_PREFIX)}
    linear = {n[len(OUTPUT_PREFIX):]: v for n, v in state_dict.items()
              if n.startswith(OUTPUT_PREFIX)}
    as_tensors = lambda d: {n: torch.tensor(v, dtype=torch.float64) for n, v in d.items()}  # noqa: E731
    return as_tensors(recurrent), as_tensors(linear)


def layer_grads_from_torch(cell, module, k, torch_layer=None):
    """Our layer k's gradients from a torch module's ``.grad``s, in our layout.

    Also returns the torch bias gradients that ours do not hold, for the caller to check:
    rnn/lstm's bias_hh (equal to bias_ih's), and GRU's bias_hh r and z rows (equal to
    bias_ih's)."""
    j = k - 1 if torch_layer is None else torch_layer
    g = {n: getattr(module, f"{n}_l{j}").grad.numpy()
         for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    ours = {f"l{k}.Wxh": gate_rows_from_torch(cell, g["weight_ih"]),
            f"l{k}.Whh": gate_rows_from_torch(cell, g["weight_hh"]),
            f"l{k}.bh": gate_rows_from_torch(cell, g["bias_ih"])}
    H = g["weight_hh"].shape[1]
    if cell == "gru":
        ours[f"l{k}.bhn"] = g["bias_hh"][2 * H:].copy()
        extra = (g["bias_hh"][:2 * H], g["bias_ih"][:2 * H])
    else:
        extra = (g["bias_hh"], g["bias_ih"])
    return ours, extra


# --------------------------------------------------------------------------- helpers

def random_setup(cell, V, H, L, T, B, dropout, seed):
    rng = np.random.default_rng(seed)
    net = Network(ModelSpec(V, H, cell, L, dropout), np.float64)
    params = net.zeros()
    for name, shape in net.param_shapes.items():
        params[name] = rng.standard_normal(shape) * 0.5
    state = {name: rng.standard_normal(shape) * 0.5
             for name, shape in net.state_shapes(B).items()}
    inputs = rng.integers(0, V, size=(T, B)).astype(np.uint8)
    targets = rng.integers(0, V, size=(T, B)).astype(np.uint8)
    masks = net.draw_dropout_masks(rng, T, B)
    return net, params, state, inputs, targets, masks


def ours(net, params, inputs, targets, state, masks):
    loss, cache = net.forward(params, inputs, targets, state, masks)
    grads = params.zeros_like()
    dstate = net.backward(params, cache, grads)
    return loss, grads, {n: np.array(v, copy=True) for n, v in dstate.items()}


def initial_state_tensors(cell, state, layers, B, H):
    """torch's (L, B, H) h0 (and c0) leaf tensors from our l<k>.h (l<k>.c)."""
    names = CELLS[cell].STATE_NAMES
    return {n: torch.tensor(np.stack([state[f"l{k}.{n}"] for k in range(1, layers + 1)]),
                            dtype=torch.float64, requires_grad=True) for n in names}


def one_hot(inputs, V):
    x = np.zeros(inputs.shape + (V,))
    np.put_along_axis(x, inputs[..., None].astype(np.intp), 1.0, axis=-1)
    return torch.tensor(x, dtype=torch.float64)


def torch_loss(logits, targets):
    T, B, V = logits.shape
    target = torch.tensor(targets.astype(np.int64).reshape(-1))
    return torch.nn.functional.cross_entropy(logits.reshape(T * B, V), target,
                                             reduction="sum") / B


def assert_close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12, err_msg=what)


def compare(net, params, state, loss, grads, dstate, torch_value, torch_grads, torch_dstate,
            extras, where):
    assert_close(loss, torch_value, f"loss {where}")
    assert set(torch_grads) == set(net.param_shapes)
    for name in net.param_shapes:
        assert np.abs(grads[name]).max() > 1e-6, f"d{name} is all zero {where}"
        assert_close(grads[name], torch_grads[name], f"d{name} {where}")
    for name in net.state_shapes(len(next(iter(state.values())))):
        assert np.abs(dstate[name]).max() > 1e-6, f"d{name} is all zero {where}"
        assert_close(dstate[name], torch_dstate[name], f"d{name}0 {where}")
    for hh, ih in extras:      # torch's second bias gradient equals the first where summed
        assert_close(hh, ih, f"bias_hh grad {where}")


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_loss_and_gradients_equal_torch(cell, L):
    V, H, T, B = 7, 5, 6, 3
    net, params, state, inputs, targets, _ = random_setup(cell, V, H, L, T, B, 0.0,
                                                          [7, CELL_NAMES.index(cell), L])
    loss, grads, dstate = ours(net, params, inputs, targets, state, None)

    module = torch_module(cell, V, H, L)
    linear = torch.nn.Linear(H, V, dtype=torch.float64)
    recurrent_sd, linear_sd = to_torch(net, params)
    module.load_state_dict(recurrent_sd, strict=True)
    linear.load_state_dict(linear_sd, strict=True)
    init = initial_state_tensors(cell, state, L, B, H)
    hx = tuple(init.values()) if len(init) > 1 else init["h"]
    out, last = module(one_hot(inputs, V), hx)
    value = torch_loss(linear(out), targets)
    value.backward()

    torch_grads, extras = {"Why": linear.weight.grad.numpy(), "by": linear.bias.grad.numpy()}, []
    for k in range(1, L + 1):
        layer, extra = layer_grads_from_torch(cell, module, k)
        torch_grads.update(layer)
        extras.append(extra)
    torch_dstate = {f"l{k}.{n}": init[n].grad.numpy()[k - 1]
                    for n in init for k in range(1, L + 1)}
    compare(net, params, state, loss, grads, dstate, value.item(), torch_grads, torch_dstate,
            extras, f"({cell}, L={L})")

    # The state carried to the next window is torch's final (h_n, c_n).
    carried = {n: v.copy() for n, v in state.items()}
    _, cache = net.forward(params, inputs, targets, state)
    net.carry_state(carried, cache)
    finals = dict(zip(CELLS[cell].STATE_NAMES, last if isinstance(last, tuple) else (last,)))
    for k in range(1, L + 1):
        for n, final in finals.items():
            assert_close(carried[f"l{k}.{n}"], final.detach().numpy()[k - 1], f"l{k}.{n} final")


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_dropout_placement_equals_torch_stack_with_our_masks(cell, L):
    """One-layer torch modules stacked by hand, each output times our mask for that layer
    (the top one's before the Linear)."""
    V, H, T, B = 6, 4, 5, 3
    net, params, state, inputs, targets, masks = random_setup(cell, V, H, L, T, B, 0.4,
                                                              [8, CELL_NAMES.index(cell), L])
    assert len(masks) == L and all((m == 0).any() for m in masks)
    loss, grads, dstate = ours(net, params, inputs, targets, state, masks)

    linear = torch.nn.Linear(H, V, dtype=torch.float64)
    _, linear_sd = to_torch(net, params)
    linear.load_state_dict(linear_sd, strict=True)
    x = one_hot(inputs, V)
    modules, inits = [], []
    for k in range(1, L + 1):
        module = getattr(torch.nn, CELLS[cell].TORCH_MODULE)(
            V if k == 1 else H, H, num_layers=1, dtype=torch.float64, **CELLS[cell].TORCH_KWARGS)
        sd = {n: torch.tensor(v, dtype=torch.float64)
              for n, v in layer_to_torch(net, params, k, torch_layer=0).items()}
        module.load_state_dict(sd, strict=True)
        init = initial_state_tensors(cell, {n.replace(f"l{k}.", "l1."): v
                                            for n, v in state.items() if n.startswith(f"l{k}.")},
                                     1, B, H)
        hx = tuple(init.values()) if len(init) > 1 else init["h"]
        out, _ = module(x, hx)
        x = out * torch.tensor(masks[k - 1], dtype=torch.float64)
        modules.append(module)
        inits.append(init)
    value = torch_loss(linear(x), targets)
    value.backward()

    torch_grads, extras = {"Why": linear.weight.grad.numpy(), "by": linear.bias.grad.numpy()}, []
    torch_dstate = {}
    for k, (module, init) in enumerate(zip(modules, inits), start=1):
        layer, extra = layer_grads_from_torch(cell, module, k, torch_layer=0)
        torch_grads.update(layer)
        extras.append(extra)
        for n in init:
            torch_dstate[f"l{k}.{n}"] = init[n].grad.numpy()[0]
    compare(net, params, state, loss, grads, dstate, value.item(), torch_grads, torch_dstate,
            extras, f"({cell}, L={L}, dropout)")

    # Masks in the wrong place (e.g. none on the top layer) would give another loss.
    if L > 1:
        moved = [np.ones_like(masks[0])] + list(masks[:-1])
        assert abs(net.forward(params, inputs, targets, state, moved)[0] - loss) > 1e-6


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_mapping_helpers_round_trip(cell):
    """to_torch then back is the identity, the state_dict keys and shapes are torch's own,
    and LSTM rows really are reordered (the g and o blocks swap)."""
    V, H, L = 6, 3, 2
    net, params, *_ = random_setup(cell, V, H, L, 2, 1, 0.0, 9)
    recurrent_sd, _ = to_torch(net, params)
    expected = torch_module(cell, V, H, L).state_dict()
    assert set(recurrent_sd) == set(expected)
    for name, tensor in recurrent_sd.items():
        assert tuple(tensor.shape) == tuple(expected[name].shape), name
    for k in range(1, L + 1):
        back = {f"l{k}.Wxh": gate_rows_from_torch(cell, recurrent_sd[f"weight_ih_l{k - 1}"].numpy()),
                f"l{k}.Whh": gate_rows_from_torch(cell, recurrent_sd[f"weight_hh_l{k - 1}"].numpy()),
                f"l{k}.bh": gate_rows_from_torch(cell, recurrent_sd[f"bias_ih_l{k - 1}"].numpy())}
        if cell == "gru":
            back[f"l{k}.bhn"] = recurrent_sd[f"bias_hh_l{k - 1}"].numpy()[2 * H:]
        for name, value in back.items():
            np.testing.assert_array_equal(value, params[name])
    W = np.asarray(params["l1.Wxh"])
    if cell == "lstm":
        torch_W = recurrent_sd["weight_ih_l0"].numpy()
        np.testing.assert_array_equal(torch_W[2 * H:3 * H], W[3 * H:])     # torch g = our g
        np.testing.assert_array_equal(torch_W[3 * H:], W[2 * H:3 * H])     # torch o = our o
