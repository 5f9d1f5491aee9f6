"""Predict command: formula images (PNG or JPEG) -> LaTeX tokens with an exported model.

A screenshot is first made to look like training's renders: dark ink on white, no border, at the
model's render scale (``pipeline.corpus.screenshot``: the scale estimated from the strokes, or
given with ``--dpi``). Then every image goes through exactly the preprocessing the model was
trained on (crop to the ink, pad, downsample, 1 = ink, zero padding to the model's multiples),
with the crop settings read from the model's own bundle (``pipeline.model.bundle``), so a model
never sees inputs shaped unlike its training data. One bad file is reported and skipped; it
never stops the others.

Usage: ``python -m pipeline predict [--model DIR] [--beam-width N] [--dpi N | --as-is] [--jsonl]
IMAGE|DIR ...``
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import stat
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from pipeline import cli
from pipeline.contracts import Vocab
from pipeline.corpus import crop, screenshot
from pipeline.model import bundle, usage
from pipeline.model.dataset import ink_from_gray
from pipeline.model.decode import DecodeSettings, decode_batch
from pipeline.model.networks import FormulaModel

log = logging.getLogger("pipeline")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}  # file magic numbers
MAX_FILE_BYTES = 64 * 2**20  # far above any formula image; larger files are refused unread
_LIMIT = f"{MAX_FILE_BYTES // 2**20} MiB"
SCALE_TRIES = (1.0, 0.85, 1.18)  # --try-scales: the estimate, and a size either side of it


class ImageError(ValueError):
    """An input the model cannot be given; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ModelInput:
    """How an image becomes a model input: crop settings, padding multiple, fixed height (STRIPS).

    ``precropped`` marks inputs that already are crop-stage output (e.g. a shard's ``png``
    column), which must not be cropped and downsampled a second time. ``pad_to_bucket`` pads
    each image to the largest size of its crop bucket, as a training batch may, so that images
    of any size share a few shapes and decode in full batches; without it an image is padded
    only to the model's multiple (evaluate's layout at batch size 1), and mixed sizes seldom
    share a shape. Either way an image's result depends on that image alone.
    """

    crop: crop.CropSettings
    pad_multiple: int
    fixed_height: int | None
    dpi: int
    precropped: bool = False
    pad_to_bucket: bool = True
    canvas: tuple[int, int, int] | None = None  # (height, width, frame): centred, as training
    normalize: bool = True  # screenshot.normalize first: colours, frame, scale to ``dpi``
    input_dpi: float | None = None  # the inputs' scale when known; None: estimated per image
    scale: float = 1.0  # times the normalizing resize (one of ``scale_tries``)
    scale_tries: tuple[float, ...] = (1.0,)  # sizes to decode at; the best beam score wins

    @classmethod
    def of(
        cls,
        exported: bundle.Bundle,
        precropped: bool = False,
        normalize: bool = True,
        input_dpi: float | None = None,
        scale_tries: tuple[float, ...] = (1.0,),
    ) -> ModelInput:
        return cls(
            exported.preprocessing.crop,
            exported.pad_multiple,
            exported.fixed_height,
            exported.preprocessing.dpi,
            precropped,
            canvas=exported.canvas,
            normalize=normalize,
            input_dpi=input_dpi,
            scale_tries=scale_tries,
        )


@dataclass(frozen=True)
class Prediction:
    """One input's outcome: ``latex`` when predicted, else ``error``; ``score`` from beams."""

    path: str
    latex: str | None = None
    error: str | None = None
    score: float | None = None

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"path": self.path, "latex": self.latex, "error": self.error}
        if self.score is not None:
            record["score"] = self.score
        return record


def prepare_image(data: bytes, settings: ModelInput) -> np.ndarray:
    """Image file bytes -> float32 [H, W, 1] (1 = ink), padded, exactly as in training.

    A screenshot is first made dark ink on white at the model's render scale
    (``screenshot.normalize``), unless ``settings.normalize`` is off; crop-stage output
    (``precropped``) already is. Raises ``ImageError`` saying why when the model cannot take
    the image.
    """
    return prepare_gray(load_gray(data), settings)


def prepare_gray(gray: Image.Image, settings: ModelInput) -> np.ndarray:
    """``prepare_image`` on an image already decoded by ``load_gray``."""
    if settings.precropped:
        cropped = gray if _has_ink(gray) else None
    else:
        page = np.asarray(gray)
        if settings.normalize:
            page = screenshot.normalize(page, settings.dpi, settings.input_dpi, settings.scale).gray
        cropped = crop.crop_gray(page, settings.crop)
    if cropped is None:
        raise ImageError("no ink: the image is blank (every pixel is near-white)")
    bucket = _check_size(cropped.height, cropped.width, settings)
    if settings.canvas is not None:
        return centre_on_canvas(_to_ink(cropped), settings.canvas)
    at_least = bucket if settings.pad_to_bucket else (0, 0)
    return pad_image(_to_ink(cropped), settings.pad_multiple, settings.fixed_height, at_least)


def load_gray(data: bytes) -> Image.Image:
    """Decode any PNG/JPEG mode to 8-bit grayscale, transparency composited onto white.

    Training pages are black ink on white; a transparent background must become white, not the
    black that a plain ``convert("L")`` of transparent black pixels gives.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.load()
        except Image.UnidentifiedImageError:
            raise ImageError(_unidentified(data)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"corrupt or truncated image ({exc})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"image too large to decode safely ({exc})") from None
    return _flatten(image)


def _unidentified(data: bytes) -> str:
    """A file that starts like a PNG or JPEG but does not open is damaged, not something else."""
    for magic, kind in SIGNATURES.items():
        if data.startswith(magic):
            return f"corrupt or truncated {kind} (its header cannot be read)"
    return "not a PNG or JPEG image"


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: convert("L") would clip, not scale, turning every pixel white
        wide = np.asarray(image, dtype=np.int64)
        return Image.fromarray(np.clip(wide // 257, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        backdrop = (0, 0, 0, 255) if _light_ink(rgba) else (255, 255, 255, 255)
        return Image.alpha_composite(Image.new("RGBA", rgba.size, backdrop), rgba).convert("L")
    return image.convert("L")


def _light_ink(rgba: Image.Image) -> bool:
    """Whether what is drawn (the opaque pixels) is light: a dark theme's formula on a
    transparent background, which on white would vanish; on black it is a dark screenshot,
    which ``screenshot.normalize`` turns round."""
    pixels = np.asarray(rgba)
    opaque = pixels[..., 3] > 127
    if not opaque.any() or opaque.all():
        return False
    return float(np.asarray(rgba.convert("L"))[opaque].mean()) > 127


def _has_ink(image: Image.Image) -> bool:
    return bool((np.asarray(image) < crop.INK_THRESHOLD).any())


def _check_size(height: int, width: int, settings: ModelInput) -> tuple[int, int]:
    """Refuse sizes training never had: no bucket held them, or taller than the STRIPS canvas.

    Returns the smallest bucket that holds the image."""
    size = f"image is {height}x{width} (height x width) after cropping and downsampling"
    hint = f" (the model was trained on formulas rendered at {settings.dpi} dpi"
    hint += "; --dpi says the images' scale)" if settings.normalize else ")"
    if settings.canvas is not None:
        canvas_h, canvas_w, _ = settings.canvas
        if height > canvas_h or width > canvas_w:
            raise ImageError(f"{size}, larger than the model's canvas {canvas_h}x{canvas_w}{hint}")
    fixed = settings.fixed_height
    if fixed is not None and height > fixed:
        raise ImageError(f"{size}, taller than the model's fixed height {fixed}{hint}")
    buckets = crop.ordered_buckets(settings.crop.buckets)
    bucket = crop.bucket_of(height, width, buckets)
    if bucket == -1:
        raise ImageError(f"{size}; the model accepts {_limits(buckets)}{hint}")
    return buckets[bucket]


def _limits(buckets: list[tuple[int, int]]) -> str:
    """'at most HxW' when one bucket holds all others (the usual case), else every bucket."""
    top_h, top_w = buckets[-1]
    if all(h <= top_h and w <= top_w for h, w in buckets):
        return f"at most {top_h}x{top_w}"
    return "only sizes within one of " + ", ".join(f"{h}x{w}" for h, w in buckets)


def _to_ink(image: Image.Image) -> np.ndarray:
    """The dataset's own arithmetic on the cropped image: what the shards' PNGs decode to."""
    return ink_from_gray(np.asarray(image))


def centre_on_canvas(ink: np.ndarray, canvas: tuple[int, int, int]) -> np.ndarray:
    """The ink centred on the canvas (the odd pixel below and right), framed: as tf.data does."""
    height, width, frame = canvas
    spare_h, spare_w = height - ink.shape[0], width - ink.shape[1]
    top, left = spare_h // 2, spare_w // 2
    padding = [(frame + top, frame + spare_h - top), (frame + left, frame + spare_w - left), (0, 0)]
    return np.pad(ink, padding)


def pad_image(
    ink: np.ndarray,
    multiple: int,
    fixed_height: int | None = None,
    at_least: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Zero (background) padding at the bottom and right, as the training batches have it: to
    ``at_least`` (height, width) if larger, then up to multiples of ``multiple``."""
    height, width = ink.shape[:2]
    target_h, target_w = max(height, at_least[0]), max(width, at_least[1])
    target_h = fixed_height if fixed_height is not None else target_h + (-target_h) % multiple
    target_w += (-target_w) % multiple
    return np.pad(ink, [(0, target_h - height), (0, target_w - width), (0, 0)])


def expand_inputs(paths: Sequence[Path]) -> Iterator[Path | Prediction]:
    """Files as given; a directory's PNG/JPEG files sorted, or an error when it has none."""
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        # Every image-named entry but a folder, so one that is not a regular file is reported
        # (by _read), not silently skipped.
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
        )
        if not files:
            yield Prediction(str(path), error="directory has no .png, .jpg or .jpeg files")
        yield from files


def _read(path: Path, settings: ModelInput) -> np.ndarray:
    """The file's image prepared for the model (``ImageError`` saying why not)."""
    return prepare_image(_read_bytes(path), settings)


def prepare_tries(data: bytes, settings: ModelInput) -> list[np.ndarray]:
    """The image at each of ``settings.scale_tries`` it can be given at (a larger try may not
    fit the model); the first try's ``ImageError`` when none can."""
    if settings.precropped or not settings.normalize or len(settings.scale_tries) == 1:
        return [prepare_image(data, settings)]
    gray = load_gray(data)  # decoded once for every try
    images, first_error = [], None
    for scale in settings.scale_tries:
        try:
            images.append(prepare_gray(gray, replace(settings, scale=scale)))
        except ImageError as exc:
            first_error = first_error or exc
    if not images:
        raise first_error
    return images


def _read_bytes(path: Path) -> bytes:
    """A file that cannot be read fails like a bad image: reported, and the others go on.

    Only regular files are read, and only up to ``MAX_FILE_BYTES``: a FIFO would block forever,
    ``/dev/zero`` never ends, and a huge file would be read whole before being refused. The file
    is opened without blocking and checked through its own descriptor, so what is checked is
    what is read.
    """
    try:
        with open(path, "rb", opener=_open_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageError("not a regular file (a FIFO, device or socket is never read)")
            if info.st_size > MAX_FILE_BYTES:
                raise ImageError(f"file is {info.st_size} bytes, over the {_LIMIT} limit")
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as exc:
        raise ImageError(f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:  # it grew after the check
        raise ImageError(f"file is over the {_LIMIT} limit")
    return data


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def predict_paths(
    paths: Sequence[Path],
    model: FormulaModel,
    vocab: Vocab,
    preprocessing: ModelInput,
    decoding: DecodeSettings,
) -> list[Prediction]:
    """One Prediction per image (directories expanded), in input order.

    Images wait in one queue per padded shape and a queue is decoded once it fills a batch, so
    memory holds at most a batch per shape however many images are given (a few shapes when
    padding to buckets), and batches are full whatever order the sizes come in. With several
    ``scale_tries`` each size of an image is queued, and the best-scored output is kept.
    """
    results: list[Prediction] = []
    waiting: dict[tuple[int, ...], list[tuple[int, str, np.ndarray]]] = {}
    for item in expand_inputs(paths):
        if isinstance(item, Prediction):
            results.append(item)
            continue
        try:
            images = prepare_tries(_read_bytes(item), preprocessing)
        except ImageError as exc:
            results.append(Prediction(str(item), error=str(exc)))
            continue
        index = len(results)
        results.append(Prediction(str(item)))  # placeholder until decoded
        for image in images:
            queue = waiting.setdefault(image.shape, [])
            queue.append((index, str(item), image))
            if len(queue) == decoding.batch_size:
                _decode_into(results, waiting.pop(image.shape), model, vocab, decoding)
    for queue in waiting.values():
        _decode_into(results, queue, model, vocab, decoding)
    return results


def _decode_into(
    results: list[Prediction],
    batch: list[tuple[int, str, np.ndarray]],
    model: FormulaModel,
    vocab: Vocab,
    decoding: DecodeSettings,
) -> None:
    labelled = [(path, image) for _, path, image in batch]
    for (index, _, _), prediction in zip(
        batch, decode_images(labelled, model, vocab, decoding), strict=True
    ):
        results[index] = better(results[index], prediction)


def better(kept: Prediction, new: Prediction) -> Prediction:
    """Of two outputs for one image (two sizes tried), the one to keep: an output over an
    error or a placeholder, then the higher beam score; ``kept`` on a tie."""
    if new.latex is None:
        return kept if kept.latex is not None or kept.error is not None else new
    if kept.latex is None:
        return new
    return new if (new.score or -math.inf) > (kept.score or -math.inf) else kept


Labelled = tuple[str, np.ndarray]  # a name for messages, and a prepared image


def decode_images(
    images: Sequence[Labelled], model: FormulaModel, vocab: Vocab, decoding: DecodeSettings
) -> list[Prediction]:
    """One Prediction per prepared image, in order: one decode call per padded shape and batch.

    A failed call (e.g. out of memory for that batch) is each of its images' error, so one
    batch never stops the others. ``serve`` decodes what its requests bring through this too.
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, (_, image) in enumerate(images):
        by_shape.setdefault(image.shape, []).append(index)
    results: dict[int, Prediction] = {}
    for indices in by_shape.values():
        for start in range(0, len(indices), decoding.batch_size):
            chunk = indices[start : start + decoding.batch_size]
            decoded = _decode([images[i] for i in chunk], model, vocab, decoding)
            results.update(zip(chunk, decoded, strict=True))
    return [results[index] for index in range(len(images))]


def _decode(
    batch: Sequence[Labelled], model: FormulaModel, vocab: Vocab, decoding: DecodeSettings
) -> list[Prediction]:
    try:
        ids, scores, _ = decode_batch(model, np.stack([image for _, image in batch]), decoding)
    except (tf.errors.OpError, ValueError) as exc:  # e.g. out of memory for this batch
        return [Prediction(label, error=f"decoding failed ({exc})") for label, _ in batch]
    return [
        Prediction(
            label,
            latex=vocab.decode(ids[row].tolist()),
            score=None if scores is None else float(scores[row]),
        )
        for row, (label, _) in enumerate(batch)
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline predict",
        description="Predict the LaTeX of formula images (PNG or JPEG) with an exported model.",
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="IMAGE", help="an image, or a folder of them"
    )
    usage.add_model_args(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        metavar="N",
        help="images per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--jsonl", action="store_true", help='one {"path", "latex", "error"[, "score"]} a line'
    )
    parser.add_argument(
        "--cropped",
        action="store_true",
        help="inputs are crop-stage output already (e.g. shard PNGs): do not crop again",
    )
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--dpi",
        type=float,
        metavar="N",
        help="the images' scale, as the dpi a 12pt formula would have (a screenshot at 2x zoom "
        "of a PDF at 100%% is about 190); default: estimated from each image's strokes",
    )
    parser.add_argument(
        "--try-scales",
        action="store_true",
        help=f"also decode each screenshot at {' and '.join(f'{t:g}x' for t in SCALE_TRIES[1:])} "
        "the estimated size and keep the output with the best beam score (3x the time)",
    )
    scale.add_argument(
        "--as-is",
        action="store_true",
        help="no screenshot normalization (colours, border, scale): images are already "
        "dark ink on white at the model's dpi",
    )
    cli.add_verbose_arg(parser)
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.dpi is not None and (problem := screenshot.dpi_problem(args.dpi)):
        parser.error(f"--dpi {problem}")
    if args.try_scales and (args.beam_width < 2 or args.as_is or args.cropped):
        parser.error(
            "--try-scales compares beam scores of screenshots: it needs --beam-width "
            "of 2 or more, and neither --as-is nor --cropped"
        )
    usage.check_model_args(parser, args)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")


def _report(predictions: list[Prediction], jsonl: bool) -> None:
    for p in predictions:
        if jsonl:
            print(json.dumps(p.as_json(), ensure_ascii=False))
        elif p.error is None:
            print(f"{p.path}\t{p.latex}")
        if p.error is not None:
            print(f"{p.path}: error: {p.error}", file=sys.stderr)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    cli.setup_logging()
    exported = usage.load_model(parser, args)
    model, vocab = exported.model, exported.vocab
    preprocessing = ModelInput.of(
        exported,
        precropped=args.cropped,
        normalize=not args.as_is,
        input_dpi=args.dpi,
        scale_tries=SCALE_TRIES if args.try_scales else (1.0,),
    )
    decoding = usage.decode_settings(args, exported, args.batch_size)
    predictions = predict_paths(args.paths, model, vocab, preprocessing, decoding)
    _report(predictions, args.jsonl)
    failed = sum(p.error is not None for p in predictions)
    log.info(
        "predict: %d images in, %d predicted, %d failed",
        len(predictions),
        len(predictions) - failed,
        failed,
    )
    return 1 if failed else 0
