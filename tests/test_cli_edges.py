"""Edges of the command line found in review: file names that would collide, --force and the
old model's files, the history written at every evaluation, the plot command, tiny
temperatures, non-.npz files, hand-edited state, and the BLAS thread count kept on resume.
"""
from __future__ import annotations

import builtins
import csv
import json

import numpy as np
import pytest

from charrnn.checkpoint import CheckpointError, load_checkpoint
from test_cli import SMALL, make_text, read_npz, run


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(make_text(), encoding="utf-8")
    return tmp_path


def loud(options):
    """``options`` without -q, which silences the notes a test wants to read."""
    return [option for option in options if option not in ("-q", "--quiet")]


def train(*extra, expect=0):
    return run("train", "text.txt", *SMALL, *extra, expect=expect)


def test_checkpoint_name_must_end_in_npz(workdir):
    """Otherwise its .csv history could be the checkpoint itself, and replace it."""
    result = train("--max-iters", "3", "--checkpoint", "model.csv", expect=1)
    assert ".npz" in result.stderr
    assert not (workdir / "model.csv").exists()


def test_force_removes_the_replaced_models_best_twin_and_history(workdir):
    train("--max-iters", "14", "--checkpoint", "m.npz")
    assert (workdir / "m.best.npz").exists() and (workdir / "m.csv").exists()
    result = run("train", "text.txt", *loud(SMALL), "--max-iters", "3", "--checkpoint", "m.npz",
                 "--force")
    assert "m.best.npz" in result.stderr
    # what is there now belongs to the new model: its single end-of-run evaluation
    assert load_checkpoint(workdir / "m.best.npz").state["iteration"] == 3
    with open(workdir / "m.csv") as f:
        assert len(list(csv.reader(f))) == 2   # header + one row


def test_force_interrupted_before_any_evaluation_leaves_no_old_best(workdir):
    train("--max-iters", "14", "--checkpoint", "m.npz")
    args = [a for a in SMALL]
    args[args.index("--eval-every") + 1] = "100"
    # --val-fraction 0: the new run's evaluations find no validation text, so nothing is "best"
    run("train", "text.txt", *args, "--max-iters", "3", "--checkpoint", "m.npz", "--force",
        "--val-fraction", "0")
    assert not (workdir / "m.best.npz").exists()


def test_history_csv_has_a_row_per_evaluation_before_any_checkpoint(workdir):
    """--eval-every 7 with --checkpoint-every 100: the CSV must not wait for a save."""
    args = [a for a in SMALL]
    args[args.index("--checkpoint-every") + 1] = "100"
    run("train", "text.txt", *args, "--max-iters", "22", "--checkpoint", "m.npz")
    with open(workdir / "m.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [row[0] for row in rows[1:]] == ["7", "14", "21", "22"]
    history = load_checkpoint(workdir / "m.npz").history
    assert [float(row[3]) for row in rows[1:]] == pytest.approx(history[:, 3], abs=1e-6)


def test_info_on_a_best_twin_names_the_real_history(workdir):
    train("--max-iters", "7", "--checkpoint", "m.npz")
    result = run("info", "m.best.npz")
    assert "m.csv" in result.stdout and "m.best.csv" not in result.stdout


def test_sample_n0_with_unknown_seed_is_an_error_not_a_traceback(workdir):
    train("--max-iters", "3", "--checkpoint", "m.npz")
    result = run("sample", "--checkpoint", "m.npz", "-n", "0", "--seed", "€x", expect=1)
    assert "'€'" in result.stderr
    assert result.stdout == ""


def test_sample_tiny_temperature_is_refused(workdir):
    train("--max-iters", "3", "--checkpoint", "m.npz")
    result = run("sample", "--checkpoint", "m.npz", "--temperature", "1e-45", expect=1)
    assert "temperature" in result.stderr and result.stdout == ""


def test_negative_random_seed_is_a_usage_error(workdir):
    train("--max-iters", "3", "--checkpoint", "m.npz")
    result = run("sample", "--checkpoint", "m.npz", "--random-seed", "-1", expect=2)
    assert "--random-seed" in result.stderr


@pytest.mark.parametrize("content", [b"iteration,chars\n1,2\n", b"\x00" * 50, b"PK\x05\x06" + b"\x00" * 18])
def test_files_that_are_not_npz_are_called_that(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint") as caught:
        load_checkpoint(path)
    assert "pickle" not in str(caught.value)


@pytest.mark.parametrize("field, value", [("best_val_loss", "x"), ("last_val_loss", float("inf")),
                                          ("text_sha256", 5), ("blas_threads", 0)])
def test_hand_edited_optional_state_fields_are_refused(workdir, field, value):
    train("--max-iters", "7", "--checkpoint", "m.npz")
    arrays = read_npz(workdir / "m.npz")
    state = json.loads(str(arrays["state"]))
    state[field] = value
    arrays["state"] = np.array(json.dumps(state))
    np.savez(workdir / "bad.npz", **arrays)
    result = run("info", "bad.npz", expect=1)
    assert field in result.stderr


def test_resume_keeps_the_saved_blas_thread_count(workdir):
    train("--max-iters", "5", "--checkpoint", "m.npz", "--threads", "1")
    assert load_checkpoint(workdir / "m.npz").state["blas_threads"] == 1
    result = train("--max-iters", "9", "--checkpoint", "m.npz", "--resume")
    assert "thread" not in result.stderr
    assert load_checkpoint(workdir / "m.npz").state["blas_threads"] == 1
    result = run("train", "text.txt", *loud(SMALL), "--max-iters", "12", "--checkpoint", "m.npz",
                 "--resume", "--threads", "2")
    assert "last bits" in result.stderr


def test_plot_writes_a_png(workdir):
    pytest.importorskip("matplotlib")
    train("--max-iters", "30", "--checkpoint", "m.npz")
    result = run("plot", "m.npz", "-o", "curves.png")
    assert "curves.png" in result.stderr and result.stdout == ""
    data = (workdir / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) < 1_000_000
    run("plot", "m.npz")   # default name: beside the checkpoint
    assert (workdir / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_how_to_install(workdir, monkeypatch):
    train("--max-iters", "7", "--checkpoint", "m.npz")
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = run("plot", "m.npz", expect=1)
    assert "pip install" in result.stderr
    assert not (workdir / "m.png").exists()


def test_plot_refuses_to_overwrite_a_checkpoint(workdir):
    train("--max-iters", "7", "--checkpoint", "m.npz")
    before = (workdir / "m.npz").read_bytes()
    result = run("plot", "m.npz", "-o", "m.npz", expect=1)
    assert "overwrite" in result.stderr
    assert (workdir / "m.npz").read_bytes() == before


def test_plot_of_a_checkpoint_without_evaluations_is_an_error(workdir):
    train("--max-iters", "7", "--checkpoint", "m.npz")
    arrays = read_npz(workdir / "m.npz")
    arrays["history"] = np.zeros((0, 5))
    np.savez(workdir / "fresh.npz", **arrays)
    result = run("plot", "fresh.npz", expect=1)
    assert "no evaluations" in result.stderr
    assert not (workdir / "fresh.png").exists()
