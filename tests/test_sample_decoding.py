"""charrnn.sample beyond plain draws: top-p and min-p, the loop guard (--no-repeat), beam
search, stop strings, where an unprompted sample starts, and the Stream's snapshots.

The oracle for "what the model predicts" is Network.trace (the batched training forward
pass, not the Stream that sampling uses), or a brute-force search where one is possible.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.data import Vocabulary
from charrnn.model import CELLS, ModelSpec, Network
from charrnn.sample import (GUARD_WINDOW, RepeatGuard, beam_search, filter_logits, generate,
                            is_word_char)
from test_sample import constant_params, frequencies, network_of, softmax

SHAKESPEARE = "data/tinyshakespeare.txt"
CHARS = "\n !,.:?abcdefghilmnorstuwyé"


def random_model(cell: str, vocab: Vocabulary, seed: int = 0, layers: int = 2, H: int = 8,
                 scale: float = 0.9):
    network = Network(ModelSpec(len(vocab), H, cell, layers), np.float64)
    return network, network.init_params(np.random.default_rng(seed), scale)


def text_of(network, params, vocab, prompt, **kwargs) -> str:
    length = kwargs.pop("length", 200)
    rng = np.random.default_rng(kwargs.pop("rng_seed", 0))
    return "".join(generate(network, params, vocab, prompt, length, rng, **kwargs))


def next_char_probs(network, params, vocab, prompt: str, generated: str) -> np.ndarray:
    """(len(generated), V): the model's distribution of each generated character, from trace."""
    start = prompt or "\n"
    indices = vocab.encode(start + generated)
    probs, _ = network.trace(params, indices)
    return probs[len(start) - 1:]


def log_likelihood(network, params, vocab, prompt: str, generated: str) -> float:
    """sum of log p of the generated characters under the model (float64)."""
    probs = next_char_probs(network, params, vocab, prompt, generated)
    return float(np.log(probs[np.arange(len(generated)), vocab.encode(generated)]).sum())


@pytest.fixture
def vocab():
    return Vocabulary(CHARS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small GRU trained for a few seconds on Shakespeare: its greedy text loops."""
    folder = tmp_path_factory.mktemp("gru")
    with open(SHAKESPEARE, encoding="utf-8") as f:
        (folder / "text.txt").write_text(f.read()[:300_000], encoding="utf-8")
    result = CliRunner().invoke(cli, [
        "train", str(folder / "text.txt"), str(folder / "gru.npz"), "--cell", "gru",
        "--hidden-size", "64", "--seq-length", "32", "--max-iters", "600", "--eval-every", "300",
        "--sample-every", "0", "--threads", "1", "--dtype", "float64", "-q"])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(folder / "gru.npz")
    return checkpoint.network(), checkpoint.params, checkpoint.vocab


# --------------------------------------------------------------------------- top-p, min-p

def kept(logits) -> set[int]:
    return set(np.flatnonzero(np.isfinite(logits)).tolist())


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.8, 0.95, 0.999])
@pytest.mark.parametrize("temperature", [0.4, 1.0, 2.5])
def test_top_p_keeps_the_smallest_set_of_most_likely_characters_reaching_p(rng, top_p,
                                                                            temperature):
    for _ in range(20):
        y = rng.standard_normal(30) * 2
        p = softmax(y)
        logits = y / temperature
        filter_logits(logits, temperature, top_p=top_p)
        keep = kept(logits)
        mass = p[list(keep)].sum()
        assert mass >= top_p - 1e-12                      # enough mass
        assert mass - p[list(keep)].min() < top_p         # and no character more than needed
        assert p[list(keep)].min() >= p[list(set(range(30)) - keep)].max(initial=0)
        np.testing.assert_array_equal(logits[list(keep)], (y / temperature)[list(keep)])


@pytest.mark.parametrize("min_p", [0.0, 0.05, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_min_p_keeps_exactly_the_characters_at_least_p_times_the_likeliest(rng, min_p,
                                                                           temperature):
    for _ in range(20):
        y = rng.standard_normal(25) * 3
        p = softmax(y)
        logits = y / temperature
        filter_logits(logits, temperature, min_p=min_p)
        assert kept(logits) == set(np.flatnonzero(p >= min_p * p.max() * (1 - 1e-12)).tolist())


def test_top_p_one_and_min_p_zero_keep_everything(rng):
    y = rng.standard_normal(40)
    logits = y.copy()
    filter_logits(logits, 1.0, top_p=1.0, min_p=0.0)
    np.testing.assert_array_equal(logits, y)


def test_filters_apply_in_order_top_k_then_top_p_then_min_p():
    """p = (0.5, 0.2, 0.15, 0.1, 0.05): top-k 4 leaves 0.95 of the mass; top-p 0.75 of that
    is the first three (0.5 + 0.2 = 0.7 < 0.75 * 0.95); min-p 0.35 then drops 0.15."""
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = np.log(p)
    filter_logits(logits, 1.0, top_k=4, top_p=0.75)
    assert kept(logits) == {0, 1, 2}
    filter_logits(logits, 1.0, min_p=0.35)
    assert kept(logits) == {0, 1}


@pytest.mark.parametrize("kwargs", [{"top_p": 0.6}, {"min_p": 0.2}, {"top_p": 0.9, "min_p": 0.1},
                                    {"top_k": 5, "top_p": 0.7}])
@pytest.mark.parametrize("temperature", [0.7, 1.8])
def test_a_filtered_sample_never_leaves_the_filters_set(vocab, kwargs, temperature):
    """Each generated character is in the set the filters keep from the model's distribution
    at its step (recomputed by trace), and the draws use more than one member of the sets."""
    network, params = random_model("lstm", vocab, seed=3, scale=1.5)
    out = text_of(network, params, vocab, "hello", length=400, temperature=temperature, **kwargs)
    probs = next_char_probs(network, params, vocab, "hello", out)
    not_top = 0
    for p, c in zip(probs, vocab.encode(out)):
        logits = np.log(p) / temperature
        filter_logits(logits, temperature, **kwargs)
        assert np.isfinite(logits[c])
        not_top += c != p.argmax()
    assert not_top > 10


def test_draws_among_the_survivors_follow_softmax_over_temperature():
    """Why = 0: every draw is from softmax(by / T) renormalised over min-p's set."""
    by = np.array([2.0, 1.6, 0.9, 0.0, -1.0])
    vocab = Vocabulary("abcde")
    params = constant_params(by)
    n, temperature, min_p = 30000, 2.0, 0.3   # keeps a, b, c: p / p_max = 1, 0.67, 0.33, 0.14, ...
    out = "".join(generate(network_of(params), params, vocab, "", n, np.random.default_rng(5),
                           temperature=temperature, min_p=min_p))
    expected = np.zeros(5)
    expected[:3] = softmax(by[:3] / temperature)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12
    assert np.all(np.abs(frequencies(out, vocab) - expected) < tolerance)


# --------------------------------------------------------------------------- the loop guard

def word_starts(text: str) -> list[int]:
    return [i for i, char in enumerate(text)
            if is_word_char(char) and (i == 0 or not is_word_char(text[i - 1]))]


def copies_a_run(text: str, words: int) -> bool:
    """Whether the last character of ``text`` begins the words-th word of a run of words
    (from the first letter of the first) that occurs earlier in ``text``."""
    starts = word_starts(text)
    end = len(text) - 1
    if len(starts) < words or starts[-1] != end:
        return False
    return text.find(text[starts[-words]:], 0, end) >= 0


def first_repeat(text: str, words: int) -> int | None:
    """The position of the first character at which copies_a_run holds; None if none."""
    for end in word_starts(text):
        if copies_a_run(text[:end + 1], words):
            return end
    return None


def repeated_lines(text: str) -> int:
    lines = [line for line in text.split("\n") if line.strip()]
    return len(lines) - len(set(lines))


def test_first_repeat_finds_the_copy():
    assert first_repeat("the cat sat. the cat sat", 3) == len("the cat sat. the cat ")
    assert first_repeat("the cat sat. the cat ran", 3) is None
    assert first_repeat("the cat sat. the cat ran", 2) == len("the cat sat. the ")
    assert first_repeat("a bc d abc d", 2) is None     # "bc d" is copied, but not from a word's start
    assert copies_a_run("a bc d. bc d", 2) and not copies_a_run("a bc d. bc ", 2)


@pytest.mark.parametrize("words", [2, 3, 4])
def test_the_guard_refuses_exactly_the_characters_that_would_start_a_copied_run(vocab, words):
    """At every step, the guard's refusals are the word-starting characters c for which
    first_repeat would fire at the end of text + c."""
    network, params = random_model("rnn", vocab, seed=1, scale=1.2)
    text = "the cat sat on the mat, the cat sat on the hat. " + text_of(
        network, params, vocab, "", length=200, temperature=0.6)
    guard = RepeatGuard(vocab, words)
    refusals = 0
    for i, char in enumerate(text):
        banned = set(guard.banned())
        expected = {c for c, candidate in enumerate(vocab.chars)
                    if copies_a_run(text[:i] + candidate, words)}
        assert banned == expected, (i, text[:i])
        refusals += bool(banned)
        guard.push(char)
    assert refusals > 0


def test_the_guard_removes_the_greedy_loop(trained):
    """The greedy text of the trained GRU loops (a phrase or whole lines, over and over); with
    --no-repeat 4 it repeats no run of 4 words and no line, it is the same text up to the
    point where the loop began, and it uses more than twice as many distinct words."""
    network, params, vocab = trained
    for prompt in ("ROMEO:", "First Citizen:\n", ""):
        plain = text_of(network, params, vocab, prompt, length=600, greedy=True)
        guarded = text_of(network, params, vocab, prompt, length=600, greedy=True, no_repeat=4)
        loop_at = first_repeat(prompt + plain, 4)
        assert loop_at is not None, plain                                  # it loops
        assert first_repeat(prompt + guarded, 4) is None
        assert repeated_lines(prompt + guarded) == 0
        assert len(set(guarded.split())) > 2 * len(set(plain.split()))
        assert guarded[:loop_at - len(prompt)] == plain[:loop_at - len(prompt)]
        assert guarded[loop_at - len(prompt)] != plain[loop_at - len(prompt)]


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_guard_leaves_a_sample_that_does_not_loop_unchanged(trained, cell, vocab):
    """Drawn samples with no repeated run of 4 words come out the same with the guard on;
    samples with one are the same up to it (same random seed)."""
    cases = [(trained, "ROMEO:", 1.0)] + [(random_model(cell, vocab, seed=5) + (vocab,), "", 0.5)]
    unchanged = changed = 0
    for (network, params, model_vocab), prompt, temperature in cases:
        for seed in range(12):
            plain = text_of(network, params, model_vocab, prompt, length=300, rng_seed=seed,
                            temperature=temperature)
            guarded = text_of(network, params, model_vocab, prompt, length=300, rng_seed=seed,
                              temperature=temperature, no_repeat=4)
            loop_at = first_repeat(prompt + plain, 4)
            if loop_at is None:
                assert guarded == plain
                unchanged += 1
            else:
                cut = loop_at - len(prompt)
                assert guarded[:cut] == plain[:cut] and guarded[cut] != plain[cut]
                changed += 1
    assert unchanged >= 5


def test_the_guard_window_bounds_its_memory(vocab):
    guard = RepeatGuard(vocab, 3)
    for char in itertools.islice(itertools.cycle("abc def, ghi! "), 5 * GUARD_WINDOW):
        guard.push(char)
    assert len(guard.chars) < 2 * GUARD_WINDOW


def test_the_guard_needs_two_words(vocab):
    with pytest.raises(ValueError):
        RepeatGuard(vocab, 1)


# --------------------------------------------------------------------------- beam search

@pytest.mark.parametrize("cell", list(CELLS))
def test_beam_of_one_is_greedy(vocab, cell):
    network, params = random_model(cell, vocab, seed=2, scale=1.3)
    greedy = text_of(network, params, vocab, "the ", length=150, greedy=True)
    beam = "".join(beam_search(network, params, vocab, "the ", 150, 1))
    assert beam == greedy


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("width", [2, 3, 8])
def test_beam_is_at_least_as_likely_as_greedy(vocab, cell, width):
    for seed, prompt in [(0, "a"), (1, "the "), (2, "")]:
        network, params = random_model(cell, vocab, seed=seed, scale=1.4)
        greedy = text_of(network, params, vocab, prompt, length=80, greedy=True)
        beam = "".join(beam_search(network, params, vocab, prompt, 80, width))
        assert len(beam) == 80 and set(beam) <= set(vocab.chars)
        assert (log_likelihood(network, params, vocab, prompt, beam)
                >= log_likelihood(network, params, vocab, prompt, greedy) - 1e-9)


def test_beam_on_the_trained_model_beats_greedy_and_the_guard_applies(trained):
    network, params, vocab = trained
    greedy = text_of(network, params, vocab, "ROMEO:", length=300, greedy=True)
    beam = "".join(beam_search(network, params, vocab, "ROMEO:", 300, 4))
    assert (log_likelihood(network, params, vocab, "ROMEO:", beam)
            >= log_likelihood(network, params, vocab, "ROMEO:", greedy) - 1e-9)
    guarded = "".join(beam_search(network, params, vocab, "ROMEO:", 300, 4, no_repeat=4))
    assert first_repeat("ROMEO:" + guarded, 4) is None


def test_a_wide_enough_beam_finds_the_most_likely_continuation():
    """With K >= V^(N-1) nothing is pruned: beam search equals a brute-force search."""
    vocab = Vocabulary("ab.\n")
    for seed in range(4):
        network, params = random_model("gru", vocab, seed=seed, scale=2.0)
        length = 4
        candidates = ["".join(t) for t in itertools.product(vocab.chars, repeat=length)]
        scores = [log_likelihood(network, params, vocab, "ab", c) for c in candidates]
        beam = "".join(beam_search(network, params, vocab, "ab", length, len(vocab) ** 3))
        assert beam == candidates[int(np.argmax(scores))]


def test_beam_streams_before_the_end(trained):
    """The text comes out as the hypotheses agree: the first characters are yielded long
    before the search would have finished (measured in steps of the Stream)."""
    network, params, vocab = trained
    steps = []
    stream_class = type(network.stream(params))
    original = stream_class.logits_scaled

    def counting(self):
        steps.append(1)
        return original(self)

    characters = beam_search(network, params, vocab, "ROMEO:", 2000, 3)
    stream_class.logits_scaled = counting
    try:
        first = next(characters)
    finally:
        stream_class.logits_scaled = original
    assert first in vocab.chars
    assert len(steps) < 4 * 500


# --------------------------------------------------------------------------- stop strings

@pytest.mark.parametrize("stop", [("\n",), (":",), ("e", "zz"), ("wow",)])
def test_a_stop_string_ends_the_sample_just_after_it(vocab, stop):
    network, params = random_model("rnn", vocab, seed=4, scale=1.2)
    plain = text_of(network, params, vocab, "", length=600, rng_seed=9)
    stopped = text_of(network, params, vocab, "", length=600, rng_seed=9, stop=stop)
    ends = [plain.find(s) + len(s) for s in stop if s in plain]
    assert ends, "the stop string never occurs: a weak test"
    assert stopped == plain[:min(ends)]


def test_a_stop_string_counts_only_generated_text(vocab):
    """A stop string that the prompt's end and the first generated character would form
    does not stop the sample there."""
    network, params = random_model("rnn", vocab, seed=4)
    plain = text_of(network, params, vocab, "hello:", length=80, greedy=True)
    stop = ":" + plain[0]
    stopped = text_of(network, params, vocab, "hello:", length=80, greedy=True, stop=(stop,))
    end = plain.find(stop)
    assert stopped == (plain if end < 0 else plain[:end + len(stop)])
    assert len(stopped) > 1


def test_beam_with_a_stop_string_is_the_beam_text_cut_after_it(trained):
    network, params, vocab = trained
    full = "".join(beam_search(network, params, vocab, "ROMEO:", 200, 3))
    cut = "".join(beam_search(network, params, vocab, "ROMEO:", 200, 3, stop=("\n",)))
    assert "\n" in full and cut == full[:full.index("\n") + 1]


# --------------------------------------------------------------------------- the start

def test_an_unprompted_sample_starts_as_after_a_newline(vocab):
    network, params = random_model("gru", vocab, seed=6)
    for seed in range(3):
        assert (text_of(network, params, vocab, "", rng_seed=seed)
                == text_of(network, params, vocab, "\n", rng_seed=seed))
    assert "".join(beam_search(network, params, vocab, "", 40, 2)) == "".join(
        beam_search(network, params, vocab, "\n", 40, 2))


def test_unprompted_samples_of_the_trained_model_start_like_lines(trained):
    """After a newline the model expects a capital letter (a speaker's name, a verse line);
    softmax(by), where samples used to start, spreads its mass far wider."""
    network, params, vocab = trained
    firsts = [text_of(network, params, vocab, "", length=1, rng_seed=s) for s in range(200)]
    capitals = sum(char.isupper() for char in firsts)
    by_mass = softmax(np.asarray(params["by"], np.float64))
    upper = [i for i, char in enumerate(vocab.chars) if char.isupper()]
    assert capitals / 200 > 0.6 > by_mass[upper].sum()


# --------------------------------------------------------------------------- the stream

@pytest.mark.parametrize("cell", list(CELLS))
def test_stream_restore_goes_back_to_the_snapshot(vocab, cell):
    network, params = random_model(cell, vocab, seed=7)
    stream = network.stream(params)
    for c in vocab.encode("the "):
        stream.prime(c)
    before = stream.logits_scaled().copy()
    snap = stream.snapshot()
    for c in vocab.encode("cat sat"):
        stream.feed(c)
        stream.logits_scaled()
    assert not np.allclose(stream.logits_scaled(), before)
    stream.restore(snap)
    np.testing.assert_array_equal(stream.logits_scaled(), before)
    stream.feed(int(vocab.encode("c")[0]))
    twin = network.stream(params)
    for c in vocab.encode("the c"):
        twin.prime(c)
    # prime() multiplies by Whh alone, logits_scaled() by [Why; Whh] stacked: another BLAS
    # product, which some kernels (OpenBLAS's SkylakeX) round differently in the last bit.
    np.testing.assert_allclose(stream.logits_scaled(), twin.logits_scaled(), rtol=1e-12,
                               atol=1e-13)
