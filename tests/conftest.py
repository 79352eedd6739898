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


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A short default-recipe run trained through the command line, shared by the CLI tests."""
    from .clitools import FAST, ppl_vae

    out = tmp_path_factory.mktemp("runs") / "digits"
    proc = ppl_vae("train", "--out", out, *FAST)
    assert "run directory" in proc.stdout and "log p(x)" in proc.stdout
    return out
