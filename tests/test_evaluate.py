"""Scoring a text: score_text against a naive per-character reference, the training's
validation loss against score_text on the held-out tail, and ``charrnn eval`` against the
loss that training recorded for the same text (issue 5), with --skip-unknown.
"""
from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import eval_stream_count, read_corpus
from charrnn.evaluate import score_text
from charrnn.model import ModelSpec, Network
from charrnn.train import Trainer, run_training

LINES = ["the quick brown fox jumps over the lazy dog.", "a stitch in time saves nine!",
         "to be, or not to be: that is the question.", "all that glitters is not gold?",
         "café au lait, s'il vous plaît", "日本語のテキスト 🙂"]


def make_text(num_lines: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), num_lines)) + "\n"


def naive_score(params, indices):
    """(total nats, count) with the equations, one character at a time, in float64.

    Uses the documented partition: eval_stream_count(N) contiguous streams of N // B
    characters, each from a zero state, its first character context only."""
    p = {name.removeprefix("l1."): np.asarray(params[name], dtype=np.float64) for name in params}
    assert set(p) == {"Wxh", "Whh", "bh", "Why", "by"}
    H = p["Whh"].shape[0]
    B = eval_stream_count(len(indices))
    L = len(indices) // B
    total, count = 0.0, 0
    for b in range(B):
        stream = indices[b * L:(b + 1) * L]
        h = np.zeros(H)
        for x, target in zip(stream[:-1], stream[1:]):
            h = np.tanh(p["Wxh"][:, x] + p["Whh"] @ h + p["bh"])
            y = p["Why"] @ h + p["by"]
            total += -(y[target] - y.max() - math.log(np.exp(y - y.max()).sum()))
            count += 1
    return total, count


@pytest.mark.parametrize("n", [2, 3, 50, 1500, 2100, 5000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_text_matches_naive_reference(n, dtype):
    rng = np.random.default_rng(n)
    V, H = 7, 5
    network = Network(ModelSpec(V, H), dtype)
    params = network.zeros()
    params.flat[...] = rng.standard_normal(params.flat.size) * 0.7
    indices = rng.integers(0, V, n).astype(np.uint8)
    score = score_text(network, params, indices)
    total, count = naive_score(params, indices)
    assert score.count == count
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert score.total_nats == pytest.approx(total, rel=rtol)
    assert score.nats_per_char == pytest.approx(total / count, rel=rtol)
    assert score.bits_per_char == pytest.approx(total / count / math.log(2), rel=rtol)
    assert score.perplexity == pytest.approx(math.exp(total / count), rel=rtol)


def test_score_of_a_single_character_is_empty():
    network = Network(ModelSpec(3, 2), np.float64)
    score = score_text(network, network.zeros(), np.array([1], dtype=np.uint8))
    assert score.count == 0 and math.isnan(score.nats_per_char)


def test_uniform_model_scores_log_v():
    """All-zero weights predict uniformly: exactly log(V) nats per character."""
    network = Network(ModelSpec(9, 4), np.float64)
    score = score_text(network, network.zeros(), np.random.default_rng(0).integers(0, 9, 3000))
    assert score.nats_per_char == pytest.approx(math.log(9), rel=1e-12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained (briefly) with a held-out tail; its text, config and trainer."""
    folder = tmp_path_factory.mktemp("eval")
    text = make_text(400, seed=1)
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
    assert len(tail) > 2048   # more than one evaluation stream
    indices = trainer.vocab.encode(tail)
    assert trainer.validation_loss() == score_text(trainer.network, trainer.params, indices).nats_per_char
    total, count = naive_score(trainer.params, indices)
    assert trainer.validation_loss() == pytest.approx(total / count, rel=1e-12)
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
    B = eval_stream_count(len(tail))
    assert shown["count"] == B * (len(tail) // B - 1)


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
