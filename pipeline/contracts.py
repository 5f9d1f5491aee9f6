"""What the stages agree on, written once: token ids, split names, table layouts, formula text.

A stage's output is the next stage's input, so each format here is read and written by several
modules; keeping them in one place means a change to one cannot leave a reader behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

# --- splits -------------------------------------------------------------------------------
SPLITS = ("train", "validation", "test")

# --- formula text -------------------------------------------------------------------------


def normalize_formula(line: str) -> str:
    """Tokens separated by single spaces: spacing differences never make distinct formulas."""
    return " ".join(line.split())


# --- tokens -------------------------------------------------------------------------------
PAD, START, END, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
# Fixed ids 0..3 in every vocabulary: padding must be 0, because batches pad with zeros and the
# loss masks on it; the models start decoding from START_ID and stop at END_ID.
PAD_ID, START_ID, END_ID, UNK_ID = range(len(SPECIALS))


class Vocab:
    """Token <-> id mapping with the special tokens at their fixed ids."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary has duplicate tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, formula: str) -> list[int]:
        return [self.index.get(t, UNK_ID) for t in formula.split()]

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens up to the first end token, specials dropped: the normalized formula string."""
        out = []
        for i in ids:
            token = self.tokens[i] if 0 <= i < len(self.tokens) else UNK
            if token == END:
                break
            if token not in (PAD, START):
                out.append(token)
        return " ".join(out)

    def emitted(self, ids: Iterable[int]) -> list[str]:
        """The tokens a decoder emitted, up to and including ``</s>``: one per attention row."""
        tokens = []
        for i in ids:
            if i == PAD_ID:
                break
            tokens.append(self.tokens[i])
            if i == END_ID:
                break
        return tokens

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"tokens": self.tokens}, indent=0) + "\n")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(Path(path).read_text())["tokens"])


# --- tables between stages ----------------------------------------------------------------
FORMULAS_SCHEMA = pa.schema([("id", pa.string()), ("formula", pa.string()), ("split", pa.string())])
REJECTED_LINES_SCHEMA = pa.schema(  # step0: input lines that cannot be formulas
    [("list", pa.string()), ("line", pa.int64()), ("reason", pa.string()), ("detail", pa.string())]
)
RENDERED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("png", pa.binary()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
    ]
)
CROPPED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("png", pa.binary()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("bucket", pa.int32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
    ]
)
SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("png", pa.binary()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("bucket", pa.int32()),
        ("tokens", pa.list_(pa.int32())),
        ("formula", pa.string()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("kind", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# --- the shards folder --------------------------------------------------------------------
MANIFEST = "manifest.json"  # {"shards": [{"path", "split", "rows", "sha256"}, ...]}
REJECTED = "rejected.parquet"


def write_manifest(shards_dir: Path, entries: list[dict]) -> None:
    (Path(shards_dir) / MANIFEST).write_text(json.dumps({"shards": entries}, indent=2) + "\n")


class ShardError(SystemExit):
    """A shard a reader must not use: missing, or not the bytes the shards stage wrote."""


SHARD_REMEDY = "rebuild it with `dvc repro shards`, or restore it with `dvc pull` / `dvc checkout`"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_paths(shards_dir: Path, split: str) -> list[Path]:
    """The split's shard files in manifest order, each checked against the manifest's sha256.

    Every reader (training, evaluation, the benchmarks) gets its shards here, so a shard altered
    or truncated after the shards stage wrote it is refused by name before any of it is used,
    rather than trained on silently or failing deep inside TensorFlow.
    """
    shards_dir = Path(shards_dir)
    manifest_path = shards_dir / MANIFEST
    if not manifest_path.is_file():
        raise ShardError(f"no shard manifest at {manifest_path}: run the shards stage")
    entries = json.loads(manifest_path.read_text())["shards"]
    paths = []
    for entry in (e for e in entries if e["split"] == split):
        path = shards_dir / entry["path"]
        if not path.is_file():
            raise ShardError(
                f"shard {path} is listed in {manifest_path} but missing: {SHARD_REMEDY}"
            )
        if sha256_file(path) != entry["sha256"]:
            raise ShardError(
                f"shard {path} is not the file {manifest_path} records (its sha256 differs: "
                f"altered or truncated): {SHARD_REMEDY}"
            )
        paths.append(path)
    return paths


# --- decoding -> heatmaps -----------------------------------------------------------------
@dataclass(frozen=True)
class Attended:
    """One decoded row with what a heatmap needs: the model's input, its attention, its tokens."""

    id: str
    image: np.ndarray  # [H, W] as the model saw it, 1 = ink
    attention: np.ndarray  # [T, L]: one row per emitted token
    grid: tuple[int, int]  # (rows, cols) of the attended locations, rows * cols = L
    tokens: list[str]
