"""--time and the run's length: durations, the iteration count a budget chooses (stored, so a
resumed run goes on exactly, and equal bit for bit to --max-iters of that count), a budget
kept when the machine slows down, the defaults (a time budget and a cap in passes, schedules
per optimiser), evaluation on a fixed sample of a long held-out text, the History and
TrainingState types, progress off a terminal, and the refusals and notes at the start."""
from __future__ import annotations

import dataclasses
import math
import os

import click
import numpy as np
import pytest
from click.testing import CliRunner

import charrnn.train as train_module
from charrnn.checkpoint import History, TrainingState, load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.options import Duration
from charrnn.config import DEFAULT_MAX_PASSES, DEFAULT_TIME_BUDGET, TrainConfig
from charrnn.data import find_sources, read_corpus
from charrnn.evaluate import score_text
from charrnn.train import (EVAL_SAMPLE_PIECE, EVAL_SAMPLE_PIECES, Costs, Trainer, TrainingError,
                           evaluation_sample, fit_to_text, format_duration, iterations_within,
                           run_training, start_run, BudgetKeeper)

pytestmark = pytest.mark.usefixtures("in_tmp_path")

LINE = "It is a truth universally acknowledged, that a single man in possession of a fortune.\n"
TINY = ["--hidden-size", "8", "--seq-length", "8", "--batch-size", "2", "--eval-every", "5",
        "--checkpoint-every", "5", "--sample-every", "0", "--threads", "1"]


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def write(name: str, text: str) -> str:
    with open(name, "w", encoding="utf-8") as f:
        f.write(text)
    return name


def read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


# ------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("1h30m", 5400),
                                           ("1.5h", 5400), ("2m30s", 150), ("0.5s", 0.5)])
def test_durations(text, seconds):
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("seconds, text", [(90, "1m30s"), (300, "5m"), (5400, "1h30m"),
                                           (7, "7s"), (3600, "1h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("value, says", [("0", "not a duration"), ("0s", "longer than 0"),
                                         ("-5m", "not a duration"), ("10", "give a number with a unit"),
                                         ("10 fortnights", "not a duration"), ("5x", "not a duration"),
                                         ("", "not a duration")])
def test_bad_durations_are_refused_before_anything_is_written(value, says):
    write("t.txt", LINE * 20)
    result = run("train", "t.txt", "--time", value, expect=2)
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists("checkpoints")
    with pytest.raises(click.BadParameter):
        Duration().convert(value, None, None)


# ------------------------------------------------------------------------------- planning

def test_iterations_within_counts_evaluations_saves_and_the_end():
    config = TrainConfig(eval_every=10, checkpoint_every=20, sample_every=0)
    costs = Costs(step=0.1, evaluation=1.0, save=0.4, sample=0.0, final=2.0)
    # per iteration: 0.1 + 1.0/10 + 0.4/20 = 0.22 s; 100 s less the end (2 + 1 + 0.4)
    assert iterations_within(100.0, costs, config) == int(96.6 / 0.22)
    assert iterations_within(1.0, costs, config) == 0


def test_the_count_follows_the_pace_and_grows_only_before_the_cool_down(monkeypatch):
    path = write("t.txt", LINE * 30)
    trainer = Trainer(TrainConfig(hidden_size=8, seq_length=8, batch_size=2, max_iters=1000,
                                  decay_fraction=0.25), read_corpus(path))
    costs = Costs(step=0.01, evaluation=0.0, save=0.0, sample=0.0, final=0.0)
    now = [10.0]
    monkeypatch.setattr(train_module.time, "monotonic", lambda: now[0])
    keeper = BudgetKeeper(trainer, costs, budget=100.0, started=0.0)
    # slower than planned: 0.1 s an iteration, 110 s projected; what fits in 98 s
    trainer.iteration, now[0] = 100, 20.0
    assert keeper.check(trainer) and trainer.config.max_iters == 100 + int((98 - 20) / 0.1)
    now[0] = 21.0   # too soon to look again
    trainer.iteration = 101
    assert not keeper.check(trainer) and trainer.config.max_iters == 880
    # faster again before the cool-down (at 660 of 880): more iterations
    trainer.iteration, now[0] = 400, 30.0
    assert keeper.check(trainer) and trainer.config.max_iters == 400 + int((98 - 30) / 0.05)
    # in the cool-down, faster still: the count stays (the rate has come down already)
    trainer.iteration, now[0] = 1500, 36.0
    assert not keeper.check(trainer) and trainer.config.max_iters == 1760
    # in the cool-down and slower: the count comes down
    trainer.iteration, now[0] = 1600, 95.0
    assert keeper.check(trainer) and trainer.config.max_iters < 1760
    assert keeper.changes == 3


def test_time_chooses_the_count_and_stores_it(capfd):
    write("t.txt", LINE * 40)
    # One pass of this text takes a fraction of a second here: the budget has room for it,
    # so the count is the pass cap's, and the pace cannot move it.
    result = run("train", "t.txt", "--checkpoint", "timed.npz", "--time", "20s",
                 "--max-passes", "1", *TINY)
    checkpoint = load_checkpoint("timed.npz")
    count = checkpoint.config.max_iters
    assert checkpoint.state.iteration == count >= 1
    assert checkpoint.config.time_budget == 20.0 and checkpoint.config.max_passes == 1.0
    assert f"about {count:,} iterations in all" in result.stderr
    assert count == math.ceil(checkpoint.state.train_chars / 16)   # one pass of 16-char steps
    assert "pace" not in result.stderr

    # The same run by --max-iters of that count is the same model, bit for bit.
    run("train", "t.txt", "--checkpoint", "fixed.npz", "--max-iters", count, *TINY)
    timed, fixed = read_npz("timed.npz"), read_npz("fixed.npz")
    for key in timed.keys() - {"state", "history", "config"}:
        assert timed[key].tobytes() == fixed[key].tobytes(), key

    # Resumed without --time, it is already trained; with a new budget it goes on.
    again = run("train", "t.txt", "--checkpoint", "timed.npz", "--resume")
    assert "already trained" in again.stderr
    run("train", "t.txt", "--checkpoint", "timed.npz", "--resume", "--time", "2s",
        "--max-passes", "2", "-q")
    longer = load_checkpoint("timed.npz")
    assert longer.state.iteration == longer.config.max_iters > count


def test_defaults_a_time_budget_and_passes_and_schedules_per_optimiser():
    path = write("t.txt", LINE * 40)
    sources = find_sources([path])
    run_ = start_run(sources, "m.npz", resume=False, overrides={"hidden_size": 8})
    assert run_.time_budget == DEFAULT_TIME_BUDGET
    assert run_.trainer.length_ceiling == run_.trainer.iterations_for_passes(DEFAULT_MAX_PASSES)
    fixed = start_run(sources, "m.npz", resume=False, overrides={"hidden_size": 8,
                                                                 "max_iters": 50000})
    assert fixed.time_budget is None and fixed.trainer.config.max_iters == 50000
    assert fixed.trainer.config.max_passes == 0
    gru = TrainConfig.for_new_run(cell="gru")
    assert (gru.optimizer, gru.warmup_fraction, gru.decay_fraction) == ("adam", 0.05, 0.5)
    rnn = TrainConfig.for_new_run()
    assert (rnn.optimizer, rnn.warmup_fraction, rnn.decay_fraction) == ("adagrad", 0.1, 0.25)
    chosen = TrainConfig.for_new_run(cell="lstm", warmup_fraction=0.2)
    assert (chosen.warmup_fraction, chosen.decay_fraction) == (0.2, 0.5)


def test_a_run_of_thousands_of_passes_gets_a_note_first():
    path = write("t.txt", LINE * 10)
    notes = []
    start_run(find_sources([path]), "m.npz", resume=False,
              overrides={"hidden_size": 8, "max_iters": 36000}, note=notes.append)
    assert any("passes over it" in note and "--max-iters" in note for note in notes), notes


def test_a_chosen_batch_size_that_leaves_tiny_windows_is_refused():
    config = TrainConfig(batch_size=64)
    with pytest.raises(TrainingError, match=r"--batch-size 64 leaves windows of \d+ character"
                                            r".*--batch-size \d+ would fit --seq-length 32"):
        fit_to_text(config, 500, adjustable=("seq_length",))
    assert fit_to_text(config, 1000, adjustable=("seq_length",)).seq_length == 12   # useful
    # chosen by nobody: shrunk to fit, as before
    fitted = fit_to_text(config, 500, adjustable=("batch_size", "seq_length"))
    assert fitted.seq_length == 32 and fitted.batch_size * 34 <= 450
    write("t.txt", LINE * 6)
    result = run("train", "t.txt", "--batch-size", "64", expect=1)
    assert result.stderr.count("\n") == 1 and "would fit" in result.stderr


# ------------------------------------------------------------------------------- evaluation

def test_evaluation_sample_is_fixed_and_bounded(rng):
    short = rng.integers(0, 50, 1000).astype(np.uint8)
    assert evaluation_sample(short) is short
    long = rng.integers(0, 50, 3_000_000).astype(np.uint8)
    sample = evaluation_sample(long)
    assert len(sample) == EVAL_SAMPLE_PIECES * EVAL_SAMPLE_PIECE
    assert np.array_equal(sample[:EVAL_SAMPLE_PIECE], long[:EVAL_SAMPLE_PIECE])
    assert np.array_equal(sample[-EVAL_SAMPLE_PIECE:], long[-EVAL_SAMPLE_PIECE:])
    assert np.array_equal(sample, evaluation_sample(long))


def test_a_long_held_out_text_is_sampled_during_training_and_scored_whole_at_the_end():
    text = "".join(f"{i % 97} {LINE}" for i in range(20000))   # ~1.8 M characters
    corpus = read_corpus(write("long.txt", text))
    config = TrainConfig(hidden_size=4, seq_length=8, batch_size=4, max_iters=2, eval_every=1,
                         checkpoint_every=2, sample_every=0, learning_rate=0.05)
    trainer = Trainer(config, corpus)
    assert len(trainer.val_indices) > len(trainer.val_sample)
    run_training(trainer, "m.npz", show_progress=False, log=lambda message: None)
    saved = load_checkpoint("m.npz")
    sample_loss = score_text(trainer.network, trainer.params, trainer.val_sample).nats_per_char
    whole_loss = score_text(trainer.network, trainer.params, trainer.val_indices).nats_per_char
    assert saved.history.val_loss[-1] == sample_loss
    assert saved.state.full_val_loss == whole_loss != sample_loss
    assert saved.state.val_chars == EVAL_SAMPLE_PIECES * EVAL_SAMPLE_PIECE
    assert saved.state.val_total_chars == len(trainer.val_indices)
    info = run("info", "m.npz").stdout
    assert f"on a fixed sample of {saved.state.val_chars:,} of the" in info
    assert "all held out:" in info


# ------------------------------------------------------------------------------- types, progress

def test_history_and_state_types():
    history = History().appended(5, 80, 2.0, 2.5, 1.0).appended(10, 160, 1.8, math.nan, 2.0)
    assert history.iteration.tolist() == [5, 10] and history.chars_seen.tolist() == [80, 160]
    assert history.val_loss[0] == 2.5 and math.isnan(history.last_val_loss)
    assert np.asarray(history).shape == (2, 5) and history[1, 0] == 10
    old = {"iteration": 3, "position": 8, "chars_seen": 48, "smooth_loss": 3.0,
           "elapsed_seconds": 0.5, "text_sha256": "ab", "best_val_loss": None,
           "last_val_loss": None, "blas_threads": None}
    state = TrainingState.from_dict(old)
    assert state.to_dict() == old   # an older file's keys, no more
    assert state.corpus_files is None and state["iteration"] == 3 and state.get("rng_state", 7) == 7
    assert {**state} == old


def test_plain_progress_lines_when_stderr_is_not_a_terminal(monkeypatch):
    write("t.txt", LINE * 20)
    monkeypatch.setattr(train_module, "PLAIN_PROGRESS_SECONDS", 0.0)
    result = run("train", "t.txt", "--max-iters", "4", *TINY)
    lines = [line for line in result.stderr.splitlines() if line.startswith("iteration ")]
    assert [line.split(" (")[0] for line in lines] == [f"iteration {i} of 4" for i in range(1, 5)]
    assert "\r" not in result.stderr


def test_done_and_progress_speak_bits_with_nats_beside():
    write("t.txt", LINE * 20)
    result = run("train", "t.txt", "--max-iters", "4", *TINY)
    done = result.stderr.strip().splitlines()[-1]
    assert done.startswith("done: iteration 4 (")
    assert "passes over the text" in done and "bits/char (" in done and "nats)" in done
    checkpoint = load_checkpoint("checkpoints/t.npz")
    shown = float(done.split("train loss ")[1].split(" bits")[0])
    assert shown == pytest.approx(checkpoint.state.smooth_loss / math.log(2), abs=5e-4)


def test_an_older_checkpoint_without_a_file_list_resumes(tmp_path):
    write("t.txt", LINE * 20)
    run("train", "t.txt", "--checkpoint", "m.npz", "--max-iters", "4", *TINY)
    checkpoint = load_checkpoint("m.npz")
    older = dataclasses.replace(checkpoint.state, corpus_files=None, train_chars=None,
                                val_chars=None, val_total_chars=None)
    save_checkpoint("m.npz", dataclasses.replace(checkpoint, state=older))
    run("train", "t.txt", "--checkpoint", "m.npz", "--resume", "--max-iters", "6", "-q")
    assert load_checkpoint("m.npz").state.iteration == 6
    # resumed, the file list and the lengths are known again
    assert load_checkpoint("m.npz").state.corpus_files is not None


def test_a_held_out_text_too_large_to_score_at_the_end_stands_on_its_sample(monkeypatch):
    """Above FULL_EVAL_MAX_CHARS held-out characters (19 million of a 200 MB corpus took 33 s,
    a tenth of a 5-minute run), the end of a run scores the sample only, and says so."""
    text = "".join(f"{i % 97} {LINE}" for i in range(20000))   # ~1.8 M characters
    corpus = read_corpus(write("long.txt", text))
    config = TrainConfig(hidden_size=4, seq_length=8, batch_size=4, max_iters=2, eval_every=1,
                         checkpoint_every=2, sample_every=0, learning_rate=0.05)
    trainer = Trainer(config, corpus)
    monkeypatch.setattr(train_module, "FULL_EVAL_MAX_CHARS", len(trainer.val_indices) - 1)
    assert not trainer.scores_all_at_end
    run_training(trainer, "m.npz", show_progress=False, log=lambda message: None)
    saved = load_checkpoint("m.npz")
    assert saved.state.full_val_loss is None
    sample_loss = score_text(trainer.network, trainer.params, trainer.val_sample).nats_per_char
    assert saved.history.val_loss[-1] == sample_loss
    info = run("info", "m.npz").stdout
    assert f"on a fixed sample of {saved.state.val_chars:,} of the" in info
    assert "all held out:" not in info
