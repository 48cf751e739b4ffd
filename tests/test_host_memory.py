"""pulse_jax.host_memory: malloc keeps XLA:CPU's per-step scratch memory mapped between steps
(no page faults in a steady step), gives it back when the search ends, and is left alone on
request. Each case runs in a fresh process: the settings are per process and must come
before JAX's backend starts."""

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

# 12 restarts of the shipped model: the step's scratch buffer is about 114 MiB, above both
# glibc's mmap threshold and the 64 MiB heaps of its per-thread arenas.
_PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import pulse_jax
    from pulse_jax import host_memory
    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    faults, rss = [], []
    def on_step(p):
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        rss.append(rss_mib())
    gen = pulse_jax.default_generator()
    lr = np.random.RandomState(0).rand(1, 8, 8, 3).astype(np.float32)
    pulse_jax.upsample(gen, lr, pulse_jax.SearchConfig(steps=6, restarts=12, chunk_steps=1),
                       progress=on_step)
    steady = [b - a for a, b in zip(faults[2:], faults[3:])]
    print(json.dumps({"state": host_memory.state(), "steady_faults": steady,
                      "rss_in_search": rss[-1], "rss_after": rss_mib()}))
""")


def _run(code: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != host_memory.ENV}
    environ.update(env, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_glibc
def test_import_keeps_scratch_memory_then_gives_it_back():
    keep = _run(_PROBE)
    assert keep["state"] == {"mode": "keep", "before_backend": True, "reason": "configured"}
    # A steady step reuses the last step's pages: next to no page faults (glibc's default:
    # about 30,000 per step, the whole buffer, see the next test).
    assert max(keep["steady_faults"]) < 2000, keep["steady_faults"]
    # ...and the end of the search hands the kept buffer back.
    assert keep["rss_after"] < keep["rss_in_search"] - 60, keep


@linux_glibc
def test_system_leaves_malloc_alone():
    system = _run(_PROBE, PULSE_JAX_HOST_MALLOC="system")
    assert system["state"]["mode"] == "system"
    assert system["state"]["reason"] == "PULSE_JAX_HOST_MALLOC=system"
    # What the tuning is for: glibc maps and unmaps the buffer at every step.
    assert min(system["steady_faults"]) > 10000, system["steady_faults"]


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
