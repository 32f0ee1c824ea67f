"""SIGKILL a training run at random moments: the checkpoint on disk must always be usable.

Issue 4: "SIGKILL at an arbitrary moment, including in the middle of writing a checkpoint: the
checkpoint on disk is always the previous complete one or the new complete one, never a broken
file, and --resume works."

A tiny model is trained with ``--checkpoint-every 1``, so most of the run's time is spent
writing checkpoints and most kills land in the middle of a write. Each round starts
``python -m charrnn train`` (with ``--resume`` once a checkpoint exists), kills it with SIGKILL
after a random, seeded delay, and then checks that:

- the checkpoint either does not exist yet (killed before the first save) or loads with
  ``charrnn.checkpoint.load_checkpoint``, and its iteration never goes backwards;
- the ``.best.npz`` twin, if any, loads too, and the history CSV, if any, parses;
- no other ``.npz`` file appeared in the folder: temporary files (which a kill may leave
  behind) must not be named so that anything would take them for a checkpoint;
- the process never ended by itself (that would mean ``--resume`` failed).

At the end, a last ``--resume`` run trains a few more iterations to completion, ``charrnn info``
(with no argument: the latest checkpoint) must pick the real checkpoint, and the result must be
bit-for-bit the model of one uninterrupted run of the same length.

Usage:  python tests/kill_test.py [--kills 25] [--seed 0] [--workdir DIR] [--quiet]
Exit status 0 when every check passed, 1 otherwise. ``tests/test_kill.py`` runs a short version.
"""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from charrnn.checkpoint import CheckpointError, load_checkpoint

WORDS = "the quick brown fox jumps over a lazy dog and then some more".split()
CHECKPOINT = os.path.join("checkpoints", "text.npz")      # relative to the work folder
BEST = os.path.join("checkpoints", "text.best.npz")
HISTORY = os.path.join("checkpoints", "text.csv")
# A constant learning rate: the runs start with --max-iters FOREVER and end with a smaller one,
# and the schedule's warm-up and cool-down are fractions of --max-iters.
MODEL_OPTIONS = ["--hidden-size", "8", "--seq-length", "8", "--batch-size", "2",
                 "--random-seed", "5", "--sample-every", "0", "--warmup-fraction", "0",
                 "--decay-fraction", "0", "--quiet"]
FOREVER = str(10 ** 8)
MIN_DELAY, MAX_DELAY = 0.1, 1.5   # seconds between starting a run and killing it
FINAL_EXTRA_ITERATIONS = 5


@dataclass
class Report:
    kills: int = 0
    problems: list[str] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)   # checkpoint iteration after each kill
    kills_mid_write: int = 0    # kills after which a temporary file was left behind
    final_iteration: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        reached = max(self.iterations, default=0)
        return (f"{self.kills} kills, {self.kills_mid_write} of them left a temporary file "
                f"(killed mid-write), checkpoint reached iteration {reached}, final resume to "
                f"{self.final_iteration}: " + ("all checks passed" if self.ok else
                                               f"{len(self.problems)} problem(s)"))


def write_text(folder: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    path = os.path.join(folder, "text.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 300)) + "\n")
    return path


def charrnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "charrnn", *args]


def train_command(resume: bool, max_iters: str = FOREVER, checkpoint: str = CHECKPOINT,
                  every: str = "1") -> list[str]:
    return charrnn("train", "text.txt", "--checkpoint", checkpoint, *(["--resume"] if resume else []),
                   "--max-iters", max_iters, "--checkpoint-every", every, "--eval-every", "7",
                   *MODEL_OPTIONS)


def temporary_files(folder: str) -> list[str]:
    """Files in the checkpoint folder other than the checkpoint, its best twin and history,
    and the lock (a killed run leaves it; the next run takes it over)."""
    known = {os.path.basename(p) for p in (CHECKPOINT, BEST, HISTORY)}
    known.add(f".{os.path.basename(CHECKPOINT)}.lock")
    try:
        return sorted(name for name in os.listdir(folder) if name not in known)
    except FileNotFoundError:
        return []


def check_folder(workdir: str, report: Report, round_number: int, seen_temporaries: set) -> None:
    """The checks made after every kill (see the module docstring)."""
    where = f"after kill {round_number}"
    checkpoint = os.path.join(workdir, CHECKPOINT)
    if os.path.exists(checkpoint):
        try:
            iteration = load_checkpoint(checkpoint).state["iteration"]
        except CheckpointError as error:
            report.problems.append(f"{where}: the checkpoint does not load: {error}")
        else:
            previous = max(report.iterations, default=0)
            if iteration < previous:
                report.problems.append(f"{where}: the checkpoint went back from iteration "
                                       f"{previous} to {iteration}")
            report.iterations.append(iteration)
    best = os.path.join(workdir, BEST)
    if os.path.exists(best):
        try:
            load_checkpoint(best)
        except CheckpointError as error:
            report.problems.append(f"{where}: the best checkpoint does not load: {error}")
    history = os.path.join(workdir, HISTORY)
    if os.path.exists(history):
        with open(history, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows or any(len(row) != len(rows[0]) for row in rows):
            report.problems.append(f"{where}: the history CSV is incomplete: {rows[-3:]}")
    folder = os.path.join(workdir, os.path.dirname(CHECKPOINT))
    others = temporary_files(folder)
    for name in others:
        if name.endswith(".npz"):
            report.problems.append(f"{where}: {name} in the checkpoint folder looks like a checkpoint")
    new = set(others) - seen_temporaries
    if new:
        report.kills_mid_write += 1
        seen_temporaries.update(new)


def kill_once(workdir: str, rng: np.random.Generator, report: Report, round_number: int,
              log) -> None:
    resume = os.path.exists(os.path.join(workdir, CHECKPOINT))
    delay = float(rng.uniform(MIN_DELAY, MAX_DELAY))
    process = subprocess.Popen(train_command(resume), cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        stderr = process.stderr.read().decode("utf-8", "replace")
        if "Traceback" in stderr:
            report.problems.append(f"kill {round_number}: traceback before the kill:\n{stderr}")
    else:
        stderr = process.stderr.read().decode("utf-8", "replace")
        report.problems.append(f"kill {round_number}: the run ended by itself with status "
                               f"{process.returncode} before the kill"
                               f"{' (resuming)' if resume else ''}: {stderr.strip()}")
    finally:
        process.stderr.close()
    report.kills += 1
    log(f"kill {round_number:3d}: after {delay:.2f} s{' (resumed)' if resume else ''}")


def model_state(path: str) -> dict[str, bytes]:
    checkpoint = load_checkpoint(path)
    state = {"params." + name: checkpoint.params[name].tobytes() for name in checkpoint.params}
    state.update({f"{slot}.{name}": values[name].tobytes()
                  for slot, values in checkpoint.optimizer_state.items() for name in values})
    state.update({"carry." + name: checkpoint.carry[name].tobytes() for name in checkpoint.carry})
    state["position"] = str(checkpoint.state["position"]).encode()
    return state


def finish(workdir: str, report: Report, log) -> None:
    """Resume to completion, check `charrnn info` picks the real checkpoint, and compare with
    an uninterrupted run of the same length."""
    start = max(report.iterations, default=0)
    target = start + FINAL_EXTRA_ITERATIONS
    resume = os.path.exists(os.path.join(workdir, CHECKPOINT))
    done = subprocess.run(train_command(resume, str(target)), cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        report.problems.append(f"the final --resume run failed ({done.returncode}): {done.stderr}")
        return
    checkpoint = os.path.join(workdir, CHECKPOINT)
    report.final_iteration = load_checkpoint(checkpoint).state["iteration"]
    if report.final_iteration != target:
        report.problems.append(f"the final run stopped at {report.final_iteration}, not {target}")

    info = subprocess.run(charrnn("info"), cwd=workdir, capture_output=True, text=True, timeout=120)
    first_line = info.stdout.splitlines()[0] if info.stdout else ""
    if info.returncode != 0 or not first_line.rstrip().endswith(CHECKPOINT):
        report.problems.append(f"`charrnn info` did not pick {CHECKPOINT}: "
                               f"{first_line or info.stderr.strip()}")

    reference = os.path.join("reference", "text.npz")
    straight = subprocess.run(train_command(False, str(target), reference, FOREVER), cwd=workdir,
                              capture_output=True, text=True, timeout=300)
    if straight.returncode != 0:
        report.problems.append(f"the uninterrupted run failed: {straight.stderr}")
        return
    if model_state(checkpoint) != model_state(os.path.join(workdir, reference)):
        report.problems.append(f"after {report.kills} kills and resumes, the model at iteration "
                               f"{target} differs from an uninterrupted run's")
    log(f"final: resumed from {start} to {report.final_iteration}; compared with an "
        f"uninterrupted run")


def run_kill_test(kills: int = 25, seed: int = 0, workdir: str | None = None,
                  log=print) -> Report:
    """Run the whole test in ``workdir`` (default: a temporary folder); returns a Report."""
    with tempfile.TemporaryDirectory(prefix="charrnn-kill-") as scratch:
        workdir = workdir or scratch
        os.makedirs(workdir, exist_ok=True)
        write_text(workdir, seed)
        rng = np.random.default_rng(seed)
        report = Report()
        seen_temporaries: set[str] = set()
        for round_number in range(1, kills + 1):
            kill_once(workdir, rng, report, round_number, log)
            check_folder(workdir, report, round_number, seen_temporaries)
        finish(workdir, report, log)
        return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=25, help="how many SIGKILLs (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the text and the kill times")
    parser.add_argument("--workdir", help="work here instead of a temporary folder (kept)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = run_kill_test(args.kills, args.seed, args.workdir,
                           log=(lambda message: None) if args.quiet else print)
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print(f"{report.summary()} ({time.monotonic() - started:.0f} s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
