"""charrnn.sample.generate: determinism, length, priming with the seed, the distribution it
draws from (softmax of logits / temperature), greedy decoding and top-k.

The reference below recomputes the RNN's equations step by step, independently of charrnn.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from charrnn.data import UnknownCharactersError, Vocabulary
from charrnn.model import ModelSpec, Network, ParamSet
from charrnn.sample import generate

CHARS = "\n !,.?abcdeé日🙂"


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def network_of(params: ParamSet) -> Network:
    """The one-layer vanilla RNN that ``params`` are the weights of."""
    V, H = params["Why"].shape
    return Network(ModelSpec(V, H), params.dtype)


def random_params(rng, V, H, scale=0.8, dtype=np.float64) -> ParamSet:
    params = Network(ModelSpec(V, H), dtype).zeros()
    params.flat[...] = rng.standard_normal(params.flat.size) * scale
    return params


def reference_logits(params, seed_indices, generated_indices):
    """Logits Why h + by before each generated character, from the equations themselves."""
    p = {name.removeprefix("l1."): np.asarray(params[name], dtype=np.float64) for name in params}
    assert set(p) == {"Wxh", "Whh", "bh", "Why", "by"}
    H = p["Whh"].shape[0]
    V = p["Why"].shape[0]
    h = np.zeros(H)
    for c in seed_indices:
        h = np.tanh(p["Wxh"] @ np.eye(V)[c] + p["Whh"] @ h + p["bh"])
    logits = []
    for c in generated_indices:
        logits.append(p["Why"] @ h + p["by"])
        h = np.tanh(p["Wxh"] @ np.eye(V)[c] + p["Whh"] @ h + p["bh"])
    return np.array(logits)


@pytest.fixture
def vocab():
    return Vocabulary(CHARS)


@pytest.fixture
def params(vocab):
    return random_params(np.random.default_rng(0), len(vocab), 6)


def constant_params(by, H=3) -> ParamSet:
    """A model whose every prediction is softmax(by): Why = 0, so the state does not matter."""
    params = Network(ModelSpec(len(by), H), np.float64).zeros()
    params.flat[...] = np.random.default_rng(1).standard_normal(params.flat.size)
    params["Why"] = 0
    params["by"] = by
    return params


@pytest.mark.parametrize("length", [0, 1, 7, 511, 512, 513, 1100])
def test_yields_exactly_length_characters_of_the_vocabulary(vocab, params, length):
    out = list(generate(network_of(params), params, vocab, "ab日", length, np.random.default_rng(3)))
    assert len(out) == length
    assert all(len(c) == 1 and c in vocab.chars for c in out)


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 0.5}, {"top_k": 3}, {"greedy": True}])
def test_same_rng_seed_same_text(vocab, params, kwargs):
    a = "".join(generate(network_of(params), params, vocab, "a", 600, np.random.default_rng(11), **kwargs))
    b = "".join(generate(network_of(params), params, vocab, "a", 600, np.random.default_rng(11), **kwargs))
    assert a == b


def test_different_rng_seed_different_text(vocab, params):
    a = "".join(generate(network_of(params), params, vocab, "a", 200, np.random.default_rng(1)))
    b = "".join(generate(network_of(params), params, vocab, "a", 200, np.random.default_rng(2)))
    assert a != b


def test_unknown_seed_characters_raise_naming_them(vocab, params):
    with pytest.raises(UnknownCharactersError) as info:
        list(generate(network_of(params), params, vocab, "abXcZ", 5, np.random.default_rng(0)))
    assert info.value.chars == ["X", "Z"]
    assert "'X'" in str(info.value) and "'Z'" in str(info.value)


def test_greedy_follows_the_argmax_of_the_reference(vocab, params):
    """Greedy decoding primed by the seed, checked step by step against the equations."""
    seed = "cab 日!"
    out = "".join(generate(network_of(params), params, vocab, seed, 60, np.random.default_rng(0), greedy=True))
    logits = reference_logits(params, vocab.encode(seed), vocab.encode(out))
    assert list(vocab.encode(out)) == list(logits.argmax(axis=1))


def test_greedy_ignores_the_rng_and_temperature(vocab, params):
    texts = {"".join(generate(network_of(params), params, vocab, "a", 80, np.random.default_rng(s), temperature=t,
                              greedy=True)) for s, t in [(0, 1.0), (1, 0.3), (2, 3.0)]}
    assert len(texts) == 1


def test_top_k_1_equals_greedy(vocab, params):
    greedy = "".join(generate(network_of(params), params, vocab, "é", 80, np.random.default_rng(0), greedy=True))
    top1 = "".join(generate(network_of(params), params, vocab, "é", 80, np.random.default_rng(9), top_k=1))
    assert top1 == greedy


def test_seed_primes_the_state(vocab, params):
    """Different seeds lead to different greedy continuations (the seed is fed through)."""
    a = "".join(generate(network_of(params), params, vocab, "abc", 40, np.random.default_rng(0), greedy=True))
    b = "".join(generate(network_of(params), params, vocab, "日🙂!", 40, np.random.default_rng(0), greedy=True))
    assert a != b


@pytest.mark.parametrize("k", [2, 4])
def test_top_k_draws_only_among_the_k_most_likely(vocab, params, k):
    """Every generated character is among the k largest logits at its step, and over the run
    more than one of them is used (it is a draw, not greedy)."""
    seed = "abc"
    out = "".join(generate(network_of(params), params, vocab, seed, 400, np.random.default_rng(5), top_k=k,
                           temperature=2.0))
    indices = vocab.encode(out)
    logits = reference_logits(params, vocab.encode(seed), indices)
    ranks = (logits > logits[np.arange(len(indices)), indices][:, None]).sum(axis=1)
    assert ranks.max() < k
    assert len(set(ranks.tolist())) == k


def test_top_k_renormalises_the_k_most_likely():
    by = np.array([2.0, 0.0, 1.5, -1.0, 1.0])
    vocab = Vocabulary("abcde")
    n = 20000
    params = constant_params(by)
    out = "".join(generate(network_of(params), params, vocab, "", n, np.random.default_rng(4), top_k=2))
    assert set(out) == {"a", "c"}
    p_a = softmax(np.array([2.0, 1.5]))[0]
    sd = math.sqrt(p_a * (1 - p_a) / n)
    assert abs(out.count("a") / n - p_a) < 4 * sd


def frequencies(text, vocab):
    return np.bincount(vocab.encode(text), minlength=len(vocab)) / len(text)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_draws_follow_softmax_of_logits_over_temperature(temperature):
    """With Why = 0 every draw is from softmax(by / T), independently: frequencies over many
    draws must match within 4 binomial standard deviations (fixed seed: deterministic)."""
    by = np.array([1.0, -0.5, 0.0, 2.0, 0.3, -2.0])
    vocab = Vocabulary("uvwxyz")
    n = 40000
    params = constant_params(by)
    out = "".join(generate(network_of(params), params, vocab, "", n, np.random.default_rng(12),
                           temperature=temperature))
    expected = softmax(by / temperature)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(frequencies(out, vocab) - expected) < tolerance)
    # The test has the power to tell this temperature from its neighbours.
    for other in (temperature * 0.8, temperature * 1.25):
        assert np.any(np.abs(softmax(by / other) - expected) > 2 * tolerance)


def test_first_character_with_empty_seed_follows_the_model_after_a_newline(vocab):
    """Empty seed: the model starts as after a line break (a newline is fed, not printed),
    so the first character follows softmax(y / T) for the state after "\n"."""
    params = random_params(np.random.default_rng(23), len(vocab), 5, scale=1.5)
    temperature = 0.8
    draws = np.random.default_rng(24)
    n = 6000
    first = "".join(next(generate(network_of(params), params, vocab, "", 1, draws,
                                  temperature=temperature)) for _ in range(n))
    expected = softmax(reference_logits(params, vocab.encode("\n"), [0])[0] / temperature)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12
    assert np.all(np.abs(frequencies(first, vocab) - expected) < tolerance)
    # The test can tell this from the zero state's softmax(by / T).
    assert np.any(np.abs(softmax(params["by"] / temperature) - expected) > 2 * tolerance)


def test_first_character_with_empty_seed_and_no_newline_follows_softmax_of_by():
    """A vocabulary without a newline: the first character comes from the zero state, so
    p = softmax(by / T) whatever the other weights (which are large and random here)."""
    vocab = Vocabulary(CHARS.replace("\n", ""))
    rng = np.random.default_rng(21)
    params = random_params(rng, len(vocab), 5, scale=2.0)
    params["by"] = rng.standard_normal(len(vocab)) * 1.5
    temperature = 0.8
    draws = np.random.default_rng(22)
    n = 6000
    first = "".join(next(generate(network_of(params), params, vocab, "", 1, draws, temperature=temperature))
                    for _ in range(n))
    expected = softmax(params["by"] / temperature)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12
    assert np.all(np.abs(frequencies(first, vocab) - expected) < tolerance)


def test_distribution_after_a_seed_follows_the_model():
    """After the seed, the next character's distribution is softmax(Why h + by) for the
    primed state h, computed by the reference."""
    vocab = Vocabulary("abcd")
    params = random_params(np.random.default_rng(30), 4, 3, scale=1.5)
    seed = "abdc"
    expected = softmax(reference_logits(params, vocab.encode(seed), vocab.encode("a"))[0])
    draws = np.random.default_rng(31)
    n = 6000
    nxt = "".join(next(generate(network_of(params), params, vocab, seed, 1, draws)) for _ in range(n))
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12
    assert np.all(np.abs(frequencies(nxt, vocab) - expected) < tolerance)


def test_float32_parameters_work(vocab):
    params = random_params(np.random.default_rng(0), len(vocab), 6, dtype=np.float32)
    out = "".join(generate(network_of(params), params, vocab, "ab", 50, np.random.default_rng(0), greedy=True))
    logits = reference_logits(params, vocab.encode("ab"), vocab.encode(out))
    assert list(vocab.encode(out)) == list(logits.argmax(axis=1))
