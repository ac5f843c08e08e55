"""The valid (masked-in) token positions of a batch, packed in row-major order."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tampo_core.validation import TOKEN_DTYPES, check_usable_tensor, expected


@dataclass(frozen=True)
class PackedTokens:
    """Valid positions in row-major order.

    batch, pos, targets: int64 [N] on the input device (sequence, position, token id of each
    valid token); counts: int64 [B] valid tokens per sequence.
    """

    batch: torch.Tensor
    pos: torch.Tensor
    targets: torch.Tensor
    counts: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.batch.numel())

    @property
    def num_sequences(self) -> int:
        return int(self.counts.numel())


def pack_valid_tokens(
    tokens: object,
    mask: object,
    batch: int,
    length: int,
    vocab: int,
    device: torch.device,
    scores: str = "logits",
) -> PackedTokens:
    """Validate ``tokens`` [B, L] / ``mask`` [B, L] and index the valid positions.

    Token ids are range-checked against ``[0, vocab)`` only where the mask is set, so padding
    values such as -100 under a zero mask are accepted. ``scores`` names the tensor whose
    position t scores ``tokens[:, t]`` (for the shift hint in shape errors).
    """
    tokens = check_usable_tensor("tokens", tokens, "[B, L]")
    if tuple(tokens.shape) != (batch, length):
        hint = ""
        if tokens.dim() == 2 and tokens.shape[0] == batch and tokens.shape[1] == length - 1:
            hint = (
                f" ({scores} has one position more than tokens: position t of {scores} must "
                f"score tokens[:, t], so pass {scores}[:, :-1] for next-token logits whose last "
                "position scores nothing)"
            )
        raise ValueError(
            expected(
                "tokens", f"shape [B, L] = {[batch, length]} like {scores}", list(tokens.shape)
            )
            + hint
        )
    if tokens.dtype not in TOKEN_DTYPES:
        raise TypeError(expected("tokens", "dtype int64 (or int32)", tokens.dtype))
    if tokens.device != device:
        raise ValueError(expected("tokens", f"device {device}", tokens.device))
    if mask is None:
        valid = torch.ones(batch, length, dtype=torch.bool, device=device)
    else:
        valid = _mask_as_bool(mask, batch, length, device)
    seq, pos = valid.nonzero(as_tuple=True)
    targets = tokens[seq, pos].long()
    if targets.numel():
        low, high = (int(v) for v in torch.aminmax(targets))
        if low < 0 or high >= vocab:
            raise ValueError(
                expected(
                    "tokens", f"ids in [0, {vocab}) at valid positions", f"min {low}, max {high}"
                )
            )
    counts = valid.sum(dim=1, dtype=torch.int64)
    return PackedTokens(batch=seq, pos=pos, targets=targets, counts=counts)


def _mask_as_bool(mask: object, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """A bool or integer 0/1 mask as bool; floats and other values are refused."""
    mask = check_usable_tensor("mask", mask, "[B, L] or None")
    if tuple(mask.shape) != (batch, length):
        raise ValueError(expected("mask", f"shape [B, L] = {[batch, length]}", list(mask.shape)))
    if mask.device != device:
        raise ValueError(expected("mask", f"device {device}", mask.device))
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.is_complex():
        rule = "dtype bool or an integer dtype (pass mask.bool() for a 0/1 float mask)"
        raise TypeError(expected("mask", rule, mask.dtype))
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(
            expected(
                "mask", "values in {0, 1} (or pass mask.bool())", f"other values in {mask.dtype}"
            )
        )
    return mask != 0
