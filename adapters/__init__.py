"""Framework adapters for tampo-core: ``torch_loop``, ``trl``, ``openrlhf`` and ``verl``.

This folder installs as ``tampo_core.adapters`` (the mapping is in setup.py): import it as
``tampo_core.adapters.<framework>``. Each adapter imports its framework only inside its own
subpackage, so importing ``tampo_core.adapters`` costs nothing.
"""
