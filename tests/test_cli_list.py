"""Finding one's models (issue 21): ``charrnn list``, ``info --best``, which checkpoint a
command chose by default, and ``-q`` on every command that writes notes."""
from __future__ import annotations

import math
import os
import time

import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli

TINY = ["--hidden-size", "8", "--seq-length", "6", "--batch-size", "2", "--eval-every", "4",
        "--checkpoint-every", "4", "--sample-every", "0", "-q"]

pytestmark = pytest.mark.usefixtures("in_tmp_path")


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def models():
    """Two models in checkpoints/, the GRU written last; the vanilla one written earlier."""
    with open("text.txt", "w", encoding="utf-8") as f:
        f.write("the cat sat on the mat, and the dog sat on the log.\n" * 30)
    run("train", "text.txt", "checkpoints/rnn.npz", "--max-iters", 8, *TINY)
    run("train", "text.txt", "checkpoints/gru.npz", "--cell", "gru", "--max-iters", 12, *TINY)
    earlier = time.time() - 60
    for name in ("rnn.npz", "rnn.best.npz"):
        os.utime(os.path.join("checkpoints", name), (earlier, earlier))
    return "checkpoints/gru.npz", "checkpoints/rnn.npz"


def test_list_shows_every_model_newest_first_with_its_figures(models):
    result = run("list")
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["checkpoint", "model"]
    assert [line.split()[0] for line in lines[1:]] == ["gru.npz", "rnn.npz"]   # no .best twins
    for line, path in zip(lines[1:], models):
        checkpoint = load_checkpoint(path)
        state = checkpoint.state
        assert f"{state['iteration']} of {checkpoint.config.max_iters}" in line
        assert f"{state['last_val_loss'] / math.log(2):.3f}" in line
        assert f"{state['best_val_loss'] / math.log(2):.3f}" in line
        assert "hidden size 8" in line
    assert "1-layer gru" in lines[1] and "1-layer rnn" in lines[2]
    assert result.stderr == ""


def test_list_names_an_unreadable_file_in_its_row_and_goes_on(models):
    with open("checkpoints/notes.npz", "w") as f:
        f.write("not a model")
    result = run("list")
    row = next(line for line in result.stdout.splitlines() if line.startswith("notes.npz"))
    assert "unreadable" in row and "checkpoints/notes.npz" not in row
    assert any(line.startswith("rnn.npz") for line in result.stdout.splitlines())


def test_list_of_another_folder_and_of_nothing():
    os.mkdir("empty")
    assert "no checkpoint in empty/" in run("list", "empty", expect=1).stderr
    assert "no folder missing" in run("list", "missing", expect=1).stderr
    with open("file.txt", "w") as f:
        f.write("x")
    assert "file.txt is not a folder" in run("list", "file.txt", expect=1).stderr


def test_the_default_checkpoint_is_named_with_how_many_there_are(models):
    result = run("info")
    assert result.stderr.startswith("using checkpoints/gru.npz, the most recently written of "
                                    "the 2 in checkpoints/")
    assert "charrnn list" in result.stderr


def test_info_best_describes_the_best_twin(models):
    result = run("info", "--best", models[1])
    assert "checkpoint:        checkpoints/rnn.best.npz" in result.stdout
    twin = load_checkpoint("checkpoints/rnn.best.npz")
    assert f"iteration:         {twin.state['iteration']:,} of" in result.stdout


@pytest.mark.parametrize("command", [["info"], ["plot", "-o", "p.png"], ["export"],
                                     ["sample", "-n", "5"]])
def test_quiet_leaves_stderr_empty(models, command):
    if command[0] == "plot":
        pytest.importorskip("matplotlib")
    loud = run(*command)
    assert loud.stderr != ""            # there is a note to silence
    quiet = run(*command, "-q")
    assert quiet.stderr == ""
