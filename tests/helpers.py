"""Helpers shared by the tests: reference fixture access and layout conversion."""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np

import pulse_jax
from pulse_jax.weights import from_pulse_state_dicts


def nhwc(x: np.ndarray) -> np.ndarray:
    """NCHW (the reference's layout) -> NHWC (ours)."""
    return np.ascontiguousarray(np.moveaxis(x, -3, -1))


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def state_dicts(ref: dict) -> tuple[dict, dict, dict]:
    """(synthesis, mapping, gaussian_fit) state dicts of the reference fixture."""
    syn = {k[len("synthesis/"):]: v for k, v in ref.items() if k.startswith("synthesis/")}
    mapping = {k[len("mapping/"):]: v for k, v in ref.items() if k.startswith("mapping/")}
    fit = {"mean": ref["gaussian/mean"], "std": ref["gaussian/std"]}
    return syn, mapping, fit


def fixture_generator(ref: dict) -> pulse_jax.Generator:
    return from_pulse_state_dicts(*state_dicts(ref))


def fixture_noises(ref: dict, prefix: str = "synthesis_io/noise_", n: int = 12) -> list:
    return [nhwc(ref[f"{prefix}{i:02d}"]) for i in range(n)]


def assert_close(actual, desired, atol: float, rtol: float = 0.0, what: str = "") -> None:
    actual, desired = np.asarray(actual), np.asarray(desired)
    err = np.abs(actual.astype(np.float64) - desired)
    np.testing.assert_allclose(actual, desired, atol=atol, rtol=rtol,
                               err_msg=f"{what}: max abs err {err.max():.3g}")


@contextlib.contextmanager
def modules_installed(mods: dict[str, types.ModuleType]):
    """Puts fake modules into ``sys.modules`` (e.g. a stand-in ``torch``) and restores what
    was there before, so that pickles referring to them can be written without the real ones."""
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
