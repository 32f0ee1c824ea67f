"""What cutting a batch into groups costs: one window's forward and backward
(charrnn.model.groups.GroupedStep, one-threaded BLAS) in G groups of streams, computed one
after another (1 thread) or side by side (2 threads), alone and beside a process spinning on
one core; chars/s against the whole batch on one thread (G = 1) in the same conditions.

Beside a busy process a grouped step gets about one core (see busy_barrier.py), so its speed
against --threads 1 is that of its groups computed one after another.

Usage:  python benchmarks/group_sizes.py [--quick] [--cell rnn] [--hidden-size 256]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from _common import (LOADS, blas_threads_limited, format_rate, format_ratio, machine_lines,
                     machine_load, print_table)

from charrnn.model import ModelSpec, Network
from charrnn.model.groups import GroupedStep

T, B, V = 32, 32, 65


def rate(network, params, state, inputs, targets, groups: int, threads: int, windows: int):
    """chars/s: the median of 5 timings of ``windows`` windows, after 3 untimed ones."""
    step = GroupedStep(network, B, groups, threads)
    grads = network.zeros()
    try:
        for _ in range(3):
            step(params, inputs, targets, state, None, grads)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(windows):
                step(params, inputs, targets, state, None, grads)
            times.append((time.perf_counter() - start) / windows)
    finally:
        step.close()
    return T * B / float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few windows: checks it runs")
    parser.add_argument("--cell", default="rnn")
    parser.add_argument("--hidden-size", type=int, default=256)
    args = parser.parse_args(argv)
    windows = 1 if args.quick else 12
    rng = np.random.default_rng(0)
    network = Network(ModelSpec(V, args.hidden_size, args.cell), np.float32)
    params = network.init_params(rng, scale=0.05)
    state = {name: np.zeros(shape, np.float32)
             for name, shape in network.state_shapes(B).items()}
    inputs, targets = (rng.integers(0, V, (T, B)).astype(np.uint8) for _ in range(2))
    print(f"one window of --cell {args.cell} --hidden-size {args.hidden_size}, T={T}, B={B}, "
          f"in G groups")
    for line in machine_lines():
        print(line)
    rows = []
    with blas_threads_limited(1):
        for load in LOADS:
            with machine_load(load):
                whole = rate(network, params, state, inputs, targets, 1, 1, windows)
                rows.append([load, "1", "1", format_rate(whole), "1.00x"])
                for groups, threads in ((2, 1), (2, 2), (4, 1), (4, 2)):
                    chars = rate(network, params, state, inputs, targets, groups, threads,
                                 windows)
                    rows.append([load, str(groups), str(threads), format_rate(chars),
                                 format_ratio(chars, whole)])
    print()
    print_table(["machine", "groups", "threads", "chars/s", "x 1 group"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
