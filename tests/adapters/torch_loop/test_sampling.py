"""Sampling at a temperature: cache vs no-cache, HF models, plain modules, EOS, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tampo_core.adapters.torch_loop import sample_completions
from tampo_core.adapters.torch_loop.model_call import ModelSignature
from tests.adapters.torch_loop.models import CachedLM, PlainLM, cached_lm

EOS = 1


def _tiny(seed: int = 0, vocab: int = 11) -> CachedLM:
    return cached_lm(seed, vocab)


def _prompts(b: int = 6, p: int = 5, vocab: int = 11) -> torch.Tensor:
    return torch.randint(2, vocab, (b, p), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.5])
def test_cache_and_no_cache_paths_sample_the_same_tokens(temperature: float) -> None:
    model, prompts = _tiny(), _prompts()
    runs = [
        sample_completions(
            model,
            prompts,
            temperature=temperature,
            max_new_tokens=8,
            eos_token_id=EOS,
            use_cache=cache,
            generator=torch.Generator().manual_seed(3),
        )
        for cache in (True, False)
    ]
    assert torch.equal(runs[0].completion_ids, runs[1].completion_ids)
    assert torch.equal(runs[0].completion_mask, runs[1].completion_mask)


def test_first_token_frequencies_follow_softmax_of_logits_over_temperature() -> None:
    model = _tiny()
    prompt = _prompts(1).repeat(6000, 1)
    t = 1.7
    out = sample_completions(
        model,
        prompt,
        temperature=t,
        max_new_tokens=1,
        eos_token_id=EOS,
        generator=torch.Generator().manual_seed(0),
    )
    freq = torch.bincount(out.completion_ids[:, 0], minlength=11).float() / 6000
    with torch.no_grad():
        expected = torch.softmax(model(prompt[:1]).logits[0, -1] / t, -1)
        at_one = torch.softmax(model(prompt[:1]).logits[0, -1], -1)
    assert (freq - expected).abs().max() < 0.025
    assert (expected - at_one).abs().max() > 0.05


def test_eos_ends_a_row_and_later_positions_are_padding() -> None:
    model = _tiny()
    out = sample_completions(
        model,
        _prompts(64),
        temperature=2.0,
        max_new_tokens=10,
        eos_token_id=EOS,
        pad_token_id=0,
        generator=torch.Generator().manual_seed(5),
    )
    ids, mask = out.completion_ids, out.completion_mask
    assert ids.shape == mask.shape and mask.dtype == torch.bool
    ended = 0
    for row, m in zip(ids, mask, strict=True):
        n = int(m.sum())
        assert bool(m[:n].all()) and not bool(m[n:].any())
        assert (row[:n] == EOS).sum() <= 1
        if n < ids.shape[1] or row[n - 1] == EOS:
            ended += 1
            assert row[n - 1] == EOS and bool((row[n:] == 0).all())
    assert ended > 0


def test_plain_module_uses_the_no_cache_path_and_rejects_a_cache() -> None:
    torch.manual_seed(0)
    model = PlainLM().eval()
    out = sample_completions(model, _prompts(), temperature=1.0, max_new_tokens=4, eos_token_id=EOS)
    assert out.completion_ids.shape[0] == 6
    with pytest.raises(ValueError, match="no past_key_values"):
        sample_completions(
            model, _prompts(), temperature=1.0, max_new_tokens=4, eos_token_id=EOS, use_cache=True
        )
    with pytest.raises(ValueError, match="no attention_mask"):
        sample_completions(
            model,
            _prompts(),
            temperature=1.0,
            max_new_tokens=4,
            eos_token_id=EOS,
            attention_mask=torch.ones(6, 5, dtype=torch.long),
        )


def test_cached_sampling_makes_one_forward_per_generated_token() -> None:
    model, calls = _tiny(), []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    out = sample_completions(model, _prompts(), temperature=0.0, max_new_tokens=6, eos_token_id=0)
    assert len(calls) == out.completion_ids.shape[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"attention_mask": torch.ones(6, 4)}, "attention_mask shape"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs: dict[str, object], match: str) -> None:
    args = {"temperature": 1.0, "max_new_tokens": 3, "eos_token_id": EOS, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_completions(_tiny(), _prompts(), **args)
    with pytest.raises(ValueError, match="int64"):
        sample_completions(
            _tiny(), _prompts().float(), temperature=1.0, max_new_tokens=3, eos_token_id=EOS
        )


def _hf_llama() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=EOS,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_hf_model_greedy_matches_generate_with_kv_cache() -> None:
    model = _hf_llama()
    prompts = _prompts(4, 6, vocab=40)
    ours = sample_completions(model, prompts, temperature=0.0, max_new_tokens=7, eos_token_id=EOS)
    ref = model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=7,
        do_sample=False,
        eos_token_id=EOS,
        pad_token_id=EOS,
    )[:, prompts.shape[1] :]
    n = ours.completion_ids.shape[1]
    assert torch.equal(ours.completion_ids, ref[:, :n])
    nocache = sample_completions(
        model, prompts, temperature=0.0, max_new_tokens=7, eos_token_id=EOS, use_cache=False
    )
    assert torch.equal(nocache.completion_ids, ours.completion_ids)


def test_hf_model_left_padded_prompts_match_unpadded_rows() -> None:
    model = _hf_llama()
    rows = [torch.tensor([5, 9, 13, 7, 22]), torch.tensor([8, 3, 30])]
    width = max(len(r) for r in rows)
    padded = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(padded)
    for i, r in enumerate(rows):
        padded[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    for cache in (True, False):
        batch = sample_completions(
            model,
            padded,
            temperature=0.0,
            max_new_tokens=6,
            eos_token_id=EOS,
            attention_mask=mask,
            use_cache=cache,
        )
        for i, r in enumerate(rows):
            alone = sample_completions(
                model, r[None], temperature=0.0, max_new_tokens=6, eos_token_id=EOS
            )
            n = int(alone.completion_mask.sum())
            assert torch.equal(batch.completion_ids[i, :n], alone.completion_ids[0, :n])


class KwargsWrapper(nn.Module):
    """A PEFT-style wrapper: ``forward(input_ids, **kwargs)`` hands everything to its base."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def get_base_model(self) -> nn.Module:
        return self.base

    def forward(self, input_ids: torch.Tensor, **kwargs: object) -> object:
        return self.base(input_ids, **kwargs)


def _count_calls(model: nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def test_kwargs_wrapper_uses_its_base_models_cache() -> None:
    base = _tiny()
    wrapped = KwargsWrapper(base)
    assert ModelSignature.of(wrapped).cache_kwarg == "past_key_values"
    calls = _count_calls(base)
    out = sample_completions(wrapped, _prompts(), temperature=0.0, max_new_tokens=6, eos_token_id=0)
    assert len(calls) == out.completion_ids.shape[1]  # one cached step per token
    plain = sample_completions(base, _prompts(), temperature=0.0, max_new_tokens=6, eos_token_id=0)
    assert torch.equal(out.completion_ids, plain.completion_ids)


def test_kwargs_module_without_a_base_model_stays_on_the_no_cache_path() -> None:
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = PlainLM()

        def forward(self, input_ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
            return self.inner(input_ids)

    assert ModelSignature.of(Bare()).cache_kwarg is None


def test_peft_lora_model_keeps_the_kv_cache() -> None:
    peft = pytest.importorskip("peft")
    base = _hf_llama()
    lora = peft.get_peft_model(
        base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    ).eval()
    sig = ModelSignature.of(lora)
    assert sig.cache_kwarg is not None and sig.cache_kwarg == ModelSignature.of(base).cache_kwarg
    prompts = _prompts(4, 6, vocab=40)
    calls = _count_calls(lora)
    ours = sample_completions(lora, prompts, temperature=0.0, max_new_tokens=7, eos_token_id=EOS)
    assert len(calls) == ours.completion_ids.shape[1]
    nocache = sample_completions(
        lora, prompts, temperature=0.0, max_new_tokens=7, eos_token_id=EOS, use_cache=False
    )
    assert torch.equal(nocache.completion_ids, ours.completion_ids)
