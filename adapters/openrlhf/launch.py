"""Run OpenRLHF's own PPO/GRPO command line with the TAMPO trainer swapped in.

``python -m tampo_core.adapters.openrlhf.launch --tampo.top_p 0.7 <usual train_ppo_ray args>``

The ``--tampo.*`` options (``--help`` lists them above OpenRLHF's) are taken out; everything else
goes to ``openrlhf.cli.train_ppo_ray`` unchanged, with its own parser and validation. Its
``train()`` then builds ``TampoPPOTrainer`` where it would build ``PPOTrainer``. Async PPO
(``--train.async_enable``) is refused.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

from tampo_core.adapters.openrlhf.options import parse_tampo_args, tampo_argument_parser

CLI_MODULE = "openrlhf.cli.train_ppo_ray"
"""The OpenRLHF entry point the launcher runs."""


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the TAMPO options, swap the trainer in and run OpenRLHF's CLI with the rest."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        tampo_argument_parser().print_help()
    options, rest = parse_tampo_args(argv)
    if "--train.async_enable" in rest:
        raise SystemExit(
            "--train.async_enable: async PPO (PPOTrainerAsync) is not supported by the TAMPO "
            "adapter; run synchronous PPO/GRPO"
        )
    from tampo_core.adapters.openrlhf import _seam
    from tampo_core.adapters.openrlhf.trainer import BoundTampoTrainer

    _seam.check_launcher_contract()
    _seam.install_trainer(BoundTampoTrainer(options))
    _seam.refuse_async_trainer()
    sys.argv = [CLI_MODULE, *rest]
    runpy.run_module(CLI_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
