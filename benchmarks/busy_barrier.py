"""Why threads cannot keep their speed beside a busy process when they meet at every window.

A training step cut into groups is a fork and a join: the groups' work runs side by side,
and the step ends when the last group ends. This toy times that shape without charrnn:
each step is the same fixed work, a one-threaded (1024, 512) x (512, 512) float32 product
(NumPy lets go of the interpreter lock inside it), cut into K products of 1024 / K rows,
computed

  one thread      the K chunks one after another
  2 threads       two Python threads taking the next chunk not yet taken
  2 processes     (K = 2 only) two worker processes, one chunk each, started by pipes

first alone, then while a second process spins on one core (``while True: pass``). The
figure is steps per second against one thread's, measured in the same conditions.

Usage:  python benchmarks/busy_barrier.py [--quick] [--steps N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _common import LOADS, format_ratio, machine_lines, machine_load, print_table

LEFT = np.random.default_rng(0).random((1024, 512), dtype=np.float32)
RIGHT = np.random.default_rng(1).random((512, 512), dtype=np.float32)


def chunk(k: int = 0, chunks: int = 2) -> None:
    """The k-th of ``chunks`` equal parts of a step's product."""
    rows = len(LEFT) // chunks
    np.dot(LEFT[k * rows:(k + 1) * rows], RIGHT)


def one_thread(steps: int, chunks: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        for k in range(chunks):
            chunk(k, chunks)
    return steps / (time.perf_counter() - start)


def two_threads(steps: int, chunks: int) -> float:
    with ThreadPoolExecutor(1) as pool:
        start = time.perf_counter()
        for _ in range(steps):
            left, lock = iter(range(chunks)), threading.Lock()

            def work() -> None:
                while True:
                    with lock:
                        k = next(left, None)
                    if k is None:
                        return
                    chunk(k, chunks)
            helper = pool.submit(work)
            work()
            helper.result()
        return steps / (time.perf_counter() - start)


def worker(connection, k: int) -> None:
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        while connection.recv():
            chunk(k, 2)
            connection.send(True)


def two_processes(steps: int) -> float:
    pipes = [multiprocessing.Pipe() for _ in range(2)]
    workers = [multiprocessing.Process(target=worker, args=(child, k))
               for k, (_, child) in enumerate(pipes)]
    for process in workers:
        process.start()
    try:
        for parent, _ in pipes:        # one round trip first: the processes are running
            parent.send(True)
        for parent, _ in pipes:
            parent.recv()
        start = time.perf_counter()
        for _ in range(steps):
            for parent, _ in pipes:
                parent.send(True)
            for parent, _ in pipes:
                parent.recv()
        return steps / (time.perf_counter() - start)
    finally:
        for parent, _ in pipes:
            parent.send(False)
        for process in workers:
            process.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps: checks it runs")
    parser.add_argument("--steps", type=int, default=400, help="steps per figure")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 4
    from threadpoolctl import threadpool_limits
    print("a fork-join step: one one-threaded product cut into K row blocks")
    for line in machine_lines():
        print(line)
    rows = []
    with threadpool_limits(1):
        for load in LOADS:
            with machine_load(load):
                for chunks in (2, 4, 8, 16):
                    base = one_thread(args.steps, chunks)
                    rows.append([load, str(chunks), "2 threads",
                                 format_ratio(two_threads(args.steps, chunks), base)])
                    if chunks == 2:
                        rows.append([load, "2", "2 processes",
                                     format_ratio(two_processes(args.steps), base)])
    print()
    print_table(["machine", "K", "how", "x one thread"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
