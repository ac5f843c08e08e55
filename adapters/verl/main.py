"""Run verl's own PPO/GRPO entry point (``verl.trainer.main_ppo``) with the TAMPO trainer.

``python -m tampo_core.adapters.verl.main tampo.top_p=0.7 <verl Hydra overrides>``

The ``tampo.<field>=<value>`` overrides (every ``TampoConfig`` field and ``chunk_size``) are
taken out; everything else goes to verl's Hydra main unchanged, with its own config, defaults and
validation. ``trainer.use_v1=false`` is added unless given (the adapter runs ``RayPPOTrainer``;
``trainer.use_v1=true``, the TransferQueue trainer, is refused). ``main_ppo.main`` then runs
``TampoTaskRunner`` where it would run ``TaskRunner``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from tampo_core.adapters.verl.options import parse_tampo_overrides, tampo_help

USE_V1 = re.compile(r"^\+{0,2}trainer\.use_v1=(?P<value>.*)$")


def verl_overrides(rest: Sequence[str]) -> list[str]:
    """verl's overrides with ``trainer.use_v1=false`` (added unless given).

    Raises:
        SystemExit: ``trainer.use_v1`` is set to anything but false.
    """
    given = [match for arg in rest if (match := USE_V1.match(arg))]
    if not given:
        return [*rest, "trainer.use_v1=false"]
    if any(match["value"].strip().lower() != "false" for match in given):
        raise SystemExit(
            "trainer.use_v1=true: the TransferQueue trainer (verl.trainer.ppo.v1) is not "
            "supported by the TAMPO adapter; it runs RayPPOTrainer (trainer.use_v1=false)"
        )
    return list(rest)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the TAMPO overrides, swap the task runner in and run verl's Hydra main."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(tampo_help())
    options, rest = parse_tampo_overrides(argv)
    overrides = verl_overrides(rest)
    from tampo_core.adapters.verl import _seam
    from tampo_core.adapters.verl.task_runner import BoundTampoTaskRunner

    _seam.check_launcher_contract()
    _seam.install_task_runner(BoundTampoTaskRunner(options))
    from verl.trainer import main_ppo

    sys.argv = [main_ppo.__file__, *overrides]
    main_ppo.main()


if __name__ == "__main__":
    main()
