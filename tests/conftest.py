"""Shared pytest fixtures for charrnn's tests."""
import signal

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded random generator per test, so every test is reproducible on its own."""
    return np.random.default_rng(20240611)


@pytest.fixture
def in_tmp_path(tmp_path, monkeypatch):
    """Run the test in tmp_path, so a default checkpoints/ folder would land there (the CLI
    tests' modules use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sigint_as_in_a_terminal():
    """SIGINT handled as in a foreground terminal (Python's KeyboardInterrupt handler) for the
    test, and put back afterwards: a suite started in the background inherits SIGINT ignored,
    and a run that finds it ignored keeps ignoring it (see train.deferred_signals)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)



@pytest.fixture
def torch():
    """torch (and safetensors, which the documented PyTorch program uses), else skip; one
    thread, since torch's small products slow down a hundredfold with two threads on a busy
    machine."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)
