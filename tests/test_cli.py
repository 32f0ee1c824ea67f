"""The ``charrnn`` command line through click's CliRunner: train (default paths, refusing to
overwrite, resume rules, --max-iters as a total, exact resume, determinism), sample (stdout
is exactly seed + N characters + newline; seeds, greedy, top-k, temperature, default and best
checkpoints), info and eval, and every error path (clear message on stderr, no traceback).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.cli import cli

LINES = ["the quick brown fox jumps over the lazy dog.", "a stitch in time saves nine!",
         "to be, or not to be: that is the question.", "all that glitters is not gold?",
         "café au lait, s'il vous plaît", "日本語のテキスト 🙂"]
TEXT_CHARS = sorted(set("\n".join(LINES) + "\n"))
# A constant learning rate: some tests stop a run at one --max-iters and resume it to another,
# and the schedule's warm-up and cool-down are fractions of --max-iters.
SMALL = ["--hidden-size", "12", "--seq-length", "8", "--batch-size", "3", "--learning-rate", "0.1",
         "--warmup-fraction", "0", "--decay-fraction", "0",
         "--eval-every", "7", "--checkpoint-every", "9", "--sample-every", "0", "-q"]


def make_text(num_lines: int = 250, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), num_lines)) + "\n"


def run(*args, expect=0):
    """Invoke charrnn; check the exit code and that no traceback reached the user."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr,
                                        result.exception)
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr
    if expect not in (0, 2):   # a ClickException: the exception itself is SystemExit
        assert isinstance(result.exception, SystemExit)
    return result


def read_npz(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def assert_same_model(path_a, path_b, ignore_state=("elapsed_seconds",)):
    """Every array bit for bit; state and history equal except wall-clock time."""
    a, b = read_npz(path_a), read_npz(path_b)
    assert a.keys() == b.keys()
    for key in a.keys() - {"state", "history"}:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key
    state_a, state_b = json.loads(str(a["state"])), json.loads(str(b["state"]))
    for key in ignore_state:
        state_a.pop(key, None), state_b.pop(key, None)
    assert state_a == state_b
    return a, b


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working folder holding text.txt, so checkpoints/ is created inside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(make_text(), encoding="utf-8")
    return tmp_path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A briefly trained model (float64) to sample from, made once for this module."""
    folder = tmp_path_factory.mktemp("model")
    (folder / "corpus.txt").write_text(make_text(300, seed=1), encoding="utf-8")
    path = folder / "corpus.npz"
    run("train", folder / "corpus.txt", "--checkpoint", path, *SMALL, "--max-iters", "60",
        "--dtype", "float64")
    return path


@pytest.fixture
def model(model_file, workdir):
    """The trained model copied to workdir/checkpoints/model.npz (+ .best.npz, .csv)."""
    (workdir / "checkpoints").mkdir()
    for suffix in (".npz", ".best.npz", ".csv"):
        shutil.copy(model_file.with_name("corpus" + suffix), workdir / "checkpoints" / ("model" + suffix))
    return workdir / "checkpoints" / "model.npz"


def rigged_copy(source, destination, char):
    """A copy of a checkpoint whose every prediction is ``char`` (Why = 0, by one-hot)."""
    checkpoint = load_checkpoint(source)
    checkpoint.params["Why"] = 0
    checkpoint.params["by"] = 0
    checkpoint.params["by"][checkpoint.vocab.chars.index(char)] = 20
    save_checkpoint(destination, checkpoint)


def reference_greedy(checkpoint, seed: str, length: int) -> str:
    """Greedy continuation computed from the equations, in float64."""
    p = {name.removeprefix("l1."): np.asarray(checkpoint.params[name], dtype=np.float64)
         for name in checkpoint.params}
    assert set(p) == {"Wxh", "Whh", "bh", "Why", "by"}
    chars = checkpoint.vocab.chars
    h = np.zeros(p["Whh"].shape[0])
    out = []
    for c in [chars.index(s) for s in seed]:
        h = np.tanh(p["Wxh"][:, c] + p["Whh"] @ h + p["bh"])
    for _ in range(length):
        c = int(np.argmax(p["Why"] @ h + p["by"]))
        out.append(chars[c])
        h = np.tanh(p["Wxh"][:, c] + p["Whh"] @ h + p["bh"])
    return "".join(out)


# --- train ------------------------------------------------------------------------------

def test_train_writes_default_checkpoint_history_and_best(workdir):
    result = run("train", "text.txt", *[a for a in SMALL if a != "-q"], "--max-iters", "20")
    assert result.stdout == ""
    assert "checkpoints/text.npz" in result.stderr.replace(os.sep, "/")
    folder = workdir / "checkpoints"
    assert sorted(os.listdir(folder)) == ["text.best.npz", "text.csv", "text.npz"]
    checkpoint = load_checkpoint(folder / "text.npz")
    assert checkpoint.state["iteration"] == 20
    assert checkpoint.config.hidden_size == 12 and checkpoint.config.max_iters == 20
    assert "".join(checkpoint.vocab.chars) == "".join(TEXT_CHARS)
    lines = (folder / "text.csv").read_text().splitlines()
    assert lines[0].split(",")[:2] == ["iteration", "chars_seen"]
    assert [int(line.split(",")[0]) for line in lines[1:]] == [7, 14, 20]


def test_train_progress_goes_to_stderr_as_plain_lines_off_a_terminal(workdir):
    """CliRunner's stderr is not a terminal: a plain line (here only the last, the run being
    shorter than PLAIN_PROGRESS_SECONDS), never a bar redrawn with carriage returns."""
    args = [a for a in SMALL if a != "-q"]
    result = run("train", "text.txt", *args, "--max-iters", "10")
    assert result.stdout == ""
    assert "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("iteration ")]
    assert len(lines) == 1 and lines[0].startswith("iteration 10 of 10 (pass ")
    assert "bits/char" in lines[0]


def test_train_checkpoint_option_and_dtype(workdir):
    run("train", "text.txt", *SMALL, "--max-iters", "5", "--checkpoint", "sub/run.npz",
        "--dtype", "float64")
    assert sorted(os.listdir(workdir / "sub")) == ["run.best.npz", "run.csv", "run.npz"]
    assert read_npz(workdir / "sub" / "run.npz")["params.l1.Whh"].dtype == np.float64
    assert not (workdir / "checkpoints").exists() or not os.listdir(workdir / "checkpoints")


def test_train_refuses_to_overwrite(workdir):
    run("train", "text.txt", *SMALL, "--max-iters", "5")
    path = workdir / "checkpoints" / "text.npz"
    before = path.read_bytes()
    result = run("train", "text.txt", *SMALL, "--max-iters", "5", expect=1)
    assert "--resume" in result.stderr and "--force" in result.stderr
    assert result.stdout == ""
    assert path.read_bytes() == before


def test_train_force_starts_a_new_model(workdir):
    run("train", "text.txt", *SMALL, "--max-iters", "14")
    run("train", "text.txt", *SMALL, "--max-iters", "5", "--force", "--hidden-size", "10")
    checkpoint = load_checkpoint(workdir / "checkpoints" / "text.npz")
    assert checkpoint.state["iteration"] == 5 and checkpoint.config.hidden_size == 10


def test_train_resume_and_force_together(workdir):
    run("train", "text.txt", *SMALL, "--max-iters", "5")
    before = (workdir / "checkpoints" / "text.npz").read_bytes()
    result = run("train", "text.txt", *SMALL, "--max-iters", "9", "--resume", "--force", expect=1)
    assert "--resume" in result.stderr and "--force" in result.stderr
    assert (workdir / "checkpoints" / "text.npz").read_bytes() == before


def test_train_resume_without_checkpoint(workdir):
    result = run("train", "text.txt", *SMALL, "--resume", expect=1)
    assert "text.npz" in result.stderr
    assert not (workdir / "checkpoints" / "text.npz").exists()


@pytest.mark.parametrize("option, value", [("--hidden-size", "13"), ("--seq-length", "9"),
                                           ("--batch-size", "2"), ("--dtype", "float64"),
                                           ("--random-seed", "99")])
def test_train_resume_with_conflicting_setting(workdir, option, value):
    run("train", "text.txt", *SMALL, "--max-iters", "5")
    path = workdir / "checkpoints" / "text.npz"
    before = path.read_bytes()
    args = [a for a in SMALL]
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    result = run("train", "text.txt", *args, "--max-iters", "10", "--resume", expect=1)
    assert option in result.stderr and value in result.stderr
    assert path.read_bytes() == before


def test_train_resume_with_unknown_characters(workdir):
    run("train", "text.txt", *SMALL, "--max-iters", "5")
    path = workdir / "checkpoints" / "text.npz"
    before = path.read_bytes()
    (workdir / "text.txt").write_text(make_text() + "Zebra ☃\n", encoding="utf-8")
    result = run("train", "text.txt", *SMALL, "--max-iters", "10", "--resume", expect=1)
    for char in "Z☃":
        assert repr(char) in result.stderr
    assert path.read_bytes() == before


def test_train_max_iters_is_the_total(workdir):
    run("train", "text.txt", *SMALL, "--max-iters", "12")
    path = workdir / "checkpoints" / "text.npz"
    run("train", "text.txt", *SMALL, "--max-iters", "20", "--resume")
    assert load_checkpoint(path).state["iteration"] == 20
    before = path.read_bytes()
    noisy = [a for a in SMALL if a != "-q"]   # -q silences the notes
    result = run("train", "text.txt", *noisy, "--max-iters", "20", "--resume")
    assert "already" in result.stderr and "20" in result.stderr
    assert path.read_bytes() == before
    result = run("train", "text.txt", *noisy, "--max-iters", "15", "--resume")
    assert "already" in result.stderr
    assert path.read_bytes() == before


def test_train_resume_keeps_the_saved_settings(workdir):
    """A resume without the size options uses the checkpoint's, not the defaults."""
    run("train", "text.txt", *SMALL, "--max-iters", "5")
    run("train", "text.txt", "--max-iters", "8", "--resume", "-q")
    checkpoint = load_checkpoint(workdir / "checkpoints" / "text.npz")
    assert checkpoint.state["iteration"] == 8
    assert (checkpoint.config.hidden_size, checkpoint.config.seq_length,
            checkpoint.config.batch_size) == (12, 8, 3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_resume_is_exact(workdir, dtype):
    """40 iterations in one run equal 20 then --resume to 40, bit for bit (but wall-clock
    time), with --eval-every 7 and --checkpoint-every 9, which do not divide 20."""
    common = ["text.txt", *SMALL, "--dtype", dtype, "--random-seed", "4"]
    run("train", *common, "--max-iters", "40", "--checkpoint", "one.npz")
    run("train", *common, "--max-iters", "20", "--checkpoint", "two.npz")
    run("train", *common, "--max-iters", "40", "--checkpoint", "two.npz", "--resume")
    assert_same_model(workdir / "one.npz", workdir / "two.npz",
                      ignore_state=("elapsed_seconds", "best_val_loss"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_resume_is_exact_including_history(workdir, dtype):
    """The same, for the history (in the checkpoint and the CSV) and the best checkpoint.

    The stopped run also logged the evaluation made when it ended at iteration 20; apart from
    that row, the histories agree."""
    common = ["text.txt", *SMALL, "--dtype", dtype, "--random-seed", "4"]
    run("train", *common, "--max-iters", "40", "--checkpoint", "one.npz")
    run("train", *common, "--max-iters", "20", "--checkpoint", "two.npz")
    run("train", *common, "--max-iters", "40", "--checkpoint", "two.npz", "--resume")
    a, b = assert_same_model(workdir / "one.npz", workdir / "two.npz",
                             ignore_state=("elapsed_seconds", "best_val_loss"))
    extra = b["history"][:, 0] == 20
    assert extra.sum() == 1
    np.testing.assert_array_equal(a["history"][:, :4], b["history"][~extra, :4])
    csv_a, csv_b = ([line.rsplit(",", 1)[0] for line in (workdir / name).read_text().splitlines()]
                    for name in ("one.csv", "two.csv"))
    assert csv_a == [line for line in csv_b if not line.startswith("20,")]
    assert_same_model(workdir / "one.best.npz", workdir / "two.best.npz",
                      ignore_state=("elapsed_seconds", "best_val_loss"))


def test_train_same_random_seed_is_deterministic(workdir):
    common = ["text.txt", *SMALL, "--max-iters", "15", "--random-seed", "8"]
    run("train", *common, "--checkpoint", "a.npz")
    run("train", *common, "--checkpoint", "b.npz")
    a, b = assert_same_model(workdir / "a.npz", workdir / "b.npz")
    np.testing.assert_array_equal(a["history"][:, :4], b["history"][:, :4])
    run("train", "text.txt", *SMALL, "--max-iters", "15", "--random-seed", "9", "--checkpoint", "c.npz")
    c = read_npz(workdir / "c.npz")
    for name in ("params.l1.Wxh", "params.l1.Whh", "params.Why"):
        assert not np.array_equal(a[name], c[name])


@pytest.mark.parametrize("args, fragment", [
    (["missing.txt"], "missing.txt"),
    (["text.txt", "--learning-rate", "0"], "learning-rate"),
    (["text.txt", "--hidden-size", "0"], "hidden-size"),
    (["text.txt", "--val-fraction", "1"], "val-fraction"),
    (["text.txt", "--dtype", "float16"], "dtype"),
    (["text.txt", "--max-iters", "-3"], "max-iters")])
def test_train_bad_arguments(workdir, args, fragment):
    result = CliRunner().invoke(cli, ["train", *args, "-q"])
    assert result.exit_code in (1, 2)
    assert fragment in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (workdir / "checkpoints" / "text.npz").exists()


def test_train_text_too_short_for_chosen_sizes(workdir):
    (workdir / "short.txt").write_text("the lazy dog\n" * 3, encoding="utf-8")
    result = run("train", "short.txt", "--seq-length", "30", "--batch-size", "4", "-q", expect=1)
    assert "short.txt" in result.stderr or "characters" in result.stderr
    assert not (workdir / "checkpoints" / "short.npz").exists()


def test_train_single_character_text(workdir):
    (workdir / "same.txt").write_text("a" * 500, encoding="utf-8")
    run("train", "same.txt", *SMALL, "--max-iters", "5", expect=1)


def test_train_sample_every_prints_to_stderr(workdir):
    args = [a for a in SMALL if a != "-q"]   # -q silences the samples
    args[args.index("--sample-every") + 1] = "5"
    result = run("train", "text.txt", *args, "--max-iters", "10")
    assert result.stdout == ""
    assert "sample" in result.stderr


# --- sample -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["", "the ", "café 日本🙂"])
@pytest.mark.parametrize("length", [0, 1, 37, 600])
def test_sample_prints_seed_then_exactly_n_characters(model, seed, length):
    result = run("sample", "--checkpoint", model, "--seed", seed, "-n", length, "--random-seed", 1)
    out = result.stdout
    assert out.startswith(seed) and out.endswith("\n")
    assert len(out) == len(seed) + length + 1
    assert set(out[len(seed):-1]) <= set(TEXT_CHARS)


def test_sample_length_zero_prints_seed_and_newline(model):
    assert run("sample", "--checkpoint", model, "--seed", "日本", "-n", 0).stdout == "日本\n"
    assert run("sample", "--checkpoint", model, "-n", 0).stdout == "\n"


def test_sample_same_random_seed_same_text(model):
    args = ["sample", "--checkpoint", model, "--seed", "the ", "-n", 300]
    a = run(*args, "--random-seed", 7).stdout
    assert run(*args, "--random-seed", 7).stdout == a
    assert run(*args, "--random-seed", 8).stdout != a
    assert run(*args, "--random-seed", 7, "--temperature", 0.5).stdout != a


def test_sample_greedy_is_deterministic_and_follows_the_model(model):
    args = ["sample", "--checkpoint", model, "--seed", "to be", "-n", 120, "--greedy"]
    out = run(*args).stdout
    assert run(*args).stdout == out
    assert out == "to be" + reference_greedy(load_checkpoint(model), "to be", 120) + "\n"


def test_sample_top_k_1_equals_greedy(model):
    greedy = run("sample", "--checkpoint", model, "--seed", "a ", "-n", 200, "--greedy").stdout
    top1 = run("sample", "--checkpoint", model, "--seed", "a ", "-n", 200, "--top-k", 1,
               "--random-seed", 3).stdout
    assert top1 == greedy


def test_sample_top_k_larger_than_vocabulary(model):
    result = run("sample", "--checkpoint", model, "--top-k", len(TEXT_CHARS) + 1, expect=1)
    assert "top-k" in result.stderr and str(len(TEXT_CHARS)) in result.stderr
    assert result.stdout == ""
    run("sample", "--checkpoint", model, "--top-k", len(TEXT_CHARS), "-n", 5)


@pytest.mark.parametrize("temperature", ["0", "-1", "abc"])
def test_sample_temperature_must_be_positive(model, temperature):
    result = run("sample", "--checkpoint", model, "--temperature", temperature, expect=2)
    assert "temperature" in result.stderr and "sample --help" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1   # the usage hint is in the line
    assert result.stdout == ""


@pytest.mark.parametrize("option", [["-n", "-1"], ["--top-k", "0"]])
def test_sample_bad_numbers_are_usage_errors(model, option):
    result = run("sample", "--checkpoint", model, *option, expect=2)
    assert result.stdout == ""


def test_sample_unknown_seed_characters_named(model):
    result = run("sample", "--checkpoint", model, "--seed", "the QUIZ ☃", expect=1)
    for char in "QUIZ☃":
        assert repr(char) in result.stderr
    assert result.stdout == ""


def test_sample_default_checkpoint_is_the_latest(model, workdir):
    folder = workdir / "checkpoints"
    rigged_copy(model, folder / "older.npz", "x")
    rigged_copy(model, folder / "newer.npz", "q")
    rigged_copy(model, folder / "newer.best.npz", "z")   # .best files are not candidates
    now = os.path.getmtime(model)
    for name, age in [("model.npz", 300), ("older.npz", 200), ("newer.npz", 100),
                      ("newer.best.npz", 0)]:
        os.utime(folder / name, (now - age, now - age))
    result = run("sample", "-n", 30, "--greedy")
    assert result.stdout == "q" * 30 + "\n"
    assert "newer.npz" in result.stderr and "newer.npz" not in result.stdout
    os.utime(folder / "older.npz", (now + 10, now + 10))
    result = run("sample", "-n", 30, "--greedy")
    assert result.stdout == "x" * 30 + "\n"
    assert "older.npz" in result.stderr


def test_sample_best_uses_the_best_checkpoint(model, workdir):
    rigged_copy(model, model.with_name("model.best.npz"), "z")
    assert run("sample", "--checkpoint", model, "-n", 20, "--greedy", "--best").stdout == "z" * 20 + "\n"
    assert run("sample", "--checkpoint", model, "-n", 20, "--greedy").stdout != "z" * 20 + "\n"
    # and with the default checkpoint
    assert run("sample", "-n", 20, "--greedy", "--best").stdout == "z" * 20 + "\n"


def test_sample_without_any_checkpoint(workdir):
    result = run("sample", "-n", 5, expect=1)
    assert "checkpoint" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("content", [b"", b"garbage bytes", b"PK\x03\x04 truncated"])
def test_sample_broken_checkpoint(workdir, content):
    (workdir / "bad.npz").write_bytes(content)
    result = run("sample", "--checkpoint", "bad.npz", expect=1)
    assert "bad.npz" in result.stderr
    assert result.stdout == ""


def test_sample_missing_best(workdir, model):
    model.with_name("model.best.npz").unlink()
    result = run("sample", "--checkpoint", model, "--best", expect=1)
    assert "model.best.npz" in result.stderr


# --- info -------------------------------------------------------------------------------

def value_on_line(output: str, label: str) -> str:
    lines = [line for line in output.splitlines() if label in line.lower()]
    assert lines, f"no line with {label!r} in:\n{output}"
    return lines[0]


def first_number(line: str) -> float:
    match = re.search(r"-?\d[\d,]*(\.\d+)?", line.split(":", 1)[-1])
    assert match, line
    return float(match.group(0).replace(",", ""))


def test_info_reports_the_checkpoint(model):
    checkpoint = load_checkpoint(model)
    out = run("info", model).stdout
    V, H = len(checkpoint.vocab), checkpoint.config.hidden_size
    assert first_number(value_on_line(out, "vocabulary")) == V == len(TEXT_CHARS)
    assert first_number(value_on_line(out, "parameters")) == H * V + H * H + V * H + H + V
    assert first_number(value_on_line(out, "iteration")) == checkpoint.state["iteration"] == 60
    # Losses in bits per character first (nats / ln 2), nats beside them.
    assert first_number(value_on_line(out, "train loss")) == pytest.approx(
        checkpoint.state["smooth_loss"] / math.log(2), abs=5.1e-4)
    assert "bits/char" in value_on_line(out, "train loss")
    assert first_number(value_on_line(out, "validation loss")) == pytest.approx(
        checkpoint.history.val_loss[-1] / math.log(2), abs=5.1e-4)
    assert first_number(value_on_line(out, "best")) == pytest.approx(
        np.nanmin(checkpoint.history.val_loss) / math.log(2), abs=5.1e-4)
    passes = checkpoint.state.chars_seen / checkpoint.state.train_chars
    assert first_number(value_on_line(out, "passes")) == pytest.approx(passes, abs=0.006)
    assert "model.csv" in value_on_line(out, "history")
    for name, value in checkpoint.config.to_dict().items():
        assert re.search(rf"{name}\W+{re.escape(str(value))}\b", out), name


def test_info_default_is_the_latest_checkpoint(model):
    result = run("info")
    assert "model.npz" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["missing.npz", "."])
def test_info_errors(workdir, name):
    result = run("info", name, expect=1)
    assert name in result.stderr
    assert result.stdout == ""


# --- eval -------------------------------------------------------------------------------

def test_eval_prints_scores(model, workdir):
    (workdir / "probe.txt").write_text(make_text(60, seed=5), encoding="utf-8")
    result = run("eval", "probe.txt", "--checkpoint", model, "-q")
    nats = float(re.search(r"([\d.]+)\s*nats", result.stdout).group(1))
    bits = float(re.search(r"([\d.]+)\s*bits", result.stdout).group(1))
    perplexity = float(re.search(r"perplexity\s*([\d.]+)", result.stdout).group(1))
    assert 0 < nats < math.log(len(TEXT_CHARS))   # the model has learnt something
    assert bits == pytest.approx(nats / math.log(2), abs=2e-4)
    assert perplexity == pytest.approx(math.exp(nats), rel=1e-3)
