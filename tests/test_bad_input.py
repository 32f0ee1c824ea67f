"""Bad input never costs the user anything (issue 4).

Every user mistake (a bad text file, an out-of-range option, a broken or hostile checkpoint, an
unwritable folder, a seed the model cannot read) must end with: exit status != 0 (1 for charrnn's
own errors, 2 for click's usage errors), a one-line message on stderr naming the problem, no
traceback, and no file of the user's changed. Faults during training (numerical blow-up, a full
disk) must keep the last good checkpoint byte for byte. A few things that look like mistakes but
are not (``-n 0``, an empty seed, a short text with default sizes) must work.

Every command runs in-process through click's CliRunner on files under ``tmp_path``, with a tiny
model so that each test takes a fraction of a second.
"""
from __future__ import annotations

import builtins
import errno
import inspect
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn.data
import charrnn.train
from charrnn.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.sample import generate

WORDS = "the quick brown fox jumps over a lazy dog and then some more".split()
TINY = {"--hidden-size": "8", "--seq-length": "8", "--batch-size": "2", "--max-iters": "5",
        "--eval-every": "5", "--checkpoint-every": "5", "--sample-every": "0"}


def make_text(rng: np.random.Generator, n_words: int = 120) -> str:
    """Lower-case words and spaces: a small vocabulary (no capitals, no punctuation)."""
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n_words)) + "\n"


def options(**changes) -> list[str]:
    """TINY as a command-line list, with ``changes`` ({'batch_size': '4'}, None to drop)."""
    chosen = dict(TINY)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            chosen.pop(flag, None)
        else:
            chosen[flag] = str(value)
    return [part for pair in chosen.items() for part in pair] + ["--quiet"]


def run(*args: str):
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=True)


def snapshot(folder) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, by relative path."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def assert_no_traceback(result) -> None:
    """No Python exception escaped the command, and nothing looks like a traceback."""
    escaped = result.exception
    assert escaped is None or isinstance(escaped, SystemExit), (
        f"the command raised {escaped!r}:\n{result.output}")
    assert "Traceback" not in result.output


def error_line(result, code: int | tuple[int, ...] = 1, one_line: bool = True) -> str:
    """Check that the command failed cleanly and return its error message (the last line).

    ``one_line``: stderr holds nothing but that line (errors found before training starts).
    """
    assert_no_traceback(result)
    codes = code if isinstance(code, tuple) else (code,)
    assert result.exit_code in codes, (
        f"exit status {result.exit_code}, expected {codes}\n{result.output}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    if one_line:   # a usage error (exit status 2) too: the hint is part of the line
        assert len(lines) == 1, f"expected a one-line message, got:\n{result.stderr}"
    return lines[-1]


def assert_mentions(message: str, *patterns: str) -> None:
    """Each regex of ``patterns`` occurs in ``message`` (case-insensitive)."""
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE), f"{pattern!r} not in: {message}"


pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A text and a model trained on it for 5 iterations: (text, checkpoint bytes)."""
    folder = tmp_path_factory.mktemp("trained")
    text = make_text(np.random.default_rng(4))
    (folder / "text.txt").write_text(text, encoding="utf-8")
    result = run("train", folder / "text.txt", "--checkpoint", folder / "model.npz", *options())
    assert result.exit_code == 0, result.output
    return text, (folder / "model.npz").read_bytes()


@pytest.fixture
def model(tmp_path, trained):
    """tmp_path/text.txt and tmp_path/model.npz (a copy of the trained model)."""
    text, checkpoint = trained
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    (tmp_path / "model.npz").write_bytes(checkpoint)
    return tmp_path / "text.txt", tmp_path / "model.npz"


def train_fails_cleanly(tmp_path, text_path, *extra, code=1) -> str:
    """Run ``train`` expecting a clean failure that changes no file; return the message."""
    before = snapshot(tmp_path)
    result = run("train", text_path, "--checkpoint", tmp_path / "model.npz", *extra)
    message = error_line(result, code)
    assert snapshot(tmp_path) == before, "a failed command changed or created files"
    return message


# --------------------------------------------------------------------------- the text file

def test_missing_text_file(tmp_path):
    message = train_fails_cleanly(tmp_path, tmp_path / "nowhere.txt", *options())
    assert_mentions(message, "nowhere.txt", r"no such|not found|does not exist|missing")


def test_text_file_is_a_directory(tmp_path):
    (tmp_path / "texts").mkdir()
    message = train_fails_cleanly(tmp_path, tmp_path / "texts", *options())
    assert_mentions(message, "texts", "directory")


def test_empty_text_file(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    message = train_fails_cleanly(tmp_path, tmp_path / "empty.txt", *options())
    assert_mentions(message, "empty.txt", "empty")


def test_text_too_short_for_chosen_sizes_says_how_long_it_is(tmp_path):
    """The user chose --batch-size 8 --seq-length 16: 100 characters cannot hold that, and the
    message must give the length and point at the options to change."""
    text = make_text(np.random.default_rng(1), 60)[:100]
    (tmp_path / "short.txt").write_text(text, encoding="utf-8")
    message = train_fails_cleanly(tmp_path, tmp_path / "short.txt",
                                  *options(batch_size=8, seq_length=16, val_fraction=0))
    assert_mentions(message, r"\b100\b", "--batch-size|--seq-length")


def test_short_text_with_default_sizes_is_fitted_with_a_notice(tmp_path):
    """Without --batch-size/--seq-length, a text too short for the default sizes trains
    with smaller values, and a notice on stderr names the values chosen."""
    text = make_text(np.random.default_rng(2), 40)[:200]
    (tmp_path / "short.txt").write_text(text, encoding="utf-8")
    result = run("train", tmp_path / "short.txt", "--checkpoint", tmp_path / "model.npz",
                 *options(batch_size=None, seq_length=None, max_iters=3)[:-1])   # no -q: notes
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    config = load_checkpoint(tmp_path / "model.npz").config
    defaults = TrainConfig()
    assert config.batch_size * config.seq_length < defaults.batch_size * defaults.seq_length
    assert config.batch_size * config.seq_length <= len(text)
    assert_mentions(result.stderr, rf"batch.size\D{{0,20}}\b{config.batch_size}\b",
                    rf"seq.length\D{{0,20}}\b{config.seq_length}\b")
    assert load_checkpoint(tmp_path / "model.npz").state["iteration"] == 3


def test_text_long_enough_for_defaults_gets_no_fitting_notice(tmp_path):
    defaults = TrainConfig()
    text = make_text(np.random.default_rng(3), 700)
    assert len(text) > 1.2 * defaults.batch_size * (defaults.seq_length + 2)
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    result = run("train", tmp_path / "long.txt", "--checkpoint", tmp_path / "model.npz",
                 *options(batch_size=None, seq_length=None, max_iters=1))
    assert result.exit_code == 0, result.output
    config = load_checkpoint(tmp_path / "model.npz").config
    assert (config.batch_size, config.seq_length) == (defaults.batch_size, defaults.seq_length)
    assert not re.search("batch.size|seq.length", result.stderr, re.IGNORECASE)


def test_text_too_short_for_any_size(tmp_path):
    (tmp_path / "ab.txt").write_text("ab", encoding="utf-8")
    message = train_fails_cleanly(tmp_path, tmp_path / "ab.txt",
                                  *options(batch_size=None, seq_length=None))
    assert_mentions(message, r"\b2\b")


@pytest.mark.parametrize("block_bytes", [None, 5])
def test_invalid_utf8_names_the_byte_offset_and_encoding_option(tmp_path, monkeypatch, block_bytes):
    """The offset counts bytes, not characters: 50 two-byte characters come first. With a
    5-byte read block, the bad byte is in a later block than the first."""
    if block_bytes is not None:
        monkeypatch.setattr(charrnn.data, "READ_BLOCK_BYTES", block_bytes)
    data = ("é" * 50 + "abc").encode("utf-8") + b"\xff" + b"rest of the text"
    assert data.index(b"\xff") == 103
    (tmp_path / "latin.txt").write_bytes(data)
    message = train_fails_cleanly(tmp_path, tmp_path / "latin.txt", *options())
    assert_mentions(message, "latin.txt", r"\b103\b", "--encoding")


def test_truncated_multibyte_character_at_end_is_reported(tmp_path):
    data = b"abcdef " * 20 + "€".encode("utf-8")[:2]
    (tmp_path / "cut.txt").write_bytes(data)
    message = train_fails_cleanly(tmp_path, tmp_path / "cut.txt", *options())
    assert_mentions(message, rf"\b{len(data) - 2}\b", "--encoding")


def test_the_same_file_trains_with_encoding_latin1(tmp_path):
    text = make_text(np.random.default_rng(5), 80)
    data = text.encode("ascii") + b"\xe9\xff" + text.encode("ascii")
    (tmp_path / "latin.txt").write_bytes(data)
    result = run("train", tmp_path / "latin.txt", "--checkpoint", tmp_path / "model.npz",
                 "--encoding", "latin-1", *options())
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(tmp_path / "model.npz")
    assert {"é", "ÿ"} <= set(checkpoint.vocab.chars)
    assert checkpoint.config.encoding == "latin-1"


def test_unknown_encoding_is_named(tmp_path, model):
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    message = train_fails_cleanly(tmp_path, text_path, "--encoding", "klingon-8", *options())
    assert_mentions(message, "klingon-8")


def test_binary_file_valid_utf8_with_nul_bytes(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"abc\x00def\x00" * 40)
    message = train_fails_cleanly(tmp_path, tmp_path / "data.bin", *options())
    assert_mentions(message, "data.bin", "binary|NUL")


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_random_binary_file(tmp_path, encoding):
    data = np.random.default_rng(6).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (tmp_path / "data.bin").write_bytes(b"\x00" + data)
    message = train_fails_cleanly(tmp_path, tmp_path / "data.bin", "--encoding", encoding,
                                  *options())
    assert_mentions(message, "data.bin")


def test_single_distinct_character(tmp_path):
    (tmp_path / "aaa.txt").write_text("a" * 500, encoding="utf-8")
    message = train_fails_cleanly(tmp_path, tmp_path / "aaa.txt", *options())
    assert_mentions(message, "aaa.txt", r"single|only one|one distinct")


# --------------------------------------------------------------------------- options

@pytest.mark.parametrize("name,value", [
    ("hidden_size", 0), ("hidden_size", -1), ("seq_length", 0), ("seq_length", -8),
    ("batch_size", 0), ("batch_size", -2), ("learning_rate", 0), ("learning_rate", -0.1),
    ("clip", 0), ("clip", -1), ("max_iters", 0), ("max_iters", -5), ("eval_every", 0),
    ("checkpoint_every", 0), ("sample_every", -1),
    ("val_fraction", -0.1), ("val_fraction", 1), ("val_fraction", 1.5),
    ("warmup_fraction", -0.1), ("warmup_fraction", 1.5), ("decay_fraction", -0.1),
    ("decay_fraction", 1.5),
])
def test_out_of_range_training_option_is_a_usage_error(tmp_path, model, name, value):
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    message = train_fails_cleanly(tmp_path, text_path, *options(**{name: value}), code=2)
    assert_mentions(message, "--" + name.replace("_", "-"))


@pytest.mark.parametrize("name,value", [
    ("learning_rate", "nan"), ("learning_rate", "inf"), ("clip", "nan"), ("val_fraction", "nan"),
    ("warmup_fraction", "nan"), ("decay_fraction", "nan"), ("decay_fraction", "inf"),
])
def test_nan_or_infinite_training_option_is_refused(tmp_path, model, name, value):
    """click's FloatRange lets NaN through (every comparison with NaN is False): these are
    usage errors that name the option, like any other out-of-range value."""
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    before = snapshot(tmp_path)
    result = run("train", text_path, "--checkpoint", tmp_path / "model.npz",
                 *options(**{name: value}))
    message = error_line(result, 2, one_line=False)
    assert_mentions(message, "--" + name.replace("_", "-"))
    assert snapshot(tmp_path) == before


def test_val_fraction_leaving_too_little_training_text(tmp_path, model):
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    message = train_fails_cleanly(tmp_path, text_path, *options(val_fraction=0.99))
    assert_mentions(message, "--val-fraction")


@pytest.mark.parametrize("args,option", [
    (["-n", "-1"], "-n|--length"),
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-k", "0"], "--top-k"),
    (["--top-k", "-3"], "--top-k"),
])
def test_out_of_range_sampling_option_is_a_usage_error(tmp_path, model, args, option):
    _, checkpoint = model
    before = snapshot(tmp_path)
    result = run("sample", "--checkpoint", checkpoint, *args)
    assert_mentions(error_line(result, 2), option)
    assert result.stdout == ""
    assert snapshot(tmp_path) == before


def test_nan_temperature_is_refused(model):
    _, checkpoint = model
    result = run("sample", "--checkpoint", checkpoint, "-n", "20", "--temperature", "nan")
    assert_mentions(error_line(result, (1, 2), one_line=False), "temperature")
    assert result.stdout == ""


def test_top_k_larger_than_the_vocabulary(model):
    _, checkpoint = model
    size = len(load_checkpoint(checkpoint).vocab)
    result = run("sample", "--checkpoint", checkpoint, "--top-k", size + 1)
    message = error_line(result, (1, 2), one_line=False)
    assert_mentions(message, "--top-k", rf"\b{size}\b")
    assert result.stdout == ""


def test_top_k_equal_to_the_vocabulary_is_fine(model):
    _, checkpoint = model
    size = len(load_checkpoint(checkpoint).vocab)
    result = run("sample", "--checkpoint", checkpoint, "--top-k", size, "-n", "10")
    assert result.exit_code == 0, result.output
    # the text and one newline (the text itself may end in a newline: no rstrip)
    assert result.stdout.endswith("\n") and len(result.stdout) == 10 + 1


def test_zero_length_prints_the_seed_alone(model):
    _, checkpoint = model
    result = run("sample", "--checkpoint", checkpoint, "-n", "0", "--seed", "the dog")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == "the dog"


def test_generate_is_lazy_and_does_not_grow_memory(model):
    """generate() must be a generator: asking for 10**15 characters costs nothing up front,
    and drawing 25 000 of them needs no more memory than drawing 2 000 (keeping even one
    pointer per character drawn would cost 200 kB)."""
    _, checkpoint_path = model
    checkpoint = load_checkpoint(checkpoint_path)
    rng = np.random.default_rng(7)
    characters = generate(checkpoint.network(), checkpoint.params, checkpoint.vocab, "",
                          10 ** 15, rng)
    assert inspect.isgenerator(characters)
    tracemalloc.start()
    try:
        for _ in itertools.islice(characters, 2000):
            pass
        _, peak_small = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in itertools.islice(characters, 25_000):
            pass
        _, peak_large = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_large < peak_small + 100_000


def test_huge_length_streams_into_a_closed_pipe_quietly(model):
    """`charrnn sample -n 2000000 | head -c 1000`: the text streams out as it is generated, and
    when the reader goes away the command ends at once, without a BrokenPipeError traceback."""
    _, checkpoint = model
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(checkpoint),
         "-n", "2000000", "--random-seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        head = process.stdout.read(1000)
        process.stdout.close()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    errors = process.stderr.read().decode("utf-8", "replace")
    process.stderr.close()
    assert len(head) == 1000
    assert process.returncode != -signal.SIGKILL
    assert "Traceback" not in errors and "BrokenPipe" not in errors
    assert "Exception ignored" not in errors


# --------------------------------------------------------------------------- checkpoints

def npz_arrays(data: bytes, tmp_path) -> dict[str, np.ndarray]:
    (tmp_path / "scratch.npz").write_bytes(data)
    with np.load(tmp_path / "scratch.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    os.remove(tmp_path / "scratch.npz")
    return arrays


def rewrite(path, arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


class CreatesFileWhenUnpickled:
    """Unpickling this calls open(path, "w"), creating a marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def break_zero_bytes(path, good, tmp_path):
    path.write_bytes(b"")


def break_truncated(path, good, tmp_path):
    path.write_bytes(good[:len(good) // 2])


def break_random_bytes(path, good, tmp_path):
    path.write_bytes(np.random.default_rng(8).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def break_missing_key(path, good, tmp_path):
    arrays = npz_arrays(good, tmp_path)
    del arrays["params.l1.Whh"]
    rewrite(path, arrays)


def break_vocab_shape(path, good, tmp_path):
    """One character fewer in the vocabulary than the parameters have rows for."""
    arrays = npz_arrays(good, tmp_path)
    arrays["vocab"] = arrays["vocab"][:-1]
    rewrite(path, arrays)


def break_param_shape(path, good, tmp_path):
    arrays = npz_arrays(good, tmp_path)
    arrays["params.Why"] = np.vstack([arrays["params.Why"], arrays["params.Why"][:1]])
    rewrite(path, arrays)


def break_newer_version(path, good, tmp_path):
    arrays = npz_arrays(good, tmp_path)
    arrays["format_version"] = np.array(FORMAT_VERSION + 1, dtype=np.int64)
    rewrite(path, arrays)


def break_pickled_object(path, good, tmp_path):
    arrays = npz_arrays(good, tmp_path)
    arrays["params.l1.Whh"] = np.array([CreatesFileWhenUnpickled(tmp_path / "UNPICKLED")],
                                       dtype=object)
    rewrite(path, arrays)


def break_directory(path, good, tmp_path):
    path.mkdir()


BROKEN = {
    "zero bytes": (break_zero_bytes, ""),
    "truncated": (break_truncated, ""),
    "random bytes": (break_random_bytes, ""),
    "missing key": (break_missing_key, "Whh"),
    "vocabulary mismatch": (break_vocab_shape, "shape|vocab"),
    "parameter shape": (break_param_shape, "Why.*shape|shape.*Why"),
    "newer version": (break_newer_version, "version"),
    "pickled object array": (break_pickled_object, "pickle|object"),
    "directory": (break_directory, "directory"),
}
COMMANDS = {
    "sample": lambda text, ck: ["sample", "--checkpoint", ck, "-n", "10"],
    "info": lambda text, ck: ["info", ck],
    "resume": lambda text, ck: ["train", text, "--checkpoint", ck, "--resume", "--max-iters", "10",
                                "--quiet"],
}


def test_pickled_payload_does_work_when_unpickled(tmp_path):
    """Control for the pickle test: the payload really does create its marker if unpickled."""
    marker = tmp_path / "CONTROL"
    rewrite(tmp_path / "evil.npz", {"x": np.array([CreatesFileWhenUnpickled(marker)], dtype=object)})
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as npz:
        npz["x"][0].close()   # unpickling ran open(marker, "w")
    assert marker.exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BROKEN)
def test_broken_checkpoint_is_refused(tmp_path, trained, kind, command):
    text, good = trained
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    path = tmp_path / "model.npz"
    breaker, pattern = BROKEN[kind]
    breaker(path, good, tmp_path)
    before = snapshot(tmp_path)
    result = run(*COMMANDS[command](tmp_path / "text.txt", path))
    message = error_line(result)
    assert_mentions(message, "model.npz", pattern)
    assert result.stdout == ""
    assert not (tmp_path / "UNPICKLED").exists(), "the checkpoint was unpickled"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["sample", "info"])
def test_missing_checkpoint(tmp_path, command):
    result = run(*COMMANDS[command](tmp_path / "text.txt", tmp_path / "gone.npz"))
    assert_mentions(error_line(result), "gone.npz")
    assert snapshot(tmp_path) == {}


def test_no_checkpoint_at_all_says_how_to_make_one(tmp_path):
    """sample without --checkpoint and no checkpoints/ folder."""
    result = run("sample", "-n", "5")
    assert_mentions(error_line(result), "train")
    assert snapshot(tmp_path) == {}


def test_resume_without_a_checkpoint(tmp_path, model):
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    message = train_fails_cleanly(tmp_path, text_path, "--resume", *options())
    assert_mentions(message, "model.npz")


@pytest.mark.parametrize("change", [
    {"position": -5}, {"iteration": -3}, {"chars_seen": -1},
    {"rng_state": "garbage"}, {"rng_state": {"bit_generator": "PCG64", "state": 3}},
], ids=["position-negative", "iteration-negative", "chars_seen-negative", "rng_state-string",
        "rng_state-malformed"])
def test_resume_from_checkpoint_with_nonsense_state(tmp_path, trained, change):
    """Values that are well-typed but impossible must be refused, not crash the trainer."""
    text, good = trained
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    arrays = npz_arrays(good, tmp_path)
    state = json.loads(str(arrays["state"]))
    state.update(change)
    arrays["state"] = np.array(json.dumps(state))
    rewrite(tmp_path / "model.npz", arrays)
    before = snapshot(tmp_path)
    result = run(*COMMANDS["resume"](tmp_path / "text.txt", tmp_path / "model.npz"))
    assert_mentions(error_line(result), "model.npz")
    assert snapshot(tmp_path) == before


def test_checkpoint_path_is_a_directory_for_a_new_model(tmp_path, model):
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    (tmp_path / "model.npz").mkdir()
    message = train_fails_cleanly(tmp_path, text_path, "--force", *options())
    assert_mentions(message, "model.npz", "directory")


def forbid_training(monkeypatch):
    def step(self):
        raise AssertionError("training started although the checkpoint cannot be written")
    monkeypatch.setattr(charrnn.train.Trainer, "step", step)


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path, model, monkeypatch):
    text_path, _ = model
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        probe = folder / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: chmod 0o500 does not stop writes here "
                        "(see the simulated test below)")
        forbid_training(monkeypatch)
        message = train_fails_cleanly(tmp_path, text_path, "--checkpoint", folder / "m.npz",
                                      *options())
        assert_mentions(message, "locked")
    finally:
        folder.chmod(0o700)


def test_unwritable_checkpoint_folder_simulated(tmp_path, model, monkeypatch):
    """What a non-root user sees in a read-only folder, simulated (tests may run as root, whom
    permissions do not stop): creating or writing any file in the folder raises EACCES."""
    text_path, _ = model
    folder = tmp_path / "locked"
    folder.mkdir()
    inside = str(folder.resolve())

    def in_folder(path) -> bool:
        try:
            full = os.path.realpath(os.fspath(path))
        except TypeError:   # a file descriptor
            return False
        return full == inside or full.startswith(inside + os.sep)

    def denied(path):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_os_open, real_open, real_access = os.open, builtins.open, os.access
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | getattr(os, "O_TMPFILE", 0)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & writing and in_folder(path):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and in_folder(file):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_access(path, mode, *args, **kwargs):
        if mode & os.W_OK and in_folder(path):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "access", fake_access)
    forbid_training(monkeypatch)
    result = run("train", text_path, "--checkpoint", folder / "m.npz", *options())
    monkeypatch.undo()
    assert_mentions(error_line(result), "locked")
    assert os.listdir(folder) == []


def test_checkpoint_folder_under_a_regular_file(tmp_path, model, monkeypatch):
    """--checkpoint notes.txt/m.npz where notes.txt is a file: unwritable even for root."""
    text_path, _ = model
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    forbid_training(monkeypatch)
    message = train_fails_cleanly(tmp_path, text_path, "--checkpoint", tmp_path / "notes.txt" / "m.npz",
                                  *options())
    assert_mentions(message, "notes.txt")


# --------------------------------------------------------------------------- sampling seeds

def test_seed_characters_outside_the_vocabulary_are_named(model):
    _, checkpoint = model
    vocab = set(load_checkpoint(checkpoint).vocab.chars)
    assert not {"Z", "€"} & vocab
    result = run("sample", "--checkpoint", checkpoint, "--seed", "the Zebra€", "-n", "10")
    message = error_line(result)
    assert_mentions(message, "--seed", "Z", "€")
    assert result.stdout == ""


def test_empty_seed_generates_as_after_a_newline(model):
    """With no seed the model starts as after a line break: greedily, the text is the greedy
    continuation of a newline (which is not printed)."""
    _, checkpoint_path = model
    checkpoint = load_checkpoint(checkpoint_path)
    result = run("sample", "--checkpoint", checkpoint_path, "--seed", "", "-n", "30", "--greedy")
    assert result.exit_code == 0, result.output
    generated = result.stdout.rstrip("\n")
    assert len(generated) == 30
    assert set(generated) <= set(checkpoint.vocab.chars)
    after_newline = run("sample", "--checkpoint", checkpoint_path, "--seed", "\n", "-n", "30",
                        "--greedy")
    assert "\n" + generated + "\n" == after_newline.stdout


def test_default_seed_is_empty_and_random_sampling_works(model):
    _, checkpoint = model
    result = run("sample", "--checkpoint", checkpoint, "-n", "25", "--random-seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n") and len(result.stdout) == 25 + 1


# --------------------------------------------------------------------------- faults in training

def resume_args(text_path, checkpoint, *extra, every=1):
    """Resume the 5-iteration model up to 12 iterations, saving every ``every``."""
    return ["train", text_path, "--checkpoint", checkpoint, "--resume", "--max-iters", "12",
            "--checkpoint-every", str(every), "--quiet", *extra]


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, model):
    """A learning rate of 1e38 overflows float32 within a few steps (before iteration 10, the
    next save), so every file must be exactly as it was."""
    text_path, checkpoint = model
    before = snapshot(tmp_path)
    result = run(*resume_args(text_path, checkpoint, "--learning-rate", "1e38",
                                 "--warmup-fraction", "0", every=1000))
    message = error_line(result, one_line=False)
    assert_mentions(message, "--learning-rate", "--clip", "NaN|inf|diverge")
    assert snapshot(tmp_path) == before


def test_divergence_message_is_not_buried_in_numpy_warnings(model):
    """NumPy's overflow RuntimeWarnings would print several lines of source code around the
    one-line error. (Recorded here, because pytest would otherwise swallow them.)"""
    text_path, checkpoint = model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(*resume_args(text_path, checkpoint, "--learning-rate", "1e38",
                                 "--warmup-fraction", "0", every=1000))
    assert result.exit_code == 1
    assert [str(w.message) for w in caught] == []


def test_nan_loss_mid_run_keeps_the_previous_checkpoint(tmp_path, model, monkeypatch):
    """forward() returns NaN from the third iteration on: the run stops, and the checkpoint
    written after the second (checkpoint every iteration) is on disk, finite and loadable."""
    text_path, _ = model
    os.remove(tmp_path / "model.npz")
    real_forward = charrnn.train.Network.forward
    calls = []

    def forward(self, *args, **kwargs):
        loss, cache = real_forward(self, *args, **kwargs)
        calls.append(1)
        return (float("nan") if len(calls) >= 3 else loss), cache

    monkeypatch.setattr(charrnn.train.Network, "forward", forward)
    result = run("train", text_path, "--checkpoint", tmp_path / "model.npz",
                 *options(checkpoint_every=1, max_iters=10))
    assert_mentions(error_line(result, one_line=False), "--learning-rate", "--clip")
    saved = load_checkpoint(tmp_path / "model.npz")
    assert saved.state["iteration"] == 2
    assert all(np.isfinite(saved.params[name]).all() for name in saved.params)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, model, monkeypatch):
    """Every .npz write runs out of space after a few bytes: a one-line error, and every file
    in the folder (checkpoint, best model, history) is as it was, with no temporary left."""
    text_path, checkpoint = model
    before = snapshot(tmp_path)

    def full_disk(file, *args, **kwargs):
        if hasattr(file, "write"):
            file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full_disk)
    monkeypatch.setattr(np, "savez_compressed", full_disk)
    result = run(*resume_args(text_path, checkpoint))
    monkeypatch.undo()
    message = error_line(result, one_line=False)
    assert_mentions(message, "space|ENOSPC|disk", "model")
    assert len([line for line in result.stderr.splitlines() if "rror" in line]) == 1
    assert snapshot(tmp_path) == before
    load_checkpoint(checkpoint)


def test_save_error_is_a_checkpoint_error(tmp_path, trained, monkeypatch):
    """The library function itself: save_checkpoint turns the OSError into CheckpointError."""
    from charrnn.checkpoint import save_checkpoint
    _, good = trained
    (tmp_path / "model.npz").write_bytes(good)
    checkpoint = load_checkpoint(tmp_path / "model.npz")

    def full_disk(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full_disk)
    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "model.npz", checkpoint)
    assert (tmp_path / "model.npz").read_bytes() == good
    assert os.listdir(tmp_path) == ["model.npz"]
