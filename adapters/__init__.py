"""Framework adapters for tampo-core: ``torch_loop``, ``trl`` and ``openrlhf``.

Each adapter imports its framework only inside its own subpackage, so importing
``tampo_core.adapters`` costs nothing.
"""
