"""Shared fixtures: keep tests offline and away from the user's cache; one MNIST load per session."""
import os

import pytest
import torch

os.environ.setdefault("PROPAGATE_NO_DOWNLOAD", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # A session-wide cache folder so the packaged MNIST is decoded once, never in ~/.cache.
    cache = tmp_path_factory.getbasetemp() / "propagate-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("PROPAGATE_CACHE", str(cache))
    monkeypatch.setenv("PROPAGATE_NO_DOWNLOAD", "1")


@pytest.fixture
def gaussian_batch():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(256, 784, generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    return x, y


def _wait_for(cond, timeout=120.0):
    """Poll ``cond`` every 10 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def wait_for():
    return _wait_for
