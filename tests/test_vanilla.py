"""The one-layer vanilla RNN of charrnn.model (``Network(ModelSpec(V, H))``), checked against
independent references.

* backward's gradients of every parameter and of h0 against centred finite differences of
  forward's loss (float64, relative error < 1e-6), for several sizes including T = 1, B = 1
  and a vocabulary above 256 (the sort-and-reduceat path of accumulate_dWxh);
* the batched forward against a naive per-stream, per-step loop with explicit one-hot
  column vectors;
* input_projection against the explicit one-hot product;
* min-char-rnn (charrnn.model.reference: lossFun, its Adagrad update and its training loop)
  against charrnn's pieces for B = 1;
* init_params and ParamSet.
"""
import math

import numpy as np
import pytest

from charrnn.data import WindowCursor, make_streams, Vocabulary
from charrnn.model import ModelSpec, Network, ParamSet, reference
from charrnn.model.embedding import ONE_HOT_MATMUL_MAX_VOCAB, accumulate_dWxh, input_projection
from charrnn.model.network import FORMAT1_PARAM_NAMES
from charrnn.optim import Adagrad, clip_gradients
from gradcheck import check_gradient, numeric_gradient

# One vanilla layer's parameters, in the order of the flat buffer.
PARAM_NAMES = ("l1.Wxh", "l1.Whh", "l1.bh", "Why", "by")


# --------------------------------------------------------------------------- helpers

def vanilla(V, H, dtype=np.float64) -> Network:
    """A one-layer vanilla RNN without dropout: min-char-rnn's model."""
    return Network(ModelSpec(V, H), dtype)


def param_shapes(V, H) -> dict:
    return vanilla(V, H).param_shapes


def random_params(network, rng, scale=0.3) -> ParamSet:
    """Weights large enough that tanh is well away from linear, and non-zero biases."""
    params = network.zeros()
    for name in ("l1.Wxh", "l1.Whh", "Why"):
        params[name] = rng.standard_normal(params[name].shape) * scale
    for name in ("l1.bh", "by"):
        params[name] = rng.standard_normal(params[name].shape) * 0.1
    return params


def forward(network, params, inputs, targets, h0):
    """network.forward from the hidden state h0 (B, H)."""
    return network.forward(params, inputs, targets, {"l1.h": h0})


def backward(network, params, cache, grads=None):
    """network.backward into ``grads`` (a fresh ParamSet if None); returns (grads, dh0)."""
    if grads is None:
        grads = network.zeros()
    dstate = network.backward(params, cache, grads)
    assert set(dstate) == {"l1.h"}
    return grads, dstate["l1.h"]


def hs_of(cache) -> np.ndarray:
    """forward's hidden states, (T+1, B, H) with hs[0] = h0 (a view into the workspace)."""
    return cache.ws.layers[0].hs


def probs_of(cache) -> np.ndarray:
    """forward's softmax outputs, (T*B, V) (a view into the workspace)."""
    return cache.ws.out.probs


def random_window(V, T, B, rng, dtype=np.uint8):
    inputs = rng.integers(0, V, size=(T, B)).astype(dtype)
    targets = rng.integers(0, V, size=(T, B)).astype(dtype)
    return inputs, targets


def naive_forward(params, inputs, targets, h0):
    """Stream by stream, step by step, straight from the equations, with column vectors."""
    Wxh, Whh, Why = params["l1.Wxh"], params["l1.Whh"], params["Why"]
    bh, by = params["l1.bh"].reshape(-1, 1), params["by"].reshape(-1, 1)
    T, B = inputs.shape
    V, H = Why.shape
    hs = np.zeros((T + 1, B, H))
    total = 0.0
    for b in range(B):
        h = h0[b].reshape(H, 1).astype(np.float64)
        hs[0, b] = h[:, 0]
        for t in range(T):
            x = reference.one_hot(inputs[t, b], V)
            h = np.tanh(Wxh @ x + Whh @ h + bh)
            y = Why @ h + by
            p = np.exp(y) / np.sum(np.exp(y))
            total += -math.log(p[targets[t, b], 0])
            hs[t + 1, b] = h[:, 0]
    return total / B, hs


# Sizes (V, H, T, B): T = 1 and B = 1 alone and together, and V > 256 for the reduceat path.
GRADCHECK_SIZES = [
    (5, 4, 1, 1),
    (6, 5, 1, 3),
    (7, 6, 5, 1),
    (11, 8, 6, 3),
    (300, 4, 3, 2),
]


# --------------------------------------------------------------------------- gradcheck itself

def test_gradcheck_accepts_a_correct_gradient_and_rejects_a_wrong_one():
    """The checker must be able to fail, and say where."""
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    f = lambda: float(np.sum(np.sin(x) * x ** 2))        # noqa: E731
    correct = np.cos(x) * x ** 2 + 2 * x * np.sin(x)
    check_gradient(f, x, correct, name="toy")
    wrong = correct.copy()
    wrong[1, 0] *= 1 + 1e-5
    with pytest.raises(AssertionError, match=r"toy.*index \(1, 0\).*analytic.*numeric"):
        check_gradient(f, x, wrong, name="toy")
    np.testing.assert_array_equal(x, [[0.3, -1.2], [2.0, 0.7]])   # restored exactly


def test_numeric_gradient_refuses_float32():
    with pytest.raises(TypeError):
        numeric_gradient(lambda: 0.0, np.zeros(3, dtype=np.float32))


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("V,H,T,B", GRADCHECK_SIZES)
def test_gradients_match_finite_differences(V, H, T, B, rng):
    """Every parameter's gradient and dh0, from backward, against centred differences."""
    network = vanilla(V, H)
    params = random_params(network, rng, scale=0.5)
    index_type = np.uint8 if V <= 256 else np.uint16
    if V > 256:
        # Repeated characters (runs for reduceat to sum), and indices on both sides of 256.
        pool = np.array([0, 3, 255, 256, 299])
        inputs = pool[rng.integers(0, len(pool), size=(T, B))].astype(index_type)
        targets = rng.integers(0, V, size=(T, B)).astype(index_type)
    else:
        inputs, targets = random_window(V, T, B, rng, index_type)
    h0 = rng.standard_normal((B, H)) * 0.5

    loss, cache = forward(network, params, inputs, targets, h0)
    # The test is only meaningful if tanh is non-linear somewhere.
    assert np.abs(hs_of(cache)[1:]).max() > 0.5
    if V > 256:
        assert V > ONE_HOT_MATMUL_MAX_VOCAB, "this size is meant to exercise the reduceat path"
        assert cache.ws.one_hot is None        # the sort-and-reduceat path is the one taken
    grads, dh0 = backward(network, params, cache)
    assert dh0.shape == (B, H)

    def loss_now():
        return forward(network, params, inputs, targets, h0)[0]

    assert tuple(grads) == PARAM_NAMES
    for name in PARAM_NAMES:
        assert grads[name].shape == params[name].shape
        check_gradient(loss_now, params[name], grads[name], name=f"d{name} (V={V} H={H} T={T} B={B})")
    check_gradient(loss_now, h0, dh0, name=f"dh0 (V={V} H={H} T={T} B={B})")


def test_backward_writes_into_given_grads_and_overwrites_them(rng):
    V, H, T, B = 9, 5, 4, 2
    network = vanilla(V, H)
    params = random_params(network, rng)
    inputs, targets = random_window(V, T, B, rng)
    h0 = rng.standard_normal((B, H))
    expected, expected_dh0 = backward(network, params,
                                      forward(network, params, inputs, targets, h0)[1])
    given = params.zeros_like()
    given.flat[...] = 123.0                       # stale values must not leak through
    grads, dh0 = backward(network, params, forward(network, params, inputs, targets, h0)[1], given)
    assert grads is given
    np.testing.assert_array_equal(given.flat, expected.flat)
    np.testing.assert_array_equal(dh0, expected_dh0)


def test_batched_gradients_are_the_mean_of_single_stream_gradients(rng):
    """Loss is averaged over streams, so gradients must be too (and streams independent)."""
    V, H, T, B = 10, 6, 5, 4
    network = vanilla(V, H)
    params = random_params(network, rng)
    inputs, targets = random_window(V, T, B, rng)
    h0 = rng.standard_normal((B, H)) * 0.5
    loss, cache = forward(network, params, inputs, targets, h0)
    grads, dh0 = backward(network, params, cache)
    mean = params.zeros_like()
    losses = []
    for b in range(B):
        loss_b, cache_b = forward(network, params, inputs[:, b:b + 1], targets[:, b:b + 1],
                                  h0[b:b + 1])
        grads_b, dh0_b = backward(network, params, cache_b)
        losses.append(loss_b)
        mean.flat += grads_b.flat / B
        np.testing.assert_allclose(dh0[b], dh0_b[0] / B, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-13)
    np.testing.assert_allclose(grads.flat, mean.flat, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("V", [6, 256, 257, 400])
def test_both_dWxh_paths_agree_with_a_reference(V, rng):
    """The one-hot matmul path and the sort-and-reduceat path give the same dWxh."""
    H, N = 5, 40
    da = rng.standard_normal((N, H))
    # Few distinct characters so that several rows share one; include the largest index.
    chars = rng.choice(V, size=6, replace=False)
    chars[0] = V - 1
    indices = chars[rng.integers(0, len(chars), size=N)].astype(np.uint16)
    expected = np.zeros((H, V))
    for n in range(N):
        expected[:, indices[n]] += da[n]

    via_one_hot = np.full((H, V), np.nan)
    accumulate_dWxh(via_one_hot, da, indices, np.empty((N, V)))
    via_reduceat = np.full((H, V), np.nan)                   # must be fully overwritten
    accumulate_dWxh(via_reduceat, da, indices, None)
    np.testing.assert_allclose(via_one_hot, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(via_reduceat, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(via_reduceat, via_one_hot, rtol=1e-13, atol=1e-15)


def test_dWxh_reduceat_path_with_every_character_distinct(rng):
    """Runs of length one, unsorted input, and an index pattern with no repeats."""
    V, H = 300, 3
    indices = rng.permutation(V)[:50].astype(np.uint16)
    da = rng.standard_normal((50, H))
    dWxh = np.full((H, V), np.nan)
    accumulate_dWxh(dWxh, da, indices, None)
    expected = np.zeros((H, V))
    expected[:, indices] = da.T
    np.testing.assert_array_equal(dWxh, expected)


# --------------------------------------------------------------------------- forward

@pytest.mark.parametrize("V,H,T,B", [(4, 3, 1, 1), (8, 5, 7, 1), (8, 5, 1, 4), (13, 10, 9, 5),
                                     (300, 6, 4, 3)])
def test_forward_matches_naive_per_stream_loop(V, H, T, B, rng):
    network = vanilla(V, H)
    params = random_params(network, rng, scale=0.5)
    dtype = np.uint8 if V <= 256 else np.uint16
    inputs, targets = random_window(V, T, B, rng, dtype)
    h0 = rng.standard_normal((B, H)) * 0.5
    expected_loss, expected_hs = naive_forward(params, inputs, targets, h0)

    loss, cache = forward(network, params, inputs, targets, h0)
    assert isinstance(loss, float)
    assert hs_of(cache).shape == (T + 1, B, H)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(hs_of(cache), expected_hs, rtol=1e-12, atol=1e-14)
    # The probabilities are the softmax of each position's logits.
    assert probs_of(cache).shape == (T * B, V)
    np.testing.assert_allclose(probs_of(cache).sum(axis=1), 1.0, rtol=1e-12)


def test_forward_leaves_its_inputs_alone_and_reuses_a_workspace(rng):
    V, H, T, B = 7, 4, 5, 2
    network = vanilla(V, H)
    params = random_params(network, rng)
    inputs, targets = random_window(V, T, B, rng)
    h0 = rng.standard_normal((B, H))
    state = {"l1.h": h0}
    before = params.copy()
    h0_before = h0.copy()
    loss1, cache1 = network.forward(params, inputs, targets, state)
    hs1 = hs_of(cache1).copy()
    ws = cache1.ws
    loss2, cache2 = network.forward(params, inputs, targets, state)
    assert cache2.ws is ws                        # the same window size reuses the workspace
    assert loss1 == loss2
    np.testing.assert_array_equal(hs_of(cache2), hs1)
    np.testing.assert_array_equal(params.flat, before.flat)
    np.testing.assert_array_equal(h0, h0_before)
    assert state.keys() == {"l1.h"} and state["l1.h"] is h0
    # A window of another size gets a workspace of its own, not one written out of bounds.
    small_loss, small_cache = network.forward(params, inputs[:1, :1], targets[:1, :1],
                                              {"l1.h": h0[:1]})
    assert small_cache.ws is not ws
    loss3, cache3 = network.forward(params, inputs, targets, state)
    assert loss3 == loss1
    np.testing.assert_array_equal(hs_of(cache3), hs1)


def test_forward_is_stable_for_large_logits(rng):
    """Huge output weights: the softmax must not overflow (the loss stays finite and right)."""
    V, H, T, B = 5, 3, 2, 1
    network = vanilla(V, H)
    params = random_params(network, rng)
    params["Why"] = rng.standard_normal((V, H)) * 3000.0
    inputs, targets = random_window(V, T, B, rng)
    h0 = np.zeros((B, H))
    loss, cache = forward(network, params, inputs, targets, h0)
    assert math.isfinite(loss)
    # Reference in log-space (log-sum-exp written out with the maximum taken out).
    expected = 0.0
    for t in range(T):
        y = params["Why"] @ hs_of(cache)[t + 1, 0] + params["by"]
        assert y.max() > 710        # exp(y) alone would overflow float64
        m = y.max()
        expected += m + math.log(np.exp(y - m).sum()) - y[targets[t, 0]]
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    assert np.all(np.isfinite(probs_of(cache)))


def test_float32_forward_and_backward_agree_with_float64(rng):
    V, H, T, B = 12, 8, 6, 3
    network64, network32 = vanilla(V, H, np.float64), vanilla(V, H, np.float32)
    params64 = random_params(network64, rng)
    params32 = network32.params_from_arrays(params64)
    assert params32.flat.dtype == np.float32
    inputs, targets = random_window(V, T, B, rng)
    h0 = rng.standard_normal((B, H))
    loss64, cache64 = forward(network64, params64, inputs, targets, h0)
    loss32, cache32 = forward(network32, params32, inputs, targets, h0.astype(np.float32))
    assert hs_of(cache32).dtype == np.float32
    grads64, _ = backward(network64, params64, cache64)
    grads32, _ = backward(network32, params32, cache32)
    assert grads32.flat.dtype == np.float32
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5)
    np.testing.assert_allclose(grads32.flat, grads64.flat, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- one-hot

@pytest.mark.parametrize("V,dtype", [(10, np.uint8), (256, np.uint8), (300, np.uint16)])
def test_input_projection_equals_explicit_one_hot_product(V, dtype, rng):
    H, T, B = 6, 5, 3
    Wxh = rng.standard_normal((H, V))
    inputs = rng.integers(0, V, size=(T, B)).astype(dtype)
    inputs[0, 0] = V - 1
    projected = input_projection(Wxh, inputs)
    assert projected.shape == (T, B, H)
    for t in range(T):
        for b in range(B):
            x = reference.one_hot(inputs[t, b], V)
            np.testing.assert_array_equal(projected[t, b], (Wxh @ x)[:, 0])


# --------------------------------------------------------------------------- min-char-rnn

def minchar_training(data, weights, T, learning_rate, clip, steps):
    """min-char-rnn's main loop (charrnn.model.reference) for ``steps`` iterations; yields
    what each step saw and did. ``weights`` are keyed by min-char-rnn's names."""
    char_to_ix = {ch: i for i, ch in enumerate(sorted(set(data)))}
    params = {name: weights[name].copy() for name in reference.PARAM_NAMES}
    params["bh"], params["by"] = params["bh"].reshape(-1, 1), params["by"].reshape(-1, 1)
    mems = {name: np.zeros_like(value) for name, value in params.items()}
    H = params["Whh"].shape[0]
    n, p = 0, 0
    hprev = None
    while n < steps:
        reset = p + T + 1 >= len(data) or n == 0
        if reset:
            hprev = np.zeros((H, 1))
            p = 0
        inputs = [char_to_ix[ch] for ch in data[p:p + T]]
        targets = [char_to_ix[ch] for ch in data[p + 1:p + T + 1]]
        loss, raw, hprev = reference.loss_fun(inputs, targets, hprev, params)
        grads = {name: np.clip(g, -clip, clip) for name, g in raw.items()}
        reference.adagrad_update(params, raw, mems, learning_rate, clip)
        yield dict(inputs=inputs, targets=targets, reset=reset, loss=loss, grads=grads,
                   raw=raw, hprev=hprev.copy(), params={k: q.copy() for k, q in params.items()})
        p += T
        n += 1


def charrnn_training(data, weights, T, learning_rate, clip, steps):
    """The same loop from charrnn's pieces, with B = 1 (arrays keyed by min-char-rnn's names)."""
    vocab = Vocabulary.from_text(data)
    cursor = WindowCursor(make_streams(vocab.encode(data), 1), T)
    H = weights["Whh"].shape[0]
    network = vanilla(len(vocab), H)
    params = network.params_from_arrays({FORMAT1_PARAM_NAMES[name]: value
                                         for name, value in weights.items()})
    memory = params.zeros_like()
    optimizer = Adagrad(memory.flat, learning_rate)
    grads = params.zeros_like()
    state = network.zero_state(1)
    for _ in range(steps):
        inputs, targets, restarted = cursor.next_window()
        if restarted:
            state = network.zero_state(1)
        loss, cache = network.forward(params, inputs, targets, state)
        network.backward(params, cache, grads)
        network.carry_state(state, cache)
        clip_gradients(grads.flat, clip)
        optimizer.update(params.flat, grads.flat)
        yield dict(inputs=inputs, targets=targets, reset=restarted, loss=loss,
                   grads={old: grads[new].copy() for old, new in FORMAT1_PARAM_NAMES.items()},
                   hprev=state["l1.h"].copy(),
                   params={old: params[new].copy() for old, new in FORMAT1_PARAM_NAMES.items()})


@pytest.mark.parametrize("clip", [5.0, 0.05])
def test_batch_size_one_is_exactly_min_char_rnn(clip, rng):
    """Same windows, losses, (clipped) gradients, hidden states and Adagrad updates.

    The text is short enough that the loop wraps (a reset) within the steps run.
    """
    data = "the cat sat on the mat; the dog sat on the log.\nÀ bientôt, 猫!"
    T, H, lr, steps = 5, 7, 0.1, 16
    V = len(set(data))
    shapes = param_shapes(V, H)
    weights = {name: rng.standard_normal(shapes[FORMAT1_PARAM_NAMES[name]]) * 0.3
               for name in reference.PARAM_NAMES}
    resets = 0
    clipped = False
    for step, (ref, ours) in enumerate(zip(minchar_training(data, weights, T, lr, clip, steps),
                                           charrnn_training(data, weights, T, lr, clip, steps))):
        where = f"step {step}"
        assert ours["inputs"].shape == (T, 1) and ours["targets"].shape == (T, 1)
        assert ours["inputs"][:, 0].tolist() == ref["inputs"], where
        assert ours["targets"][:, 0].tolist() == ref["targets"], where
        assert ours["reset"] == ref["reset"], where
        resets += ref["reset"]
        clipped |= any(np.abs(g).max() > clip for g in ref["raw"].values())
        np.testing.assert_allclose(ours["loss"], ref["loss"], rtol=1e-12, err_msg=where)
        for name in reference.PARAM_NAMES:
            g_ref, p_ref = ref["grads"][name], ref["params"][name]
            np.testing.assert_allclose(ours["grads"][name], g_ref.reshape(ours["grads"][name].shape),
                                       rtol=1e-12, atol=1e-14, err_msg=f"{where} d{name}")
            np.testing.assert_allclose(ours["params"][name], p_ref.reshape(ours["params"][name].shape),
                                       rtol=1e-12, atol=1e-14, err_msg=f"{where} {name}")
        np.testing.assert_allclose(ours["hprev"][0], ref["hprev"][:, 0], rtol=1e-12, atol=1e-14,
                                   err_msg=where)
    assert step == steps - 1
    assert resets >= 2, "the text should wrap at least once within the steps run"
    if clip < 1:
        assert clipped, "this case is meant to exercise clipping"


# --------------------------------------------------------------------------- init_params

@pytest.mark.parametrize("V,H,T,B", [(65, 100, 25, 1), (300, 32, 10, 8)])
def test_initial_loss_is_close_to_T_log_V(V, H, T, B, rng):
    network = vanilla(V, H, np.float64)
    params = network.init_params(rng, scale=0.01)
    inputs, targets = random_window(V, T, B, rng, np.uint16)
    loss, _ = forward(network, params, inputs, targets, np.zeros((B, H)))
    np.testing.assert_allclose(loss, T * math.log(V), rtol=1e-3)


def test_init_params_shapes_dtype_scale_and_determinism():
    V, H = 50, 40
    network = vanilla(V, H, np.float32)
    params = network.init_params(np.random.default_rng(7), scale=0.01)
    again = network.init_params(np.random.default_rng(7), scale=0.01)
    other = network.init_params(np.random.default_rng(8), scale=0.01)
    assert params.flat.dtype == np.float32
    for name, shape in param_shapes(V, H).items():
        assert params[name].shape == shape
    np.testing.assert_array_equal(params.flat, again.flat)
    assert not np.array_equal(params.flat, other.flat)
    assert not params["l1.bh"].any() and not params["by"].any()
    for name in ("l1.Wxh", "l1.Whh", "Why"):
        assert 0.008 < params[name].std() < 0.012, name
        assert abs(params[name].mean()) < 0.002, name
    big = vanilla(V, H, np.float64).init_params(np.random.default_rng(7), scale=0.5)
    assert 0.4 < big["l1.Whh"].std() < 0.6


# --------------------------------------------------------------------------- ParamSet

def test_param_shapes_orientation():
    assert param_shapes(5, 3) == {"l1.Wxh": (3, 5), "l1.Whh": (3, 3), "l1.bh": (3,),
                                  "Why": (5, 3), "by": (5,)}
    assert tuple(param_shapes(5, 3)) == PARAM_NAMES


def test_paramset_views_share_the_flat_buffer():
    V, H = 4, 3
    params = ParamSet(param_shapes(V, H), dtype=np.float64)
    assert params.flat.size == H * V + H * H + V * H + H + V
    assert list(params) == list(PARAM_NAMES) and len(params) == 5
    # The flat buffer is the parameters laid end to end, in PARAM_NAMES order.
    params.flat[...] = np.arange(params.flat.size)
    offset = 0
    for name, shape in param_shapes(V, H).items():
        size = int(np.prod(shape))
        assert params[name].shape == shape
        assert np.shares_memory(params[name], params.flat)
        np.testing.assert_array_equal(params[name].reshape(-1), np.arange(offset, offset + size))
        offset += size
    # Writing through a name writes into the buffer (the view is not rebound).
    view = params["l1.Whh"]
    params["l1.Whh"] = -1.0
    assert params["l1.Whh"] is view
    np.testing.assert_array_equal(params.flat[H * V:H * V + H * H], -1.0)
    params.flat[-V:] = 9.0
    np.testing.assert_array_equal(params["by"], 9.0)


def test_paramset_from_arrays_copy_and_zeros_like(rng):
    V, H = 6, 4
    shapes = param_shapes(V, H)
    arrays = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    params = ParamSet.from_arrays(shapes, arrays, dtype=np.float64)
    assert params.flat.dtype == np.float64
    assert params.shapes == shapes
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(params[name], arrays[name])
        assert not np.shares_memory(params[name], arrays[name])
    arrays["l1.Wxh"][0, 0] = 1e9                   # from_arrays copied
    assert params["l1.Wxh"][0, 0] != 1e9

    as32 = ParamSet.from_arrays(shapes, arrays, dtype=np.float32)
    assert as32.flat.dtype == np.float32
    np.testing.assert_allclose(as32["Why"], arrays["Why"], rtol=1e-6)

    twin = params.copy()
    np.testing.assert_array_equal(twin.flat, params.flat)
    assert not np.shares_memory(twin.flat, params.flat)
    twin["l1.bh"] = 5.0
    assert not np.any(params["l1.bh"] == 5.0)

    zeros = as32.zeros_like()
    assert zeros.flat.dtype == np.float32 and zeros.flat.shape == as32.flat.shape
    assert zeros.shapes == shapes
    assert not zeros.flat.any()
    for name in PARAM_NAMES:
        assert np.shares_memory(zeros[name], zeros.flat)
