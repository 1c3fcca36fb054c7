"""The on-device replay buffer: layout, round trips, valid sequences after wrapping, uniformity.

Every transition encodes its env and global step (``env``, ``step``) and all other fields are
functions of the two, so a sampled sequence can be checked against what was written.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pvm_mbrl import replay

E, T, L = 3, 8, 3  # envs, steps per env, sequence length
B = 512  # batch size: one compile of sample per length and mark_first
SPEC = {
    "pixels": jax.ShapeDtypeStruct((4, 4, 3), jnp.uint8),
    "proprio": jax.ShapeDtypeStruct((2,), jnp.float32),
    "action": jax.ShapeDtypeStruct((2,), jnp.float32),
    "reward": jax.ShapeDtypeStruct((), jnp.float32),
    "is_first": jax.ShapeDtypeStruct((), jnp.bool_),
    "is_last": jax.ShapeDtypeStruct((), jnp.bool_),
    "is_terminal": jax.ShapeDtypeStruct((), jnp.bool_),
    "step": jax.ShapeDtypeStruct((), jnp.int32),
    "env": jax.ShapeDtypeStruct((), jnp.int32),
    "feat": jax.ShapeDtypeStruct((2, 3), jnp.bfloat16),
}


def transition(t):
    """Step ``t`` of every env; each field is a function of (t, env)."""
    env = jnp.arange(E, dtype=jnp.int32)
    t = jnp.full((E,), t, jnp.int32)
    code = t * E + env
    return {
        "pixels": jnp.broadcast_to(
            (code % 251 + 1).astype(jnp.uint8)[:, None, None, None], (E, 4, 4, 3)
        ),
        "proprio": jnp.stack([t, -env], -1).astype(jnp.float32),
        "action": jnp.stack([code, code + 1], -1).astype(jnp.float32) * 0.25,
        "reward": code.astype(jnp.float32) * 0.5,
        "is_first": t % 5 == env,
        "is_last": t % 5 == (env + 4) % 5,
        "is_terminal": t % 7 == env,
        "step": t,
        "env": env,
        "feat": jnp.broadcast_to((code % 128 - 64)[:, None, None], (E, 2, 3)).astype(jnp.bfloat16),
    }


@jax.jit
def expected(step, env):
    """What was written at ``step`` of ``env``, for index arrays of any shape."""

    def one(t, e):
        return jax.tree.map(lambda x: x[e], transition(t))

    for _ in range(np.ndim(step)):
        one = jax.vmap(one)
    return one(step, env)


@jax.jit
def fill(buffer, start, n):
    """Adds global steps ``start .. start + n - 1``."""
    return jax.lax.fori_loop(start, start + n, lambda t, b: replay.add(b, transition(t)), buffer)


add = jax.jit(replay.add)
sample = jax.jit(replay.sample, static_argnames=("batch_size", "length", "mark_first"))
can_sample = jax.jit(replay.can_sample, static_argnames="length")
size = jax.jit(replay.size)


def filled(n):
    return fill(replay.Replay.create(SPEC, E, E * T), 0, n)


def check_valid(batch, n, length):
    """Every sequence: one env, strictly consecutive steps, all within the stored window."""
    step, env = np.asarray(batch["step"]), np.asarray(batch["env"])
    assert step.shape == env.shape == (len(step), length)
    assert ((env >= 0) & (env < E)).all() and (env == env[:, :1]).all()
    assert (np.diff(step, axis=1) == 1).all()
    assert (step[:, 0] >= max(0, n - T)).all() and (step[:, -1] <= n - 1).all()


def test_create_layout_dtypes_and_empty_state():
    buf = replay.Replay.create(SPEC, E, E * T)
    assert (buf.num_envs, buf.steps_per_env) == (E, T)
    for k, s in SPEC.items():
        assert buf.data[k].shape == (E, T, *s.shape) and buf.data[k].dtype == s.dtype, k
    assert int(size(buf)) == 0 and not bool(can_sample(buf, length=1))
    # concrete arrays work as the example too
    buf = replay.Replay.create({"x": np.zeros((5,), np.uint8)}, num_envs=2, capacity=12)
    assert buf.data["x"].shape == (2, 6, 5) and buf.data["x"].dtype == np.uint8


def test_round_trip_values_and_dtypes():
    buf = filled(T)
    batch = sample(buf, jax.random.key(1), batch_size=B, length=T, mark_first=False)
    check_valid(batch, T, T)
    want = expected(batch["step"], batch["env"])
    assert set(batch) == set(SPEC)
    for k, s in SPEC.items():
        assert batch[k].shape == (B, T, *s.shape) and batch[k].dtype == s.dtype, k
        np.testing.assert_array_equal(np.asarray(batch[k]), np.asarray(want[k]), err_msg=k)
    # the stored layout itself: env e's stream at time index i holds step i
    np.testing.assert_array_equal(buf.data["step"], np.tile(np.arange(T), (E, 1)))
    np.testing.assert_array_equal(buf.data["env"], np.tile(np.arange(E)[:, None], (1, T)))


@pytest.mark.parametrize("n", [L, T - 1, T, T + 1, 2 * T + L - 1, 10 * T + 5])
def test_sequences_are_consecutive_steps_of_one_env_after_wrapping(n):
    buf = filled(n)
    batch = sample(buf, jax.random.key(n), batch_size=B, length=L, mark_first=False)
    check_valid(batch, n, L)
    want = expected(batch["step"], batch["env"])
    for k in SPEC:
        np.testing.assert_array_equal(np.asarray(batch[k]), np.asarray(want[k]), err_msg=k)


@pytest.mark.parametrize("n", [6, 3 * T + 5])
def test_sample_is_uniform_over_valid_env_starts(n):
    first = max(0, n - T)  # oldest stored step
    starts = np.arange(first, n - L + 1)  # every start whose sequence ends at or before n - 1
    cells = E * len(starts)
    batch = sample(filled(n), jax.random.key(7), batch_size=18_000, length=L)
    per_cell = 18_000 / cells  # >= 1000
    check_valid(batch, n, L)
    env, start = np.asarray(batch["env"][:, 0]), np.asarray(batch["step"][:, 0])
    counts = np.zeros((E, len(starts)))
    np.add.at(counts, (env, start - first), 1)
    assert (counts > 0).all()  # every valid (env, start) pair occurs, and check_valid: no other
    chi2 = ((counts - per_cell) ** 2 / per_cell).sum()
    # df = cells - 1 <= 17: P(chi2 > 60) < 1e-6 for a uniform sampler (and the key is fixed)
    assert chi2 < 60, (chi2, counts)


def test_mark_first():
    buf = filled(2 * T + 1)
    key = jax.random.key(3)
    marked = sample(buf, key, batch_size=B, length=L)
    plain = sample(buf, key, batch_size=B, length=L, mark_first=False)
    want = expected(plain["step"], plain["env"])["is_first"]
    np.testing.assert_array_equal(plain["is_first"], want)
    assert not np.asarray(want[:, 0]).all()  # the test data has starts that are no reset
    assert np.asarray(marked["is_first"][:, 0]).all() and marked["is_first"].dtype == jnp.bool_
    np.testing.assert_array_equal(marked["is_first"][:, 1:], want[:, 1:])
    np.testing.assert_array_equal(marked["step"], plain["step"])  # same key, same sequences
    # a buffer without is_first samples as usual
    buf = add(replay.Replay.create({"x": SPEC["reward"]}, 2, 2), {"x": jnp.ones(2)})
    assert set(sample(buf, key, batch_size=4, length=1)) == {"x"}


def test_can_sample_and_size_track_the_fill():
    buf = replay.Replay.create(SPEC, E, E * T)
    n = 0
    for add in [0, 1, L - 2, 1, T - L - 1, 1, 1, 2 * T + 3]:
        buf, n = fill(buf, n, add), n + add
        assert int(size(buf)) == E * min(n, T)
        assert bool(can_sample(buf, length=L)) == (n >= L)
        assert bool(can_sample(buf, length=T)) == (n >= T)
    assert n > 3 * T


def test_sample_before_prefill_is_defined():
    batch = sample(filled(1), jax.random.key(0), batch_size=B, length=L, mark_first=False)
    assert (np.asarray(batch["env"][:, 0]) >= 0).all()
    np.testing.assert_array_equal(batch["step"], 0)  # step 0, then unwritten zeros
    assert (np.asarray(batch["pixels"][:, 0]) > 0).all() and (batch["pixels"][:, 1:] == 0).all()
    assert len(np.unique(batch["env"][:, 0])) == E


def test_add_and_sample_in_one_compiled_scan():
    def body(buf, t):
        buf = replay.add(buf, transition(t))
        batch = replay.sample(buf, jax.random.fold_in(jax.random.key(0), t), 16, L)
        return buf, (replay.can_sample(buf, L), batch["step"], batch["env"], batch["is_first"])

    run = jax.jit(lambda buf: jax.lax.scan(body, buf, jnp.arange(5 * T)))
    buf, (ok, step, env, first) = run(replay.Replay.create(SPEC, E, E * T))
    assert int(size(buf)) == E * T
    np.testing.assert_array_equal(ok, np.arange(1, 5 * T + 1) >= L)
    for t in range(L - 1, 5 * T):
        check_valid({"step": step[t], "env": env[t]}, t + 1, L)
    assert np.asarray(first[:, :, 0]).all()


@pytest.mark.parametrize("n", [L, T + 2, 3 * T + 5])
def test_sample_indices_draw_as_flashbax_and_gather_reads_them(n):
    """The indices are flashbax's own draw for the same key (so ``sample`` is unchanged), and
    ``gather`` at them reads what ``sample`` returns."""
    from flashbax.buffers import trajectory_buffer as fbx

    buf = filled(n)
    key = jax.random.key(n)
    rows, times = replay.sample_indices(buf, key, B, L)
    ref = fbx.sample(replay._fbx(buf), key, B, L, period=1).experience
    got = replay.gather(buf, rows, times, mark_first=False)
    for k in SPEC:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(ref[k]), err_msg=k)
    np.testing.assert_array_equal(rows, np.asarray(ref["env"][:, 0]))


def test_write_stores_values_at_the_drawn_steps_only():
    buf = filled(2 * T + 3)  # wrapped: ring index 2 holds the oldest step
    rows = jnp.array([0, 1, 2, 0])
    times = jnp.array([[6, 7, 0], [0, 1, 2], [3, 4, 5], [2, 3, 4]])  # disjoint, one across the end
    values = {"proprio": -jnp.arange(4 * L * 2, dtype=jnp.float32).reshape(4, L, 2) - 1.0}
    out = jax.jit(replay.write)(buf, rows, times, values)
    np.testing.assert_array_equal(replay.gather(out, rows, times)["proprio"], values["proprio"])
    written = np.zeros((E, T), bool)
    written[np.asarray(rows)[:, None], np.asarray(times)] = True
    old, new = np.asarray(buf.data["proprio"]), np.asarray(out.data["proprio"])
    np.testing.assert_array_equal(new[~written], old[~written])  # nothing else moves
    assert (new[written] < 0).all()
    for k in set(SPEC) - {"proprio"}:
        np.testing.assert_array_equal(out.data[k], buf.data[k], err_msg=k)
    with pytest.raises(ValueError, match=r"float32 \(4, 3, 2\)"):
        replay.write(buf, rows, times, {"proprio": values["proprio"][:, :2]})
    with pytest.raises(ValueError, match="no field 'latent'"):
        replay.write(buf, rows, times, {"latent": values["proprio"]})


def test_online_queue_serves_each_new_sequence_once_in_order():
    """The official replay's online queue: every env's stream cut into consecutive sequences of
    ``length`` steps, each served once, oldest first, before any uniform draw."""
    online = jax.jit(replay.sample_online, static_argnums=(2, 3))
    buf = replay.Replay.create(SPEC, E, E * T)
    key = jax.random.key(0)
    served = []
    n = 0
    for add_now in [L - 1, 1, L, 0, 0, 1]:  # 0, 1, 2, 2, 2, 2 complete sequences per env (n <= T)
        buf, n = fill(buf, n, add_now), n + add_now
        queued = E * (n // L) - len(served)
        rows, times, buf = online(buf, key, 2, L)
        batch = replay.gather(buf, rows, times, mark_first=False)
        check_valid(batch, n, L) if n >= L else None
        take = min(2, queued)
        for i in range(take):
            served.append((int(batch["env"][i, 0]), int(batch["step"][i, 0])))
        assert int(buf.online) == len(served)
    # Order: tile 0 of env 0, 1, 2, then tile 1 of env 0, ... with no repeat.
    want = [(e, j * L) for j in range(n // L) for e in range(E)][: len(served)]
    assert served == want and len(served) == 2 * E
    # When the ring overwrites queued sequences they are dropped, and the queue resumes at the
    # oldest sequence still whole.
    buf = fill(buf, n, 3 * T)
    n += 3 * T
    rows, times, buf = online(buf, key, 3, L)
    batch = replay.gather(buf, rows, times, mark_first=False)
    check_valid(batch, n, L)
    first = -(-(n - T) // L) * L  # first tile start at or after the oldest stored step
    assert [int(s) for s in batch["step"][:, 0]] == [first] * E
    assert [int(e) for e in batch["env"][:, 0]] == list(range(E))
    # With the queue empty the batch is the uniform draw.
    buf = buf.replace(online=jnp.int32(E * (n // L)))
    rows, times, _ = online(buf, key, 4, L)
    urows, utimes = replay.sample_indices(buf, key, 4, L)
    np.testing.assert_array_equal(rows, urows)
    np.testing.assert_array_equal(times, utimes)


def test_bad_inputs_raise():
    ok = {"a": jax.ShapeDtypeStruct((2,), jnp.uint8), "b": jax.ShapeDtypeStruct((), jnp.bool_)}
    for kwargs in [
        {"capacity": 25, "num_envs": 3},
        {"capacity": 2, "num_envs": 3},
        {"capacity": 0, "num_envs": 0},
    ]:
        with pytest.raises(ValueError, match="multiple of num_envs"):
            replay.Replay.create(ok, **kwargs)
    for example in [{}, [jnp.zeros(2)], {"a": 1.0}]:
        with pytest.raises(ValueError, match="example"):
            replay.Replay.create(example, 2, 8)

    buf = replay.Replay.create(ok, 3, 12)
    good = {"a": jnp.zeros((3, 2), jnp.uint8), "b": jnp.zeros(3, bool)}
    add(buf, good)
    for bad, msg in [
        ({**good, "a": jnp.zeros((3, 3), jnp.uint8)}, r"uint8 \(3, 2\)"),
        ({**good, "a": jnp.zeros((3, 2), jnp.float32)}, r"'a'\] must be uint8 \(3, 2\)"),
        ({**good, "b": jnp.zeros(2, bool)}, r"bool \(3,\)"),
        ({**good, "b": np.zeros(3, np.float64)}, r"bool \(3,\)"),
        ({"a": good["a"]}, "must have the fields"),
        ({**good, "c": good["b"]}, "must have the fields"),
    ]:
        with pytest.raises(ValueError, match=msg):
            add(buf, bad)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="num_envs \\* length = 3 \\* 5"):
        replay.sample(buf, key, batch_size=2, length=5)
    with pytest.raises(ValueError, match="length"):
        replay.can_sample(buf, length=0)
    with pytest.raises(ValueError, match="batch_size"):
        replay.sample(buf, key, batch_size=0, length=2)


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from pvm_mbrl import replay

E, T, L = 4, 16, 4
spec = {"px": jax.ShapeDtypeStruct((8, 8, 3), jnp.uint8), "step": jax.ShapeDtypeStruct((), "int32")}
mesh = Mesh(np.array(jax.devices()), ("env",))
env, rep = NamedSharding(mesh, P("env")), NamedSharding(mesh, P())
shardings = replay.Replay({k: env for k in spec}, rep, rep, rep, rep)
buf = jax.jit(lambda: replay.Replay.create(spec, E, E * T), out_shardings=shardings)()

def body(buf, t):
    step = t + 100 * jnp.arange(E)
    px = jnp.broadcast_to(step.astype(jnp.uint8)[:, None, None, None], (E, 8, 8, 3))
    tr = {"px": px, "step": step}
    buf = replay.add(buf, jax.lax.with_sharding_constraint(tr, {k: env for k in tr}))
    batch = replay.sample(buf, jax.random.fold_in(jax.random.key(0), t), 8, L)
    return buf, (batch["step"], batch["px"][..., 0, 0, 0])

run = jax.jit(lambda b: jax.lax.scan(body, b, jnp.arange(3 * T)), out_shardings=(shardings, None))
hlo = run.lower(buf).compile().as_text()
assert "all-gather" not in hlo, "the buffer is gathered across devices"
buf, (step, px) = run(buf)
assert buf.data["px"].sharding.spec == P("env") and len(buf.data["px"].sharding.device_set) == 4
step = np.asarray(step)[L - 1:]
assert (np.diff(step, axis=-1) == 1).all() and (np.asarray(px)[L - 1:] == step % 256).all()
print("ok")
"""


def test_sharded_env_axis_stays_local():
    """With the env axis sharded over 4 (CPU) devices: no all-gather, same valid sequences."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SHARDED)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
