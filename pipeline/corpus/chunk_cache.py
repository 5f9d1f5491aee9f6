"""Finished chunks kept across an interrupted run, found again by what they were made from.

DVC deletes a stage's outputs before it runs the stage again, so a render killed after 30 of
32 chunks would start from nothing. A chunk job given a cache folder also keeps its result
there, named by a key of its input rows, settings, the pipeline's code and the tools' versions;
the rerun finds the finished chunks by key and copies them instead of making them again. An
equal key means the same bytes would be made, which is what makes taking them safe.

Files appear whole or not at all (written beside, then renamed), so a chunk killed while
writing is simply made again. One entry per stage and chunk number is kept: the cache is for
resuming, and DVC's own run cache already keeps whole stage results for going back.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


def write_whole(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that readers (and a rerun) never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)


def _copy_whole(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def produce(
    out: Path, make: Callable[[], pa.Table], cache: Path | None, stage: str, key: str
) -> tuple[pa.Table, bool]:
    """Write ``make()`` to ``out``, or the cached chunk with this key; returns (table, cached).

    Entries are named ``<stage>-<out's name>-<key>``: one per stage and chunk file.
    """
    if cache is None:
        table = make()
        write_whole(table, out)
        return table, False
    kept = cache / f"{stage}-{out.stem}-{key}.parquet"
    if kept.is_file():
        _copy_whole(kept, out)
        log.info("%s %s: finished before, taken from %s", stage, out.stem, kept)
        return pq.read_table(out), True
    table = make()
    write_whole(table, out)
    for stale in cache.glob(f"{stage}-{out.stem}-*.parquet"):
        stale.unlink(missing_ok=True)
    _copy_whole(out, kept)
    return table, False
