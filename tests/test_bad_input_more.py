"""Bad input, round 2 (issue 9): output errors, encodings, sizes, truthful messages, one
shape for every command, -q, large vocabularies and overfitting.

As in test_bad_input.py: every failure is a non-zero exit, a one-line message on stderr, no
traceback, and no file of the user's changed. Output errors are tested with real processes
(a full disk is /dev/full, a closed stdout is ``>&-``, an encoding is PYTHONIOENCODING).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn.evaluate
import charrnn.sample
import charrnn.train
from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.data import read_corpus
from charrnn.evaluate import eval_window_steps, score_text
from charrnn.sample import NOISE_BLOCK, generate, noise_block_rows
from charrnn.train import OVERFIT_PATIENCE, overfitting_message, rising_streak

WORDS = "the quick brown fox jumps over a lazy dog café 🙂 naïve".split()
TINY = ["--hidden-size", "8", "--seq-length", "8", "--batch-size", "2", "--max-iters", "5",
        "--eval-every", "5", "--checkpoint-every", "5", "--sample-every", "0", "-q"]
BIG = str(10**400)


def make_text(seed: int = 0, n_words: int = 150) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n_words)) + "\n"


def run(*args, **kwargs):
    return CliRunner(**kwargs).invoke(cli, [str(arg) for arg in args], catch_exceptions=True)


def snapshot(folder) -> dict:
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def one_line_error(result, code: int = 1) -> str:
    """The command failed with ``code``, no traceback, and stderr is one line: return it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"raised {result.exception!r}\n{result.output}")
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if code == 1:
        assert len(lines) == 1, result.stderr
    return lines[-1]


def charrnn_process(*args, stdout=subprocess.PIPE, env=None, shell_redirect="", flags=()):
    """Run ``python -m charrnn ARGS`` for real; ``shell_redirect`` e.g. ``>&-``."""
    command = [sys.executable, *flags, "-m", "charrnn", *[str(arg) for arg in args]]
    environment = {**os.environ, **(env or {})}
    if shell_redirect:
        return subprocess.run(["sh", "-c", f'"$@" {shell_redirect}', "sh", *command],
                              stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=environment,
                              timeout=60)
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=environment,
                          timeout=60)


def process_error(done) -> str:
    errors = done.stderr.decode("utf-8", "replace")
    assert done.returncode not in (0, None), errors
    assert "Traceback" not in errors and "Exception ignored" not in errors, errors
    lines = [line for line in errors.splitlines() if line.strip()]
    assert len(lines) == 1, errors
    return lines[0]


pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model of a text with accents and an emoji: (folder, text path, checkpoint)."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "text.txt").write_text(make_text(), encoding="utf-8")
    result = run("train", folder / "text.txt", "--checkpoint", folder / "model.npz", *TINY)
    assert result.exit_code == 0, result.output
    return folder, folder / "text.txt", folder / "model.npz"


# ----------------------------------------------------------------------------- output errors

COMMANDS = {"sample": ["sample", "--checkpoint", "{model}", "-n", "50", "--random-seed", "1"],
            "eval": ["eval", "{text}", "--checkpoint", "{model}", "-q"],
            "info": ["info", "{model}"]}


def command_args(name, trained):
    _, text, model = trained
    return [part.format(model=model, text=text) for part in COMMANDS[name]]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_full_disk_on_stdout_is_one_line(trained, name):
    with open("/dev/full", "w") as full:
        done = charrnn_process(*command_args(name, trained), stdout=full)
    assert re.search("stdout.*no space left", process_error(done), re.IGNORECASE)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_closed_stdout_is_one_line(trained, name):
    done = charrnn_process(*command_args(name, trained), shell_redirect=">&-")
    assert re.search("stdout.*closed", process_error(done))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["sample", "--help"]])
def test_help_and_version_to_a_full_disk(args):
    with open("/dev/full", "w") as full:
        done = charrnn_process(*args, stdout=full)
    process_error(done)


def test_ascii_stdout_with_a_non_ascii_model_fails_before_writing(trained):
    done = charrnn_process(*command_args("sample", trained), env={"PYTHONIOENCODING": "ascii"})
    message = process_error(done)
    assert "ascii" in message and "PYTHONIOENCODING" in message and "U+" in message
    assert done.stdout == b""


def test_ascii_seed_on_an_ascii_stdout_still_fails_for_the_model(trained):
    """The check covers what the model may write, not only the seed."""
    done = charrnn_process(*command_args("sample", trained), "--seed", "the",
                           env={"PYTHONIOENCODING": "ascii"})
    assert "U+" in process_error(done)


def test_no_warnings_reach_the_user(trained, tmp_path):
    """The whole workflow under ``python -W error``: a warning would be an error (and a
    traceback); none appears, and stderr never says 'Warning'."""
    folder, text, model = trained
    runs = [
        ["train", text, "--checkpoint", tmp_path / "w.npz", *TINY],
        ["sample", "--checkpoint", model, "-n", "30", "--random-seed", "2"],
        ["sample", "--checkpoint", model, "-n", "30", "--temperature", "1e-300"],
        ["sample", "--checkpoint", model, "-n", "30", "--temperature", "1e-300", "--greedy"],
        ["eval", text, "--checkpoint", model, "-q"],
        ["info", model],
    ]
    for args in runs:
        done = charrnn_process(*args, flags=("-W", "error"))
        errors = done.stderr.decode("utf-8", "replace")
        assert "Warning" not in errors and "Traceback" not in errors, (args, errors)


# ----------------------------------------------------------------------------- encodings

@pytest.mark.parametrize("name", ["rot13", "zlib", "hex", "base64", "undefined"])
def test_codecs_that_are_not_text_encodings_are_refused(tmp_path, name):
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    before = snapshot(tmp_path)
    message = one_line_error(run("train", tmp_path / "t.txt", tmp_path / "m.npz",
                                 "--encoding", name, *TINY))
    assert name in message
    assert snapshot(tmp_path) == before


def test_another_name_of_the_same_encoding_resumes(tmp_path, trained):
    _, text, model = trained
    (tmp_path / "m.npz").write_bytes(model.read_bytes())
    result = run("train", text, "--checkpoint", tmp_path / "m.npz", "--resume", "--encoding",
                 "UTF-8", *TINY[:6], "--max-iters", "7", "-q")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "m.npz").config.encoding == "utf-8"


@pytest.mark.parametrize("encoding,raw,position", [
    ("utf-7", b"ab+2D0-cd", 2),              # a high surrogate alone
    ("unicode_escape", b"abc\\udc00", 3),    # a low surrogate alone
])
def test_lone_surrogates_are_refused_naming_the_position(tmp_path, encoding, raw, position):
    (tmp_path / "s.txt").write_bytes(raw * 1 + b" more text after it\n")
    before = snapshot(tmp_path)
    message = one_line_error(run("train", tmp_path / "s.txt", tmp_path / "m.npz",
                                 "--encoding", encoding, *TINY))
    assert "surrogate" in message and f"character {position}" in message
    assert snapshot(tmp_path) == before


def test_byte_order_mark_is_left_out_with_a_note(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + make_text().encode("utf-8"))
    result = run("train", tmp_path / "bom.txt", tmp_path / "m.npz", *TINY[:-1])
    assert result.exit_code == 0, result.output
    assert "byte-order mark" in result.stderr
    assert "\ufeff" not in load_checkpoint(tmp_path / "m.npz").vocab.chars
    assert read_corpus(tmp_path / "bom.txt").byte_order_mark


def test_undecodable_text_on_eval_does_not_advise_an_option_eval_lacks(tmp_path, trained):
    _, _, model = trained
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe abc")
    message = one_line_error(run("eval", tmp_path / "bad.txt", "--checkpoint", model))
    assert "offset 0" in message and "--encoding" not in message


def test_undecodable_text_on_resume_does_not_advise_changing_the_encoding(tmp_path, trained):
    _, _, model = trained
    (tmp_path / "m.npz").write_bytes(model.read_bytes())
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe abc")
    message = one_line_error(run("train", tmp_path / "bad.txt", "--checkpoint",
                                 tmp_path / "m.npz", "--resume", "-q"))
    assert "--encoding" not in message and "fixed" in message


# ----------------------------------------------------------------------------- sizes

def test_a_model_too_large_for_memory_is_refused_saying_how_much_it_needs(tmp_path):
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    before = snapshot(tmp_path)
    args = [a if a != "8" else "1000000" for a in TINY[:2]] + TINY[2:]
    message = one_line_error(run("train", tmp_path / "t.txt", tmp_path / "m.npz", *args))
    assert re.search(r"\d TB", message) and "--hidden-size" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("option", ["--hidden-size", "--max-iters", "--seq-length",
                                    "--batch-size"])
def test_absurdly_large_counts_are_one_line_errors(tmp_path, option):
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    args = list(TINY)
    if option in args:
        args[args.index(option) + 1] = BIG
    else:
        args += [option, BIG]
    result = run("train", tmp_path / "t.txt", tmp_path / "m.npz", *args)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert not os.path.exists(tmp_path / "m.npz")


# ----------------------------------------------------------------------------- truthful messages

def test_resume_on_a_short_text_does_not_advise_changing_fixed_sizes(tmp_path, trained):
    _, _, model = trained
    (tmp_path / "short.txt").write_text("the dog", encoding="utf-8")
    # A checkpoint that records its corpus refuses another text, naming what changed.
    (tmp_path / "m.npz").write_bytes(model.read_bytes())
    message = one_line_error(run("train", tmp_path / "short.txt", "--checkpoint",
                                 tmp_path / "m.npz", "--resume", "-q"))
    assert "corpus changed" in message and "short.txt is new" in message, message
    # One from before 0.5.0 (no file list) goes on to the text's sizes, which are fixed.
    checkpoint = load_checkpoint(model)
    older = dataclasses.replace(checkpoint.state, corpus_files=None)
    save_checkpoint(tmp_path / "m.npz", dataclasses.replace(checkpoint, state=older))
    message = one_line_error(run("train", tmp_path / "short.txt", "--checkpoint",
                                 tmp_path / "m.npz", "--resume", "-q"))
    assert not re.search("--batch-size|--seq-length|--val-fraction", message), message
    assert "fixed" in message


def test_too_short_text_does_not_cite_values_the_user_never_gave(tmp_path):
    (tmp_path / "ab.txt").write_text("ab", encoding="utf-8")
    message = one_line_error(run("train", tmp_path / "ab.txt", tmp_path / "m.npz", "-q"))
    assert not re.search(r"--[a-z-]+ \d", message), message


def test_greedy_works_at_any_temperature(trained):
    _, _, model = trained
    result = run("sample", "--checkpoint", model, "--greedy", "--temperature", "1e-300", "-n", "20")
    assert result.exit_code == 0, result.output
    plain = run("sample", "--checkpoint", model, "--greedy", "-n", "20")
    assert result.stdout == plain.stdout


# ----------------------------------------------------------------------------- one shape

def test_every_command_takes_the_checkpoint_both_ways(tmp_path, trained):
    _, text, model = trained
    for args in (["info", "--checkpoint", model],
                 ["sample", model, "-n", "5", "--random-seed", "1"],
                 ["eval", text, model, "-q"],
                 ["plot", "--checkpoint", model, "-o", tmp_path / "p.png"]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
    assert run("sample", model, "-n", "9", "--random-seed", "3").stdout == run(
        "sample", "--checkpoint", model, "-n", "9", "--random-seed", "3").stdout
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    result = run("train", tmp_path / "t.txt", tmp_path / "new.npz", *TINY)
    assert result.exit_code == 0 and os.path.exists(tmp_path / "new.npz")


@pytest.mark.parametrize("command", ["info", "sample", "plot", "eval", "train"])
def test_two_different_checkpoints_are_a_usage_error(tmp_path, trained, command):
    _, text, model = trained
    before = snapshot(tmp_path)
    lead = [command, text] if command in ("eval", "train") else [command]
    result = run(*lead, model, "--checkpoint", tmp_path / "other.npz")
    one_line_error(result, code=2)
    assert "two checkpoints" in result.stderr
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- -q and --threads

def test_quiet_training_prints_nothing_not_even_samples(tmp_path):
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    args = [a if a != "0" else "1" for a in TINY]   # --sample-every 1
    result = run("train", tmp_path / "t.txt", tmp_path / "m.npz", *args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_quiet_sample_and_eval_print_nothing_on_stderr(tmp_path, trained):
    _, text, model = trained
    os.makedirs("checkpoints")
    (tmp_path / "checkpoints" / "m.npz").write_bytes(model.read_bytes())
    noisy = run("sample", "-n", "5")
    assert noisy.exit_code == 0 and "using" in noisy.stderr
    for args in (["sample", "-n", "5", "-q"], ["eval", text, "-q"]):
        result = run(*args)
        assert result.exit_code == 0 and result.stderr == "", (args, result.stderr)


def test_threads_beyond_the_cores_are_capped_with_a_note(tmp_path):
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    result = run("train", tmp_path / "t.txt", tmp_path / "m.npz", *TINY[:-1], "--threads", "4096")
    assert result.exit_code == 0, result.output
    assert re.search(r"--threads 4096 .*core", result.stderr)
    assert load_checkpoint(tmp_path / "m.npz").state["blas_threads"] < 4096


# ----------------------------------------------------------------------------- large vocabularies

def test_noise_and_eval_blocks_are_bounded_in_bytes():
    assert noise_block_rows(65) == NOISE_BLOCK                    # small V: as before
    assert noise_block_rows(70_000) * 70_000 * 8 <= 1 << 22
    assert noise_block_rows(10**7) == 1
    assert eval_window_steps(32, 65, 4) == charrnn.evaluate.EVAL_WINDOW
    assert eval_window_steps(32, 70_000, 4) * 32 * 70_000 * 4 <= 1 << 26
    assert eval_window_steps(32, 10**9, 8) == 1


@pytest.fixture(scope="module")
def large_vocab(tmp_path_factory):
    """A model of 6,000 distinct CJK characters, and its 40,000-character text."""
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    chars = [chr(0x4E00 + i) for i in range(6000)]
    order = list(rng.permutation(6000)) + list(rng.integers(0, 6000, 34_000))
    (folder / "cjk.txt").write_text("".join(chars[i] for i in order), encoding="utf-8")
    result = run("train", folder / "cjk.txt", folder / "cjk.npz", *TINY[:6], "--max-iters", "2",
                 "--val-fraction", "0", "--sample-every", "0", "-q")
    assert result.exit_code == 0, result.output
    return folder / "cjk.txt", load_checkpoint(folder / "cjk.npz")


def traced_peak(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sampling_memory_does_not_grow_with_a_block_of_the_vocabulary(large_vocab, monkeypatch):
    _, checkpoint = large_vocab
    network, params, vocab = checkpoint.network(), checkpoint.params, checkpoint.vocab

    def draw():
        return "".join(generate(network, params, vocab, "", 600, np.random.default_rng(5)))
    text = draw()
    peak = traced_peak(draw)
    assert peak < 12e6, f"{peak / 1e6:.0f} MB for a 6,000-character vocabulary"   # 512 rows: 50 MB+
    # The same seed gives the same text whatever the block size.
    monkeypatch.setattr(charrnn.sample, "NOISE_BLOCK_BYTES", 1 << 40)
    assert draw() == text


def test_eval_memory_is_bounded_and_its_numbers_unchanged(large_vocab, monkeypatch):
    text_path, checkpoint = large_vocab
    network, params = checkpoint.network(), checkpoint.params
    indices = read_corpus(text_path, vocab=checkpoint.vocab).indices
    monkeypatch.setattr(charrnn.evaluate, "EVAL_BLOCK_BYTES", 1 << 22)
    results = {}
    peak = traced_peak(lambda: results.update(small=score_text(network, params, indices)))
    assert peak < 40e6, f"{peak / 1e6:.0f} MB"   # a 256-step window would take 197 MB
    monkeypatch.setattr(charrnn.evaluate, "EVAL_BLOCK_BYTES", 1 << 40)
    whole = score_text(network, params, indices)
    assert results["small"].count == whole.count
    assert results["small"].total_nats == pytest.approx(whole.total_nats, rel=1e-9)


# ----------------------------------------------------------------------------- overfitting

def history_of(val_losses):
    return np.array([[i, i, 1.0, loss, 0.0] for i, loss in enumerate(val_losses)])


def test_rising_streak_and_one_message_per_rise():
    assert rising_streak(history_of([3, 2, 1])) == 0
    assert rising_streak(history_of([3, 1, 2, 3])) == 2
    assert rising_streak(history_of([1, float("nan"), 2])) == 0
    messages = []
    losses = [3.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.0, 2.1, 2.2, 2.3]
    for n in range(1, len(losses) + 1):
        messages.append(overfitting_message(history_of(losses[:n]), "m.best.npz"))
    said = [m for m in messages if m]
    assert len(said) == 2 and OVERFIT_PATIENCE == 3     # once per rise, two rises
    assert "m.best.npz" in said[0] and "--max-iters" in said[0] and "--hidden-size" in said[0]


def test_training_says_once_when_validation_keeps_rising(tmp_path, monkeypatch):
    (tmp_path / "t.txt").write_text(make_text(), encoding="utf-8")
    losses = iter(np.linspace(2.0, 3.0, 8))
    monkeypatch.setattr(charrnn.train.Trainer, "validation_loss", lambda self: float(next(losses)))
    args = TINY[:6] + ["--max-iters", "8", "--eval-every", "1", "--sample-every", "0"]
    result = run("train", tmp_path / "t.txt", tmp_path / "m.npz", *args)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("risen") == 1, result.stderr
    quiet = run("train", tmp_path / "t.txt", tmp_path / "q.npz", *args, "-q")
    assert "risen" not in quiet.stderr


def test_sample_and_eval_mention_a_better_best_twin(tmp_path, trained):
    _, text, model = trained
    checkpoint = load_checkpoint(model)
    state = {**checkpoint.state, "best_val_loss": 1.0, "last_val_loss": 2.0}
    save_checkpoint(tmp_path / "m.npz", dataclasses.replace(checkpoint, state=state))
    quiet = run("sample", "--checkpoint", tmp_path / "m.npz", "-n", "5")
    assert "--best" not in quiet.stderr        # no twin on disk: nothing to point at
    (tmp_path / "m.best.npz").write_bytes(model.read_bytes())
    for args in (["sample", "--checkpoint", tmp_path / "m.npz", "-n", "5"],
                 ["eval", text, "--checkpoint", tmp_path / "m.npz"]):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "m.best.npz" in result.stderr and "--best" in result.stderr
    best = run("sample", "--checkpoint", tmp_path / "m.npz", "--best", "-n", "5")
    assert "--best" not in best.stderr
