"""How many threads NumPy's matrix products (BLAS) use: read it, set it, and pick it.

NumPy's wheels ship OpenBLAS (as "scipy-openblas"), whose C API has
``openblas_get_num_threads`` and ``openblas_set_num_threads``, under a prefixed name
(``scipy_openblas_set_num_threads64_``) in recent wheels. This module finds the copy of the
library that NumPy has loaded and calls it through ctypes. With any other BLAS (MKL,
Accelerate), or when the library cannot be found, every function quietly does nothing and
returns None: thread control is a speed-up, never a requirement.

Why it matters here: a vanilla RNN multiplies a (B, H) state by an (H, H) matrix once per
time step. With one stream (B = 1) each product takes about a microsecond and a second thread
brings nothing; with B * H * H above about half a million the products are large enough for
two threads to pay (see ``threads_for``). Two cautions, both measured:

* OpenBLAS's results depend on its thread count in the last bits of float32, so a run that
  must continue bit for bit after a resume has to use the same count (threads_for depends only
  on the sizes and the number of cores, never on the load).
* With more BLAS threads than idle cores (another busy process on a 2-core machine), each
  small product waits for a thread that is not running: training at B=32, H=256 fell from
  ~110k chars/s with one thread to ~1k chars/s with two. ``OPENBLAS_NUM_THREADS=1`` in the
  environment is respected by threads_for, and is the fix on a shared machine.
"""
from __future__ import annotations

import ctypes
import glob
import os
from contextlib import contextmanager

import numpy as np

# Below this many multiply-adds per recurrence step (B * H * H), a second BLAS thread does
# not pay. Measured on 2 cores (benchmarks/bench_train.py --config ..., training chars/s with
# 1 / 2 threads): B=1 H=100 84k / 85k, B=1 H=512 11.5k / 12.3k, B=4 H=256 63.5k / 63.6k
# (all below 2^19: no gain); B=8 H=256 81k / 109k, B=32 H=128 279k / 389k, B=32 H=256
# 110k / 164k (2^19 and above: a clear gain).
SINGLE_THREAD_BELOW = 1 << 19

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")


def _loaded_openblas_paths() -> list[str]:
    """Paths of OpenBLAS libraries mapped into this process (Linux), else next to NumPy."""
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    if not paths:   # macOS and friends: the wheel keeps its libraries beside the package
        here = os.path.dirname(np.__file__)
        for pattern in ("../numpy.libs/*openblas*", ".dylibs/*openblas*"):
            paths.extend(sorted(glob.glob(os.path.join(here, pattern))))
    return paths


def _find_functions():
    """(get_num_threads, set_num_threads) from the loaded OpenBLAS, or (None, None)."""
    for path in _loaded_openblas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                try:
                    getter = getattr(library, f"{prefix}get_num_threads{suffix}")
                    setter = getattr(library, f"{prefix}set_num_threads{suffix}")
                except AttributeError:
                    continue
                getter.restype, getter.argtypes = ctypes.c_int, []
                setter.restype, setter.argtypes = None, [ctypes.c_int]
                return getter, setter
    return None, None


_functions = None


def _openblas():
    global _functions
    if _functions is None:
        _functions = _find_functions()
    return _functions


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now, or None if that cannot be known."""
    getter, _ = _openblas()
    return None if getter is None else int(getter())


def set_blas_threads(count: int) -> int | None:
    """Make NumPy's BLAS use ``count`` threads; returns the previous count (None: no control)."""
    getter, setter = _openblas()
    if setter is None:
        return None
    previous = int(getter())
    setter(max(1, int(count)))
    return previous


@contextmanager
def blas_threads_limited(count: int | None):
    """Run a block with ``count`` BLAS threads (None: leave them alone), then restore."""
    previous = None if count is None else set_blas_threads(count)
    try:
        yield
    finally:
        if previous is not None:
            set_blas_threads(previous)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _user_chose_threads() -> bool:
    return any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"))


def threads_for(batch_size: int, hidden_size: int) -> int:
    """The BLAS thread count that trains fastest for this size: 1 when the recurrence's
    products are small (each then takes microseconds, and waking other threads costs more
    than it saves), else one per usable core. If the user set OPENBLAS_NUM_THREADS or
    OMP_NUM_THREADS, their choice (the current count) is kept.

    Only the sizes and the machine's core count decide, never the load at the moment: the
    thread count changes float32 results in the last bits (BLAS splits the products
    differently), so a resumed run must use the same count to continue bit for bit.
    """
    if _user_chose_threads():
        return blas_threads() or 1
    if batch_size * hidden_size * hidden_size < SINGLE_THREAD_BELOW:
        return 1
    return usable_cores()


def blas_description() -> str:
    """NumPy's BLAS as one line, e.g. ``scipy-openblas 0.3.31 (Haswell), 2 threads``."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        config = blas.get("openblas configuration", "")
        for word in config.split():
            if word.isalpha() and word.istitle() and word not in ("OpenBLAS",):
                name += f" ({word})"   # the CPU kernel family, e.g. Haswell
                break
    except Exception:   # an old NumPy or a custom build: say what we can
        name = "unknown BLAS"
    threads = blas_threads()
    return f"{name}, {'unknown' if threads is None else threads} thread(s)"
