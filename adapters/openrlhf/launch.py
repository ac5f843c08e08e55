"""Run OpenRLHF's own PPO/GRPO command line with the TAMPO trainer swapped in.

``python -m tampo_core.adapters.openrlhf.launch --tampo.top_p 0.7 <usual train_ppo_ray args>``

The ``--tampo.*`` options (``--help`` lists them above OpenRLHF's) are taken out; everything else
goes to ``openrlhf.cli.train_ppo_ray`` unchanged, with its own parser and validation. Its
``train()`` then builds ``TampoPPOTrainer`` where it would build ``PPOTrainer``. Async PPO
(``--train.async_enable``) is refused. Without OpenRLHF installed, ``--help`` still lists the
TAMPO options and says what is missing.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

from tampo_core.adapters.openrlhf.options import PROG, parse_tampo_args, tampo_argument_parser

CLI_MODULE = "openrlhf.cli.train_ppo_ray"
"""The OpenRLHF entry point the launcher runs."""


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the TAMPO options, swap the trainer in and run OpenRLHF's CLI with the rest."""
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help = "-h" in argv or "--help" in argv
    if wants_help:
        tampo_argument_parser().print_help()
    options, rest = parse_tampo_args(argv)
    try:
        from tampo_core.adapters.openrlhf import _seam
        from tampo_core.adapters.openrlhf.trainer import BoundTampoTrainer
    except ImportError as error:
        note = (
            "OpenRLHF's own options (everything but --tampo.*) need OpenRLHF and Ray, the "
            f"openrlhf extra (from a checkout: pip install '.[openrlhf]'); {error}"
        )
        if wants_help:
            print(f"\n{note}")
            raise SystemExit(0) from None
        raise SystemExit(f"{PROG}: error: {note}") from None
    if "--train.async_enable" in rest:
        raise SystemExit(f"{PROG}: error: --train.async_enable: {_seam.ASYNC_REFUSAL}")
    _seam.check_launcher_contract()
    _seam.install_trainer(BoundTampoTrainer(options))
    _seam.refuse_async_trainer()
    sys.argv = [CLI_MODULE, *rest]
    runpy.run_module(CLI_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
