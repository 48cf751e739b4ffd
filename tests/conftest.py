"""Shared test set-up: float32 parity needs full-precision matmuls and convs."""

import atexit
import os
import pathlib
import shutil
import tempfile

# Fake several CPU devices before JAX initialises, so sharding tests have devices to use.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# One XLA compilation cache per test session: many tests compile the same programs (the
# same search stages at the same shapes, through new closures), and a cache hit skips the
# compile (test_search.py: 224 s -> 163 s on 2 CPU cores). A fresh folder each session, so
# nothing carries over between runs; subprocesses started by tests do not use it.
_XLA_CACHE = tempfile.mkdtemp(prefix="pulse-jax-tests-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
    from pulse_jax.search import stages
    stages.build.cache_clear()
    chex.clear_trace_counter()
    for name in ("init_state", "one_step", "run_steps", "finalize"):  # as stages.build reads them
        monkeypatch.setattr(stages, name, chex.assert_max_traces(getattr(stages, name), n=1))
    yield
    stages.build.cache_clear()  # its programs hold the wrapped functions
