"""Shared by the benchmarks: interleaved timing, the machine's description, BLAS threads for a
block of code, and tables.

Timing method: every contender is warmed up (which also calibrates how many calls fill one
chunk of ``chunk_seconds``), then the contenders take turns, one chunk each, for ``rounds``
rounds. Each chunk gives one rate; a contender's figure is the median of its rates. Taking
turns means a burst of load from elsewhere on a shared machine hits every contender alike,
so the ratios measured in one run are more trustworthy than the absolute rates.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_CORPUS = os.path.join(REPO, "data", "tinyshakespeare.txt")

if REPO not in sys.path:   # run from a checkout without installing: find charrnn beside us
    sys.path.insert(0, REPO)


class Contender:
    """Something to time: ``call()`` does ``units`` units of work (characters)."""

    def __init__(self, name: str, call, units: int, setup=None, teardown=None):
        self.name, self.call, self.units = name, call, units
        self.setup = setup or (lambda: None)         # run before each of its chunks
        self.teardown = teardown or (lambda: None)   # and after (e.g. thread settings)
        self.calls_per_chunk = 1
        self.rates: list[float] = []

    @property
    def rate(self) -> float:
        """Median units per second over the timed chunks."""
        return statistics.median(self.rates) if self.rates else float("nan")


def run_interleaved(contenders: list[Contender], chunk_seconds: float, rounds: int,
                    warmup_seconds: float, pause_seconds: float = 0.0) -> None:
    """Warm up and calibrate each contender, then time them in turns; fills ``.rates``.

    ``pause_seconds`` of sleep before each chunk lets the previous contender's idle worker
    threads (OpenBLAS, OpenMP), which busy-wait for a while after their last task, go to
    sleep instead of competing for the cores with the next contender.
    """
    for contender in contenders:
        contender.setup()
        try:
            contender.call()   # the first call allocates buffers and fills caches
            calls, start = 0, time.perf_counter()
            while True:
                contender.call()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= warmup_seconds:
                    break
        finally:
            contender.teardown()
        contender.calls_per_chunk = max(1, round(chunk_seconds * calls / elapsed))
    for _ in range(rounds):
        for contender in contenders:
            time.sleep(pause_seconds)
            contender.setup()
            try:
                call, calls = contender.call, contender.calls_per_chunk
                start = time.perf_counter()
                for _ in range(calls):
                    call()
                elapsed = time.perf_counter() - start
            finally:
                contender.teardown()
            contender.rates.append(calls * contender.units / elapsed)


@contextmanager
def blas_threads_limited(count: int | None):
    """Run a block with ``count`` BLAS threads (None: leave them alone), then restore."""
    from charrnn.threads import set_blas_threads
    previous = None if count is None else set_blas_threads(count)
    try:
        yield
    finally:
        if previous is not None:
            set_blas_threads(previous)


def numpy_threads(threads):
    """(setup, teardown) callables that run a contender's chunks with ``threads`` BLAS threads."""
    state = {}

    def setup():
        state["context"] = blas_threads_limited(threads)
        state["context"].__enter__()

    def teardown():
        state["context"].__exit__(None, None, None)
    return setup, teardown


def torch_threads(torch, threads):
    """(setup, teardown) callables that run a contender's chunks with ``threads`` torch threads."""
    previous = torch.get_num_threads()
    return (lambda: torch.set_num_threads(threads)), (lambda: torch.set_num_threads(previous))


def blas_description() -> str:
    """NumPy's BLAS as one line: its build name and version (NumPy's configuration), then what
    threadpoolctl finds loaded: the library, its CPU kernel (``architecture``), its threading
    layer and thread count, e.g. ``scipy-openblas 0.3.31 (openblas, Haswell kernel, pthreads),
    2 thread(s)``."""
    import numpy as np

    from charrnn.threads import blas_info
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:   # an old NumPy or a custom build: say what threadpoolctl says
        name = ""
    info = blas_info()
    if info is None:
        return f"{name or 'unknown BLAS'} (no thread control), unknown thread(s)"
    details = [info.get("internal_api") or "?"]
    if not name:
        name = f"{info.get('internal_api', '?')} {info.get('version') or ''}".strip()
    if info.get("architecture"):
        details.append(f"{info['architecture']} kernel")
    if info.get("threading_layer"):
        details.append(str(info["threading_layer"]))
    return f"{name} ({', '.join(details)}), {info['num_threads']} thread(s)"


def machine_lines() -> list[str]:
    """Lines describing where the numbers come from: CPU count, Python, NumPy, BLAS."""
    import numpy as np

    load = os.getloadavg()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), "
             f"load average {', '.join(f'{x:.1f}' for x in load)}"
             + (" (busy: other processes compete for the cores, multi-threaded figures suffer)"
                if load[0] > 0.5 * (os.cpu_count() or 1) else ""),
             f"python {platform.python_version()}, numpy {np.__version__}, "
             f"BLAS: {blas_description()}"]
    return lines


def format_rate(rate: float) -> str:
    if rate != rate:   # NaN: not measured
        return "-"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def format_ratio(numerator: float, denominator: float, suffix: str = "x") -> str:
    if not (numerator == numerator and denominator == denominator) or denominator == 0:
        return "-"
    return f"{numerator / denominator:.2f}{suffix}"


def print_table(header: list[str], rows: list[list[str]], file=None) -> None:
    """A plain-text table with a dashed rule under the header; columns right-aligned."""
    file = file or sys.stdout
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    def line(cells):
        return "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths))
    print(line(header), file=file)
    print("  ".join("-" * width for width in widths), file=file)
    for row in rows:
        print(line(row), file=file)
    file.flush()


def import_torch():
    """``torch``, or None (with a message) when it is not installed."""
    try:
        import torch
    except ImportError as error:
        print(f"PyTorch baseline skipped: cannot import torch ({error}); "
              f"`pip install torch` to include it", file=sys.stderr)
        return None
    return torch


def timed_train(command: list[str]) -> tuple[float, str]:
    """Run a ``charrnn train`` command line to its end: its wall-clock seconds, from before the
    process starts to after it exits, and its stderr. A failure ends the benchmark with it."""
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return wall, done.stderr


LOADS = ("alone", "beside a busy process")


@contextmanager
def machine_load(load: str):
    """Run the block as ``load`` (one of LOADS) says: alone, or while a second process spins
    on one core (``while True: pass``, as a browser tab or a compiler would), started 0.2 s
    before the block and killed after it."""
    if load == LOADS[0]:
        yield
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        busy.kill()
        busy.wait()
