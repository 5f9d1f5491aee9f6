"""Export command: a trained model as a TensorFlow SavedModel that runs without this repository.

Someone who serves the model elsewhere (TF Serving, another language's TensorFlow binding, a
notebook without this project) needs one folder and TensorFlow alone: the weights, the decoding
loop (the project's own beam search, a ``tf.while_loop``) and the vocabulary all live in the
graph. The signatures (the README documents them):

* ``serving_default``: ``images`` float32 ``[B, H, W, 1]``, 1 = ink and 0 = background, H and W
  multiples of the model's ``pad_multiple`` (what predict's ``prepare_image`` gives) ->
  ``ids`` int32 ``[B, max_len]`` (``</s>`` kept, 0 after it), ``latex`` string ``[B]`` (the
  tokens joined by spaces, as ``predict`` prints them) and ``scores`` float32 ``[B]`` (summed
  log-probabilities over GNMT's length penalty, as ``predict --beam-width K`` reports them).
* ``describe``: no input -> ``json``, a string: how to make the images (dpi, crop, multiples),
  the decoding settings, the vocabulary and the bundle's record, so the folder explains itself.

Beam width, length penalty and max_len are fixed at export time; width 1 is greedy decoding
(beam search of width 1 emits greedy's ids) with a score. Images are not cropped here: PNG/JPEG
bytes go through predict's preprocessing, which lives in Python (see ``predict``).

Usage: ``python -m pipeline export [--model DIR] OUT_DIR [--beam-width N] [--max-len N]``
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from pipeline import cli
from pipeline.contracts import END_ID, PAD_ID, START_ID
from pipeline.model import bundle, usage
from pipeline.model.decode import DecodeSettings

log = logging.getLogger("pipeline")

SERVING = "serving_default"
DESCRIBE = "describe"


class ExportError(SystemExit):
    """An export that cannot be written, or that does not decode as the model it came from."""


class DecoderModule(tf.Module):
    """What the SavedModel holds: the model's variables, the vocabulary and two signatures."""

    def __init__(self, exported: bundle.Bundle, decoding: DecodeSettings) -> None:
        super().__init__(name="formula_decoder")
        self.model = exported.model  # tracked: its variables are saved with the module
        self.decoding = decoding
        self.multiple = exported.pad_multiple
        self.tokens = tf.constant(exported.vocab.tokens, tf.string)
        self.description = tf.constant(json.dumps(describe(exported, decoding), indent=1))
        self.serve = tf.function(self._serve, input_signature=[image_spec(exported)])
        self.describe = tf.function(self._describe, input_signature=[])

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.shape(images)
        message = f"images must be padded to multiples of {self.multiple} px (height and width)"
        checks = [
            tf.debugging.assert_equal(shape[1] % self.multiple, 0, message=message),
            tf.debugging.assert_equal(shape[2] % self.multiple, 0, message=message),
        ]
        with tf.control_dependencies(checks):
            images = tf.identity(images)
        ids, scores, _ = self.model.beam_decode(
            images,
            self.decoding.max_len,
            self.decoding.beam_width,
            self.decoding.length_penalty,
        )
        return {"ids": ids, "latex": self._latex(ids), "scores": scores}

    def _latex(self, ids: tf.Tensor) -> tf.Tensor:
        """``Vocab.decode`` in the graph: tokens before the first ``</s>``, PAD and ``<s>``
        dropped, joined by single spaces."""
        ended = tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=1) > 0
        keep = ~ended & tf.not_equal(ids, PAD_ID) & tf.not_equal(ids, START_ID)
        words = tf.ragged.boolean_mask(tf.gather(self.tokens, ids), keep)
        return tf.strings.reduce_join(words, axis=1, separator=" ")

    def _describe(self) -> dict[str, tf.Tensor]:
        return {"json": self.description}


def image_spec(exported: bundle.Bundle) -> tf.TensorSpec:
    """Batch, height and width left open except where the model fixes them (STRIPS's height,
    the published graph's framed canvas)."""
    height: int | None = exported.fixed_height
    width: int | None = None
    if exported.canvas is not None:
        canvas_h, canvas_w, frame = exported.canvas
        height, width = canvas_h + 2 * frame, canvas_w + 2 * frame
    return tf.TensorSpec([None, height, width, 1], tf.float32, name="images")


def describe(exported: bundle.Bundle, decoding: DecodeSettings) -> dict[str, Any]:
    """The ``describe`` signature's JSON: what a user outside this repository must know."""
    return {
        "inputs": {
            "images": "float32 [B, H, W, 1]: 1 = ink, 0 = background; formula cropped to its "
            "ink, padded and downsampled as preprocessing.crop says, then zero-padded at the "
            "bottom and right to multiples of pad_multiple",
            "pad_multiple": exported.pad_multiple,
            "fixed_height": exported.fixed_height,
            "canvas": exported.canvas,
        },
        "outputs": {
            "ids": "int32 [B, max_len]: token ids, </s> kept, 0 after it",
            "latex": "string [B]: the tokens before </s>, joined by spaces",
            "scores": "float32 [B]: sum of log-probabilities / ((5 + length) / 6) ** "
            "length_penalty",
        },
        "decoding": {
            "beam_width": decoding.beam_width,
            "length_penalty": decoding.length_penalty,
            "max_len": decoding.max_len,
        },
        "preprocessing": exported.preprocessing.as_dict(),
        "vocabulary": exported.vocab.tokens,
        "bundle": exported.record,
    }


def export_saved_model(exported: bundle.Bundle, decoding: DecodeSettings, out: Path) -> None:
    """Write the SavedModel, then load it back and check it decodes a probe as the model does:
    a variable the module failed to track would otherwise load silently as zeros."""
    module = DecoderModule(exported, decoding)
    signatures = {
        SERVING: module.serve.get_concrete_function(),
        DESCRIBE: module.describe.get_concrete_function(),
    }
    tf.saved_model.save(module, str(out), signatures=signatures)
    probe = probe_images(exported)
    expected = module.serve(probe)
    got = tf.saved_model.load(str(out)).signatures[SERVING](images=probe)
    same_ids = np.array_equal(expected["ids"].numpy(), got["ids"].numpy())
    if not same_ids or not np.allclose(expected["scores"], got["scores"], atol=1e-4):
        raise ExportError(f"the SavedModel in {out} does not decode as the model it came from")


def probe_images(exported: bundle.Bundle) -> tf.Tensor:
    """Two images of the smallest shape the model takes, one blank and one of seeded noise."""
    spec = image_spec(exported).shape
    height = spec[1] or exported.pad_multiple
    width = spec[2] or 4 * exported.pad_multiple
    noise = np.random.default_rng(0).random((height, width, 1), dtype=np.float32)
    return tf.constant(np.stack([np.zeros_like(noise), noise]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline export",
        description="Write a trained model as a TensorFlow SavedModel that decodes in its graph.",
    )
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="a new (or empty) folder")
    usage.add_model_args(parser)
    cli.add_verbose_arg(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    usage.check_model_args(parser, args)
    cli.setup_logging()
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"{args.out} exists and is not an empty folder: choose a new one")
    exported = usage.load_model(parser, args)
    decoding = usage.decode_settings(args, exported)
    log.info(
        "export: model %s (%s, %d tokens) in, %s decoding to max_len %d",
        args.model,
        exported.settings.variant,
        len(exported.vocab),
        decoding.name,
        decoding.max_len,
    )
    export_saved_model(exported, decoding, args.out)
    log.info("export: 1 SavedModel out: %s (signatures %s, %s)", args.out, SERVING, DESCRIBE)
    return 0
