"""Decoding shards with an exported model: greedy or beam, and attention kept for heatmaps.

Both evaluation paths (the test split and a user's own formula list) decode through here, so a
setting such as the beam width means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.vocab import END, PAD


@dataclass(frozen=True)
class DecodeSettings:
    max_len: int
    beam_width: int = 1
    length_penalty: float = 0.6
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.max_len < 1 or self.beam_width < 1 or self.batch_size < 1:
            raise SystemExit(f"decode: max_len, beam_width and batch_size must be >= 1: {self}")
        if self.length_penalty < 0:
            raise SystemExit(f"decode: length_penalty must be >= 0, got {self.length_penalty}")

    @property
    def name(self) -> str:
        return "greedy" if self.beam_width == 1 else f"beam{self.beam_width}"


@dataclass(frozen=True)
class Attended:
    """What a heatmap needs for one row: the model's input, its attention and its tokens."""

    id: str
    image: np.ndarray  # [H, W] as the model saw it, 1 = ink
    attention: np.ndarray  # [T, L]
    grid: tuple[int, int]
    tokens: list[str]


@dataclass
class Decoded:
    predictions: dict[str, str] = field(default_factory=dict)
    attended: dict[str, Attended] = field(default_factory=dict)


def decode_batch(model, images, settings: DecodeSettings):
    """Token ids ``[B, max_len]``, beam scores ``[B]`` (None for greedy) and attention
    ``[B, max_len, L]``, by the chosen search."""
    if settings.beam_width == 1:
        ids, attention = model.greedy_decode(images, settings.max_len)
        return ids.numpy(), None, attention.numpy()
    ids, scores, attention = model.beam_decode(
        images, settings.max_len, settings.beam_width, settings.length_penalty
    )
    return ids.numpy(), scores.numpy(), attention.numpy()


def output_tokens(vocab, ids: np.ndarray) -> list[str]:
    """The emitted tokens up to and including ``</s>``: one per attention row."""
    pad, end = vocab.index[PAD], vocab.index[END]
    tokens = []
    for i in ids.tolist():
        if i == pad:
            break
        tokens.append(vocab.tokens[i])
        if i == end:
            break
    return tokens


def decode_split(
    model,
    vocab,
    config: dict,
    paths: list[Path],
    settings: DecodeSettings,
    keep_attention: Collection[str] = (),
) -> Decoded:
    """id -> predicted formula for every row the model can take (see dataset.make_dataset)."""
    from pipeline import dataset

    data = dataset.make_dataset(
        paths,
        batch_size=settings.batch_size,
        pad_multiple=config["pad_multiple"],
        fixed_height=config["fixed_height"],
        with_ids=True,
    )
    out = Decoded()
    for images, _, ids in data:
        decoded, _, attention = decode_batch(model, images, settings)
        grid = model.encoder_grid(images)
        for index, raw_id in enumerate(ids.numpy()):
            row_id = raw_id.decode()
            out.predictions[row_id] = vocab.decode(decoded[index])
            if row_id in keep_attention:
                tokens = output_tokens(vocab, decoded[index])
                out.attended[row_id] = Attended(
                    row_id,
                    images[index, :, :, 0].numpy(),
                    attention[index, : len(tokens)],
                    grid,
                    tokens,
                )
    return out
