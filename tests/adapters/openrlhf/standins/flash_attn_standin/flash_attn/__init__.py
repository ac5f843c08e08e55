"""Test stand-in for flash-attn (CUDA-only): see tests/adapters/openrlhf/standins/README.md."""
