"""Test stand-in for flash-attn (CUDA-only): see tests/openrlhf_standins/README.md."""
