"""Peak memory of ``charrnn sample`` and ``charrnn eval`` with a large vocabulary.

A synthetic text of CJK characters (every one of V distinct characters at least once, the rest
drawn at random) is written to a temporary folder, a tiny model is trained on it with the CLI
(``--max-iters 2``), and then ``sample`` and ``eval`` run as real commands. Each command runs
under a small Python parent of its own that waits for it and reports
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak resident memory (RSS) of that one
command, nothing else. The same is done with V = 65 (the size of data/tinyshakespeare.txt's
vocabulary) for comparison. The checkpoint's size is shown beside each figure: the weights
are loaded whole, so memory beyond them is what the command adds.

Usage:  python benchmarks/bench_memory.py [--quick] [--vocab 70000] [--chars 200000]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

from _common import REPO, machine_lines, print_table

SMALL_VOCAB = 65
# Code points for a large vocabulary: the CJK Unified Ideographs, then Extension B onwards.
CJK_RANGES = [(0x4E00, 0xA000), (0x20000, 0x2FA1E)]

MEASURE = r"""
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if done.returncode != 0:
    sys.stderr.write(done.stderr.decode("utf-8", "replace"))
    sys.exit(done.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)   # KiB on Linux
"""


def vocabulary(size: int) -> list[str]:
    """``size`` distinct characters: CJK ideographs for a large vocabulary, ASCII for a small one."""
    if size <= 95:
        return [chr(c) for c in range(32, 32 + size - 1)] + ["\n"]
    codes = [c for start, stop in CJK_RANGES for c in range(start, stop)][:size]
    if len(codes) < size:
        raise SystemExit(f"--vocab {size} is more than the {len(codes)} characters this script uses")
    return [chr(c) for c in codes]


def write_text(path: str, size: int, num_chars: int, seed: int = 0) -> None:
    """Every character of the vocabulary once (shuffled), then random ones up to ``num_chars``."""
    chars = vocabulary(size)
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(chars))) + list(rng.integers(0, len(chars), max(0, num_chars - len(chars))))
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(chars[i] for i in order))


def charrnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "charrnn", *args]


def peak_rss_mb(command: list[str]) -> float:
    """Peak RSS of ``command`` (run in its own process), in MB."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True,
                          text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr}")
    return int(done.stdout.strip()) * 1024 / 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smaller vocabulary (20,000) and text, a few seconds")
    parser.add_argument("--vocab", type=int, default=70_000, help="the large vocabulary size")
    parser.add_argument("--chars", type=int, default=200_000,
                        help="characters in the text (200,000 CJK characters is about 600 KB)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=2000, help="characters sampled")
    args = parser.parse_args(argv)
    if args.quick:
        args.vocab, args.chars, args.length = min(args.vocab, 20_000), min(args.chars, 40_000), 500

    print(f"charrnn memory benchmark: peak RSS of one command, H={args.hidden_size}, "
          f"float32, {args.chars:,} characters of text")
    for line in machine_lines():
        print(line)
    print(flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in (SMALL_VOCAB, args.vocab):
            text = os.path.join(folder, f"v{size}.txt")
            model = os.path.join(folder, f"v{size}.npz")
            write_text(text, size, args.chars)
            train = charrnn("train", text, "--checkpoint", model, "--hidden-size",
                            str(args.hidden_size), "--seq-length", "8", "--batch-size", "2",
                            "--max-iters", "2", "--val-fraction", "0", "--sample-every", "0", "-q")
            done = subprocess.run(train, capture_output=True, text=True, cwd=REPO)
            if done.returncode != 0:
                raise SystemExit(f"{shlex.join(train)} failed:\n{done.stderr}")
            model_mb = os.path.getsize(model) / 1e6
            commands = {
                "sample": charrnn("sample", "--checkpoint", model, "-n", str(args.length),
                                  "--random-seed", "1"),
                "eval": charrnn("eval", text, "--checkpoint", model, "-q"),
            }
            for name, command in commands.items():
                peak = peak_rss_mb(command)
                shown = shlex.join(["charrnn", *command[3:]]).replace(folder + os.sep, "")
                rows.append([name, f"{size:,}", f"{peak:.0f}", f"{model_mb:.0f}", shown])
                print(json.dumps({"command": name, "vocab": size, "peak_rss_mb": round(peak, 1),
                                  "checkpoint_mb": round(model_mb, 1)}), file=sys.stderr)
    print_table(["command", "V", "peak RSS MB", "checkpoint MB", "command line"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
