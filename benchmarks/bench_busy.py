"""Training speed on a busy machine: BLAS threads alone and beside another CPU-bound process.

Runs whole ``charrnn train`` processes (the default model unless --cell/--hidden-size say
otherwise, on data/tinyshakespeare.txt, --max-iters N, no evaluation or samples) with each
thread choice (1, 2, and the default, i.e. no --threads), first alone, then while a second
process spins on one core (``while True: pass``, as a browser tab or a compiler would). The
figure is the training speed the checkpoint records: characters trained / training seconds.

Usage:  python benchmarks/bench_busy.py [--quick] [--iters N] [--cell rnn] [--hidden-size 256]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from _common import (DEFAULT_CORPUS, LOADS, REPO, format_rate, format_ratio, machine_lines,
                     machine_load, print_table)



def train_rate(workdir: str, threads: int | None, args) -> tuple[float, int]:
    """chars/s of one `charrnn train` process, and how it computed its windows (from what
    it saved: ``2 groups`` of streams on threads, or ``1 BLAS`` thread for the whole batch)."""
    checkpoint = os.path.join(workdir, f"m{threads}.npz")
    command = [sys.executable, "-m", "charrnn", "train", args.corpus, "--checkpoint", checkpoint,
               "--force", "--max-iters", str(args.iters), "--cell", args.cell,
               "--hidden-size", str(args.hidden_size), "--eval-every", str(10 * args.iters),
               "--checkpoint-every", str(10 * args.iters), "--sample-every", "0",
               "--val-fraction", "0", "--warmup-fraction", "0", "--decay-fraction", "0", "-q"]
    if threads is not None:
        command += ["--threads", str(threads)]
    subprocess.run(command, check=True, cwd=REPO)
    with np.load(checkpoint, allow_pickle=False) as npz:
        state = json.loads(str(npz["state"]))
    groups = state.get("stream_groups") or 1
    how = f"{groups} groups" if groups > 1 else f"{state['blas_threads']} BLAS"
    return state["chars_seen"] / state["elapsed_seconds"], how


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations: checks it runs")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--cell", default="rnn")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.hidden_size = 5, 32
    print(f"charrnn train --cell {args.cell} --hidden-size {args.hidden_size} (T=32, B=32), "
          f"{args.iters} iterations per figure")
    for line in machine_lines():
        print(line)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        results = {}
        for load in LOADS:
            with machine_load(load):
                for threads in (1, 2, None):
                    results[load, threads] = train_rate(workdir, threads, args)
        for load in LOADS:
            one = results[load, 1][0]
            for threads in (1, 2, None):
                rate, saved = results[load, threads]
                label = f"default ({saved})" if threads is None else str(threads)
                rows.append([load, label, format_rate(rate), format_ratio(rate, one)])
    print()
    print_table(["machine", "threads", "chars/s", "x 1 thread"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
