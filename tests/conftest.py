"""Shared fixtures: tiny data and a seeded Pyro/torch state for every test."""
import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def digits():
    """Scaled 8x8 digits in [0, 1] (first 600), flat, with labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:600] / 16.0, dtype=torch.float32)
    return x, torch.tensor(d.target[:600])
