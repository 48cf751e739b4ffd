"""Shared test set-up: float32 parity needs full-precision matmuls and convs."""

import os
import pathlib

# Fake several CPU devices before JAX initialises, so sharding tests have devices to use.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def ref():
    """The reference fixture (NCHW arrays produced by the official PyTorch PULSE)."""
    with np.load(DATA / "pulse_ref_small_seed0.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> pathlib.Path:
    """A tiny random generator saved as a pulse-jax checkpoint folder (runner tests)."""
    import fakes
    return fakes.save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def search_traced_once(monkeypatch):
    """Every compiled stage of the search may be traced once while the test runs; a second
    trace (a recompile for shapes already seen) raises in ``chex.assert_max_traces``."""
    import chex
    from pulse_jax import search_steps
    search_steps.stages.cache_clear()
    chex.clear_trace_counter()
    for name in ("init_state", "one_step", "run_steps", "finalize"):
        monkeypatch.setattr(search_steps, name,
                            chex.assert_max_traces(getattr(search_steps, name), n=1))
    yield
    search_steps.stages.cache_clear()  # its programs hold the wrapped functions
