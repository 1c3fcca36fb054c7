"""Train a DreamerV3 agent (CNN or pre-trained encoder) on a task; every field of
``pvm_mbrl.experiment.Experiment`` is a flag.

    python examples/train.py --task Reach --camera front --encoder cnn --size size12m \
        --steps 500000 --logdir runs/cnn
    python examples/train.py --encoder dinov2-small --finetune "partial(4)" \
        --checkpoint /data/dinov2-small --input-size 112 --pvm-lr 4e-6 --encoder-cache \
        --seeds 0 1 2 --logdir runs/dinov2_partial
    python examples/train.py --logdir runs/cnn --resume       # continue after a kill

Writes TensorBoard logs (``tensorboard --logdir runs``), GIFs under ``<logdir>/videos`` and orbax
checkpoints under ``<logdir>/checkpoints``. ``--resume`` reads the saved ``experiment.json``
of ``--logdir``; flags given with it may only change ``--steps`` and the output intervals.
"""

from __future__ import annotations

import dataclasses
import sys

import tyro

from pvm_mbrl.experiment import Experiment, run


@dataclasses.dataclass(frozen=True)
class Args:
    exp: Experiment
    resume: bool = False
    """continue the run in --logdir from its newest checkpoint"""
    quiet: bool = False
    """no progress lines"""


def parse(argv=None) -> Args:
    argv = sys.argv[1:] if argv is None else list(argv)
    default = Experiment()
    if "--resume" in argv:
        # Start from the saved experiment so only the flags given change it.
        logdir = argv[argv.index("--logdir") + 1] if "--logdir" in argv else default.logdir
        try:
            default = Experiment.load(logdir)
        except FileNotFoundError:
            pass
    return tyro.cli(
        Args,
        args=argv,
        default=Args(exp=default),
        config=(tyro.conf.OmitArgPrefixes,),
        description=__doc__.split("\n\n")[0],
    )


def main(argv=None) -> None:
    args = parse(argv)
    last = run(args.exp, resume=args.resume, progress=not args.quiet)
    print(
        f"done: {args.exp.logdir} (return {last.get('episode/return', float('nan')):.2f}, "
        f"success {last.get('episode/success_once', float('nan')):.2f}); "
        f"tensorboard --logdir {args.exp.logdir}"
    )


if __name__ == "__main__":
    main()
