"""TRL adapter: ``TampoGRPOTrainer``, a drop-in ``trl.GRPOTrainer`` with a learned temperature.

    from tampo_core import TampoConfig
    from tampo_core.adapters.trl import TampoGRPOTrainer

    trainer = TampoGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...),
                               tampo=TampoConfig())

Needs ``tampo-core[trl]`` (``trl>=1.16,<1.17``); other TRL versions are refused at import.
"""

from tampo_core.adapters.trl._seam import check_trl_version

check_trl_version()

from tampo_core.adapters.trl.trainer import TampoGRPOTrainer  # noqa: E402

__all__ = ["TampoGRPOTrainer"]
