"""``charrnn sample``'s newer options through the command line: --prompt, --seed-file and
--seed -, --top-p, --min-p, --no-repeat, --beam, --stop, --num-samples, --json (and eval's
and info's), --interactive (piped, and Ctrl-C in a real process), the random-seed note, and
every bad value: one line on stderr, nothing on stdout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from test_bad_input import assert_mentions, error_line
from test_cli import SMALL, TEXT_CHARS, make_text, run

pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A briefly trained model (float64) and its text, made once for this module."""
    folder = tmp_path_factory.mktemp("model")
    (folder / "text.txt").write_text(make_text(300, seed=2), encoding="utf-8")
    run("train", folder / "text.txt", folder / "m.npz", *SMALL, "--max-iters", "80",
        "--dtype", "float64")
    return str(folder / "m.npz")


def invoke(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def fails_in_one_line(result, code, *patterns):
    message = error_line(result, code)
    assert_mentions(message, *patterns)
    assert result.stdout == ""


# --------------------------------------------------------------------------- prompts

def test_prompt_is_the_same_option_as_seed(model):
    a = run("sample", model, "--seed", "the ", "-n", 80, "--random-seed", 4).stdout
    assert run("sample", model, "--prompt", "the ", "-n", 80, "--random-seed", 4).stdout == a
    assert a.startswith("the ")


def test_seed_file_and_stdin_give_the_same_text_as_seed(model, tmp_path):
    prompt = "to be, or not\nto be: "
    (tmp_path / "p.txt").write_text(prompt, encoding="utf-8")
    inline = run("sample", model, "--seed", prompt, "-n", 60, "--random-seed", 2).stdout
    assert run("sample", model, "--seed-file", tmp_path / "p.txt", "-n", 60,
               "--random-seed", 2).stdout == inline
    piped = invoke("sample", model, "--seed", "-", "-n", 60, "--random-seed", 2, input=prompt)
    assert piped.exit_code == 0 and piped.stdout == inline
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + prompt.encode())
    assert run("sample", model, "--seed-file", tmp_path / "bom.txt", "-n", 60,
               "--random-seed", 2).stdout == inline


@pytest.mark.parametrize("make,patterns", [
    (lambda d: d / "missing.txt", ["no such file", "missing.txt"]),
    (lambda d: d, ["directory"]),
    (lambda d: (d / "b.bin").write_bytes(b"ab\x00\x01c") and d / "b.bin", ["binary"]),
    (lambda d: (d / "l.txt").write_bytes(b"caf\xe9") and d / "l.txt", ["not valid utf-8"]),
    (lambda d: (d / "u.txt").write_text("the QUIZ", encoding="utf-8") and d / "u.txt",
     ["u.txt", "'Q'", "'U'", "vocabulary"]),
])
def test_bad_seed_files_are_one_line(model, tmp_path, make, patterns):
    folder = tmp_path / "prompts"
    folder.mkdir()
    fails_in_one_line(invoke("sample", model, "--seed-file", make(folder), "-n", 5), 1,
                      *patterns)


def test_seed_from_a_closed_stdin_is_one_line(model):
    from test_bad_input_more import charrnn_process, process_error
    done = charrnn_process("sample", model, "--seed", "-", "-n", 5, shell_redirect="<&-")
    assert "standard input" in process_error(done) and done.stdout == b""
    empty = invoke("sample", model, "--seed", "-", "-n", 5, "--random-seed", 1, input="")
    assert empty.exit_code == 0 and len(empty.stdout) == 6    # an empty prompt: unprompted


def test_numeric_seed_outside_the_vocabulary_points_to_random_seed(model):
    assert not {"4", "2"} & set(TEXT_CHARS)
    fails_in_one_line(invoke("sample", model, "--seed", "42"), 1, "'4'", "did you mean",
                      "--random-seed 42")
    result = invoke("sample", model, "--seed", "QZ")
    assert "random-seed" not in result.stderr and result.exit_code == 1


def test_seed_and_seed_file_together_is_a_usage_error(model, tmp_path):
    (tmp_path / "p.txt").write_text("the", encoding="utf-8")
    fails_in_one_line(invoke("sample", model, "--seed", "a", "--seed-file", tmp_path / "p.txt"),
                      2, "--seed-file")


# --------------------------------------------------------------------------- the random seed

def test_the_random_seed_is_noted_and_makes_the_sample_again(model):
    first = run("sample", model, "-n", 200)
    seed = int(first.stderr.split("--random-seed ")[1].split()[0])
    assert run("sample", model, "-n", 200, "--random-seed", seed).stdout == first.stdout
    for quiet in (["-q"], ["--random-seed", "3"], ["--greedy"], ["--beam", "2"]):
        assert "random seed" not in run("sample", model, "-n", 20, *quiet).stderr


# --------------------------------------------------------------------------- options

def test_temperature_zero_points_to_greedy(model):
    result = invoke("sample", model, "--temperature", "0")
    assert result.exit_code == 2 and "--greedy" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("args,option", [
    (["--top-p", "0"], "--top-p"), (["--top-p", "1.5"], "--top-p"), (["--top-p", "nan"], "--top-p"),
    (["--top-p", "-0.2"], "--top-p"), (["--min-p", "-0.1"], "--min-p"),
    (["--min-p", "1.01"], "--min-p"), (["--min-p", "nan"], "--min-p"), (["--beam", "0"], "--beam"),
    (["--stop", ""], "--stop"), (["--stop", "a", "--stop", ""], "--stop"),
    (["--num-samples", "0"], "--num-samples"), (["--no-repeat", "1"], "--no-repeat"),
    (["--no-repeat", "-2"], "--no-repeat"),
    (["--beam", "3", "--temperature", "0.5"], "--temperature"),
    (["--beam", "3", "--temperature", "1"], "--temperature"),
    (["--beam", "3", "--top-k", "2"], "--top-k"), (["--beam", "3", "--min-p", "0.1"], "--min-p"),
    (["--beam", "2", "--greedy"], "--greedy"),
    (["--greedy", "--num-samples", "2"], "--num-samples"),
    (["--interactive", "--seed", "a"], "--interactive"),
])
def test_bad_sampling_options_are_usage_errors(model, args, option):
    result = invoke("sample", model, *args)
    assert result.exit_code == 2, result.output
    assert option in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_beam_wider_than_the_vocabulary_is_refused(model):
    size = len(load_checkpoint(model).vocab)
    fails_in_one_line(invoke("sample", model, "--beam", size + 1), 1, "--beam", rf"\b{size}\b")
    assert len(run("sample", model, "--beam", size, "-n", 7).stdout) == 8


def test_filters_and_guard_from_the_command_line_follow_generate(model):
    """The options reach generate(): the same text as the library call with those settings."""
    import numpy as np
    from charrnn.sample import generate
    checkpoint = load_checkpoint(model)
    for options, kwargs in [(["--top-p", "0.8"], {"top_p": 0.8}),
                            (["--min-p", "0.2", "--temperature", "1.5"],
                             {"min_p": 0.2, "temperature": 1.5}),
                            (["--no-repeat", "3"], {"no_repeat": 3})]:
        out = run("sample", model, "--seed", "a", "-n", 150, "--random-seed", 8, *options).stdout
        expected = "".join(generate(checkpoint.network(), checkpoint.params, checkpoint.vocab,
                                    "a", 150, np.random.default_rng(8), **kwargs))
        assert out == "a" + expected + "\n"


def test_beam_prints_the_prompt_then_n_characters(model):
    out = run("sample", model, "--seed", "the ", "--beam", 3, "-n", 90).stdout
    assert out.startswith("the ") and len(out) == 4 + 90 + 1
    assert run("sample", model, "--seed", "the ", "--beam", 3, "-n", 90).stdout == out


def test_stop_ends_the_sample_after_the_stop_string(model):
    plain = run("sample", model, "-n", 400, "--random-seed", 5).stdout[:-1]
    stopped = run("sample", model, "-n", 400, "--random-seed", 5, "--stop", "the",
                  "--stop", "zzz").stdout
    assert "the" in plain
    assert stopped == plain[:plain.index("the") + 3] + "\n"


def test_num_samples_separated_reproducible_and_the_first_is_the_single_sample(model):
    args = ["sample", model, "--seed", "a", "-n", 50, "--random-seed", 6]
    several = run(*args, "--num-samples", 3).stdout
    samples = several.split("\n---\n")
    assert len(samples) == 3 and all(s.startswith("a") for s in samples)
    assert [len(s) for s in samples] == [51, 51, 52]   # the last keeps the final newline
    assert len(set(samples)) == 3
    assert samples[0] + "\n" == run(*args).stdout
    assert run(*args, "--num-samples", 3).stdout == several


# --------------------------------------------------------------------------- JSON

def test_sample_json_is_one_object_per_line_with_the_settings(model):
    lines = run("sample", model, "--seed", "a", "-n", 40, "--random-seed", 6, "--num-samples", 2,
                "--json", "--top-k", 30, "--stop", "zzz").stdout.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    for i, record in enumerate(records):
        assert record["sample"] == i + 1 and record["prompt"] == "a"
        assert len(record["text"]) == 40 and record["stopped_by"] is None
        assert record["settings"]["random_seed"] == 6 and record["settings"]["top_k"] == 30
        assert record["settings"]["stop"] == ["zzz"] and record["checkpoint"] == model
    plain = run("sample", model, "--seed", "a", "-n", 40, "--random-seed", 6, "--top-k", 30,
                "--num-samples", 2).stdout.split("\n---\n")
    assert ["a" + r["text"] for r in records] == [s.rstrip("\n") for s in plain]


def test_eval_and_info_json(model):
    text_file = os.path.join(os.path.dirname(model), "text.txt")
    shown = run("eval", text_file, model, "-q").stdout
    record = json.loads(run("eval", text_file, model, "-q", "--json").stdout)
    assert f"{record['nats_per_char']:.4f} nats/char" in shown
    assert f"{record['bits_per_char']:.4f} bits/char" in shown
    assert f"({record['characters_scored']:,} characters scored" in shown
    info = json.loads(run("info", model, "--json").stdout)
    checkpoint = load_checkpoint(model)
    assert info["iteration"] == 80 and info["parameters"] == checkpoint.params.flat.size
    assert info["vocabulary"] == "".join(checkpoint.vocab.chars)
    assert info["settings"]["hidden_size"] == 12


# --------------------------------------------------------------------------- interactive

def test_interactive_continues_each_piped_line(model):
    lines = "the \n\nQUIZ\nto be\n"
    result = invoke("sample", model, "-i", "-n", 30, "--random-seed", 1, input=lines)
    assert result.exit_code == 0, result.output
    outputs = result.stdout.split("\n---\n")
    assert len(outputs) == 3                           # QUIZ is refused, the session goes on
    assert outputs[0].startswith("the ") and outputs[2].startswith("to be")
    assert [len(o) for o in outputs] == [34, 30, 36]    # the last keeps the final newline
    assert "'Q'" in result.stderr
    # Each prompt starts afresh: the same as sample --seed with the same draws in order.
    again = invoke("sample", model, "-i", "-n", 30, "--random-seed", 1, input=lines)
    assert again.stdout == result.stdout


def test_interactive_json(model):
    result = invoke("sample", model, "-i", "-n", 20, "--greedy", "--json", input="a\nthe \n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt"] for r in records] == ["a", "the "]
    single = run("sample", model, "--seed", "the ", "-n", 20, "--greedy").stdout
    assert "the " + records[1]["text"] + "\n" == single


def read_until(process, pattern: bytes, seen: bytes, timeout: float = 60) -> bytes:
    """Read the process's stdout until ``pattern`` has appeared in it."""
    deadline = time.monotonic() + timeout
    while pattern not in seen:
        assert time.monotonic() < deadline, f"no {pattern!r} in {seen[-200:]!r}"
        chunk = process.stdout.read1(4096)
        assert chunk, f"stdout ended without {pattern!r}"
        seen += chunk
    return seen


def test_ctrl_c_stops_the_continuation_not_the_session(model):
    """A real process asked for endless continuations: SIGINT stops the first, the next
    prompt is answered, SIGINT stops that too, and the end of input ends the session."""
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "sample", model, "-i", "-n", "1000000000",
         "--random-seed", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # a test run in the background inherits an ignored SIGINT: give Python its own
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        process.stdin.write(b"the quick\n")
        process.stdin.flush()
        seen = read_until(process, b"the quick", b"")
        process.send_signal(signal.SIGINT)
        process.stdin.write(b"to be\n")
        process.stdin.flush()
        seen = read_until(process, b"\n---\nto be", seen)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)      # closes stdin: the end of input
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert b"Traceback" not in err and err.count(b"(stopped)") == 2
    assert (seen + out).count(b"\n---\n") == 1 and (seen + out).endswith(b"\n")


# --------------------------------------------------------------------------- viz

def test_viz_prompt_is_the_same_as_text(model, tmp_path):
    a = run("viz", "--text", "to be, or not", model, "-o", tmp_path / "a.html", "-q")
    b = run("viz", "--prompt", "to be, or not", model, "-o", tmp_path / "b.html", "-q")
    assert a.stdout.strip().endswith("a.html") and b.stdout.strip().endswith("b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
