"""Why threads cannot keep their speed beside a busy process when they meet at every window.

A training step cut into groups is a fork and a join: the groups' work runs side by side,
and the step ends when the last group ends. This toy times that shape without charrnn:
each step is the same fixed work (one-threaded (256, 512) x (512, 512) float32 products, in
which NumPy lets go of the interpreter lock), cut into K equal chunks, computed

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
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _common import format_ratio, machine_lines, print_table

BUSY_LOOP = "while True: pass"
LEFT = np.random.default_rng(0).random((256, 512), dtype=np.float32)
RIGHT = np.random.default_rng(1).random((512, 512), dtype=np.float32)


def chunk(_=None) -> None:
    np.dot(LEFT, RIGHT)


def one_thread(steps: int, chunks: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(chunks):
            chunk()
    return steps / (time.perf_counter() - start)


def two_threads(steps: int, chunks: int) -> float:
    with ThreadPoolExecutor(1) as pool:
        start = time.perf_counter()
        for _ in range(steps):
            left, lock = iter(range(chunks)), threading.Lock()

            def work() -> None:
                while True:
                    with lock:
                        if next(left, None) is None:
                            return
                    chunk()
            helper = pool.submit(work)
            work()
            helper.result()
        return steps / (time.perf_counter() - start)


def worker(connection) -> None:
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        while connection.recv():
            chunk()
            connection.send(True)


def two_processes(steps: int) -> float:
    pipes = [multiprocessing.Pipe() for _ in range(2)]
    workers = [multiprocessing.Process(target=worker, args=(child,)) for _, child in pipes]
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
    parser.add_argument("--steps", type=int, default=400, help="steps of 2 chunks per figure")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 4
    from threadpoolctl import threadpool_limits
    print("a fork-join step of equal one-threaded products, cut into K chunks")
    for line in machine_lines():
        print(line)
    rows = []
    with threadpool_limits(1):
        for load in ("alone", "beside a busy process"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load != "alone" else None
            try:
                for chunks in (2, 4, 8, 16):
                    steps = max(1, args.steps * 2 // chunks)
                    base = one_thread(steps, chunks)
                    rows.append([load, str(chunks), "2 threads",
                                 format_ratio(two_threads(steps, chunks), base)])
                    if chunks == 2:
                        rows.append([load, "2", "2 processes",
                                     format_ratio(two_processes(steps), base)])
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print()
    print_table(["machine", "K", "how", "x one thread"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
