"""A `charrnn page` in a real browser: headless Chromium opens it from disk and its
JavaScript computes what NumPy computes (the logits over a text, to 1e-4, for every cell with
1 and 2 layers, float32 and float64 models), draws as softmax(logits / T) says (top-k and
top-p too), writes the same text for the same seed, streams it into the page, stops when told,
and runs nothing from the checkpoint.

Driven over the DevTools protocol (tests/chromium.py). Runs only where /usr/bin/chromium
exists (``apt-get install chromium``); skipped otherwise, unless CHARRNN_REQUIRE_BROWSER is
set, as CI (`.ci/run`, which installs Chromium) does.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import Vocabulary
from charrnn.model import Network
from charrnn.sample import generate
from chromium import Browser

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '</script><img src=x onerror="document.title=\'pwned\'">'
TEXT = ("ROMEO: the quick brown fox jumps over the lazy dog.\n"
        "JULIET: \"café\" \\ 日本語 🙂 and 'quotes' " + HOSTILE + "\n") * 2
CONFIGS = [(cell, layers) for cell in ("rnn", "lstm", "gru") for layers in (1, 2)]

if os.environ.get("CHARRNN_REQUIRE_BROWSER") and not os.path.exists(CHROMIUM):
    raise RuntimeError(f"CHARRNN_REQUIRE_BROWSER is set but there is no {CHROMIUM}")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")


def make_checkpoint(path, cell, layers, dtype="float32", hidden=12, scale=0.4) -> Checkpoint:
    """A checkpoint with random weights and biases (GRU's bhn too), saved at ``path``."""
    config = TrainConfig(cell=cell, num_layers=layers, hidden_size=hidden, batch_size=2,
                         seq_length=4, dtype=dtype)
    vocab = Vocabulary.from_text(TEXT)
    network = Network(config.model_spec(len(vocab)), dtype)
    rng = np.random.default_rng([7, layers, len(cell)])
    params = network.zeros()
    params.flat[...] = rng.standard_normal(params.flat.size) * scale
    save_checkpoint(os.fspath(path), Checkpoint(
        config=config, vocab=vocab, params=params,
        optimizer_state={"adagrad": params.zeros_like()}, carry=network.zero_state(2),
        state={"iteration": 0, "position": 0, "chars_seen": 0, "smooth_loss": 1.0,
               "elapsed_seconds": 0.0}))
    return load_checkpoint(os.fspath(path))


def write_page(checkpoint_path, *options) -> str:
    result = CliRunner().invoke(cli, ["page", str(checkpoint_path), "-q", *options])
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def numpy_logits(checkpoint, text) -> np.ndarray:
    """charrnn's logits (float64 of the model's numbers) after each character but the last."""
    network, params = checkpoint.network(), checkpoint.params
    indices = checkpoint.vocab.encode(text)
    _, values = network.trace(params, indices)
    top = values[f"l{network.spec.num_layers}.h"].astype(np.float64)
    return top @ params["Why"].T.astype(np.float64) + params["by"]


@pytest.fixture(scope="module")
def browser():
    with Browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A page per (cell, layers, dtype): (page path, checkpoint)."""
    folder = tmp_path_factory.mktemp("pages")
    found = {}
    for config in CONFIGS + [("lstm", 2, "float64")]:
        cell, layers = config[:2]
        dtype = config[2] if len(config) > 2 else "float32"
        name = f"{cell}{layers}{dtype}"
        checkpoint = make_checkpoint(folder / f"{name}.npz", cell, layers, dtype)
        found[config] = (write_page(folder / f"{name}.npz", "--prompt", HOSTILE), checkpoint)
    return found


def open_page(browser, path):
    browser.open("file://" + os.path.abspath(path))
    root = browser.evaluate("[document.documentElement.getAttribute('data-page-ready'), "
                            "document.documentElement.getAttribute('data-page-error')]")
    assert root == ["1", None], root


@pytest.mark.parametrize("config", CONFIGS + [("lstm", 2, "float64")],
                         ids=lambda c: "-".join(map(str, c)))
def test_the_pages_logits_are_numpys(browser, pages, config):
    path, checkpoint = pages[config]
    open_page(browser, path)
    ours = numpy_logits(checkpoint, TEXT)
    theirs = np.array(browser.evaluate(f"charrnnPage.logitsOf({json.dumps(TEXT)})"))
    assert theirs.shape == ours.shape == (len(TEXT) - 1, len(checkpoint.vocab))
    assert np.abs(ours).max() > 1   # logits large enough for a wrong gate to show
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)


def generate_in_page(browser, **options) -> str:
    return browser.evaluate(f"charrnnPage.generate({json.dumps(options)})")


def test_seeded_generation_is_reproducible_and_top_k_1_is_greedy(browser, pages):
    path, checkpoint = pages["gru", 2]
    open_page(browser, path)
    first = generate_in_page(browser, prompt="ROMEO:", length=300, seed=11, temperature=0.9)
    assert len(first) == 300 and set(first) <= set(checkpoint.vocab.chars)
    assert generate_in_page(browser, prompt="ROMEO:", length=300, seed=11, temperature=0.9) == first
    open_page(browser, path)   # a fresh load of the page writes it again
    assert generate_in_page(browser, prompt="ROMEO:", length=300, seed=11, temperature=0.9) == first
    assert generate_in_page(browser, prompt="ROMEO:", length=300, seed=12, temperature=0.9) != first
    # top-k 1, and a top-p small enough to keep one character, are charrnn's greedy text, as
    # far as NumPy's two likeliest characters are not within float32 noise of each other
    greedy = "".join(generate(checkpoint.network(), checkpoint.params, checkpoint.vocab,
                              "ROMEO:", 40, np.random.default_rng(0), greedy=True))
    logits = numpy_logits(checkpoint, "ROMEO:" + greedy)[len("ROMEO:") - 1:]
    top2 = np.sort(logits, axis=1)[:, -2:]
    close = np.flatnonzero(top2[:, 1] - top2[:, 0] < 1e-3)
    agree = close[0] if len(close) else 40
    assert agree >= 10
    for options in ({"topK": 1}, {"topP": 0.01}):
        text = generate_in_page(browser, prompt="ROMEO:", length=40, seed=3, **options)
        assert text[:agree] == greedy[:agree], options


def test_draws_follow_softmax_over_temperature_top_k_and_top_p(browser, pages):
    """The first character after an empty prompt, drawn with 4,000 seeds, against softmax of
    the zero state's logits (each count within 5 standard deviations of its expectation)."""
    path, checkpoint = pages["lstm", 1]
    open_page(browser, path)
    logits = browser.evaluate("charrnnPage.logitsOf('ab')")[0]   # after 'a': not a zero state
    vocab = checkpoint.vocab.chars
    draws = 4000
    for temperature, top_k, top_p in ((0.5, 0, 1), (1.5, 5, 1), (1.0, 0, 0.6)):
        expected = np.exp((np.array(logits) - max(logits)) / temperature)
        order = np.argsort(-expected, kind="stable")
        keep = np.zeros(len(vocab), bool)
        if top_k:
            keep[order[:top_k]] = True
        else:
            cumulative = np.cumsum(expected[order]) / expected.sum()
            keep[order[:np.searchsorted(cumulative, top_p) + 1]] = True
        expected = np.where(keep, expected, 0)
        expected /= expected.sum()
        text = browser.evaluate(
            f"Array.from({{length: {draws}}}, function (_, seed) {{ return charrnnPage.generate("
            f"{{prompt: 'a', length: 1, seed: seed, temperature: {temperature}, topK: {top_k}, "
            f"topP: {top_p}}}); }}).join('')")
        counts = np.array([text.count(c) for c in vocab])
        assert counts.sum() == draws
        assert (counts[~keep] == 0).all(), (temperature, top_k, top_p)
        sigma = np.sqrt(draws * expected * (1 - expected)) + 1
        assert (np.abs(counts - draws * expected) < 5 * sigma).all(), (temperature, top_k, top_p)


def test_the_controls_stream_stop_and_escape(browser, pages, tmp_path):
    path, checkpoint = pages["rnn", 2]
    open_page(browser, path)
    # what came from the checkpoint and the prompt is text, never markup
    assert browser.evaluate("document.getElementById('prompt').value") == HOSTILE
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    assert "pwned" not in browser.evaluate("document.title")
    set_controls = ("document.getElementById('prompt').value = 'JULIET: ';"
                    "document.getElementById('length').value = '{n}';"
                    "document.getElementById('temperature').value = '0.8';"
                    "document.getElementById('seed').value = '5';"
                    "document.getElementById('generate').click()")
    browser.evaluate(set_controls.format(n=250))
    browser.wait_for("document.getElementById('output').getAttribute('data-done') === '1'")
    shown = browser.evaluate("document.getElementById('output').textContent")
    expected = generate_in_page(browser, prompt="JULIET: ", length=250, seed=5, temperature=0.8)
    assert shown == "JULIET: " + expected
    assert browser.evaluate("document.getElementById('status').textContent").startswith(
        "250 of 250 characters")
    assert browser.evaluate("document.querySelectorAll('img').length") == 0   # (HOSTILE chars)
    browser.screenshot(tmp_path / "shot.png")
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a long run streams (the text grows while it runs) and stops when told
    browser.evaluate(set_controls.format(n=10_000_000))
    browser.wait_for("document.getElementById('output').textContent.length > 2000")
    assert browser.evaluate("document.getElementById('stop').disabled") is False
    browser.evaluate("document.getElementById('stop').click()")
    assert browser.evaluate("document.getElementById('output').getAttribute('data-done')") == "1"
    status = browser.evaluate("document.getElementById('status').textContent")
    assert status.startswith("stopped:") and "of 10000000 characters" in status
    length = browser.evaluate("document.getElementById('output').textContent.length")
    browser.evaluate("new Promise(function (done) { setTimeout(done, 200); })")
    assert browser.evaluate("document.getElementById('output').textContent.length") == length
