"""Checkpoint format 2 and the models trained by earlier releases (issue 10).

A format-1 checkpoint made by charrnn 0.2.0 (tests/fixtures/format1, with the commands that
made it in its README) must still load, sample and resume exactly as that release did, and
evaluate (to the exact cross-entropy of its text, which 0.2.0 did not print: issue 12);
format 2 must round-trip every cell and depth, and a file whose arrays do not match its own
description, or that is newer than this charrnn, is refused in one line.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.evaluate import score_text
from charrnn.model import reference

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "format1")
FORMAT1_TO_2 = {"Wxh": "l1.Wxh", "Whh": "l1.Whh", "bh": "l1.bh", "Why": "Why", "by": "by"}
TINY = ["--hidden-size", "6", "--seq-length", "5", "--batch-size", "3", "--max-iters", "6",
        "--eval-every", "3", "--checkpoint-every", "3", "--sample-every", "0", "--quiet"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def copy_fixture(folder: str, model: str, tmp_path):
    """A copy of a fixture's model and its text in tmp_path; returns tmp_path."""
    for name in (model, "text.txt"):
        shutil.copy(os.path.join(folder, name), tmp_path / name)
    return tmp_path


def fixture_text(name: str, folder: str = FIXTURES) -> str:
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def format1(tmp_path):
    """A copy of the format-1 fixture and its text in tmp_path."""
    return copy_fixture(FIXTURES, "format1.npz", tmp_path)


def read_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_the_fixture_is_format_1():
    arrays = read_npz(os.path.join(FIXTURES, "format1.npz"))
    assert int(arrays["format_version"]) == 1
    assert {"Wxh", "mWxh", "hidden"} <= set(arrays)
    assert FORMAT_VERSION == 2


def test_format_1_loads_as_a_one_layer_vanilla_model():
    checkpoint = load_checkpoint(os.path.join(FIXTURES, "format1.npz"))
    arrays = read_npz(os.path.join(FIXTURES, "format1.npz"))
    config = checkpoint.config
    assert (config.cell, config.num_layers, config.dropout) == ("rnn", 1, 0.0)
    for old, new in FORMAT1_TO_2.items():
        assert np.array_equal(checkpoint.params[new], arrays[old])
        assert np.array_equal(checkpoint.optimizer_state["adagrad"][new], arrays["m" + old])
    assert list(checkpoint.carry) == ["l1.h"]
    assert np.array_equal(checkpoint.carry["l1.h"], arrays["hidden"])


def test_format_1_samples_exactly_as_release_0_2_0(format1):
    result = run("sample", "--checkpoint", format1 / "format1.npz", "--seed", "ROMEO:",
                 "-n", 80, "--random-seed", 3)
    assert result.exit_code == 0, result.output
    assert result.stdout == fixture_text("sample.txt")


def test_format_1_evaluates_to_the_exact_cross_entropy_of_its_text(format1):
    """The format-1 model loads and evaluates. 0.2.0's figure (eval.txt: 5,995 of the 6,000
    characters scored, by 5 streams that each started from a zero state) no longer applies:
    since issue 12, eval scores every character but the first, each predicted from all the
    text before it, so the figure is checked against that cross-entropy computed
    independently: min-char-rnn's loss over the whole text as one stream, in float64, from the
    fixture's own arrays."""
    result = run("eval", format1 / "text.txt", "--checkpoint", format1 / "format1.npz")
    assert result.exit_code == 0, result.output
    arrays = read_npz(os.path.join(FIXTURES, "format1.npz"))
    params = {name: np.asarray(arrays[name], dtype=np.float64) for name in reference.PARAM_NAMES}
    params["bh"], params["by"] = params["bh"].reshape(-1, 1), params["by"].reshape(-1, 1)
    vocab = [str(c) for c in arrays["vocab"]]
    text = fixture_text("text.txt")
    indices = [vocab.index(c) for c in text]
    total, _, _ = reference.loss_fun(indices[:-1], indices[1:],
                                     np.zeros((len(params["Whh"]), 1)), params)
    exact = total / (len(text) - 1)
    nats, bits = eval_figure(result.stdout, "nats/char"), eval_figure(result.stdout, "bits/char")
    # within the printed precision (4 decimals), the batched figure's measured distance from
    # the exact one (tests/test_evaluate.py's EXACTNESS, 2e-6) and float32 arithmetic
    assert abs(nats - exact) <= 5e-5 + 2e-6 + 1e-5
    assert abs(bits - exact / math.log(2)) <= 5e-5 + 2e-5
    checkpoint = load_checkpoint(format1 / "format1.npz")   # unrounded, through the API
    score = score_text(checkpoint.network(), checkpoint.params, checkpoint.vocab.encode(text))
    assert score.count == len(text) - 1
    assert abs(score.nats_per_char - exact) <= 2e-6 + 1e-6   # measured here: 7e-9
    assert f"({len(text) - 1:,} characters scored)" in result.stdout
    # 0.2.0's figure was not it
    assert eval_figure(fixture_text("eval.txt"), "nats/char") != float(f"{exact:.4f}")


def test_format_1_resumes_as_release_0_2_0(format1):
    """0.2.0 resumed the fixture from iteration 60 to 90 on another machine; so do we, to
    float32 rounding: float32 matrix products round differently on other BLAS kernels and
    thread counts, so only two runs on one machine can agree to the last bit (the next test)."""
    path = format1 / "format1.npz"
    result = run("train", format1 / "text.txt", "--checkpoint", path, "--resume",
                 "--max-iters", 90, "--quiet")
    assert result.exit_code == 0, result.output
    ours = read_npz(path)
    theirs = read_npz(os.path.join(FIXTURES, "format1_resumed.npz"))
    assert int(ours["format_version"]) == 2           # saved in the new format
    for old, new in FORMAT1_TO_2.items():
        np.testing.assert_allclose(ours["params." + new], theirs[old], rtol=1e-4, atol=1e-6,
                                   err_msg=new)
        np.testing.assert_allclose(ours["adagrad." + new], theirs["m" + old], rtol=1e-4,
                                   atol=1e-6, err_msg=new)
    np.testing.assert_allclose(ours["carry.l1.h"], theirs["hidden"], rtol=1e-4, atol=1e-6)
    # every column but the last, the training time, which is the clock's
    np.testing.assert_allclose(ours["history"][:, :-1], theirs["history"][:, :-1], rtol=1e-5)
    state, their_state = json.loads(str(ours["state"])), json.loads(str(theirs["state"]))
    for key in ("iteration", "position", "chars_seen", "rng_state", "text_sha256"):
        assert state[key] == their_state[key], key
    for key in ("smooth_loss", "best_val_loss", "last_val_loss"):
        assert state[key] == pytest.approx(their_state[key], rel=1e-5), key


def test_format_1_resumes_to_the_same_bits_twice(format1, tmp_path):
    """The same resume, from 60 to 90, run twice on this machine: the same bits (interrupted
    runs resumed to the same bits as uninterrupted ones: tests/test_signals.py)."""
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(format1 / "format1.npz", again / "format1.npz")
    for path in (format1 / "format1.npz", again / "format1.npz"):
        result = run("train", format1 / "text.txt", "--checkpoint", path, "--resume",
                     "--max-iters", 90, "--quiet")
        assert result.exit_code == 0, result.output
    one, two = read_npz(format1 / "format1.npz"), read_npz(again / "format1.npz")
    assert one.keys() == two.keys()
    for key in one:
        if key == "history":   # its last column is the clock's
            assert one[key][:, :-1].tobytes() == two[key][:, :-1].tobytes()
        elif key == "state":
            ours, theirs = json.loads(str(one[key])), json.loads(str(two[key]))
            ours.pop("elapsed_seconds"), theirs.pop("elapsed_seconds")
            assert ours == theirs
        else:
            assert one[key].tobytes() == two[key].tobytes(), key


def test_format_1_info_describes_the_model(format1):
    result = run("info", format1 / "format1.npz")
    assert result.exit_code == 0, result.output
    assert "1-layer rnn, hidden size 16" in result.stdout
    assert "layer 1:" in result.stdout and "output:" in result.stdout


@pytest.mark.parametrize("cell,layers,dropout", [("rnn", 1, 0.0), ("lstm", 2, 0.25),
                                                 ("gru", 3, 0.1), ("lstm", 1, 0.0)])
def test_format_2_round_trips_every_cell(tmp_path, cell, layers, dropout):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop\n" * 40)
    path = tmp_path / "m.npz"
    result = run("train", text, "--checkpoint", path, "--cell", cell, "--num-layers", layers,
                 "--dropout", dropout, *TINY)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(path)
    arrays = read_npz(path)
    assert (checkpoint.config.cell, checkpoint.config.num_layers,
            checkpoint.config.dropout) == (cell, layers, dropout)
    network = checkpoint.network()
    assert set(checkpoint.params) == set(network.param_shapes)
    expected_carry = {f"l{k}.{s}" for k in range(1, layers + 1)
                      for s in (("h", "c") if cell == "lstm" else ("h",))}
    assert set(checkpoint.carry) == expected_carry
    for name in network.param_shapes:
        assert arrays["params." + name].tobytes() == checkpoint.params[name].tobytes()
    # saved again, it is the same file's content
    save_checkpoint(tmp_path / "again.npz", checkpoint)
    again = read_npz(tmp_path / "again.npz")
    assert set(again) == set(arrays)
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_resume_of_a_stacked_model_with_dropout_is_bit_exact(tmp_path, cell):
    """Stopped at 6 and resumed to 12 equals 12 in one go: the dropout masks come from the
    saved generator, and every layer's carried state is restored."""
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat with a hat\n" * 30)
    model = ["--cell", cell, "--num-layers", "2", "--dropout", "0.2"]
    whole, split = tmp_path / "whole.npz", tmp_path / "split.npz"
    # (a constant learning rate: the schedule is a function of --max-iters, so a run that
    # stops at 6 and one that goes to 12 would otherwise follow different schedules)
    common = [*TINY[:6], "--eval-every", "3", "--checkpoint-every", "3", "--sample-every", "0",
              "--warmup-fraction", "0", "--decay-fraction", "0", "--quiet"]
    assert run("train", text, "--checkpoint", whole, *model, *common, "--max-iters", 12
               ).exit_code == 0
    assert run("train", text, "--checkpoint", split, *model, *common, "--max-iters", 6
               ).exit_code == 0
    result = run("train", text, "--checkpoint", split, "--resume", "--max-iters", 12, "--quiet")
    assert result.exit_code == 0, result.output
    a, b = read_npz(whole), read_npz(split)
    float_keys = [k for k in a if k.split(".")[0] in ("params", "adagrad", "carry")]
    assert len(float_keys) > 6
    for key in float_keys:
        assert a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize("flag,value", [("--cell", "gru"), ("--num-layers", "2")])
def test_resume_refuses_a_conflicting_cell_or_depth(tmp_path, flag, value):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop\n" * 40)
    path = tmp_path / "m.npz"
    assert run("train", text, "--checkpoint", path, *TINY).exit_code == 0
    before = path.read_bytes()
    result = run("train", text, "--checkpoint", path, "--resume", flag, value, "--quiet")
    assert result.exit_code == 1
    assert "conflicts with the checkpoint" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_dropout_may_change_on_resume(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop\n" * 40)
    path = tmp_path / "m.npz"
    assert run("train", text, "--checkpoint", path, "--cell", "gru", *TINY).exit_code == 0
    result = run("train", text, "--checkpoint", path, "--resume", "--dropout", "0.3",
                 "--max-iters", 9, "--quiet")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(path).config.dropout == 0.3


@pytest.mark.parametrize("args,message", [
    (["--cell", "transformer"], "transformer"),
    (["--num-layers", "0"], "--num-layers"),
    (["--dropout", "1"], "--dropout"),
    (["--dropout", "-0.1"], "--dropout"),
    (["--dropout", "nan"], "--dropout"),
])
def test_bad_model_options_are_usage_errors(tmp_path, args, message):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop\n" * 40)
    result = run("train", text, "--checkpoint", tmp_path / "m.npz", *args, *TINY)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.npz").exists()


def rewrite(path, change):
    """Rewrite the .npz at ``path`` with ``change(arrays)`` applied (as a user's tool might)."""
    arrays = read_npz(path)
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def set_config(arrays, **values):
    config = json.loads(str(arrays["config"]))
    config.update(values)
    arrays["config"] = np.array(json.dumps(config))


@pytest.mark.parametrize("change,message", [
    (lambda a: set_config(a, cell="gru"), "does not have"),           # arrays of an lstm
    (lambda a: set_config(a, num_layers=1), "does not have"),        # an extra layer's arrays
    (lambda a: set_config(a, num_layers=3), "missing"),              # a layer's arrays missing
    (lambda a: set_config(a, hidden_size=7), "expected"),
    (lambda a: set_config(a, cell="lstm2"), "cell"),
    (lambda a: set_config(a, dropout=1.5), "dropout"),
    (lambda a: a.pop("carry.l2.c"), "missing"),
    (lambda a: a.update({"params.l1.Whh": a["params.l1.Whh"][:-1]}), "shape"),
    (lambda a: a.update({"adagrad.Why": -a["adagrad.Why"] - 1}), "negative"),
    (lambda a: a.update({"params.l2.bh": a["params.l2.bh"] * np.nan}), "NaN"),
    (lambda a: a.update({"format_version": np.array(FORMAT_VERSION + 1)}), "newer"),
    (lambda a: a.update({"format_version": np.array(0)}), "not a charrnn format"),
])
def test_a_format_2_file_that_contradicts_itself_is_refused(tmp_path, change, message):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop\n" * 40)
    path = tmp_path / "m.npz"
    assert run("train", text, "--checkpoint", path, "--cell", "lstm", "--num-layers", "2",
               "--optimizer", "adagrad", *TINY).exit_code == 0
    rewrite(path, change)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    for command in (["sample", "--checkpoint", path, "-n", "5"],
                    ["eval", text, "--checkpoint", path],
                    ["train", text, "--checkpoint", path, "--resume", "--quiet"]):
        result = run(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert path.read_bytes() == before


def test_every_command_works_for_every_cell(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 30)
    for cell in ("rnn", "lstm", "gru"):
        path = tmp_path / f"{cell}.npz"
        assert run("train", text, "--checkpoint", path, "--cell", cell, "--num-layers", 2,
                   *TINY).exit_code == 0
        sampled = run("sample", "--checkpoint", path, "--seed", "To be", "-n", 30)
        assert sampled.exit_code == 0 and sampled.stdout.startswith("To be")
        assert len(sampled.stdout) == len("To be") + 30 + 1
        scored = run("eval", text, "--checkpoint", path)
        assert scored.exit_code == 0 and "nats/char" in scored.stdout
        nats = eval_figure(scored.stdout, "nats/char")
        assert math.isfinite(nats) and 0 < nats < math.log(len(set(text.read_text()))) + 0.5
        described = run("info", path)
        assert described.exit_code == 0
        assert f"2-layer {cell}" in described.stdout
        assert "layer 2:" in described.stdout


def test_a_format_2_file_keeps_no_pickles(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop\n" * 40)
    path = tmp_path / "m.npz"
    assert run("train", text, "--checkpoint", path, "--cell", "gru", *TINY).exit_code == 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            header = archive.read(name)[:128]
            assert b"'descr': '|O'" not in header and b"'descr': 'O'" not in header


# --------------------------------------------------------------------------- 0.3.0's GRU

GRU_030 = os.path.join(os.path.dirname(__file__), "fixtures", "gru-0.3.0")


@pytest.fixture
def gru030(tmp_path):
    """A copy of the 2-layer GRU saved by charrnn 0.3.0 (before --optimizer) and its text."""
    return copy_fixture(GRU_030, "gru.npz", tmp_path)


def test_a_0_3_0_gru_is_an_adagrad_model_that_samples_and_evaluates_as_0_3_0(gru030):
    arrays = read_npz(gru030 / "gru.npz")
    assert "optimizer" not in json.loads(str(arrays["config"]))
    checkpoint = load_checkpoint(gru030 / "gru.npz")
    config = checkpoint.config
    assert (config.cell, config.num_layers, config.dropout) == ("gru", 2, 0.1)
    assert config.optimizer == "adagrad"            # not the gated cells' new default
    assert list(checkpoint.optimizer_state) == ["adagrad"]
    their_sample = fixture_text("sample.txt", GRU_030)
    ours = run("sample", "--checkpoint", gru030 / "gru.npz", "--seed", "ROMEO:", "-n", 80,
               "--random-seed", 3)
    assert ours.exit_code == 0 and ours.stdout == their_sample
    ours = run("eval", gru030 / "text.txt", "--checkpoint", gru030 / "gru.npz")
    assert ours.exit_code == 0
    for unit in ("nats/char", "bits/char"):   # (0.3.0 printed nats first, 0.5.0 bits)
        assert eval_figure(ours.stdout, unit) == eval_figure(fixture_text("eval.txt", GRU_030), unit)


def test_a_0_3_0_gru_resumes_with_adagrad_as_0_3_0_did(gru030):
    """0.3.0 resumed the fixture from 60 to 90 iterations; so do we, with Adagrad, to float32
    rounding (0.4.0 sums the GRU's products in another order, see the fixture's README)."""
    path = gru030 / "gru.npz"
    result = run("train", gru030 / "text.txt", "--checkpoint", path, "--resume",
                 "--max-iters", 90, "--quiet")
    assert result.exit_code == 0, result.output
    ours, theirs = read_npz(path), read_npz(os.path.join(GRU_030, "gru_resumed.npz"))
    assert json.loads(str(ours["config"]))["optimizer"] == "adagrad"
    assert set(ours) - {"config"} == set(theirs) - {"config"}   # adagrad.*, no adam.*
    for key in theirs:
        if key.startswith(("params.", "adagrad.", "carry.")):
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6,
                                       err_msg=key)
    state, their_state = json.loads(str(ours["state"])), json.loads(str(theirs["state"]))
    for key in ("iteration", "position", "chars_seen", "rng_state", "text_sha256"):
        assert state[key] == their_state[key], key
    assert state["smooth_loss"] == pytest.approx(their_state["smooth_loss"], rel=1e-6)


def eval_figure(line: str, unit: str) -> float:
    """The number before ``unit`` ("nats/char", "bits/char") in a line `charrnn eval` printed."""
    match = re.search(r"([0-9.]+) " + re.escape(unit), line)
    assert match, line
    return float(match.group(1))
