"""GRPO with a TAMPO-learned sampling temperature, in plain PyTorch, in one file.

Task: the prompt is a digit s; answer with three digits whose sum is s mod 10, then <eos>.
Many answers are right, so how widely the policy samples matters. The model is a tiny causal
transformer that returns a bare logits tensor (no KV cache), so sampling takes the adapter's
documented no-cache path; a Hugging Face causal LM drops in unchanged and uses its cache.

    python examples/plain_pytorch_grpo.py                 # TAMPO (paper defaults)
    python examples/plain_pytorch_grpo.py --fixed-temperature 1.0   # plain GRPO baseline
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

import tampo_core as tc
from tampo_core.adapters.torch_loop import group_advantages, grpo_update, sample_completions
from tampo_core.validation import check_int, check_positive, check_temperature

EOS, VOCAB, ANSWER_LEN = 10, 11, 3  # tokens 0-9 are digits


class TinyLM(nn.Module):
    """Causal transformer: input_ids [B, L] -> logits [B, L, VOCAB]."""

    def __init__(self, d: int = 64, layers: int = 2, max_len: int = 8) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(n))
        causal = nn.Transformer.generate_square_subsequent_mask(n)
        return self.head(self.body(x, mask=causal, is_causal=True))


def rewards_for(
    prompts: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """1.0 where the completion is three digits summing to the prompt digit mod 10, then <eos>."""
    ok = (mask.sum(1) == ANSWER_LEN + 1) & (completions[:, ANSWER_LEN] == EOS)
    digits = completions[:, :ANSWER_LEN]
    ok &= (digits < 10).all(1) & (digits.sum(1) % 10 == prompts[:, 0])
    return ok.float()


def checked(check: Callable[..., object], name: str, parse: type, **rule: int) -> Callable:
    """An argparse ``type`` that parses with ``parse`` and validates with ``check``: a bad value
    is a one-line usage error naming the rule."""

    def convert(text: str) -> object:
        value = parse(text)  # a ValueError here is argparse's own "invalid int value: 'x'"
        try:
            return check(name, value, **rule)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name}: ")) from None

    convert.__name__ = parse.__name__  # argparse names the type in its parse errors
    return convert


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    steps = checked(check_int, "--steps", int, minimum=1)
    ap.add_argument("--steps", type=steps, default=150, help="GRPO steps")
    prompts = checked(check_int, "--prompts", int, minimum=1)
    ap.add_argument("--prompts", type=prompts, default=16, help="prompts per step")
    group = checked(check_int, "--group-size", int, minimum=2)
    ap.add_argument("--group-size", type=group, default=8, help="completions per prompt")
    lr = checked(check_positive, "--lr", float)
    ap.add_argument("--lr", type=lr, default=3e-4, help="Adam learning rate")
    ap.add_argument("--seed", type=checked(check_int, "--seed", int), default=0, help="seed")
    ap.add_argument(
        "--fixed-temperature",
        type=checked(check_temperature, "--fixed-temperature", float),
        default=None,
        help="plain GRPO at this sampling temperature, in [1e-4, 1e4] (default: %(default)s, "
        "TAMPO learns the temperature)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model = TinyLM()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # TAMPO: a distribution over 0.6..1.5 learned from the rollouts; 10 uniform warm-up steps.
    fixed = args.fixed_temperature is not None
    meta = None if fixed else tc.TempMetaPolicy(warmup_steps=10, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    for step in range(args.steps):
        temperature = meta.sample() if meta is not None else args.fixed_temperature
        prompts = torch.randint(0, 10, (args.prompts, 1), generator=gen)
        prompt_ids = prompts.repeat_interleave(args.group_size, dim=0)  # G rows per prompt
        rollout = sample_completions(
            model,
            prompt_ids,
            temperature=temperature,
            max_new_tokens=ANSWER_LEN + 1,
            eos_token_id=EOS,
            generator=gen,
        )
        rewards = rewards_for(prompt_ids, rollout.completion_ids, rollout.completion_mask)
        advantages = group_advantages(rewards, args.group_size, "grpo")
        # One forward: the loss uses log softmax(z / T); TAMPO reads the same logits, detached.
        stats = grpo_update(
            model, opt, prompt_ids, rollout, advantages, temperature, temperature_policy=meta
        )
        if step % 10 == 0 or step == args.steps - 1:
            extra = ""
            if meta is not None:
                probs = " ".join(f"{p:.2f}" for p in meta.probs)
                extra = f" | pi(T) over {meta.temperatures[0]}..{meta.temperatures[-1]}: {probs}"
            print(
                f"step {step:4d}  T={temperature:.2f}  reward={rewards.mean():.3f}  "
                f"loss={stats.loss:+.4f}{extra}"
            )

    with torch.no_grad():
        test = torch.arange(10).repeat_interleave(20)[:, None]
        greedy = sample_completions(
            model, test, temperature=0.0, max_new_tokens=4, eos_token_id=EOS
        )
    acc = rewards_for(test, greedy.completion_ids, greedy.completion_mask).mean()
    print(f"greedy accuracy on all 10 prompts: {acc:.3f}")


if __name__ == "__main__":
    main()
