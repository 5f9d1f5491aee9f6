"""Requests that arrive together are decoded together: one decoding thread, one queue.

A decode call costs about the same for one image as for a few (the search loop runs once per
token either way), so a server answering several people at once should not decode their images
one by one. Each request prepares its image in its own thread and queues it; the decoding
thread takes the first waiting image, gathers more for a few milliseconds (up to ``max_batch``),
and decodes them in one call per padded shape, exactly as ``predict`` decodes a folder, so an
image's result is the one ``predict`` gives for it alone. TensorFlow is only ever called from
that one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from pipeline.contracts import Vocab
from pipeline.model.decode import DecodeSettings, decode_batch
from pipeline.model.networks import FormulaModel
from pipeline.model.predict import Prediction

log = logging.getLogger("pipeline")

Labelled = tuple[str, np.ndarray]  # a name for messages, and a prepared image
Decoder = Callable[[Sequence[Labelled]], list[Prediction]]


def decode_images(
    images: Sequence[Labelled], model: FormulaModel, vocab: Vocab, decoding: DecodeSettings
) -> list[Prediction]:
    """One Prediction per prepared image, in order: one decode call per padded shape.

    ``predict`` does the same for a folder (its ``_decode_batch``); a failed call (e.g. out of
    memory) is each of its images' error, as there.
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, (_, image) in enumerate(images):
        by_shape.setdefault(image.shape, []).append(index)
    results: list[Prediction | None] = [None] * len(images)
    for indices in by_shape.values():
        for start in range(0, len(indices), decoding.batch_size):
            chunk = indices[start : start + decoding.batch_size]
            batch = [images[i] for i in chunk]
            for index, prediction in zip(
                chunk, _decode(batch, model, vocab, decoding), strict=True
            ):
                results[index] = prediction
    return [r for r in results if r is not None]


def _decode(
    batch: Sequence[Labelled], model: FormulaModel, vocab: Vocab, decoding: DecodeSettings
) -> list[Prediction]:
    try:
        ids, scores, _ = decode_batch(model, np.stack([image for _, image in batch]), decoding)
    except (tf.errors.OpError, ValueError) as exc:
        return [Prediction(label, error=f"decoding failed ({exc})") for label, _ in batch]
    return [
        Prediction(
            label,
            latex=vocab.decode(ids[row].tolist()),
            score=None if scores is None else float(scores[row]),
        )
        for row, (label, _) in enumerate(batch)
    ]


@dataclass
class BatchCounts:
    """How the queue was drained: the counters ``/health`` shows and the tests read."""

    gathered: int = 0  # times the thread took images off the queue
    images: int = 0
    largest: int = 0  # most images taken at once


class Batcher:
    """The decoding thread and its queue; ``submit`` from any thread, ``close`` once."""

    def __init__(self, decode: Decoder, max_batch: int, wait_s: float) -> None:
        if max_batch < 1 or wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and wait_s >= 0, got {max_batch}, {wait_s}")
        self._decode, self._max_batch, self._wait_s = decode, max_batch, wait_s
        self._queue: queue.Queue[tuple[Labelled, Future[Prediction]] | None] = queue.Queue()
        self._counts = BatchCounts()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="decoder", daemon=True)
        self._thread.start()

    def submit(self, label: str, image: np.ndarray) -> Future[Prediction]:
        future: Future[Prediction] = Future()
        self._queue.put(((label, image), future))
        return future

    def counts(self) -> dict[str, int]:
        with self._lock:
            return asdict(self._counts)

    def close(self) -> None:
        """Decode what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (batch := self._gather()) is not None:
            if batch:
                self._finish(batch)

    def _gather(self) -> list[tuple[Labelled, Future[Prediction]]] | None:
        """The next images: the first to come, and those that come within ``wait_s`` after it.

        None once closed (after the images queued before ``close``)."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self._wait_s
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(item)
        with self._lock:
            self._counts.gathered += 1
            self._counts.images += len(batch)
            self._counts.largest = max(self._counts.largest, len(batch))
        return batch

    def _finish(self, batch: list[tuple[Labelled, Future[Prediction]]]) -> None:
        try:
            predictions = self._decode([labelled for labelled, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            log.exception("serve: decoding %d images failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), prediction in zip(batch, predictions, strict=True):
            future.set_result(prediction)
