"""How many threads NumPy's matrix products (BLAS) use: read it, set it, and pick it.

The BLAS library NumPy has loaded (OpenBLAS, as "scipy-openblas", in NumPy's wheels; MKL or
BLIS in some builds) is found and driven by ``threadpoolctl``, the scikit-learn team's small
pure-Python library for exactly this. When no BLAS that threadpoolctl knows is loaded (Apple's
Accelerate, say), every function here quietly does nothing and returns None: thread control is
a speed-up, never a requirement.

Why it matters here: a vanilla RNN multiplies a (B, H) state by an (H, H) matrix once per
time step. With one stream (B = 1) a product is too small for a second thread to pay; with
B * H * H above about half a million it is large enough (see ``threads_for``). Two cautions:

* OpenBLAS's results depend on its thread count in the last bits of float32, so a run that
  must continue bit for bit after a resume has to use the same count (threads_for depends only
  on the sizes and the number of cores, never on the load; the count is saved in the
  checkpoint and used again on resume).
* With more BLAS threads than idle cores (another busy process), each small product waits for
  a thread that is not running, and training can slow many times over. Large training runs
  therefore split their work between threads of their own instead (model/groups.py), and
  leave BLAS one thread; ``benchmarks/bench_busy.py`` measures both.
"""
from __future__ import annotations

import os

import numpy as np   # noqa: F401  (loads NumPy's BLAS before threadpoolctl looks for it)
from threadpoolctl import ThreadpoolController

# Below this many multiply-adds per recurrence step (B * H * H), a second thread does not
# pay (benchmarks/bench_train.py --config H,T,B at 1 and 2 threads: docs/benchmarks.md,
# "When a second thread pays").
SINGLE_THREAD_BELOW = 1 << 19

_controller: ThreadpoolController | None = None


def blas_controller() -> ThreadpoolController:
    """threadpoolctl's controller of the BLAS libraries loaded in this process (found once;
    it may hold none)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def blas_info() -> dict | None:
    """threadpoolctl's description of NumPy's BLAS (``internal_api``, ``version``,
    ``num_threads``, ``architecture`` for OpenBLAS, ...), or None when there is none. With
    more than one BLAS loaded, the first, which is NumPy's (charrnn imports NumPy first)."""
    libraries = blas_controller().info()
    return libraries[0] if libraries else None


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now, or None if that cannot be known."""
    info = blas_info()
    return None if info is None else int(info["num_threads"])


def set_blas_threads(count: int) -> int | None:
    """Make NumPy's BLAS use ``count`` threads; returns the previous count (None: no control)."""
    previous = blas_threads()
    if previous is not None:
        blas_controller().limit(limits=max(1, int(count)), user_api="blas")
    return previous


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def training_threads(requested: int | None, saved: int | None, batch_size: int,
                     hidden_size: int) -> tuple[int, list[str]]:
    """The BLAS thread count for a training run, and notes for the user about the choice.

    The user's --threads (``requested``) first, then OPENBLAS_NUM_THREADS/OMP_NUM_THREADS,
    then the count a resumed run was trained with (``saved``: float32 results differ in their
    last bits with another count), then threads_for; never more than the usable cores.
    """
    notes = []
    cores = usable_cores()
    if requested is not None and requested > cores:
        notes.append(f"--threads {requested} is more than the {cores} usable core(s); "
                     f"using {cores}")
        requested = cores
    from_environment = blas_threads() if user_chose_threads() else None
    count = requested or from_environment or saved or threads_for(batch_size, hidden_size)
    count = min(count, cores)
    if saved is not None and count != saved:
        notes.append(f"this model was trained with {saved} BLAS thread(s), now {count}; "
                     f"results will differ from an uninterrupted run in the last bits")
    return count, notes


def user_chose_threads() -> bool:
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
    if user_chose_threads():
        return blas_threads() or 1
    if batch_size * hidden_size * hidden_size < SINGLE_THREAD_BELOW:
        return 1
    return usable_cores()
