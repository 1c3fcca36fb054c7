"""Host-memory reuse (``pvm_mbrl.hostmem``): after warm-up, repeated XLA:CPU calls stop
page-faulting their buffers in, and the opt-out and late calls change nothing."""

import json
import os
import subprocess
import sys

import pytest

# Runs in a fresh interpreter: a jitted op on a 64 MiB array, 30 warm-up calls, then the minor
# page faults of each of 20 more calls (their median: one late extra buffer, which XLA may keep
# when a call overlaps the previous one's release, faults in once and is not a steady cost), and
# the RSS growth over those 20 (a leak of one buffer per call would show there as 1.25 GiB).
PROBE = """
import json, resource, statistics
import pvm_mbrl
pvm_mbrl.setup()
import jax, jax.numpy as jnp
x = jnp.ones((4096, 4096), jnp.float32)
f = jax.jit(lambda x: x * 2.0)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    jax.block_until_ready(f(x))
per_call, m0 = [], rss()
for _ in range(20):
    r0 = faults()
    jax.block_until_ready(f(x))
    per_call.append(faults() - r0)
print(json.dumps({"faults": statistics.median(per_call), "grew": rss() - m0,
                  "active": pvm_mbrl.hostmem.active()}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "PVM_MBRL_HOST_MALLOC": mode, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_repeated_calls_reuse_host_buffers():
    system, reuse = _probe("system"), _probe("reuse")
    # 64 MiB per output buffer is 16,384 pages: the system allocator faults them in every call.
    assert reuse["active"] and not system["active"]
    assert system["faults"] > 8_000, system
    assert reuse["faults"] < 0.05 * system["faults"], (reuse, system)
    assert reuse["grew"] <= 2 * 64 * 2**20, reuse


def test_reuse_is_refused_once_jax_runs_or_opted_out_and_checks_the_variable(monkeypatch):
    import jax.numpy as jnp

    from pvm_mbrl import hostmem

    jnp.ones(2).block_until_ready()  # the test process's JAX backend is up
    assert hostmem.reuse_host_memory() is False
    monkeypatch.setenv(hostmem.ENV, "system")
    assert hostmem.reuse_host_memory() is False
    monkeypatch.setenv(hostmem.ENV, "off")
    with pytest.raises(ValueError, match=r"'reuse' .* or 'system'"):
        hostmem.reuse_host_memory()
