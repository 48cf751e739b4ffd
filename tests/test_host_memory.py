"""pulse_jax.host_memory: malloc keeps large freed blocks (XLA:CPU's per-step scratch buffer)
mapped, gives them back on release(), and is left alone on request. Each case runs in a
fresh process: the settings are per process and must come before JAX's backend starts.
What it does to a search step's page faults and time is a benchmark's business
(benchmarks/host_malloc_bench.py): it depends on the process's allocation pattern."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import pulse_jax
from pulse_jax import host_memory

linux_glibc = pytest.mark.skipif(host_memory._glibc() is None,
                                 reason="malloc tuning exists only on Linux with glibc")

# Kept memory, measured in a fresh process: a 256 MiB block malloc'd, touched and freed by
# the main thread stays in the heap under "keep" (no munmap, no trim) until release().
_PROBE = textwrap.dedent("""
    import ctypes, json
    import pulse_jax
    from pulse_jax import host_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    before = rss_mib()
    n = 256 << 20
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    touched = rss_mib()
    libc.free(ctypes.c_void_p(p))
    freed = rss_mib()
    released = host_memory.release()
    print(json.dumps({"state": host_memory.state(), "before": before, "touched": touched,
                      "freed": freed, "released": released, "after": rss_mib()}))
""")


def _run(code: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != host_memory.ENV}
    environ.update(env, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_glibc
def test_import_keeps_freed_memory_until_release():
    keep = _run(_PROBE)
    assert keep["state"] == {"mode": "keep", "before_backend": True, "reason": "configured"}
    assert keep["touched"] > keep["before"] + 200, keep
    assert keep["freed"] > keep["before"] + 200, keep   # kept for the next step
    assert keep["released"] and keep["after"] < keep["before"] + 50, keep


@linux_glibc
def test_system_leaves_malloc_alone():
    system = _run(_PROBE, PULSE_JAX_HOST_MALLOC="system")
    assert system["state"]["mode"] == "system"
    assert system["state"]["reason"] == "PULSE_JAX_HOST_MALLOC=system"
    # glibc's default: a block this large is mmapped and goes back at free; release() is a no-op.
    assert system["freed"] < system["before"] + 50, system
    assert system["released"] is False


@linux_glibc
def test_too_late_is_reported():
    code = ("import jax.numpy as jnp; jnp.ones(2).block_until_ready()\n"
            "import json, pulse_jax; print(json.dumps(pulse_jax.host_memory.state()))")
    state = _run(code)
    assert state["mode"] == "keep" and state["before_backend"] is False
    assert "already started" in state["reason"]


def test_bad_mode_is_refused_with_the_choices():
    environ = dict(os.environ, PULSE_JAX_HOST_MALLOC="fast")
    out = subprocess.run([sys.executable, "-c", "import pulse_jax"], env=environ,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "PULSE_JAX_HOST_MALLOC / mode must be one of ('keep', 'system'), got 'fast'" in out.stderr
    with pytest.raises(ValueError, match="must be one of"):
        host_memory.configure("fast")


@linux_glibc
def test_system_after_keep_is_an_error():
    if host_memory.state()["mode"] != "keep":
        pytest.skip(f"this test process runs with {host_memory.ENV}=system")
    with pytest.raises(RuntimeError, match="start a new process"):
        host_memory.configure("system")


def test_import_configured_this_process():
    # The test session imported pulse_jax too; what it did is on record.
    assert pulse_jax.host_memory.state()["mode"] in host_memory.MODES
    assert pulse_jax.host_memory.state()["reason"] != "not configured"
