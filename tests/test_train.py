"""Training through Trainer and run_training: the loss falls, runs are deterministic, and
resuming (after --max-iters or after Ctrl-C) continues exactly where the run stopped,
bit for bit; the history, its CSV file and the best checkpoint are kept along the way.
"""
from __future__ import annotations

import csv
import json
import math
import signal

import numpy as np
import pytest

from charrnn.checkpoint import HISTORY_COLUMNS, load_checkpoint
from charrnn.config import TrainConfig, resumed_config
from charrnn.data import WindowCursor, make_streams, read_corpus, split_validation
from charrnn.train import Trainer, TrainingError, best_path, history_path, run_training

LINES = ["the quick brown fox jumps over the lazy dog.", "a stitch in time saves nine!",
         "to be, or not to be: that is the question.", "all that glitters is not gold?",
         "café au lait, s'il vous plaît", "日本語のテキスト 🙂"]
ELAPSED = HISTORY_COLUMNS.index("elapsed_seconds")
WALL_CLOCK_STATE = ("elapsed_seconds",)


def make_text(num_lines: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), num_lines)) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(make_text(300), encoding="utf-8")
    return read_corpus(path)


def small_config(**changes) -> TrainConfig:
    """A tiny model at a constant learning rate (the schedule has tests of its own)."""
    values = dict(hidden_size=16, seq_length=8, batch_size=3, learning_rate=0.1, max_iters=40,
                  eval_every=7, checkpoint_every=9, sample_every=0, val_fraction=0.1,
                  dtype="float64", random_seed=5, warmup_fraction=0.0, decay_fraction=0.0)
    values.update(changes)
    return TrainConfig(**values)


def train(config, corpus, path, checkpoint=None):
    trainer = Trainer(config, corpus, checkpoint)
    outcome = run_training(trainer, str(path), show_progress=False, log=lambda message: None)
    return trainer, outcome


def resume(path, corpus, **overrides):
    saved = load_checkpoint(path)
    return train(resumed_config(saved.config, overrides), corpus, path, saved)


def read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def assert_identical_checkpoints(path_a, path_b, compare_history=True, ignore=()):
    """Every array bit for bit; state and history equal except wall-clock time."""
    a, b = read_npz(path_a), read_npz(path_b)
    assert a.keys() == b.keys()
    for key in a.keys() - {"state", "history", *ignore}:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key
    state_a, state_b = json.loads(str(a["state"])), json.loads(str(b["state"]))
    for key in WALL_CLOCK_STATE:
        state_a.pop(key), state_b.pop(key)
    if not compare_history:
        for state in (state_a, state_b):
            state.pop("best_val_loss", None)
    assert state_a == state_b
    if compare_history:
        history_a, history_b = (np.delete(h, ELAPSED, axis=1) for h in (a["history"], b["history"]))
        np.testing.assert_array_equal(history_a, history_b)


def read_csv_without_elapsed(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [row[:ELAPSED] + row[ELAPSED + 1:] for row in rows]


# --- learning ---------------------------------------------------------------------------

def test_loss_falls_well_below_log_v(corpus, tmp_path):
    """A few hundred iterations on a repetitive text take the loss from log(V) (uniform
    guess at initialisation) to well under 0.6 log(V), on training and held-out text."""
    config = small_config(hidden_size=32, seq_length=16, batch_size=4, max_iters=300,
                          eval_every=100, checkpoint_every=1000, dtype="float32")
    trainer = Trainer(config, corpus)
    log_v = math.log(len(corpus.vocab))
    losses = [trainer.step() for _ in range(config.max_iters)]
    assert losses[0] == pytest.approx(log_v, abs=0.02)
    assert np.mean(losses[-20:]) < 0.6 * log_v
    assert trainer.validation_loss() < 0.6 * log_v
    assert trainer.smooth_loss < log_v


def test_step_counts_iterations_and_characters(corpus):
    config = small_config()
    trainer = Trainer(config, corpus)
    for i in range(1, 6):
        trainer.step()
        assert trainer.iteration == i
        assert trainer.chars_seen == i * config.seq_length * config.batch_size


def test_text_too_short_is_a_training_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghij" * 3, encoding="utf-8")
    with pytest.raises(TrainingError):
        Trainer(small_config(seq_length=16, batch_size=4), read_corpus(path))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_a_training_error(corpus, tmp_path):
    trainer = Trainer(small_config(), corpus)
    trainer.params["Why"][0, 0] = math.inf
    with pytest.raises(TrainingError, match="diverged"):
        trainer.step()


# --- determinism and exact resume -------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_settings_give_identical_checkpoints(corpus, tmp_path, dtype):
    config = small_config(dtype=dtype)
    train(config, corpus, tmp_path / "a.npz")
    train(config, corpus, tmp_path / "b.npz")
    assert_identical_checkpoints(tmp_path / "a.npz", tmp_path / "b.npz")
    assert read_npz(tmp_path / "a.npz")["params.l1.Wxh"].dtype == np.dtype(dtype)


def test_another_random_seed_gives_other_weights(corpus, tmp_path):
    a, _ = train(small_config(random_seed=1), corpus, tmp_path / "a.npz")
    b, _ = train(small_config(random_seed=2), corpus, tmp_path / "b.npz")
    for name in ("l1.Wxh", "l1.Whh", "Why"):
        assert not np.array_equal(a.params[name], b.params[name])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_after_max_iters_gives_identical_model(corpus, tmp_path, dtype):
    """40 iterations in one run versus 20, then resumed to 40: parameters, Adagrad
    memories, hidden states, vocabulary, config and state (but wall-clock time) identical.
    eval_every 7 and checkpoint_every 9 do not divide 20."""
    train(small_config(dtype=dtype), corpus, tmp_path / "one.npz")
    _, first = train(small_config(dtype=dtype, max_iters=20), corpus, tmp_path / "two.npz")
    assert first.finished and load_checkpoint(tmp_path / "two.npz").state["iteration"] == 20
    trainer, outcome = resume(tmp_path / "two.npz", corpus, max_iters=40)
    assert outcome.finished and trainer.iteration == 40
    assert_identical_checkpoints(tmp_path / "one.npz", tmp_path / "two.npz", compare_history=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_after_max_iters_gives_identical_history(corpus, tmp_path, dtype):
    """A run stopped at --max-iters 20 and resumed to 40 ends with the same model as a single
    run, and the same history apart from one extra row: the evaluation that really was made
    at the end of the first run (iteration 20, off the eval_every grid of 7)."""
    train(small_config(dtype=dtype), corpus, tmp_path / "one.npz")
    train(small_config(dtype=dtype, max_iters=20), corpus, tmp_path / "two.npz")
    resume(tmp_path / "two.npz", corpus, max_iters=40)
    assert_identical_checkpoints(tmp_path / "one.npz", tmp_path / "two.npz", compare_history=False)

    one, two = (load_checkpoint(tmp_path / name).history for name in ("one.npz", "two.npz"))
    end_of_first_run = two[:, 0] == 20
    assert end_of_first_run.sum() == 1 and not (one[:, 0] == 20).any()
    np.testing.assert_array_equal(np.delete(one, ELAPSED, axis=1),
                                  np.delete(two[~end_of_first_run], ELAPSED, axis=1))
    csv_one, csv_two = (read_csv_without_elapsed(tmp_path / name) for name in ("one.csv", "two.csv"))
    assert csv_one == [row for row in csv_two if row[0] != "20"]
    assert_identical_checkpoints(tmp_path / "one.best.npz", tmp_path / "two.best.npz",
                                 compare_history=False)


SCHEDULE = {"warmup_fraction": 0.15, "decay_fraction": 0.5}   # of 40: warm-up to 6, cool-down from 20


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("schedule, stop", [({}, 13), (SCHEDULE, 3), (SCHEDULE, 25)],
                         ids=["constant-lr", "stopped-in-warmup", "stopped-in-cooldown"])
def test_resume_after_interrupt_gives_identical_checkpoints(corpus, tmp_path, dtype, schedule,
                                                            stop, monkeypatch,
                                                            sigint_as_in_a_terminal):
    """SIGINT at iteration ``stop`` saves and stops; resuming to 40 matches an uninterrupted
    run in everything, history and best checkpoint included. With a schedule the stop falls
    where the rate is not the peak, so the first update after the resume must take the
    scheduled rate, not the one Adagrad starts with."""
    config = small_config(dtype=dtype, **schedule)
    train(config, corpus, tmp_path / "one.npz")

    trainer = Trainer(config, corpus)
    real_step = trainer.step

    def step_then_interrupt():
        loss = real_step()
        if trainer.iteration == stop:
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(trainer, "step", step_then_interrupt)
    before = signal.getsignal(signal.SIGINT)
    outcome = run_training(trainer, str(tmp_path / "two.npz"), show_progress=False,
                           log=lambda message: None)
    assert not outcome.finished and outcome.signal_number == signal.SIGINT
    assert load_checkpoint(tmp_path / "two.npz").state["iteration"] == stop
    # the handler is restored afterwards
    assert signal.getsignal(signal.SIGINT) is before

    resume(tmp_path / "two.npz", corpus)
    assert_identical_checkpoints(tmp_path / "one.npz", tmp_path / "two.npz")
    assert (read_csv_without_elapsed(tmp_path / "one.csv")
            == read_csv_without_elapsed(tmp_path / "two.csv"))
    assert_identical_checkpoints(tmp_path / "one.best.npz", tmp_path / "two.best.npz")


def test_each_update_uses_the_scheduled_learning_rate(corpus, monkeypatch):
    """Warm-up over 4 iterations, cool-down over the last half of 10: the learning rates
    Adagrad is given, worked out by hand."""
    peak = 0.2
    config = small_config(learning_rate=peak, max_iters=10, warmup_fraction=0.4, decay_fraction=0.5)
    trainer = Trainer(config, corpus)
    used = []
    real_update = trainer.optimizer.update

    def update(param, grad):
        used.append(trainer.optimizer.learning_rate)
        real_update(param, grad)

    monkeypatch.setattr(trainer.optimizer, "update", update)
    for _ in range(config.max_iters):
        trainer.step()
    by_hand = [peak * f for f in (1 / 4, 2 / 4, 3 / 4, 1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5)]
    np.testing.assert_allclose(used, by_hand, rtol=1e-12)


def test_resume_across_stream_wrap(corpus, tmp_path):
    """Long enough for the streams to wrap (hidden state reset) after the stop at 31."""
    def config(max_iters):
        return small_config(seq_length=32, batch_size=8, max_iters=max_iters, eval_every=50,
                            checkpoint_every=50)

    train_part, _ = split_validation(corpus.indices, 0.1)
    cursor = WindowCursor(make_streams(train_part, 8), 32)
    restarts = [i + 1 for i in range(60) if cursor.next_window()[2]]
    assert restarts[0] == 1 and any(31 < i <= 60 for i in restarts[1:])
    train(config(60), corpus, tmp_path / "one.npz")
    train(config(31), corpus, tmp_path / "two.npz")
    resume(tmp_path / "two.npz", corpus, max_iters=60)
    assert_identical_checkpoints(tmp_path / "one.npz", tmp_path / "two.npz", compare_history=False)


def test_resumed_trainer_restores_every_field(corpus, tmp_path):
    trainer, _ = train(small_config(max_iters=17), corpus, tmp_path / "m.npz")
    restored = Trainer(trainer.config, corpus, load_checkpoint(tmp_path / "m.npz"))
    for name in ("iteration", "position", "chars_seen", "smooth_loss", "best_val_loss"):
        assert getattr(restored, name) == getattr(trainer, name), name
    assert np.array_equal(restored.params.flat, trainer.params.flat)
    assert restored.optimizer_state.keys() == trainer.optimizer_state.keys() == {"adagrad"}
    for slot in trainer.optimizer_state:
        assert np.array_equal(restored.optimizer_state[slot].flat,
                              trainer.optimizer_state[slot].flat)
    assert restored.carry.keys() == trainer.carry.keys() == {"l1.h"}
    for name in trainer.carry:
        assert np.array_equal(restored.carry[name], trainer.carry[name]), name
    assert restored.rng.bit_generator.state == trainer.rng.bit_generator.state
    np.testing.assert_array_equal(restored.history, trainer.history)


# --- history, CSV and best checkpoint ---------------------------------------------------

def test_history_rows_csv_and_best_checkpoint(corpus, tmp_path):
    path = tmp_path / "m.npz"
    trainer, _ = train(small_config(max_iters=30, eval_every=7), corpus, path)
    history = trainer.history
    assert history[:, 0].tolist() == [7, 14, 21, 28, 30]
    assert history[:, 1].tolist() == [i * 8 * 3 for i in (7, 14, 21, 28, 30)]
    assert np.all(history[:, 4] >= 0) and np.all(np.diff(history[:, 4]) >= 0)
    assert np.isfinite(history[:, 3]).all()

    assert history_path(str(path)) == str(tmp_path / "m.csv")
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(HISTORY_COLUMNS)
    assert [int(r["iteration"]) for r in rows] == [7, 14, 21, 28, 30]
    for row, expected in zip(rows, history):
        assert float(row["train_loss"]) == pytest.approx(expected[2], abs=1e-6)
        assert float(row["val_loss"]) == pytest.approx(expected[3], abs=1e-6)

    assert best_path(str(path)) == str(tmp_path / "m.best.npz")
    best = load_checkpoint(tmp_path / "m.best.npz")
    lowest = int(np.argmin(history[:, 3]))
    assert best.state["iteration"] == history[lowest, 0]
    assert best.state["best_val_loss"] == history[lowest, 3]
    np.testing.assert_array_equal(best.history, history[:lowest + 1])


def test_best_checkpoint_holds_the_best_model_not_the_last(corpus, tmp_path):
    """Make validation worse after the first evaluation (by a huge learning rate): the
    best file must keep the earlier model."""
    path = tmp_path / "m.npz"
    trainer, _ = train(small_config(max_iters=10, eval_every=5, learning_rate=0.1), corpus, path)
    saved = load_checkpoint(path)
    worse = resumed_config(saved.config, {"max_iters": 20, "learning_rate": 50.0})
    trainer, _ = train(worse, corpus, path, saved)
    history = trainer.history
    assert history[-1, 3] > history[:, 3].min()
    best = load_checkpoint(tmp_path / "m.best.npz")
    assert best.state["iteration"] == history[np.argmin(history[:, 3]), 0]
    assert best.state["iteration"] < 20
    assert load_checkpoint(path).state["iteration"] == 20


def test_history_continues_on_resume(corpus, tmp_path):
    path = tmp_path / "m.npz"
    train(small_config(max_iters=14, eval_every=7), corpus, path)
    resume(path, corpus, max_iters=28)
    with open(tmp_path / "m.csv", newline="") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [7, 14, 21, 28]


def test_no_validation_text(corpus, tmp_path):
    path = tmp_path / "m.npz"
    trainer, outcome = train(small_config(val_fraction=0.0, max_iters=14), corpus, path)
    assert outcome.finished
    assert math.isnan(trainer.validation_loss())
    assert np.isnan(trainer.history[:, 3]).all()
    assert load_checkpoint(path).state["iteration"] == 14


def test_periodic_checkpoints(corpus, tmp_path, monkeypatch):
    """A checkpoint is written every checkpoint_every iterations and at the end."""
    import charrnn.train as train_module
    saved_at = []
    real_save = train_module.save_checkpoint

    def spy(path, checkpoint):
        if not str(path).endswith(".best.npz"):
            saved_at.append(checkpoint.state["iteration"])
        real_save(path, checkpoint)

    monkeypatch.setattr(train_module, "save_checkpoint", spy)
    train(small_config(max_iters=20, checkpoint_every=9), corpus, tmp_path / "m.npz")
    assert saved_at == [9, 18, 20]


def test_training_sample_leaves_training_unchanged(corpus, tmp_path):
    """--sample-every draws from its own RNG: the model is the same with or without it."""
    messages = []
    trainer = Trainer(small_config(max_iters=20, sample_every=5), corpus)
    run_training(trainer, str(tmp_path / "a.npz"), show_progress=False, log=messages.append)
    assert sum("sample" in m for m in messages) == 4
    train(small_config(max_iters=20, sample_every=0), corpus, tmp_path / "b.npz")
    assert_identical_checkpoints(tmp_path / "a.npz", tmp_path / "b.npz", ignore=["config"])


def test_a_validation_loss_that_overflows_stops_training_with_advice(corpus, tmp_path,
                                                                      monkeypatch):
    """Weights on their way to blowing up overflow in the validation pass first: training
    stops with the divergence advice, and no NaN enters the history."""
    import charrnn.train as train_module
    from charrnn.evaluate import Score
    monkeypatch.setattr(train_module, "score_text",
                        lambda network, params, indices: Score(math.nan, 10))
    trainer = Trainer(small_config(), corpus)
    with pytest.raises(TrainingError, match="learning-rate"):
        run_training(trainer, str(tmp_path / "m.npz"), show_progress=False, log=lambda m: None)
    assert len(trainer.history) == 0


def test_a_signal_in_the_last_iteration_still_finishes(corpus, tmp_path, monkeypatch,
                                                      sigint_as_in_a_terminal):
    """A Ctrl-C that arrives while the last iteration runs: the run has saved its end, so it
    is reported finished, not interrupted (no 'to continue' advice for a finished model)."""
    config = small_config(max_iters=5)
    trainer = Trainer(config, corpus)
    real_step = trainer.step

    def step_and_interrupt_at_the_end():
        loss = real_step()
        if trainer.iteration == config.max_iters:
            signal.raise_signal(signal.SIGINT)
        return loss
    monkeypatch.setattr(trainer, "step", step_and_interrupt_at_the_end)
    outcome = run_training(trainer, str(tmp_path / "m.npz"), show_progress=False,
                           log=lambda message: None)
    assert outcome.finished
    assert load_checkpoint(tmp_path / "m.npz").state["iteration"] == 5


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(corpus, tmp_path, monkeypatch):
    """A background job (``&`` in a script, ``nohup``) starts with SIGINT ignored, so that a
    Ctrl-C meant for the terminal does not reach it: training goes on to the end, and the
    handler is still SIG_IGN afterwards."""
    config = small_config(max_iters=6)
    trainer = Trainer(config, corpus)
    real_step = trainer.step

    def step_then_interrupt():
        loss = real_step()
        if trainer.iteration == 2:
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(trainer, "step", step_then_interrupt)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outcome = run_training(trainer, str(tmp_path / "m.npz"), show_progress=False,
                               log=lambda message: None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcome.finished
    assert load_checkpoint(tmp_path / "m.npz").state["iteration"] == 6
