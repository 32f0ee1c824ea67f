"""Shared pytest fixtures for charrnn's tests."""
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
