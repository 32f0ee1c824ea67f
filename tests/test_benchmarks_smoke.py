"""The benchmark scripts' short modes run to the end and print their tables (and the
line profiler of a training step runs).

Benchmarks do not run in CI; this only checks that ``--quick`` still works after changes to
the code they drive (Trainer.step, generate, read_corpus, charrnn.threads, TrainConfig). Each script runs
in its own process, as a user would run it. No timings are asserted. PyTorch is left out of
the training benchmark (importing it costs seconds); the sampling benchmark includes it when
it is installed, so its PyTorch code path is exercised too.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def run_benchmark(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), "--quick", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def header_line(output: str, *columns: str) -> str:
    """The line holding every column name, which must be followed by a dashed rule."""
    lines = output.splitlines()
    for i, line in enumerate(lines[:-1]):
        if all(column in line for column in columns):
            assert set(lines[i + 1].replace(" ", "")) == {"-"}, "the header is not followed by a rule"
            return line
    raise AssertionError(f"no table header with {columns} in:\n{output}")


def test_bench_train_quick_prints_its_tables():
    output = run_benchmark("bench_train.py", "--no-torch")
    header_line(output, "config", "threads", "charrnn", "torch loop", "x torch", "classic",
                "x classic", "ceiling", "% ceiling")
    header_line(output, "config", "threads", "charrnn", "ceiling", "% ceiling")
    assert "BLAS:" in output
    # The B = 1 configuration of the short mode has a classic-loop figure and a ratio to it.
    row = next(line for line in output.splitlines() if "B=1" in line)
    assert row.count("x") >= 1 and "%" in row


def test_bench_sample_quick_prints_its_table():
    output = run_benchmark("bench_sample.py", *([] if HAVE_TORCH else ["--no-torch"]))
    header_line(output, "sampler", "chars/s", "charrnn x")
    assert "random.choice" in output
    if HAVE_TORCH:
        assert "torch/1" in output


def test_bench_corpus_quick_prints_its_table():
    output = run_benchmark("bench_corpus.py")
    header_line(output, "measurement", "seconds", "MB/s", "peak RSS MB", "target")
    assert "read_corpus" in output and "train" in output


def test_bench_memory_quick_prints_its_table():
    output = run_benchmark("bench_memory.py")
    header_line(output, "command", "V", "peak RSS MB", "checkpoint MB", "command line")
    assert "charrnn sample" in output and "charrnn eval" in output and "20,000" in output


def test_bench_cells_quick_prints_both_environments_and_every_cell():
    output = run_benchmark("bench_cells.py", *([] if HAVE_TORCH else ["--no-torch"]))
    assert output.count("=== environment") == 2
    assert "environment as-is" in output and "environment unset" in output
    assert output.count("OpenBLAS kernel:") == 2
    header_line(output, "config", "cell", "charrnn", "torch", "x torch")
    header_line(output, "size", "cell", "charrnn", "torch", "x torch", "target")
    for cell in ("rnn", "lstm", "gru"):
        assert sum(line.split()[3:4] == [cell] or f" {cell} " in line
                   for line in output.splitlines()) >= 4   # 2 tables x 2 environments


def test_bench_busy_quick_prints_alone_and_busy_rows():
    output = run_benchmark("bench_busy.py")
    header_line(output, "machine", "threads", "chars/s", "x 1 thread")
    assert output.count("alone") == 3 and output.count("beside a busy process") == 3
    assert "default (" in output


def test_busy_barrier_quick_prints_threads_and_processes_alone_and_busy():
    output = run_benchmark("busy_barrier.py")
    header_line(output, "machine", "K", "how", "x one thread")
    for row in ("alone", "beside a busy process"):
        assert row in output
    assert "2 processes" in output and "2 threads" in output


def test_group_sizes_quick_prints_every_grouping_alone_and_busy():
    output = run_benchmark("group_sizes.py")
    header_line(output, "machine", "groups", "threads", "chars/s", "x 1 group")
    assert output.count("alone") == 5 and output.count("beside a busy process") == 5


def test_sampling_parts_quick_prints_a_row_per_cell():
    output = run_benchmark("sampling_parts.py")
    header_line(output, "cell", "generate", "product", "feed", "step", "draw and loop")
    for cell in ("rnn", "lstm", "gru"):
        assert any(line.split()[:1] == [cell] for line in output.splitlines())


def test_product_orientation_quick_prints_both_ways_for_every_cell():
    output = run_benchmark("product_orientation.py")
    header_line(output, "cell", "B", "h Whh^T", "Whh h^T", "dz Whh", "Whh^T dz^T")
    for cell in ("rnn", "lstm", "gru"):
        assert sum(line.split()[:1] == [cell] for line in output.splitlines()) == 2


def test_bench_sampling_quality_quick_prints_a_table_per_model():
    output = run_benchmark("bench_sampling_quality.py")
    header_line(output, "setting", "repeated lines", "distinct 4-grams %", "known words %",
                "nats/char", "us/char")
    assert output.count("us/char") == 2                 # a GRU's table and a vanilla model's
    for setting in ("top-p 0.9", "min-p 0.1", "greedy no-repeat 4", "beam 4"):
        rows = [line for line in output.splitlines() if line.strip().startswith(setting + "  ")]
        assert len(rows) == 2, setting


def test_eval_exactness_quick_prints_its_table():
    output = run_benchmark("eval_exactness.py")
    assert "exact" in output and "batched" in output


def test_bench_time_budget_quick_prints_the_wall_clock_against_the_budget():
    output = run_benchmark("bench_time_budget.py")
    header_line(output, "budget", "wall clock s", "x budget", "iterations", "followed pace")
    rows = [line.split() for line in output.splitlines() if line.strip().startswith(("3s", "5s"))]
    assert [row[0] for row in rows] == ["3s", "5s"]
    assert all(float(row[2]) > 0 for row in rows)


def test_bench_eval_share_quick_prints_before_and_after():
    output = run_benchmark("bench_eval_share.py")
    header_line(output, "evaluations", "characters scored", "seconds each", "share of a run")
    assert "before: all held out" in output and "after: a fixed sample" in output
    assert "131,072" in output


def test_bench_defaults_quick_prints_three_text_sizes():
    output = run_benchmark("bench_defaults.py")
    header_line(output, "text", "iterations", "passes", "val bits/char", "wall clock s")
    for size in ("30k", "100k", "300k"):
        assert any(line.split()[:1] == [size] for line in output.splitlines())


@pytest.mark.parametrize("script", ["bench_train.py", "bench_sample.py", "bench_corpus.py",
                                    "bench_memory.py", "bench_cells.py", "bench_busy.py",
                                    "eval_exactness.py", "tune.py",
                                    "bench_sampling_quality.py", "bench_time_budget.py",
                                    "bench_eval_share.py", "bench_defaults.py"])
def test_help_describes_the_quick_mode(script):
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and "--quick" in done.stdout


def test_profile_step_times_the_statements_of_a_step():
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "profile_step.py"),
                           "--config", "16,8,2", "--steps", "5", "--min-us", "0"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    for section in ("Trainer.step", "Network.forward", "rnn.forward", "Network.backward",
                    "rnn.backward", "Adagrad.update"):
        assert f"\n{section}: " in done.stdout
    # with --min-us 0 every statement is listed: forward has more than a handful
    forward_part = done.stdout.split("\nNetwork.forward: ")[1].split("\nrnn.forward: ")[0]
    assert len(forward_part.strip().splitlines()) > 5


def test_tune_quick_reports_the_validation_loss_falling():
    """A tiny model for 200 iterations: eight reports, then a JSON summary whose loss is
    below log(V) of the sample corpus (65 characters), the loss of a uniform guess."""
    output = run_benchmark("tune.py", "learning_rate=0.1")
    lines = output.strip().splitlines()
    assert len(lines) == 9 and all(line.startswith("iteration") for line in lines[:8])
    summary = json.loads(lines[-1])
    assert summary["iterations"] == 200 and summary["learning_rate"] == 0.1
    assert summary["val_nats_per_char"] < math.log(65)


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="no Chromium")
def test_page_speed_quick_prints_its_table():
    output = run_benchmark("page_speed.py")
    header_line(output, "checkpoint", "page MB", "open ms", "chars/s")
    assert "tiny.npz" in output
