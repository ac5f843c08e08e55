"""Test stand-in for vLLM (CUDA-only): see tests/adapters/openrlhf/standins/README.md."""

__version__ = "0.29.0"


class SamplingParams:
    """Records its keyword arguments as attributes."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __repr__(self):
        return f"SamplingParams({self.__dict__})"


class AsyncEngineArgs:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("vllm stand-in: no engine on CPU")


class AsyncLLMEngine:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("vllm stand-in: no engine on CPU")
