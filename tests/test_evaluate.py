"""Scoring a text: score_text against the exact one-stream cross-entropy (every character but
the first, each predicted from all the text before it), the training's validation loss against
score_text on the held-out tail, and ``charrnn eval`` against the loss that training recorded
for the same text (issue 5), with --skip-unknown.

Issue 12: eval used to cut a text into streams that each started from a zero state, used each
stream's first character as context only and never scored the last N mod S characters, so a
character's score depended on the length of the file it sat in. Now every character but the
first is scored, by streams that each read the text before their segment (a warm-up), and the
figure is the exact one for a text of one stream and within EXACTNESS of it otherwise.
"""
from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import data
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import eval_segments, eval_stream_count, eval_streams, read_corpus
from charrnn.evaluate import chars_scored, score_text
from charrnn.model import ModelSpec, Network
from charrnn.train import Trainer, run_training

LINES = ["the quick brown fox jumps over the lazy dog.", "a stitch in time saves nine!",
         "to be, or not to be: that is the question.", "all that glitters is not gold?",
         "café au lait, s'il vous plaît", "日本語のテキスト 🙂"]

# How far (nats/char) the batched figure may be from the exact one-stream figure. Measured
# with trained vanilla and GRU models on the held-out Shakespeare and on 4-16 KB texts (README,
# benchmarks/eval_exactness.py): at most 1.3e-6 (the GRU on 4-16 KB texts; the vanilla model
# 1e-8); the random models here are closer still.
EXACTNESS = 2e-6
ONE_STREAM_BELOW = 2 * data.EVAL_MIN_STREAM_LENGTH   # texts shorter than this are one stream


def make_text(num_lines: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), num_lines)) + "\n"


def exact_losses(params, indices) -> np.ndarray:
    """The loss (nats) of each of characters 1..N-1, predicted from all the characters before
    it: one stream from a zero state at the start, the equations one character at a time, in
    float64 (a vanilla layer)."""
    p = {name.removeprefix("l1."): np.asarray(params[name], dtype=np.float64) for name in params}
    assert set(p) == {"Wxh", "Whh", "bh", "Why", "by"}
    h = np.zeros(p["Whh"].shape[0])
    losses = []
    for x, target in zip(indices[:-1], indices[1:]):
        h = np.tanh(p["Wxh"][:, x] + p["Whh"] @ h + p["bh"])
        y = p["Why"] @ h + p["by"]
        losses.append(-(y[target] - y.max() - math.log(np.exp(y - y.max()).sum())))
    return np.array(losses)


def naive_score(params, indices):
    """(total nats, count): the exact one-stream cross-entropy of every character but the first."""
    losses = exact_losses(params, indices)
    return float(losses.sum()), len(losses)


def random_model(V=7, H=5, dtype=np.float64, seed=0, scale=0.7):
    """A vanilla model with random weights whose recurrence forgets, as a trained model's
    does (Whh scaled to a spectral radius of 0.9; random weights of this size would make it
    chaotic, and then no finite warm-up, nor any stream but one, could give the exact figure)."""
    rng = np.random.default_rng(seed)
    network = Network(ModelSpec(V, H), dtype)
    params = network.zeros()
    params.flat[...] = rng.standard_normal(params.flat.size) * scale
    Whh = params["l1.Whh"]
    Whh *= 0.9 / np.abs(np.linalg.eigvals(Whh.astype(np.float64))).max()
    return network, params


@pytest.mark.parametrize("n", [2, 3, 50, 1500, 2047, 2048, 2100, 5000, 40_000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_text_is_the_exact_one_stream_figure(n, dtype):
    """Every character but the first is scored; a text of one stream gets exactly the
    one-stream cross-entropy, a longer one (several streams) is within EXACTNESS of it."""
    rng = np.random.default_rng(n)
    network, params = random_model(dtype=dtype, seed=n)
    indices = rng.integers(0, 7, n).astype(np.uint8)
    score = score_text(network, params, indices)
    total, count = naive_score(params, indices)
    assert score.count == count == n - 1 == chars_scored(n)
    streams = eval_stream_count(n)
    assert (streams == 1) == (n < ONE_STREAM_BELOW)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    if streams == 1:
        assert score.total_nats == pytest.approx(total, rel=rtol)
    else:
        assert abs(score.nats_per_char - total / count) <= EXACTNESS + rtol * total / count
    # the exact figure is what one stream gives, whatever the length
    one = score_text(network, params, indices, num_streams=1)
    assert one.total_nats == pytest.approx(total, rel=rtol)
    assert score.bits_per_char == pytest.approx(score.nats_per_char / math.log(2), rel=1e-12)
    assert score.perplexity == pytest.approx(math.exp(score.nats_per_char), rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 100, 2047, 2048, 2049, 3071, 3072, 33_000, 33_023,
                               40_000, 100_001])
def test_every_character_but_the_first_is_scored_once(n):
    """The layout covers characters 1..N-1 exactly once: stream 0 from the start, streams
    1..S-1 after their warm-up, the last stream to the end (no N mod S left out)."""
    layout = eval_segments(n)
    S, W = layout.num_streams, layout.warmup
    assert S == eval_stream_count(n)
    if S == 1:
        assert (W, layout.segment, layout.remainder) == (0, max(n - 1, 0), 0)
        return
    assert W == data.EVAL_WARMUP and layout.segment >= 1 and 0 <= layout.remainder < S
    scored = list(range(1, W + layout.segment + 1))                   # stream 0
    for s in range(1, S):
        first = s * layout.segment + W + 1
        scored += range(first, first + layout.segment)
    scored += range(scored[-1] + 1, scored[-1] + 1 + layout.remainder)  # the last stream's tail
    assert scored == list(range(1, n))
    # and the streams hold those characters: column s starts at s * segment
    text = np.arange(n) % 251
    streams = eval_streams(text, layout)
    assert streams.shape == (W + layout.segment + 1, S)
    for s in range(S):
        assert np.array_equal(streams[:, s], text[s * layout.segment:][:len(streams)])


@pytest.mark.parametrize("warmup", [0, 1, 5])
@pytest.mark.parametrize("streams", [2, 3, 7, 32])
def test_a_memoryless_model_scores_every_character_exactly(streams, warmup):
    """With Whh = 0 each prediction depends on the current character only, so the warm-up does
    not matter and any layout that scores each target once, after the right input, gives the
    exact total: a check of the layout whatever the warm-up and stream count."""
    network, params = random_model(seed=11)
    params["l1.Whh"][...] = 0
    indices = np.random.default_rng(3).integers(0, 7, 1000 + streams).astype(np.uint8)
    score = score_text(network, params, indices, num_streams=streams, warmup=warmup)
    total, count = naive_score(params, indices)
    assert score.count == count
    assert score.total_nats == pytest.approx(total, rel=1e-12)


def test_a_character_scores_the_same_whatever_the_length_of_its_text():
    """The issue: with streams from zero states, the same characters scored differently
    depending on the length of the file they sat in. Now the total of text[:n] is the exact
    sum of the losses of its characters 1..n-1, within EXACTNESS per character, for every n
    (crossing the lengths where the stream count changes); zero-state streams (warm-up 0)
    would not be."""
    network, params = random_model(seed=5)
    M = data.EVAL_MIN_STREAM_LENGTH   # the stream count changes at multiples of M
    indices = np.random.default_rng(5).integers(0, 7, 33 * M).astype(np.uint8)
    cumulative = np.concatenate([[0.0], np.cumsum(exact_losses(params, indices))])
    lengths = [2, 1000, 2 * M - 1, 2 * M, 2 * M + 1, 3 * M - 1, 3 * M, 3 * M + 1, 12_345,
               32 * M - 1, 32 * M, 32 * M + 1, 33 * M]
    for n in lengths:
        score = score_text(network, params, indices[:n])
        assert score.count == n - 1
        assert abs(score.total_nats - cumulative[n - 1]) <= EXACTNESS * (n - 1), n
    # what the old layout did (each stream from a zero state) is far outside the bound
    old = score_text(network, params, indices, warmup=0)
    assert abs(old.total_nats - cumulative[-1]) > 10 * EXACTNESS * (len(indices) - 1)


def test_a_longer_warm_up_only_brings_the_figure_closer():
    network, params = random_model(seed=9)
    indices = np.random.default_rng(9).integers(0, 7, 20_000).astype(np.uint8)
    exact = score_text(network, params, indices, num_streams=1).nats_per_char
    gaps = [abs(score_text(network, params, indices, warmup=w).nats_per_char - exact)
            for w in (0, 2, 8)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_score_of_a_single_character_is_empty():
    network = Network(ModelSpec(3, 2), np.float64)
    score = score_text(network, network.zeros(), np.array([1], dtype=np.uint8))
    assert score.count == 0 and math.isnan(score.nats_per_char)


def test_uniform_model_scores_log_v():
    """All-zero weights predict uniformly: exactly log(V) nats per character."""
    network = Network(ModelSpec(9, 4), np.float64)
    score = score_text(network, network.zeros(), np.random.default_rng(0).integers(0, 9, 3000))
    assert score.count == 2999
    assert score.nats_per_char == pytest.approx(math.log(9), rel=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_are_within_the_bound_too(cell):
    rng = np.random.default_rng(2)
    network = Network(ModelSpec(7, 6, cell=cell, num_layers=2), np.float64)
    params = network.zeros()
    params.flat[...] = rng.standard_normal(params.flat.size) * 0.7
    indices = rng.integers(0, 7, 9000).astype(np.uint8)
    score = score_text(network, params, indices)
    exact = score_text(network, params, indices, num_streams=1)
    assert eval_stream_count(len(indices)) > 1 and score.count == exact.count == 8999
    assert abs(score.nats_per_char - exact.nats_per_char) <= EXACTNESS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained (briefly) with a held-out tail; its text, config and trainer."""
    folder = tmp_path_factory.mktemp("eval")
    text = make_text(600, seed=1)   # its held-out quarter is long enough for two streams
    text_file = folder / "corpus.txt"
    text_file.write_text(text, encoding="utf-8")
    config = TrainConfig(hidden_size=24, seq_length=12, batch_size=4, learning_rate=0.1,
                         max_iters=60, eval_every=25, checkpoint_every=1000, sample_every=0,
                         val_fraction=0.25, dtype="float64", random_seed=3)
    trainer = Trainer(config, read_corpus(text_file))
    run_training(trainer, str(folder / "corpus.npz"), show_progress=False, log=lambda m: None)
    return folder, text, config, trainer


def held_out_tail(text: str, fraction: float) -> str:
    return text[len(text) - int(len(text) * fraction):]


def test_validation_loss_is_score_of_the_held_out_tail(trained):
    _, text, config, trainer = trained
    tail = held_out_tail(text, config.val_fraction)
    assert len(tail) >= ONE_STREAM_BELOW   # more than one evaluation stream
    indices = trainer.vocab.encode(tail)
    assert trainer.validation_loss() == score_text(trainer.network, trainer.params, indices).nats_per_char
    total, count = naive_score(trainer.params, indices)
    assert count == len(tail) - 1
    assert abs(trainer.validation_loss() - total / count) <= EXACTNESS
    # and it is what the history recorded at the end of training
    assert trainer.history[-1, 3] == trainer.validation_loss()


def parse_eval(stdout: str) -> dict:
    numbers = {}
    for key, pattern in [("nats", r"([0-9.]+)\s*nats"), ("bits", r"([0-9.]+)\s*bits"),
                         ("perplexity", r"perplexity\s*([0-9.]+)"),
                         ("count", r"([0-9,]+)\s*characters scored")]:
        match = re.search(pattern, stdout)
        assert match, f"no {key} in {stdout!r}"
        numbers[key] = float(match.group(1).replace(",", ""))
    return numbers


def run_eval(args):
    result = CliRunner().invoke(cli, ["eval", *args, "-q"], catch_exceptions=False)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_cli_eval_of_the_tail_agrees_with_training(trained, monkeypatch):
    """Issue 5: ``charrnn eval`` on exactly the held-out text prints the validation loss that
    training recorded (in the checkpoint and the CSV history)."""
    folder, text, config, trainer = trained
    monkeypatch.chdir(folder)
    tail = held_out_tail(text, config.val_fraction)
    (folder / "tail.txt").write_text(tail, encoding="utf-8")
    result = run_eval(["tail.txt", "--checkpoint", "corpus.npz"])
    assert result.exit_code == 0, result.stderr
    shown = parse_eval(result.stdout)

    recorded = load_checkpoint(folder / "corpus.npz").state["last_val_loss"]
    with open(folder / "corpus.csv", newline="") as f:
        csv_val = float(list(csv.DictReader(f))[-1]["val_loss"])
    assert shown["nats"] == pytest.approx(recorded, abs=5e-5)
    assert shown["nats"] == pytest.approx(csv_val, abs=1e-4)
    assert shown["bits"] == pytest.approx(recorded / math.log(2), abs=5e-5)
    assert shown["perplexity"] == pytest.approx(math.exp(recorded), abs=5e-3)
    assert shown["count"] == len(tail) - 1   # every character but the first


def test_cli_eval_unknown_characters_named(trained, monkeypatch):
    folder, *_ = trained
    monkeypatch.chdir(folder)
    (folder / "odd.txt").write_text("the quick § fox € jumps\n", encoding="utf-8")
    result = run_eval(["odd.txt", "--checkpoint", "corpus.npz"])
    assert result.exit_code == 1
    assert "'§'" in result.stderr and "'€'" in result.stderr
    assert result.stdout == ""


def test_cli_eval_skip_unknown(trained, monkeypatch):
    """--skip-unknown leaves the strangers out (as if deleted) and reports how many."""
    folder, text, config, _ = trained
    monkeypatch.chdir(folder)
    clean = held_out_tail(text, 0.3)
    odd = clean[:100] + "§" + clean[100:900] + "€€" + clean[900:] + "§"
    (folder / "clean.txt").write_text(clean, encoding="utf-8")
    (folder / "odd.txt").write_text(odd, encoding="utf-8")
    expected = parse_eval(run_eval(["clean.txt", "--checkpoint", "corpus.npz"]).stdout)
    result = run_eval(["odd.txt", "--checkpoint", "corpus.npz", "--skip-unknown"])
    assert result.exit_code == 0, result.stderr
    assert parse_eval(result.stdout) == expected
    assert re.search(r"\b4\b[^0-9]*(unknown|skipped)", result.stdout + result.stderr)


@pytest.mark.parametrize("content, expected", [("", "empty"), ("a", "short")])
def test_cli_eval_too_little_text(trained, monkeypatch, content, expected):
    folder, *_ = trained
    monkeypatch.chdir(folder)
    (folder / "tiny.txt").write_text(content, encoding="utf-8")
    result = run_eval(["tiny.txt", "--checkpoint", "corpus.npz"])
    assert result.exit_code == 1 and expected in result.stderr
    assert result.stdout == ""


def test_cli_eval_missing_file_and_checkpoint(trained, monkeypatch):
    folder, *_ = trained
    monkeypatch.chdir(folder)
    result = run_eval(["nope.txt", "--checkpoint", "corpus.npz"])
    assert result.exit_code != 0 and "nope.txt" in result.stderr
    (folder / "ok.txt").write_text("the dog\n", encoding="utf-8")
    result = run_eval(["ok.txt", "--checkpoint", "missing.npz"])
    assert result.exit_code == 1 and "missing.npz" in result.stderr


def test_cli_eval_best_uses_the_best_checkpoint(trained, monkeypatch):
    folder, text, config, trainer = trained
    monkeypatch.chdir(folder)
    tail = held_out_tail(text, config.val_fraction)
    (folder / "tail.txt").write_text(tail, encoding="utf-8")
    result = run_eval(["tail.txt", "--checkpoint", "corpus.npz", "--best"])
    assert result.exit_code == 0, result.stderr
    best = load_checkpoint(folder / "corpus.best.npz").state["best_val_loss"]
    assert best == np.nanmin(trainer.history[:, 3])
    assert parse_eval(result.stdout)["nats"] == pytest.approx(best, abs=5e-5)
