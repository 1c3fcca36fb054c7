"""One set of settings for both DreamerV3s, and the two resolved configurations side by side.

``Settings`` holds what the side-by-side benchmark (``benchmarks/official.py``) makes equal.
``official_flags`` turns it into the official code's command-line flags (danijar/dreamerv3,
``dreamerv3/main.py``), ``learning_flags`` into ours (``benchmarks/learning.py``).
``resolve_official`` asks the official checkout itself, run by the interpreter of its own virtual
environment, for the configuration those flags resolve to (its ``configs.yaml`` and flag parser,
so a default that changed upstream shows), and ``compare`` lines it up with ours, setting by
setting, with the ones that still differ marked.
"""

from __future__ import annotations

import dataclasses
import fractions
import json
import subprocess
import textwrap

from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class Settings:
    """What both programs run with. ``frames`` counts env frames (policy steps x repeat)."""

    task: str = "cartpole_swingup"  # a Control Suite task, domain_task
    image: int = 64
    repeat: int = 2
    envs: int = 4
    train_ratio: float = 64.0
    batch: int = 16
    length: int = 32
    lr: float = 3e-4
    warmup: int = 0
    size: str = "small"  # a DreamerConfig.preset: "small", or an official size (size1m, ...)
    replay_context: int = 1
    online: bool = True
    dtype: str = "float32"
    frames: int = 50_000
    prefill: int = 0  # our steps per env before training; 0: as many as the official's
    prefill_policy: str = "agent"  # the untrained agent acts, as in the official code

    @property
    def steps(self) -> int:
        """Policy steps in total over all envs, as both programs count them."""
        return self.frames // self.repeat

    @property
    def first_train(self) -> int:
        """Steps per env before the official's first update: it trains once its replay holds
        ``batch * length`` sequences, and an env's first sequence ends at its step
        ``length + context``."""
        per_env = -(-self.batch * self.length // self.envs)
        return per_env + self.length + self.replay_context - 1

    def sizes(self) -> dict:
        """The agent's shape: a ``DreamerConfig.preset`` (``small`` by default)."""
        return dataclasses.asdict(DreamerConfig.preset(self.size))

    def ours(self) -> tuple[DreamerConfig, TrainConfig]:
        """Our resolved agent and loop configuration."""
        agent = DreamerConfig.preset(
            self.size,
            obs_keys=("pixels",),
            compute_dtype=self.dtype,
            replay_context=self.replay_context,
            optimizer=OptimizerConfig(lr=self.lr, warmup=self.warmup),
        )
        rate = fractions.Fraction(self.train_ratio).limit_denominator(10_000)
        cycle = (rate * self.envs / (self.batch * self.length)).denominator
        chunk = cycle * -(-50 // cycle)  # about 50 env steps per printed row
        loop = TrainConfig(
            num_envs=self.envs,
            train_ratio=self.train_ratio,
            batch_size=self.batch,
            batch_length=self.length,
            replay_capacity=self.envs * (self.steps // self.envs + 1024),
            chunk_steps=chunk,
            prefill=self.prefill or self.first_train,
            prefill_policy=self.prefill_policy,
            replay_online=self.online,
            fused=False,
        )
        return agent, loop


def official_flags(s: Settings, seed: int, logdir: str) -> list[str]:
    """The official ``dreamerv3/main.py`` command line for ``s`` (pixels only, on the CPU)."""
    z = s.sizes()
    mults = ",".join(str(m) for m in z["mults"])
    flags = dict(
        logdir=logdir,
        configs="dmc_vision",
        task=f"dmc_{s.task}",
        seed=seed,
        batch_size=s.batch,
        batch_length=s.length,
        replay_context=s.replay_context,
        **{"replay.online": s.online, "env.dmc.repeat": s.repeat},
        **{"env.dmc.size": f"{s.image},{s.image}", "run.envs": s.envs},
        **{"run.train_ratio": s.train_ratio, "run.steps": s.steps},
        **{"run.save_every": 1e9, "run.log_every": 60, "run.report_every": 1e9},
        **{"jax.platform": "cpu", "jax.compute_dtype": s.dtype, "jax.prealloc": False},
        **{"logger.outputs": "jsonl", "agent.opt.lr": s.lr, "agent.opt.warmup": s.warmup},
    )
    rssm = "agent.dyn.rssm."
    flags |= {rssm + k: z[k] for k in ("deter", "hidden", "stoch", "classes", "blocks")}
    for part in ("enc", "dec"):
        flags |= {f"agent.{part}.simple.depth": z["depth"], f"agent.{part}.simple.mults": mults}
        flags[f"agent.{part}.simple.units"] = z["units"]
    flags["agent.dec.simple.bspace"] = z["bspace"]
    for head in ("rewhead", "conhead", "policy", "value"):
        flags[f"agent.{head}.units"] = z["units"]
    out = []
    for k, v in flags.items():
        out += [f"--{k}", str(v)]
    return out


def learning_flags(s: Settings, seed: int, curve: str) -> list[str]:
    """Our ``benchmarks/learning.py`` command line for ``s``."""
    _, loop = s.ours()
    flags = [
        f"--task=dmc/{s.task}",
        f"--image={s.image}",
        f"--action-repeat={s.repeat}",
        f"--size={s.size}",
        f"--dtype={s.dtype}",
        f"--lr={s.lr}",
        f"--warmup={s.warmup}",
        f"--train-ratio={s.train_ratio}",
        f"--num-envs={s.envs}",
        f"--batch={s.batch}",
        f"--length={s.length}",
        f"--chunk-steps={loop.chunk_steps}",
        f"--prefill={loop.prefill}",
        f"--prefill-policy={loop.prefill_policy}",
        f"--replay={loop.replay_capacity}",
        "--online" if s.online else "--no-online",
        "--no-fused",
        f"--env-steps={s.steps}",
        "--minutes=100000",
        f"--seed={seed}",
        f"--curve-out={curve}",
        "--set",
        f"replay_context={s.replay_context}",
        "--no-write",
        "--no-plot",
        "--eval-episodes=16",
        "--random-episodes=16",
    ]
    return flags


RESOLVE = """
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
sys.path[:0] = [str(root)]
import elements, ruamel.yaml as yaml
configs = yaml.YAML(typ="safe").load((root / "dreamerv3" / "configs.yaml").read_text())
parsed, other = elements.Flags(configs=["defaults"]).parse_known(sys.argv[2:])
config = elements.Config(configs["defaults"])
for name in parsed.configs:
    config = config.update(configs[name])
config = elements.Flags(config).parse(other)
print(json.dumps(dict(config.flat), default=str))
"""


def resolve_official(python: str, checkout: str, flags: list[str]) -> dict:
    """The official configuration ``flags`` resolve to, flattened (``"agent.opt.lr": 3e-4``)."""
    out = subprocess.run(
        [python, "-c", textwrap.dedent(RESOLVE), checkout, *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode:
        raise SystemExit(f"could not resolve the official configuration:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(s: Settings, off: dict, agent: DreamerConfig, loop: TrainConfig):
    """``(setting, official value, our value)`` for every setting both programs have."""
    o = agent.optimizer
    sc = agent.loss_scales
    rows = [
        ("task", off["task"], f"dmc_{s.task}"),
        ("image size", off["env.dmc.size"], [s.image, s.image]),
        ("image only (no proprio)", not off["env.dmc.proprio"], agent.obs_keys == ("pixels",)),
        ("camera", off["env.dmc.camera"], "-1 (suite default: 0)"),
        ("action repeat", off["env.dmc.repeat"], s.repeat),
        ("envs", off["run.envs"], loop.num_envs),
        ("train ratio", off["run.train_ratio"], loop.train_ratio),
        ("batch size", off["batch_size"], loop.batch_size),
        ("batch length", off["batch_length"], loop.batch_length),
        ("replay context", off["replay_context"], agent.replay_context),
        ("online queue", off["replay.online"], loop.replay_online),
        ("replay uniform fraction", off["replay.fracs.uniform"], 1.0),
        (
            "replay holds the whole run",
            off["replay.size"] >= s.steps,
            loop.replay_capacity >= s.steps,
        ),
        ("steps per env before the first update", s.first_train, loop.prefill),
        ("who acts before the first update", "agent", loop.prefill_policy),
        ("lr", off["agent.opt.lr"], o.lr),
        ("warm-up updates", off["agent.opt.warmup"], o.warmup),
        ("AGC", off["agent.opt.agc"], o.agc),
        ("Adam eps", off["agent.opt.eps"], o.eps),
        ("beta1, beta2", [off["agent.opt.beta1"], off["agent.opt.beta2"]], [o.beta1, o.beta2]),
        ("weight decay", off["agent.opt.wd"], 0.0),
        ("compute dtype", off["jax.compute_dtype"], agent.compute_dtype),
    ]
    rows += [(f"loss scale {k}", off[f"agent.loss_scales.{k}"], sc[k]) for k in sorted(sc)]
    r = "agent.dyn.rssm."
    rows += [
        (f"rssm {k}", off[r + k], getattr(agent, k))
        for k in ("deter", "hidden", "stoch", "classes", "blocks", "unimix", "free_nats")
    ]
    rows += [
        (f"rssm {k}", off[r + k], getattr(agent, k))
        for k in ("imglayers", "obslayers", "dynlayers")
    ]
    for part in ("enc", "dec"):
        p = f"agent.{part}.simple."
        rows += [
            (f"{part} depth", off[p + "depth"], agent.depth),
            (f"{part} mults", off[p + "mults"], list(agent.mults)),
            (f"{part} kernel", off[p + "kernel"], agent.kernel),
        ]
    rows += [("dec bspace", off["agent.dec.simple.bspace"], agent.bspace)]
    rows += [
        ("actor/critic units", [off["agent.policy.units"], off["agent.value.units"]], agent.units),
        (
            "actor/critic layers",
            [off["agent.policy.layers"], off["agent.value.layers"]],
            agent.mlp_layers,
        ),
        (
            "reward/cont layers",
            [off["agent.rewhead.layers"], off["agent.conhead.layers"]],
            [agent.reward_layers, agent.cont_layers],
        ),
        ("two-hot bins", [off["agent.rewhead.bins"], off["agent.value.bins"]], agent.bins),
        ("imagination horizon", off["agent.imag_length"], agent.imag_horizon),
        ("imag_last", off["agent.imag_last"], agent.imag_last),
        ("horizon", off["agent.horizon"], agent.horizon),
        ("lambda", off["agent.imag_loss.lam"], agent.lam),
        ("actor entropy", off["agent.imag_loss.actent"], agent.actent),
        ("slow-critic reg", off["agent.imag_loss.slowreg"], agent.slowreg),
        ("slow-critic rate", off["agent.slowvalue.rate"], agent.slow_rate),
        ("replayed value loss", off["agent.repval_loss"], agent.repval),
        (
            "actor minstd, maxstd",
            [off["agent.policy.minstd"], off["agent.policy.maxstd"]],
            [agent.minstd, agent.maxstd],
        ),
        (
            "actor outscale, unimix",
            [off["agent.policy.outscale"], off["agent.policy.unimix"]],
            [agent.actor_outscale, agent.actor_unimix],
        ),
        (
            "return norm rate, limit",
            [off["agent.retnorm.rate"], off["agent.retnorm.limit"]],
            [agent.retnorm_rate, agent.retnorm_limit],
        ),
        (
            "return norm percentiles",
            [off["agent.retnorm.perclo"], off["agent.retnorm.perchi"]],
            [agent.retnorm_perclo, agent.retnorm_perchi],
        ),
        ("frames", off["run.steps"] * off["env.dmc.repeat"], s.frames),
        ("renderer", "MuJoCo OpenGL (EGL/OSMesa)", "pvm_mbrl ray caster (JAX)"),
        ("physics", "MuJoCo (C), dm_control task", "MJX, same MJCF and rewards"),
    ]
    return rows


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, list | tuple):
        return all(_same(x, b) for x in a)
    try:
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    except (TypeError, ValueError):
        return str(a) == str(b)


def compare(s: Settings, official: dict) -> tuple[list[str], list[str]]:
    """Markdown rows of both resolved configurations, and the names of the settings that
    differ (where the two cannot be the same, the row says how each program does it)."""
    agent, loop = s.ours()
    table = ["| setting | official | ours | |", "|---|---|---|---|"]
    differ = []
    for name, off, ours in _rows(s, official, agent, loop):
        if name in ("renderer", "physics"):  # each library draws and simulates the same task
            table.append(f"| {name} | {off} | {ours} | by design |")
            continue
        same = _same(off, ours)
        if name == "camera":
            same = off == -1  # the suite's default camera, 0 for cartpole and reacher
        table.append(f"| {name} | {off} | {ours} | {'' if same else 'differs'} |")
        if not same:
            differ.append(f"{name}: official {off}, ours {ours}")
    return table, differ
