"""The model package (charrnn.model), checked against independent references written here.

* backward's gradients of every parameter and of every initial state array (h0, c0) against
  centred finite differences of forward's loss (float64, relative error < 1e-6), for each
  cell with 1, 2 and 3 layers, T = 1 and B = 1, a vocabulary above 256 (the sort-and-sum
  path of dWxh) and dropout (a fixed mask);
* forward against a naive per-stream, per-step loop written from each cell's equations
  (column vectors, explicit one-hot and sigmoid), stacked layers and dropout included;
* the one-layer vanilla network against min-char-rnn (charrnn.model.reference);
* B streams against the mean of B single streams;
* the sampling Stream against the window recurrence;
* init_params, ModelSpec.validate, ParamSet, float32 against float64, dropout masks.
"""
import math

import numpy as np
import pytest

from charrnn.model import CELLS, ModelSpec, Network, ParamSet
from charrnn.model import reference
from charrnn.model.embedding import ONE_HOT_MATMUL_MAX_VOCAB
from gradcheck import check_gradient

CELL_NAMES = tuple(CELLS)   # every registered cell gets every check


# --------------------------------------------------------------------------- helpers

def make_network(cell, V, H, layers=1, dropout=0.0, dtype=np.float64) -> Network:
    return Network(ModelSpec(V, H, cell, layers, dropout), dtype)


def random_params(net: Network, rng, scale=0.5) -> ParamSet:
    """Every parameter, biases included, drawn N(0, scale^2): nothing trivially zero, and
    tanh and the sigmoids well away from linear."""
    params = net.zeros()
    for name, shape in net.param_shapes.items():
        params[name] = rng.standard_normal(shape) * scale
    return params


def random_state(net: Network, B, rng, scale=0.5) -> dict:
    return {name: (rng.standard_normal(shape) * scale).astype(net.dtype)
            for name, shape in net.state_shapes(B).items()}


def random_window(V, T, B, rng):
    index_type = np.uint8 if V <= 256 else np.uint16
    inputs = rng.integers(0, V, size=(T, B)).astype(index_type)
    targets = rng.integers(0, V, size=(T, B)).astype(index_type)
    return inputs, targets


def copy_state(state):
    return {name: value.copy() for name, value in state.items()}


def run(net, params, inputs, targets, state, masks=None):
    """Loss, gradients (a fresh ParamSet) and initial-state gradients (copies)."""
    loss, cache = net.forward(params, inputs, targets, state, masks)
    grads = params.zeros_like()
    dstate = net.backward(params, cache, grads)
    return loss, grads, {name: np.array(value, copy=True) for name, value in dstate.items()}


def final_state(net, params, inputs, targets, state, masks=None):
    """forward's loss and carry_state's state at the end of the window (state untouched)."""
    carried = copy_state(state)
    loss, cache = net.forward(params, inputs, targets, state, masks)
    net.carry_state(carried, cache)
    return loss, carried


def one_hot_column(c, V):
    x = np.zeros((V, 1))
    x[int(c)] = 1.0
    return x


# --------------------------------------------------------------------------- naive reference

def naive_step(cell, p, x, state):
    """One step of one layer for one stream: the plain reference of each cell."""
    return reference.STEPS[cell](p, x, state)


def naive_forward(net, params, inputs, targets, state, masks=None):
    """Stream by stream, step by step: the loss, the final state, and every step's logits
    (T, B, V)."""
    cell = net.spec.cell
    L, V, H = net.spec.num_layers, net.vocab_size, net.hidden_size
    names = CELLS[cell].STATE_NAMES
    T, B = inputs.shape
    layer_params = [{name[len(f"l{k + 1}."):]: np.asarray(params[name], np.float64)
                     for name in params if name.startswith(f"l{k + 1}.")} for k in range(L)]
    Why, by = np.asarray(params["Why"], np.float64), np.asarray(params["by"], np.float64)
    total = 0.0
    logits = np.zeros((T, B, V))
    final = {name: np.zeros((B, H)) for name in net.state_shapes(B)}
    for b in range(B):
        states = [tuple(np.asarray(state[f"l{k + 1}.{n}"][b], np.float64).reshape(H, 1)
                        for n in names) for k in range(L)]
        for t in range(T):
            x = one_hot_column(inputs[t, b], V)
            for k in range(L):
                states[k] = naive_step(cell, layer_params[k], x, states[k])
                x = states[k][0]
                if masks is not None:
                    x = x * np.asarray(masks[k][t, b], np.float64).reshape(H, 1)
            y = Why @ x + by.reshape(V, 1)
            logits[t, b] = y[:, 0]
            m = y.max()
            total += m + math.log(np.exp(y - m).sum()) - y[int(targets[t, b]), 0]
        for k in range(L):
            for n, value in zip(names, states[k]):
                final[f"l{k + 1}.{n}"][b] = value[:, 0]
    return total / B, final, logits


# --------------------------------------------------------------------------- gradients

# (layers, V, H, T, B, dropout): 1, 2 and 3 layers; T = 1 with B = 1; V > 256; dropout.
GRADCHECK_CASES = {
    "1-layer": (1, 6, 4, 4, 2, 0.0),
    "2-layer": (2, 5, 4, 3, 2, 0.0),
    "3-layer": (3, 5, 3, 3, 2, 0.0),
    "T1-B1": (2, 5, 4, 1, 1, 0.0),
    "V300": (2, 300, 3, 3, 2, 0.0),
    "dropout": (3, 6, 4, 3, 2, 0.3),
}


@pytest.mark.parametrize("case", list(GRADCHECK_CASES))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_gradients_match_finite_differences(cell, case):
    """Every parameter's gradient and every initial state array's, against centred differences."""
    L, V, H, T, B, p = GRADCHECK_CASES[case]
    rng = np.random.default_rng([20240611, CELL_NAMES.index(cell), list(GRADCHECK_CASES).index(case)])
    net = make_network(cell, V, H, L, p)
    params = random_params(net, rng)
    state = random_state(net, B, rng)
    if V > 256:
        # Repeated characters (runs to sum) and indices on both sides of 256.
        pool = np.array([0, 3, 255, 256, 299])
        inputs = pool[rng.integers(0, len(pool), size=(T, B))].astype(np.uint16)
        targets = rng.integers(0, V, size=(T, B)).astype(np.uint16)
    else:
        inputs, targets = random_window(V, T, B, rng)
    masks = net.draw_dropout_masks(rng, T, B)
    if p > 0:
        assert len(masks) == L
        for mask in masks:       # some units dropped and some kept, in every layer
            assert (mask == 0).any() and (mask != 0).any()
    else:
        assert masks is None

    loss, grads, dstate = run(net, params, inputs, targets, state, masks)
    assert math.isfinite(loss)
    if V > 256:
        assert V > ONE_HOT_MATMUL_MAX_VOCAB
        loss_again, cache = net.forward(params, inputs, targets, state, masks)
        assert cache.ws.one_hot is None      # the sort-and-sum path is the one taken
    assert set(dstate) == set(net.state_shapes(B))

    def loss_now():
        return net.forward(params, inputs, targets, state, masks)[0]

    where = f"({cell}, {case}: L={L} V={V} H={H} T={T} B={B} dropout={p})"
    for name in net.param_shapes:
        assert grads[name].shape == params[name].shape
        assert np.abs(grads[name]).max() > 1e-6, f"d{name} is all zero {where}"
        check_gradient(loss_now, params[name], grads[name], name=f"d{name} {where}")
    for name in net.state_shapes(B):
        assert dstate[name].shape == (B, H)
        assert np.abs(dstate[name]).max() > 1e-6, f"d{name} is all zero {where}"
        check_gradient(loss_now, state[name], dstate[name], name=f"d{name}0 {where}")


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("V", [7, 300])
def test_backward_overwrites_stale_gradients(cell, V, rng):
    net = make_network(cell, V, 4, 2, 0.2)
    params = random_params(net, rng)
    state = random_state(net, 3, rng)
    inputs, targets = random_window(V, 4, 3, rng)
    masks = net.draw_dropout_masks(rng, 4, 3)
    _, expected, expected_dstate = run(net, params, inputs, targets, state, masks)
    given = params.zeros_like()
    given.flat[...] = 123.0
    _, cache = net.forward(params, inputs, targets, state, masks)
    dstate = net.backward(params, cache, given)
    np.testing.assert_array_equal(given.flat, expected.flat)
    for name in expected_dstate:
        np.testing.assert_array_equal(dstate[name], expected_dstate[name])


# --------------------------------------------------------------------------- forward

# (layers, V, H, T, B, dropout)
NAIVE_CASES = [
    (1, 6, 4, 5, 3, 0.0),
    (2, 7, 5, 4, 2, 0.0),
    (3, 5, 4, 3, 3, 0.0),
    (1, 5, 3, 1, 1, 0.0),
    (2, 6, 4, 4, 3, 0.4),
    (3, 300, 4, 3, 2, 0.25),
]


@pytest.mark.parametrize("L,V,H,T,B,p", NAIVE_CASES)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_forward_and_carried_state_match_naive_loop(cell, L, V, H, T, B, p, rng):
    net = make_network(cell, V, H, L, p)
    params = random_params(net, rng)
    state = random_state(net, B, rng)
    state_before = copy_state(state)
    params_before = params.copy()
    inputs, targets = random_window(V, T, B, rng)
    masks = net.draw_dropout_masks(rng, T, B)
    expected_loss, expected_final, _ = naive_forward(net, params, inputs, targets, state, masks)

    loss, carried = final_state(net, params, inputs, targets, state, masks)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    assert set(carried) == set(expected_final)
    for name in expected_final:
        np.testing.assert_allclose(carried[name], expected_final[name], rtol=1e-12, atol=1e-14,
                                   err_msg=name)
    # forward leaves the state and the parameters alone
    for name in state:
        np.testing.assert_array_equal(state[name], state_before[name])
    np.testing.assert_array_equal(params.flat, params_before.flat)
    if p > 0:   # the masks matter: without them the loss is another number
        loss_unmasked, _, _ = naive_forward(net, params, inputs, targets, state, None)
        assert abs(loss_unmasked - expected_loss) > 1e-6


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_carried_state_continues_the_recurrence(cell, rng):
    """Two windows with the state carried equal one window of their length."""
    V, H, L, B = 6, 4, 2, 2
    net = make_network(cell, V, H, L)
    params = random_params(net, rng)
    state = random_state(net, B, rng)
    inputs, targets = random_window(V, 6, B, rng)
    whole_loss, whole_final = final_state(net, params, inputs, targets, state)
    carried = copy_state(state)
    loss1, cache = net.forward(params, inputs[:4], targets[:4], carried)
    net.carry_state(carried, cache)
    loss2, cache = net.forward(params, inputs[4:], targets[4:], carried)
    net.carry_state(carried, cache)
    np.testing.assert_allclose(loss1 + loss2, whole_loss, rtol=1e-12)
    for name in whole_final:
        np.testing.assert_allclose(carried[name], whole_final[name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("T", [1, 7])
def test_vanilla_network_is_min_char_rnn(T, rng):
    """One vanilla layer, B = 1: the loss, every gradient and the last hidden state equal
    reference.loss_fun's."""
    V, H = 9, 6
    net = make_network("rnn", V, H)
    params = random_params(net, rng)
    h0 = rng.standard_normal((1, H)) * 0.5
    inputs, targets = random_window(V, T, 1, rng)
    ours = {"Wxh": "l1.Wxh", "Whh": "l1.Whh", "bh": "l1.bh", "Why": "Why", "by": "by"}
    ref_params = {name: np.array(params[ours[name]]) for name in reference.PARAM_NAMES}
    ref_params["bh"] = ref_params["bh"].reshape(H, 1)
    ref_params["by"] = ref_params["by"].reshape(V, 1)
    ref_loss, ref_grads, ref_h = reference.loss_fun(inputs[:, 0].tolist(), targets[:, 0].tolist(),
                                                    h0.T.copy(), ref_params)

    state = {"l1.h": h0.copy()}
    loss, grads, _ = run(net, params, inputs, targets, state)
    _, carried = final_state(net, params, inputs, targets, state)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    assert set(net.param_shapes) == set(ours.values())
    for name in reference.PARAM_NAMES:
        g = grads[ours[name]]
        np.testing.assert_allclose(g, ref_grads[name].reshape(g.shape),
                                   rtol=1e-12, atol=1e-14, err_msg=f"d{name}")
    np.testing.assert_allclose(carried["l1.h"][0], ref_h[:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_batched_loss_and_gradients_are_the_mean_of_single_streams(cell, p, rng):
    """The loss is averaged over streams, so gradients must be too, and streams independent."""
    V, H, L, T, B = 8, 4, 2, 5, 4
    net = make_network(cell, V, H, L, p)
    params = random_params(net, rng)
    state = random_state(net, B, rng)
    inputs, targets = random_window(V, T, B, rng)
    masks = net.draw_dropout_masks(rng, T, B)
    loss, grads, dstate = run(net, params, inputs, targets, state, masks)
    losses, mean = [], params.zeros_like()
    for b in range(B):
        state_b = {name: value[b:b + 1].copy() for name, value in state.items()}
        masks_b = None if masks is None else [m[:, b:b + 1].copy() for m in masks]
        loss_b, grads_b, dstate_b = run(net, params, inputs[:, b:b + 1].copy(),
                                        targets[:, b:b + 1].copy(), state_b, masks_b)
        losses.append(loss_b)
        mean.flat += grads_b.flat / B
        for name in dstate:
            np.testing.assert_allclose(dstate[name][b], dstate_b[name][0] / B,
                                       rtol=1e-12, atol=1e-15, err_msg=name)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-13)
    np.testing.assert_allclose(grads.flat, mean.flat, rtol=1e-11, atol=1e-15)


# --------------------------------------------------------------------------- sampling stream

def softmax(y):
    e = np.exp(y - y.max())
    return e / e.sum()


@pytest.mark.parametrize("primed", [1, 3])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_stream_steps_agree_with_the_window_recurrence(cell, L, temperature, primed, rng):
    """prime() the first characters, then logits_scaled()/feed() for the rest: each step's
    logits times the temperature are the forward pass's logits at that position, and their
    softmax is forward's probabilities (from a zero state, without dropout)."""
    V, H, T = 7, 5, 8
    net = make_network(cell, V, H, L, 0.3)   # dropout is a training matter: not in the stream
    params = random_params(net, rng)
    inputs, targets = random_window(V, T, 1, rng)
    state = net.zero_state(1)
    _, _, naive_logits = naive_forward(net, params, inputs, targets, state)
    _, cache = net.forward(params, inputs, targets, state)
    probs = cache.ws.out.probs.copy()                  # (T, V), the softmax of each logit row
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)

    stream = net.stream(params, temperature)
    np.testing.assert_allclose(stream.by_scaled * temperature, params["by"], rtol=1e-12)
    chars = inputs[:, 0].tolist()
    for c in chars[:primed]:
        stream.prime(c)
    checked = 0
    for t in range(primed - 1, T):
        y = (stream.logits_scaled() + stream.by_scaled) * temperature
        np.testing.assert_allclose(y, naive_logits[t, 0], rtol=1e-10, atol=1e-12,
                                   err_msg=f"step {t}")
        np.testing.assert_allclose(softmax(y), probs[t], rtol=1e-10, err_msg=f"step {t}")
        checked += 1
        if t + 1 < T:
            stream.feed(chars[t + 1])
    assert checked == T - primed + 1


def test_stream_priming_after_predictions(rng):
    """prime() after logits_scaled()/feed() (a second seed mid-text) keeps the recurrence."""
    V, H, T = 6, 4, 7
    for cell in CELL_NAMES:
        net = make_network(cell, V, H, 2)
        params = random_params(net, rng)
        inputs, targets = random_window(V, T, 1, rng)
        _, _, naive_logits = naive_forward(net, params, inputs, targets, net.zero_state(1))
        stream = net.stream(params, 1.0)
        chars = inputs[:, 0].tolist()
        stream.prime(chars[0])
        stream.logits_scaled()
        stream.feed(chars[1])
        stream.logits_scaled()
        stream.feed(chars[2])
        stream.prime(chars[3])
        stream.prime(chars[4])
        for t in range(4, T):
            y = stream.logits_scaled() + stream.by_scaled
            np.testing.assert_allclose(y, naive_logits[t, 0], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{cell} step {t}")
            if t + 1 < T:
                stream.feed(chars[t + 1])


@pytest.mark.parametrize("dtype,temperature", [(np.float64, 1e-310), (np.float32, 1e-39)])
def test_stream_refuses_a_temperature_whose_logits_overflow(dtype, temperature, rng):
    net = make_network("lstm", 5, 3, 2, dtype=dtype)
    params = net.init_params(rng, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        net.stream(params, temperature)
    net.stream(params, 0.01)        # a small temperature that does not overflow is fine


# --------------------------------------------------------------------------- init_params

@pytest.mark.parametrize("cell", CELL_NAMES)
def test_init_params_shapes_dtype_biases_and_determinism(cell):
    V, H, L = 30, 20, 3
    for dtype in (np.float32, np.float64):
        net = make_network(cell, V, H, L, dtype=dtype)
        params = net.init_params(np.random.default_rng(7), 0.1)
        again = net.init_params(np.random.default_rng(7), 0.1)
        other = net.init_params(np.random.default_rng(8), 0.1)
        assert params.dtype == dtype
        assert list(params) == list(net.param_shapes)
        for name, shape in net.param_shapes.items():
            assert params[name].shape == shape and params[name].dtype == dtype
        np.testing.assert_array_equal(params.flat, again.flat)
        assert not np.array_equal(params.flat, other.flat)
    gates = CELLS[cell].GATES
    expected = {f"l{k}.{name}" for k in range(1, L + 1) for name in ("Wxh", "Whh", "bh")}
    expected |= {"Why", "by"} | ({f"l{k}.bhn" for k in range(1, L + 1)} if cell == "gru" else set())
    assert set(net.param_shapes) == expected
    for k in range(1, L + 1):
        assert net.param_shapes[f"l{k}.Wxh"] == (gates * H, V if k == 1 else H)
        assert net.param_shapes[f"l{k}.Whh"] == (gates * H, H)
        bh = params[f"l{k}.bh"]
        if cell == "lstm":          # (i, f, o, g): forget gate's bias 1, the others 0
            np.testing.assert_array_equal(bh[H:2 * H], 1.0)
            np.testing.assert_array_equal(bh[:H], 0.0)
            np.testing.assert_array_equal(bh[2 * H:], 0.0)
        else:
            np.testing.assert_array_equal(bh, 0.0)
        if cell == "gru":
            np.testing.assert_array_equal(params[f"l{k}.bhn"], 0.0)
        for name in ("Wxh", "Whh"):
            w = params[f"l{k}.{name}"]
            assert 0.08 < w.std() < 0.12, name
    assert net.param_shapes["Why"] == (V, H) and net.param_shapes["by"] == (V,)
    np.testing.assert_array_equal(params["by"], 0.0)
    assert 0.08 < params["Why"].std() < 0.12


def test_init_params_of_one_vanilla_layer_draws_Wxh_Whh_Why_in_order():
    V, H, scale = 11, 6, 0.02
    params = make_network("rnn", V, H).init_params(np.random.default_rng(3), scale)
    rng = np.random.default_rng(3)
    for name, shape in (("l1.Wxh", (H, V)), ("l1.Whh", (H, H)), ("Why", (V, H))):
        np.testing.assert_array_equal(params[name], rng.standard_normal(shape) * scale)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_initial_loss_is_close_to_T_log_V(cell, rng):
    V, H, L, T, B = 65, 32, 2, 20, 4
    net = make_network(cell, V, H, L)
    params = net.init_params(rng, 0.01)
    inputs, targets = random_window(V, T, B, rng)
    loss, _ = net.forward(params, inputs, targets, net.zero_state(B))
    np.testing.assert_allclose(loss, T * math.log(V), rtol=1e-3)


# --------------------------------------------------------------------------- ModelSpec

@pytest.mark.parametrize("kwargs,word", [
    (dict(cell="transformer"), "cell"),
    (dict(cell="LSTM"), "cell"),
    (dict(num_layers=0), "num_layers"),
    (dict(num_layers=-1), "num_layers"),
    (dict(num_layers=1.0), "num_layers"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(vocab_size=True), "vocab_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=1.5), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(dropout=float("nan")), "dropout"),
    (dict(dropout=float("inf")), "dropout"),
])
def test_model_spec_validate_rejects(kwargs, word):
    spec = ModelSpec(**{**dict(vocab_size=10, hidden_size=4, cell="rnn"), **kwargs})
    with pytest.raises(ValueError, match=word):
        spec.validate()
    with pytest.raises(ValueError, match=word):
        Network(spec)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("dropout", [0.0, 0.5, 0.999])
def test_model_spec_validate_accepts(cell, dropout):
    spec = ModelSpec(10, 4, cell, 3, dropout)
    spec.validate()
    assert spec.to_dict() == dict(vocab_size=10, hidden_size=4, cell=cell, num_layers=3,
                                  dropout=dropout)


# --------------------------------------------------------------------------- ParamSet

def test_paramset_views_share_the_flat_buffer():
    net = make_network("gru", 5, 3, 2)
    params = net.zeros()
    shapes = net.param_shapes
    assert params.flat.size == sum(int(np.prod(s)) for s in shapes.values())
    assert list(params) == list(shapes) and len(params) == len(shapes)
    params.flat[...] = np.arange(params.flat.size)
    offset = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        assert params[name].shape == shape
        assert np.shares_memory(params[name], params.flat)
        np.testing.assert_array_equal(params[name].reshape(-1), np.arange(offset, offset + size))
        offset += size
    view = params["l2.Whh"]
    params["l2.Whh"] = -1.0                     # writes through the view, not a rebinding
    assert params["l2.Whh"] is view
    start = list(shapes).index("l2.Whh")
    before = sum(int(np.prod(s)) for s in list(shapes.values())[:start])
    np.testing.assert_array_equal(params.flat[before:before + 9 * 3], -1.0)
    params.flat[-5:] = 9.0
    np.testing.assert_array_equal(params["by"], 9.0)
    twin = params.copy()
    assert not np.shares_memory(twin.flat, params.flat)
    np.testing.assert_array_equal(twin.flat, params.flat)
    zeros = params.zeros_like()
    assert zeros.dtype == params.dtype and not zeros.flat.any()


def test_paramset_from_arrays_copies_and_rejects_a_wrong_shape(rng):
    net = make_network("lstm", 6, 3, 2)
    arrays = {name: rng.standard_normal(shape) for name, shape in net.param_shapes.items()}
    params = net.params_from_arrays(arrays)
    for name in arrays:
        np.testing.assert_array_equal(params[name], arrays[name])
        assert not np.shares_memory(params[name], arrays[name])
    as32 = ParamSet.from_arrays(net.param_shapes, arrays, dtype=np.float32)
    assert as32.dtype == np.float32

    wrong = dict(arrays)
    wrong["l2.Whh"] = rng.standard_normal((3, 12))          # transposed
    with pytest.raises(ValueError, match=r"l2\.Whh.*\(3, 12\).*\(12, 3\)"):
        ParamSet.from_arrays(net.param_shapes, wrong)
    with pytest.raises(ValueError, match=r"l2\.Whh"):
        net.params_from_arrays(wrong)
    missing = dict(arrays)
    del missing["by"]
    with pytest.raises(ValueError, match="by"):
        net.params_from_arrays(missing)


# --------------------------------------------------------------------------- float32

@pytest.mark.parametrize("cell", CELL_NAMES)
def test_float32_agrees_with_float64(cell, rng):
    V, H, L, T, B = 12, 8, 2, 6, 3
    net64 = make_network(cell, V, H, L, 0.2)
    net32 = make_network(cell, V, H, L, 0.2, dtype=np.float32)
    params64 = random_params(net64, rng)
    params32 = net32.params_from_arrays(params64)
    assert params32.dtype == np.float32
    state64 = random_state(net64, B, rng)
    state32 = {name: value.astype(np.float32) for name, value in state64.items()}
    inputs, targets = random_window(V, T, B, rng)
    masks64 = net64.draw_dropout_masks(rng, T, B)
    masks32 = [m.astype(np.float32) for m in masks64]
    loss64, grads64, dstate64 = run(net64, params64, inputs, targets, state64, masks64)
    loss32, grads32, dstate32 = run(net32, params32, inputs, targets, state32, masks32)
    assert grads32.dtype == np.float32
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5)
    np.testing.assert_allclose(grads32.flat, grads64.flat, rtol=1e-3, atol=1e-5)
    for name in dstate64:
        assert dstate32[name].dtype == np.float32, name
        np.testing.assert_allclose(dstate32[name], dstate64[name], rtol=1e-3, atol=1e-5)
    _, final64 = final_state(net64, params64, inputs, targets, state64, masks64)
    _, final32 = final_state(net32, params32, inputs, targets, state32, masks32)
    for name in final64:
        assert final32[name].dtype == np.float32
        np.testing.assert_allclose(final32[name], final64[name], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- dropout masks

@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_masks(p):
    V, H, L, T, B = 5, 20, 3, 50, 8
    net = make_network("gru", V, H, L, p, dtype=np.float32)
    masks = net.draw_dropout_masks(np.random.default_rng(11), T, B)
    assert len(masks) == L
    scaled = np.float32(1.0 / (1.0 - p))
    for mask in masks:
        assert mask.shape == (T, B, H) and mask.dtype == np.float32
        assert np.all((mask == 0) | (mask == scaled))
        kept = np.count_nonzero(mask) / mask.size        # 8000 draws: std < 0.006
        assert abs(kept - (1 - p)) < 0.03
    assert not np.array_equal(masks[0], masks[1])       # a fresh mask per layer
    same = net.draw_dropout_masks(np.random.default_rng(11), T, B)
    other = net.draw_dropout_masks(np.random.default_rng(12), T, B)
    for a, b, c in zip(masks, same, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert make_network("gru", V, H, L).draw_dropout_masks(np.random.default_rng(11), T, B) is None


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_workspace_bytes_estimates_the_buffers_a_window_allocates(cell):
    """The memory check before training uses this estimate: it must follow each cell's real
    buffers (a gated cell's are three times a vanilla one's), within a quarter."""
    from charrnn.model.network import _Workspace
    network = Network(ModelSpec(65, 64, cell, 2, 0.1), np.float32)
    T, B = 16, 8
    ws = _Workspace(network, T, B)
    arrays = [a for layer in ws.layers for a in vars(layer).values() if isinstance(a, np.ndarray)]
    allocated = sum(a.nbytes for a in arrays + ws.dropped + [ws.out.probs])
    assert 0.75 * allocated <= network.workspace_bytes(T, B) <= 1.25 * allocated
