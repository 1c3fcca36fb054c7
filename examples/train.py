"""Train a DreamerV3 agent (CNN or pre-trained encoder) on a task; every field of
``pvm_mbrl.experiment.Experiment`` is a flag.

    python examples/train.py --task Reach --camera front --encoder cnn --size size12m \
        --steps 500000 --logdir runs/cnn
    python examples/train.py --encoder dinov2-small --finetune "partial(4)" \
        --checkpoint /data/dinov2-small --input-size 112 --pvm-lr 4e-6 --encoder-cache \
        --seeds 0 1 2 --logdir runs/dinov2_partial
    python examples/train.py --logdir runs/cnn --resume       # continue after a kill
    python examples/train.py --logdir runs/cnn --resume-step 400000   # from that checkpoint

Writes TensorBoard logs (``tensorboard --logdir runs``), GIFs under ``<logdir>/videos`` and orbax
checkpoints under ``<logdir>/checkpoints``. ``--resume`` reads the saved ``experiment.json``
of ``--logdir`` (an error if there is none); flags given with it may only change ``--steps``
and the output intervals. It restores the newest checkpoint that passes its integrity check,
or the one ``--resume-step`` names (which implies ``--resume``).
"""

from __future__ import annotations

import dataclasses
import sys

import tyro

import pvm_mbrl
from pvm_mbrl.experiment import Experiment, run


@dataclasses.dataclass(frozen=True)
class Args:
    exp: Experiment
    resume: bool = False
    """continue the run in --logdir (which must hold experiment.json) from its newest good
    checkpoint"""
    resume_step: int | None = None
    """resume from this checkpoint step instead of the newest good one (implies --resume; newer
    checkpoints are moved to <logdir>/checkpoints_set_aside)"""
    quiet: bool = False
    """no progress lines"""


def parse(argv=None) -> Args:
    argv = sys.argv[1:] if argv is None else list(argv)
    default = Experiment()
    if "--resume" in argv or _flag(argv, "--resume-step") is not None:
        # Start from the saved experiment so only the flags given change it.
        logdir = _flag(argv, "--logdir") or default.logdir
        try:
            default = Experiment.load(logdir)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"cannot resume: {logdir} has no experiment.json, so it is not a run directory "
                f"(check --logdir)"
            ) from None
    return tyro.cli(
        Args,
        args=argv,
        default=Args(exp=default),
        config=(tyro.conf.OmitArgPrefixes,),
        description=__doc__.split("\n\n")[0],
    )


def _flag(argv: list[str], name: str) -> str | None:
    """The value of the last ``name VALUE`` or ``name=VALUE`` in ``argv``."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def main(argv=None) -> None:
    args = parse(argv)
    resume = args.resume or args.resume_step is not None
    last = run(args.exp, resume=resume, progress=not args.quiet, resume_step=args.resume_step)
    print(
        f"done: {args.exp.output.logdir} (return {last.get('episode/return', float('nan')):.2f}, "
        f"success {last.get('episode/success_once', float('nan')):.2f}); "
        f"tensorboard --logdir {args.exp.output.logdir}"
    )


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
