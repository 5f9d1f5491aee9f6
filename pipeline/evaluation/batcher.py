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

from pipeline.model.predict import Labelled, Prediction

log = logging.getLogger("pipeline")

Decoder = Callable[[Sequence[Labelled]], list[Prediction]]


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
