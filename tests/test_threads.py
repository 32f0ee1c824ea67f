"""BLAS thread control through threadpoolctl (issue 12): reading and setting NumPy's BLAS
thread count, the thread-count policy (threads_for), and the benchmarks' BLAS description.
The saved count on resume is checked end to end in tests/test_cli_edges.py."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import threadpoolctl

from charrnn import threads

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")

needs_blas_control = pytest.mark.skipif(threads.blas_info() is None,
                                        reason="no BLAS that threadpoolctl can control")


@pytest.fixture
def restore_threads():
    before = threads.blas_threads()
    yield
    if before is not None:
        threads.set_blas_threads(before)


@needs_blas_control
def test_the_count_is_read_and_set_through_threadpoolctl(restore_threads):
    before = threads.blas_threads()
    assert before == threads.blas_info()["num_threads"] >= 1
    assert threads.set_blas_threads(1) == before       # returns the previous count
    assert threads.blas_threads() == 1
    assert {lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"} == {1}        # threadpoolctl sees the same
    assert threads.set_blas_threads(2) == 1
    assert threads.blas_threads() == 2
    assert threads.set_blas_threads(0) == 2            # at least one thread
    assert threads.blas_threads() == 1


@needs_blas_control
def test_the_count_does_not_change_results_beyond_the_last_bits(restore_threads):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((256, 256)), rng.standard_normal((256, 256))
    threads.set_blas_threads(1)
    one = a @ b
    threads.set_blas_threads(2)
    assert np.allclose(a @ b, one, rtol=1e-12)


def test_threads_for_keeps_the_measured_policy(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 6)
    assert threads.threads_for(1, 512) == 1                 # 2^18 multiply-adds: one thread
    assert threads.threads_for(4, 256) == 1
    assert threads.threads_for(8, 256) == 6                 # 2^19: one per usable core
    assert threads.threads_for(32, 256) == 6
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    assert threads.threads_for(32, 256) == 1


@needs_blas_control
def test_threads_for_keeps_the_users_environment_choice(monkeypatch, restore_threads):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    threads.set_blas_threads(1)
    assert threads.threads_for(32, 1024) == 1
    threads.set_blas_threads(2)
    assert threads.threads_for(32, 1024) == 2               # the current count is kept


def test_without_a_blas_every_function_does_nothing(monkeypatch):
    monkeypatch.setattr(threads, "_controller", threadpoolctl.ThreadpoolController().select(
        user_api="no such api"))
    assert threads.blas_info() is None
    assert threads.blas_threads() is None
    assert threads.set_blas_threads(3) is None
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "2")
    assert threads.threads_for(32, 256) == 1


def test_no_hand_written_library_search_is_left():
    with open(threads.__file__, encoding="utf-8") as f:
        source = f.read()
    assert "ctypes" not in source and "/proc/self/maps" not in source
    assert not hasattr(threads, "blas_threads_limited")    # moved to benchmarks/_common.py
    assert not hasattr(threads, "blas_description")


@needs_blas_control
def test_the_benchmarks_blas_line_names_the_kernel(restore_threads):
    sys.path.insert(0, BENCHMARKS)
    try:
        import _common
    finally:
        sys.path.remove(BENCHMARKS)
    threads.set_blas_threads(1)
    line = _common.blas_description()
    info = threads.blas_info()
    assert line.endswith("1 thread(s)")
    assert info["internal_api"] in line
    if info.get("architecture"):                             # OpenBLAS's CPU kernel
        assert f"{info['architecture']} kernel" in line
    with _common.blas_threads_limited(2):
        assert threads.blas_threads() == 2
    assert threads.blas_threads() == 1


def test_training_threads_order_of_choices(monkeypatch):
    """--threads, then the environment, then the saved count, then the size policy; never
    more than the usable cores, with a note when a resumed run changes its count."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.training_threads(1, 2, 32, 256) == (1, [
        "this model was trained with 2 BLAS thread(s), now 1; "
        "results will differ from an uninterrupted run in the last bits"])
    count, notes = threads.training_threads(8, None, 32, 256)
    assert count == 2 and "more than the 2 usable core(s)" in notes[0]
    assert threads.training_threads(None, 1, 32, 256) == (1, [])
    # a saved count above this machine's cores is capped, and the change is said
    count, notes = threads.training_threads(None, 4, 32, 256)
    assert count == 2 and "trained with 4" in notes[0]
    assert threads.training_threads(None, None, 1, 8) == (1, [])
    # the environment's choice wins over the saved count
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "blas_threads", lambda: 1)
    count, notes = threads.training_threads(None, 2, 32, 256)
    assert count == 1 and "trained with 2" in notes[0]
