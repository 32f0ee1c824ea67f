"""Reliability, round 3 (issue 16): sizes and numbers that overflow, folders as outputs, no
leftovers after any signal, and errors that name the file they are about.

As in the earlier rounds: every failure is a non-zero exit, one line on stderr, no traceback,
and no file of the user's changed. Signals are sent to real processes, whose SIGINT, SIGTERM
and SIGHUP are reset to their defaults (the suite may run in the background, where SIGINT is
ignored, or under nohup).
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charrnn.cli
from charrnn import runfiles
from charrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.config import INT_LIMITS, MAX_ITERS, MAX_SEED, TrainConfig
from charrnn.data import Vocabulary
from charrnn.evaluate import Score, perplexity_text
from charrnn.model import ModelSpec, Network
from charrnn.model.network import MAX_LAYERS
from charrnn.train import Outcome, training_memory_bytes

pytestmark = pytest.mark.usefixtures("in_tmp_path")
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WORDS = "the quick brown fox jumps over a lazy dog".split()
TINY = ["--hidden-size", "8", "--seq-length", "8", "--batch-size", "2", "--max-iters", "3",
        "--eval-every", "3", "--checkpoint-every", "3", "--sample-every", "0", "-q"]
HUGE = 10**400


# --------------------------------------------------------------------------- helpers

def write_text(path="t.txt", n_words=300, seed=0) -> str:
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write(" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n_words)) + "\n")
    return str(path)


def run(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=True)


def one_line_error(result) -> str:
    """A failure: non-zero exit, no traceback, and one "Error:" line on stderr (click's usage
    errors, exit 2, add the usage lines before it)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"raised {result.exception!r}\n{result.output}")
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    if result.exit_code == 1:
        assert len(lines) == 1, result.stderr
    return errors[0]


def snapshot(folder=".") -> dict:
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = "folder"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


@pytest.fixture
def model() -> str:
    """A trained tiny model, m.npz, on t.txt (in the test's folder)."""
    write_text()
    result = run("train", "t.txt", "m.npz", *TINY)
    assert result.exit_code == 0, result.output
    return "m.npz"


def edited(source: str, target: str, key: str, change) -> str:
    """A copy of checkpoint ``source`` at ``target`` whose JSON ``key`` (config or state)
    went through ``change(dict)``, as a hand edit would make it."""
    with np.load(source) as npz:
        arrays = {name: npz[name] for name in npz.files}
    values = json.loads(str(arrays[key]))
    change(values)
    arrays[key] = np.array(json.dumps(values))
    np.savez(target, **arrays)
    return target


def setter(*keys, value):
    """change(dict) for edited(): set the nested entry ``keys`` to ``value``."""
    def change(values):
        for key in keys[:-1]:
            values = values[key]
        values[keys[-1]] = value
    return change


def child_defaults():
    """In the child: SIGINT, SIGTERM and SIGHUP back to their default actions."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def charrnn_process(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=child_defaults, **kwargs)


def temporaries(folder=".") -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# --------------------------------------------------------------------------- 1. sizes

@pytest.mark.parametrize("layers", [100_000, 10**12, 10**20])
def test_absurd_layer_counts_are_refused_before_anything_is_built(model, layers):
    before = snapshot()
    message = one_line_error(run("train", "t.txt", "new.npz", *TINY, "--num-layers", layers))
    assert f"num_layers must be at most {MAX_LAYERS}" in message
    assert snapshot() == before


@pytest.mark.parametrize("option,value,field", [
    ("--hidden-size", 10**20, "hidden_size"), ("--seq-length", 10**20, "seq_length"),
    ("--batch-size", 10**20, "batch_size"), ("--eval-every", 10**20, "eval_every"),
    ("--checkpoint-every", 10**20, "checkpoint_every"),
    ("--sample-every", 10**20, "sample_every"), ("--random-seed", 2**64, "random_seed"),
    ("--random-seed", HUGE, "random_seed")])
def test_every_size_option_is_bounded(model, option, value, field):
    before = snapshot()
    message = one_line_error(run("train", "t.txt", "new.npz", *TINY, option, value))
    assert f"{field} must be at most {INT_LIMITS[field]:,}" in message
    assert len(message) < 200   # a 400-digit number is described, not printed
    assert snapshot() == before


def test_max_iters_beyond_its_bound_is_a_usage_error(model):
    before = snapshot()
    message = one_line_error(run("train", "t.txt", "new.npz", *TINY, "--max-iters", 10**20))
    assert "--max-iters" in message
    assert snapshot() == before


def test_a_model_too_large_for_memory_says_what_it_needs(model):
    before = snapshot()
    message = one_line_error(run("train", "t.txt", "new.npz", *TINY, "--hidden-size", 10**6))
    assert re.search(r"needs at least [\d,.]+ TB of memory", message), message
    assert snapshot() == before


def test_the_memory_estimate_covers_what_many_layers_really_allocate():
    """Set-up and one step of a deep, narrow model allocate no more than the estimate: each
    layer's Python objects, workspace and cache count, not just its few parameters."""
    config = TrainConfig(num_layers=MAX_LAYERS, hidden_size=8, seq_length=8, batch_size=2,
                         optimizer="adam")
    network = Network(config.model_spec(28), config.dtype)
    tracemalloc.start()
    try:
        params = network.init_params(np.random.default_rng(0), config.init_scale)
        extra = [params.zeros_like() for _ in range(5)]   # gradients, moments, scratch
        inputs = np.zeros((8, 2), dtype=np.int64)
        state = network.zero_state(2)
        _, cache = network.forward(params, inputs, inputs, state)
        network.backward(params, cache, extra[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= training_memory_bytes(network, config), peak


@pytest.mark.parametrize("field,value", [("num_layers", 10**12), ("num_layers", 10**20),
                                         ("hidden_size", 10**20), ("batch_size", 10**20),
                                         ("seq_length", 10**20), ("max_iters", HUGE),
                                         ("eval_every", HUGE), ("random_seed", HUGE),
                                         ("random_seed", -1), ("learning_rate", math.inf),
                                         ("clip", math.inf), ("init_scale", math.inf)])
def test_a_config_with_absurd_sizes_is_refused_on_load_naming_the_field(model, field, value):
    edited(model, "bad.npz", "config", setter(field, value=value))
    before = snapshot()
    for command in (["info", "bad.npz"], ["sample", "bad.npz", "-n", "5"],
                    ["train", "t.txt", "bad.npz", "--resume", "-q"]):
        message = one_line_error(run(*command))
        assert "bad.npz" in message and f"config.{field}" in message, message
    assert snapshot() == before


def test_an_export_describing_too_many_layers_is_refused_before_building_them():
    with pytest.raises(ValueError, match="num_layers must be at most"):
        Network(ModelSpec(vocab_size=5, hidden_size=4, num_layers=10**12))
    with pytest.raises(ValueError, match="vocab_size must be at most"):
        Network(ModelSpec(vocab_size=10**20, hidden_size=4))


@POSIX
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_set_up_ends_the_process_promptly_and_leaves_nothing(number):
    """The signal comes as soon as the run has claimed its files (its lock exists), while it
    reads and encodes a long text and builds the model: the process ends at once, and the
    lock and the folders it made are gone."""
    write_text("long.txt", n_words=1_000_000)
    process = charrnn_process("train", "long.txt", "runs/deep/m.npz", *TINY[:6], "-q",
                              "--max-iters", 10**9, "--eval-every", 10**9,
                              "--checkpoint-every", 10**9, "--sample-every", 0)
    deadline = time.monotonic() + 60
    while not os.path.exists("runs/deep/.m.npz.lock"):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.001)
    process.send_signal(number)
    signalled = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert time.monotonic() - signalled < 5
    assert process.returncode == 128 + number, stderr
    assert b"Traceback" not in stderr
    assert list(snapshot()) == ["long.txt"]


# --------------------------------------------------------------------------- 2. numbers in a checkpoint

STATE_EDITS = {
    "iteration": setter("iteration", value=HUGE),
    "position": setter("position", value=HUGE),
    "chars_seen": setter("chars_seen", value=HUGE),
    "smooth_loss": setter("smooth_loss", value=HUGE),
    "elapsed_seconds": setter("elapsed_seconds", value=1e300),
    "best_val_loss": setter("best_val_loss", value=HUGE),
    "last_val_loss": setter("last_val_loss", value=-HUGE),
    "blas_threads": setter("blas_threads", value=HUGE),
    "rng_state.state.state": setter("rng_state", "state", "state", value=HUGE),
    "rng_state.state.inc": setter("rng_state", "state", "inc", value=-1),
    "rng_state.uinteger": setter("rng_state", "uinteger", value=2**32),
    "rng_state.has_uint32": setter("rng_state", "has_uint32", value=HUGE),
}


@pytest.mark.parametrize("field", list(STATE_EDITS))
def test_absurd_numbers_in_the_state_are_refused_naming_the_field(model, field):
    edited(model, "bad.npz", "state", STATE_EDITS[field])
    before = snapshot()
    for command in (["info", "bad.npz"], ["train", "t.txt", "bad.npz", "--resume", "-q"],
                    ["eval", "t.txt", "bad.npz", "-q"], ["export", "bad.npz", "-o", "x.json"]):
        message = one_line_error(run(*command))
        assert "bad.npz" in message and f"state.{field} should be" in message, message
        assert len(message) < 250
    assert snapshot() == before


def test_a_resume_with_a_400_digit_chars_seen_is_refused_before_training(model):
    """The issue's case: it used to train, then crash at the first save, losing the work."""
    edited(model, "m.npz", "state", setter("chars_seen", value=HUGE))
    before = snapshot()
    message = one_line_error(run("train", "t.txt", "m.npz", "--resume", "--max-iters", 6, "-q"))
    assert "state.chars_seen" in message
    assert snapshot() == before


def test_the_largest_counts_a_checkpoint_may_hold_still_load_and_resume(model):
    edited(model, "m.npz", "state", lambda state: state.update(
        chars_seen=2**53 - 10**6, elapsed_seconds=9e11))
    assert run("info", "m.npz").exit_code == 0
    result = run("train", "t.txt", "m.npz", "--resume", "--max-iters", 6, "-q")
    assert result.exit_code == 0, result.output
    assert load_checkpoint("m.npz").state["chars_seen"] == 2**53 - 10**6 + 3 * 16


def test_a_number_too_long_for_python_to_read_is_named(model):
    with np.load(model) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["state"] = np.array(str(arrays["state"]).replace(
        '"chars_seen": ', '"chars_seen": ' + "9" * 5000, 1))
    np.savez("bad.npz", **arrays)
    message = one_line_error(run("info", "bad.npz"))
    assert "bad.npz" in message and "state holds" in message


@pytest.mark.parametrize("column,value", [(0, np.inf), (1, np.nan), (2, -np.inf), (4, np.inf)])
def test_a_history_with_numbers_that_cannot_be_written_is_refused(model, column, value):
    checkpoint = load_checkpoint(model)
    checkpoint.history.rows[0, column] = value
    with np.load(model) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["history"] = checkpoint.history.rows
    np.savez("bad.npz", **arrays)
    message = one_line_error(run("info", "bad.npz"))
    assert "bad.npz" in message and "history column" in message


def test_a_history_without_validation_losses_still_loads(model):
    checkpoint = load_checkpoint(model)
    checkpoint.history.rows[:, 3] = np.nan   # a run with --val-fraction 0
    save_checkpoint("noval.npz", checkpoint)
    assert np.isnan(load_checkpoint("noval.npz").history[:, 3]).all()


# --------------------------------------------------------------------------- 3. figures

def test_perplexity_too_large_for_a_float_is_shown_as_a_power_of_e():
    assert Score(20.0, 2).perplexity == pytest.approx(math.exp(10.0))
    assert Score(2000.0, 1).perplexity == math.inf
    assert perplexity_text(1000.0) == "e^1000.0000 (too large for a float)"
    assert perplexity_text(2.0) == f"{math.exp(2.0):.3f}"


def test_a_model_trained_at_a_reckless_rate_evaluates_and_shows(model):
    """The issue's case: --learning-rate 1000 is legal, and leaves a loss of thousands of
    nats/char; eval and viz must print it, with the perplexity as a power of e."""
    result = run("train", "t.txt", "wild.npz", *TINY[:6], "--max-iters", 30, "--eval-every",
                 30, "--checkpoint-every", 30, "--sample-every", 0, "-q", "--learning-rate",
                 1000, "--warmup-fraction", 0, "--decay-fraction", 0)
    assert result.exit_code == 0, result.output
    result = run("eval", "t.txt", "wild.npz", "-q")
    assert result.exit_code == 0, result.output
    shown = result.stdout.split()
    assert shown[3] == "nats/char", result.stdout
    nats = float(shown[2])
    assert nats > 709.8, result.stdout   # beyond exp()'s range: the case being tested
    assert f"perplexity e^{nats:.4f} (too large for a float)" in result.stdout
    result = run("viz", "t.txt", "wild.npz", "-o", "wild.html", "-q")
    assert result.exit_code == 0, result.output
    with open("wild.html", encoding="utf-8") as f:
        page = f.read()
    assert f"perplexity e^{nats:.4f} (too large for a float)" in page
    assert run("info", "wild.npz").exit_code == 0


# --------------------------------------------------------------------------- 4. folders

FOLDER_OUTPUTS = ["newdir/", "pages", "pages/", "pages/.", "link-to-pages"]


def writers(output: str) -> dict[str, list]:
    return {"train": ["train", "t.txt", "--checkpoint", output, *TINY],
            "plot": ["plot", "m.npz", "-o", output],
            "export": ["export", "m.npz", "-o", output],
            "export json": ["export", "m.npz", "-o", output, "--format", "json"],
            "viz": ["viz", "t.txt", "m.npz", "-o", output, "-q"]}


@pytest.mark.parametrize("output", FOLDER_OUTPUTS)
@pytest.mark.parametrize("command", list(writers("x")))
def test_an_output_naming_a_folder_is_refused_by_every_writer(model, command, output):
    os.mkdir("pages")
    os.symlink("pages", "link-to-pages")
    before = snapshot()
    message = one_line_error(run(*writers(output)[command]))
    assert f" {output} " in message and "directory" in message, message
    extension = {"train": "npz", "plot": "png", "export": "safetensors", "export json": "json",
                 "viz": "viz.html"}[command]
    assert message.endswith(f"e.g. {os.path.join(output, 't' if command == 'train' else 'm')}"
                            f".{extension}"), message
    assert snapshot() == before
    assert not os.path.lexists("newdir")


def test_atomic_file_refuses_a_name_ending_in_a_separator(tmp_path):
    for name in ("newdir/", "newdir" + os.sep, str(tmp_path) + os.sep, "."):
        with pytest.raises(IsADirectoryError):
            with runfiles.atomic_file(name, "w") as f:
                f.write("never")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- 5. signals

def big_model(path: str, hidden: int = 1024) -> None:
    """A model whose JSON export takes a second or more to write."""
    config = TrainConfig(hidden_size=hidden, batch_size=1, seq_length=4)
    vocab = Vocabulary(sorted(set("".join(WORDS) + " \n")))
    network = Network(config.model_spec(len(vocab)), config.dtype)
    params = network.init_params(np.random.default_rng(0), config.init_scale)
    state = {"iteration": 0, "position": 0, "chars_seen": 0, "smooth_loss": 3.0,
             "elapsed_seconds": 0.0}
    save_checkpoint(path, Checkpoint(config, vocab, params, {"adagrad": params.zeros_like()},
                                     network.zero_state(1), state))


def signal_when_writing(process, number, prefix: str, timeout: float = 30) -> None:
    """Send ``number`` to ``process`` as soon as a temporary named ``prefix...tmp`` exists."""
    deadline = time.monotonic() + timeout
    while not any(name.startswith(prefix) for name in temporaries()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.001)
    process.send_signal(number)


@POSIX
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_an_export_leaves_no_temporary(number):
    big_model("big.npz")
    process = charrnn_process("export", "big.npz", "-o", "big.json")
    signal_when_writing(process, number, ".big.json.")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, stderr
    assert b"Traceback" not in stderr
    assert temporaries() == []
    assert not os.path.exists("big.json")


@POSIX
def test_a_killed_writers_temporary_is_removed_at_the_next_write():
    big_model("big.npz")
    process = charrnn_process("export", "big.npz", "-o", "big.json")
    signal_when_writing(process, signal.SIGKILL, ".big.json.")
    process.communicate(timeout=60)
    (left,) = temporaries()
    old = time.time() - 60   # a minute ago: long dead
    os.utime(left, (old, old))
    result = run("export", "big.npz", "-o", "big.json")
    assert result.exit_code == 0, result.output
    assert temporaries() == []
    with open("big.json", encoding="utf-8") as f:
        assert json.load(f)["format"] == "charrnn-export"


@POSIX
def test_a_live_or_fresh_temporary_is_left_alone(tmp_path):
    import fcntl
    target = str(tmp_path / "out.json")
    live, fresh, dead = (str(tmp_path / f".out.json.{name}.tmp") for name in ("a", "b", "c"))
    for name in (live, fresh, dead):
        open(name, "w").close()
    old = time.time() - 60
    os.utime(live, (old, old))
    os.utime(dead, (old, old))
    with open(live) as held:   # another process writing it: its flock is held
        fcntl.flock(held, fcntl.LOCK_EX)
        runfiles.remove_stale_temporaries(target)
    assert os.path.exists(live) and os.path.exists(fresh) and not os.path.exists(dead)
    runfiles.remove_stale_temporaries(target, min_age=0)   # under a run's lock
    assert not os.path.exists(fresh)


@POSIX
@pytest.mark.parametrize("number,raised", [(signal.SIGTERM, SystemExit),
                                           (signal.SIGHUP, SystemExit),
                                           (signal.SIGINT, KeyboardInterrupt)])
def test_every_atomic_write_removes_its_temporary_on_a_signal(tmp_path, number, raised):
    """plot, viz, export, checkpoints and histories all write through atomic_file."""
    target = tmp_path / "out.txt"
    target.write_text("before")
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL),
                signal.SIGHUP: signal.signal(signal.SIGHUP, signal.SIG_DFL)}
    try:
        with pytest.raises(raised) as caught:
            with runfiles.atomic_file(target, "w") as f:
                f.write("partial")
                assert len(temporaries(tmp_path)) == 1
                os.kill(os.getpid(), number)
                time.sleep(5)   # the handler interrupts this
        # atomic_file put back the handlers it replaced
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        for number_, handler in previous.items():
            signal.signal(number_, handler)
    if raised is SystemExit:
        assert caught.value.code == 128 + number
    assert temporaries(tmp_path) == [] and target.read_text() == "before"


def test_every_file_charrnn_writes_goes_through_atomic_file():
    """No module but runfiles opens a file for writing or makes a temporary itself, so the
    guarantees above hold for every command."""
    folder = os.path.dirname(charrnn.cli.__file__)
    offenders = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py") and name != "runfiles.py":
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    source = f.read()
                if re.search(r"mkstemp|NamedTemporaryFile|open\([^)]*['\"][wax]b?['\"]", source):
                    offenders.append(name)
    assert offenders == []


@POSIX
def test_sighup_while_training_saves_like_ctrl_c():
    write_text()
    process = charrnn_process("train", "t.txt", "m.npz", *TINY[:6], "--max-iters", 10**8,
                              "--eval-every", 10**8, "--checkpoint-every", 10**8,
                              "--sample-every", 0, "-q")
    deadline = time.monotonic() + 60
    while not os.path.exists(".m.npz.lock"):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(1.5)   # into the loop (set-up of this model takes milliseconds)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGHUP, stderr
    assert b"interrupted at iteration" in stderr
    assert load_checkpoint("m.npz").state["iteration"] > 0
    assert temporaries() == [] and not os.path.exists(".m.npz.lock")


# --------------------------------------------------------------------------- 6. messages

@pytest.mark.parametrize("output", ["x.json", "x.safetensors"])
def test_an_unwritable_vocabulary_is_blamed_on_the_file_not_stdout(model, output):
    checkpoint = load_checkpoint(model)
    checkpoint.vocab = Vocabulary(sorted(list(checkpoint.vocab.chars[:-1]) + ["\ud800"]))
    save_checkpoint("odd.npz", checkpoint)
    before = snapshot()
    message = one_line_error(run("export", "odd.npz", "-o", output))
    assert message.startswith(f"Error: cannot write {output}: ") and "stdout" not in message
    assert "U+D800" in message
    assert snapshot() == before


def test_a_write_that_cannot_encode_names_its_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(OSError) as caught:
        with runfiles.atomic_file(target, "w", encoding="ascii") as f:
            f.write("caf\u00e9")
    assert caught.value.filename == os.path.realpath(target)
    assert "ascii cannot encode '\u00e9' (U+00E9)" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_viz_checks_that_stdout_can_show_the_page_name_before_writing_it(model):
    before = snapshot()
    done = subprocess.run([sys.executable, "-m", "charrnn", "viz", "t.txt", "m.npz", "-o",
                           "\u9875.html", "-q"], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "stdout's encoding (ascii)" in lines[0], lines
    assert snapshot() == before


# --------------------------------------------------------------------------- properties

def whole_range(low: int, high: int):
    """Integers across an option's whole range and beyond it, both ways, to 10**40."""
    return st.one_of(st.integers(low, min(high, low + 40)), st.integers(-10**40, 10**40),
                     st.integers(high - 5, high + 5), st.sampled_from([0, -1, 10**20, HUGE]))


INT_OPTIONS = {"--num-layers": (1, MAX_LAYERS), "--hidden-size": (1, INT_LIMITS["hidden_size"]),
               "--seq-length": (1, INT_LIMITS["seq_length"]),
               "--batch-size": (1, INT_LIMITS["batch_size"]), "--max-iters": (1, MAX_ITERS),
               "--eval-every": (1, MAX_ITERS), "--checkpoint-every": (1, MAX_ITERS),
               "--sample-every": (0, MAX_ITERS), "--random-seed": (0, MAX_SEED)}


@pytest.mark.parametrize("option", list(INT_OPTIONS))
def test_train_refuses_or_takes_any_whole_number(option, monkeypatch):
    """Any value of a numeric option: a refusal (non-zero exit, one "Error:" line, no file
    changed) or a run. The loop is one step here: sizes are refused before it or not at all."""
    def one_step(trainer, checkpoint_path, **_):
        trainer.step()
        return Outcome(finished=True)
    monkeypatch.setattr(charrnn.cli, "run_training", one_step)
    low, high = INT_OPTIONS[option]
    values = whole_range(low, high)
    if option == "--hidden-size":   # the middle band really trains (memory has its own tests)
        values = values.filter(lambda value: not 64 < value < INT_LIMITS["hidden_size"])

    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(values)
    def check(value):
        with tempfile.TemporaryDirectory() as folder:
            text = write_text(os.path.join(folder, "t.txt"))
            before = snapshot(folder)
            small = [arg for pair in zip(TINY[:-1:2], TINY[1:-1:2]) if pair[0] != option
                     for arg in pair]
            result = run("train", text, os.path.join(folder, "m.npz"), *small, "-q", option,
                         value)
            if result.exit_code == 0:
                assert low <= value <= high
                assert "Traceback" not in result.output
            else:
                one_line_error(result)
                assert snapshot(folder) == before

    check()


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["--learning-rate", "--clip", "--dropout", "--val-fraction",
                        "--warmup-fraction", "--decay-fraction"]),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                 st.floats(0, 1)))
def test_train_refuses_or_takes_any_number(option, value):
    """The same for the options that take any number: NaN, inf, 1e308, negatives."""
    with tempfile.TemporaryDirectory() as folder:
        text = write_text(os.path.join(folder, "t.txt"), n_words=60)
        before = snapshot(folder)
        result = run("train", text, os.path.join(folder, "m.npz"), *TINY[:6], "--max-iters",
                     1, "--sample-every", 0, "-q", option, value)
        if result.exit_code == 0:
            assert 0 <= float(value) < math.inf
            assert load_checkpoint(os.path.join(folder, "m.npz")).state["iteration"] == 1
        else:
            one_line_error(result)
            assert snapshot(folder) == before
