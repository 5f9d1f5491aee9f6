"""Decoding shards with an exported model: greedy or beam, and attention kept for heatmaps.

Both evaluation paths (the test split and a user's own formula list) decode through here, so a
setting such as the beam width means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cli import ProgressLog
from pipeline.contracts import Attended
from pipeline.model import dataset
from pipeline.model.bundle import Bundle


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


def decode_split(
    exported: Bundle,
    paths: list[Path],
    settings: DecodeSettings,
    keep_attention: Collection[str] = (),
) -> Decoded:
    """id -> predicted formula for every row the model can take (see dataset.make_dataset)."""
    model, vocab = exported.model, exported.vocab
    data = dataset.make_dataset(
        paths,
        batch_size=settings.batch_size,
        pad_multiple=exported.pad_multiple,
        fixed_height=exported.fixed_height,
        canvas=exported.canvas,
        with_ids=True,
    )
    left_out = dataset.excluded_by_size(paths, exported.fixed_height, exported.canvas)
    rows = dataset.count_rows(paths) - left_out
    progress = ProgressLog(f"evaluate: decoding ({settings.name})", rows, "images")
    out = Decoded()
    for images, _, ids in data:
        decoded, _, attention = decode_batch(model, images, settings)
        grid = model.encoder_grid(images)
        progress.advance(len(ids))
        for index, raw_id in enumerate(ids.numpy()):
            row_id = raw_id.decode()
            out.predictions[row_id] = vocab.decode(decoded[index])
            if row_id in keep_attention:
                tokens = vocab.emitted(decoded[index].tolist())
                out.attended[row_id] = Attended(
                    row_id,
                    images[index, :, :, 0].numpy(),
                    attention[index, : len(tokens)],
                    grid,
                    tokens,
                )
    return out
