"""Ctrl-C and SIGTERM during training (issue 4).

A real ``python -m charrnn train`` subprocess is interrupted while it trains. It must finish the
current iteration, save the checkpoint, say how to resume (``--resume``), and exit with 130 for
SIGINT or 143 for SIGTERM (128 + the signal number). Resuming up to N iterations must then give
bit-for-bit the model an uninterrupted N-iteration run gives, in float32 and in float64.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from helpers import with_sigint_default

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WORDS = "the quick brown fox jumps over a lazy dog and then some more".split()
NEVER = str(10 ** 8)
# A constant learning rate: the interrupted run starts with --max-iters NEVER and is resumed
# with a smaller one, and the schedule's warm-up and cool-down are fractions of --max-iters.
TINY = ["--hidden-size", "8", "--seq-length", "8", "--batch-size", "2", "--sample-every", "0",
        "--eval-every", NEVER, "--checkpoint-every", NEVER, "--random-seed", "11",
        "--warmup-fraction", "0", "--decay-fraction", "0"]
STARTUP_TIMEOUT = 60    # seconds allowed for the subprocess to start training (a busy machine)
TRAINING_SECONDS = 1.0  # how long it trains before the signal


def ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_text(folder) -> str:
    rng = np.random.default_rng(9)
    path = os.path.join(folder, "text.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 300)) + "\n")
    return path


def start_training(text: str, checkpoint: str, stderr_path: str, *extra: str,
                   sigint_ignored: bool = False) -> subprocess.Popen:
    """Start a training run that would last for hours, and wait until it is in its loop.

    It is "in its loop" once it has announced the run on stderr and trained a moment longer
    (the announcement comes just before the loop; TRAINING_SECONDS is ample for thousands of
    iterations of this tiny model). The process takes SIGINT as a terminal's foreground
    process does, or, with ``sigint_ignored``, starts with it ignored as a background job does.
    """
    stderr = open(stderr_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", text, "--checkpoint", checkpoint,
         "--max-iters", NEVER, *TINY, *extra],
        stdout=subprocess.DEVNULL, stderr=stderr,
        preexec_fn=ignore_sigint if sigint_ignored else with_sigint_default)
    stderr.close()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            if "training" in f.read():
                break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            with open(stderr_path, encoding="utf-8", errors="replace") as f:
                pytest.fail(f"training did not start:\n{f.read()}")
        time.sleep(0.05)
    time.sleep(TRAINING_SECONDS)
    return process


def interrupt(process: subprocess.Popen, signal_number: int, times: int = 1) -> int:
    for _ in range(times):
        process.send_signal(signal_number)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the process did not stop after the signal")


def model_arrays(path) -> dict[str, np.ndarray]:
    """Everything that decides what training does next: parameters, optimiser state, the
    hidden states, and the iteration and stream position."""
    checkpoint = load_checkpoint(path)
    arrays = {"params." + name: checkpoint.params[name] for name in checkpoint.params}
    arrays.update({f"{slot}.{name}": values[name]
                   for slot, values in checkpoint.optimizer_state.items() for name in values})
    arrays.update({"carry." + name: checkpoint.carry[name] for name in checkpoint.carry})
    assert "carry.l1.h" in arrays
    arrays["iteration"] = np.array(checkpoint.state["iteration"])
    arrays["position"] = np.array(checkpoint.state["position"])
    return arrays


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), f"{name} differs"


def run_cli(*args) -> None:
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("signal_number,dtype", [(signal.SIGINT, "float32"),
                                                 (signal.SIGTERM, "float64")],
                         ids=["SIGINT-float32", "SIGTERM-float64"])
def test_interrupt_saves_and_resume_matches_an_uninterrupted_run(tmp_path, signal_number, dtype):
    text = write_text(tmp_path)
    interrupted = str(tmp_path / "interrupted.npz")
    process = start_training(text, interrupted, str(tmp_path / "stderr.txt"), "--dtype", dtype)
    code = interrupt(process, signal_number)
    stderr = (tmp_path / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    assert code == 128 + signal_number, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    stopped_at = load_checkpoint(interrupted).state["iteration"]
    assert stopped_at > 0

    total = stopped_at + 37
    run_cli("train", text, "--checkpoint", interrupted, "--resume", "--max-iters", total, "--quiet")
    uninterrupted = tmp_path / "uninterrupted.npz"
    run_cli("train", text, "--checkpoint", uninterrupted, "--max-iters", total, *TINY,
            "--dtype", dtype, "--quiet")
    resumed_arrays = model_arrays(interrupted)
    assert resumed_arrays["iteration"] == total
    assert resumed_arrays["params.l1.Whh"].dtype == np.dtype(dtype)
    assert_bitwise_equal(resumed_arrays, model_arrays(uninterrupted))


def test_repeated_ctrl_c_still_saves_a_good_checkpoint(tmp_path):
    """An impatient user presses Ctrl-C three times: still one clean save and exit 130."""
    text = write_text(tmp_path)
    checkpoint = str(tmp_path / "model.npz")
    process = start_training(text, checkpoint, str(tmp_path / "stderr.txt"))
    code = interrupt(process, signal.SIGINT, times=3)
    stderr = (tmp_path / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert load_checkpoint(checkpoint).state["iteration"] > 0
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".") or name.endswith(".tmp")]
    assert leftovers == []


def test_a_background_run_ignores_ctrl_c_but_stops_cleanly_on_sigterm(tmp_path):
    """Started with SIGINT ignored (``charrnn train ... &`` from a script, or ``nohup``), a run
    keeps ignoring it, by the Unix convention; SIGTERM still saves and stops it."""
    text = write_text(tmp_path)
    checkpoint = str(tmp_path / "model.npz")
    process = start_training(text, checkpoint, str(tmp_path / "stderr.txt"), sigint_ignored=True)
    process.send_signal(signal.SIGINT)
    time.sleep(TRAINING_SECONDS)
    assert process.poll() is None, "a run started with SIGINT ignored stopped on SIGINT"
    code = interrupt(process, signal.SIGTERM)
    stderr = (tmp_path / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    assert code == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert load_checkpoint(checkpoint).state["iteration"] > 0
