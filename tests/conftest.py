"""Shared pytest fixtures for charrnn's tests."""
import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded random generator per test, so every test is reproducible on its own."""
    return np.random.default_rng(20240611)
