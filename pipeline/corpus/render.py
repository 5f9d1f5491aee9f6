"""Render stage: formulas -> PNG bytes, many formulas per LaTeX run, failures isolated.

One ``latex`` and one ``dvipng`` process per batch is what makes rendering fast (process start-up
and format loading dominate the per-formula approach). The price is that one bad formula could
spoil its batch. Each formula sits on its own line and page, followed by a marker with TeX's
group level, so an error is pinned on its formula by line number and the marker shows whether
that formula left TeX in a state that could change the pages after it (see ``settle``). Formulas
after such a leak are compiled again without it; an error we cannot pin on a line (or a
timeout) splits the batch in two. dvipng, which stops a whole run at a page it cannot draw, is
run again after such a page (see ``resume_rasterizing``).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
from PIL import Image

from pipeline import cli, provenance
from pipeline.cli import ProgressLog
from pipeline.config import RenderSettings
from pipeline.contracts import RENDERED_SCHEMA
from pipeline.corpus import chunk_cache, texrun, texsafe, variety

READS = ("render",)  # the params this stage reads (dvc.yaml lists the same)

MARKER = "@@RENDERED"
ERROR_LINE = re.compile(r"^\./batch\.tex:(\d+): (.*)$", re.MULTILINE)
MARKER_LINE = re.compile(rf"^{MARKER} (-?\d+) (\d+) (\d+)$", re.MULTILINE)
MAX_ROUNDS = 4
FIRST_LINE = texrun.PREAMBLE.count("\n") + 2  # after the preamble and the baseline marker


@dataclass(frozen=True)
class Rendered:
    """One formula's outcome: PNG bytes when ``status == 'ok'``, else a reason and TeX's words."""

    id: str
    png: bytes | None
    status: str
    reason: str | None = None
    error: str | None = None


def _failed(item_id: str, reason: str, error: str) -> Rendered:
    return Rendered(item_id, None, "failed", reason, error)


def chunk_of(formula_id: str, chunks: int) -> int:
    """Chunk from the content id, so adding formulas never moves existing ones between chunks."""
    return int(formula_id[:12], 16) % chunks


def _marker(index: int) -> str:
    # The page that comes next and TeX's group nesting, written once the formula's page is out.
    return rf"\typeout{{{MARKER} {index} \arabic{{page}} \the\currentgrouplevel}}"


def batch_document(formulas: Sequence[str], font: str = "cm") -> str:
    """The batched document: a baseline marker, then formula i alone on line FIRST_LINE + i."""
    body = "".join(
        texrun.display_math(f) + r"\clearpage" + _marker(i) + "\n" for i, f in enumerate(formulas)
    )
    return texrun.preamble(font) + _marker(-1) + "\n" + body + "\\end{document}\n"


def parse_errors(log: str, count: int) -> tuple[dict[int, str], list[str]]:
    """Map TeX errors to formula indices by line number; errors off formula lines are unmapped."""
    mapped: dict[int, str] = {}
    unmapped: list[str] = []
    for match in ERROR_LINE.finditer(log):
        index = int(match.group(1)) - FIRST_LINE
        message = match.group(2).strip()
        if 0 <= index < count:
            mapped.setdefault(index, message)
        else:
            unmapped.append(f"line {match.group(1)}: {message}")
    return mapped, unmapped


def parse_markers(log: str) -> dict[int, tuple[int, int]]:
    """Formula index (-1 for the baseline) -> (next page number, group level) from the log."""
    return {int(m[1]): (int(m[2]), int(m[3])) for m in MARKER_LINE.finditer(log)}


@dataclass
class Settled:
    """What one compile decided: formulas [0, count) are done; the rest go to another round."""

    count: int
    pages: dict[int, tuple[int, int]]  # clean formula -> its pages [first, end)
    failed: dict[int, str]


def settle(count: int, mapped: dict[int, str], markers: dict[int, tuple[int, int]]) -> Settled:
    """Decide formulas in document order, as far as this run's output can be trusted.

    A formula with no error on its line rendered cleanly provided every formula before it left
    TeX as it found it: formulas cannot make global assignments (the allow-list sees to that), so
    the only way one formula reaches into the next is by leaving a group open, which the group
    level in each marker reveals. The first formula whose marker is missing or shows a changed
    level ends what this run can decide; everything after it is compiled again without it.
    """
    baseline_page, baseline_level = markers.get(-1, (1, -1))
    done = Settled(0, {}, {})
    page = baseline_page
    for index in range(count):
        if index not in markers:
            if index in mapped:
                done.failed[index] = mapped[index]
                done.count = index + 1
            return done
        next_page, level = markers[index]
        done.count = index + 1
        if index in mapped:
            done.failed[index] = mapped[index]
        elif level != baseline_level:
            done.failed[index] = "leaves a TeX group open"
        else:
            done.pages[index] = (page, next_page)
        page = next_page
        if level != baseline_level:
            return done
    return done


def _log_tail(log: str, lines: int = 3) -> str:
    return " | ".join(line for line in log.strip().splitlines()[-lines:])


def is_blank(png: bytes) -> bool:
    """True when the page has no ink at all.

    dvipng's tight bounding box is the ink's, so a page with any ink is larger than a few pixels
    and only tiny images need decoding (a blank page comes out 1x1).
    """
    width, height = struct.unpack(">II", png[16:24])
    if width * height > 16:
        return False
    return Image.open(io.BytesIO(png)).convert("L").getextrema()[0] >= 250


class BatchRenderer:
    """Renders one batch in a scratch directory that nothing else reads or writes.

    Each round compiles the pending formulas once and keeps what ``settle`` can decide from it;
    the undecided tail goes to the next round, and after ``MAX_ROUNDS`` the batch is bisected.
    Every formula of a batch is set in one font: ``font``, or else ``settings.font``.
    """

    def __init__(self, settings: RenderSettings, scratch: Path, font: str | None = None) -> None:
        self.settings = settings
        self.scratch = scratch
        self.font = font or settings.font

    def render(self, items: Sequence[tuple[str, str]]) -> list[Rendered]:
        results: list[Rendered] = []
        pending = list(items)
        for _ in range(MAX_ROUNDS):
            if not pending:
                return results
            log, timed_out = self._compile(pending)
            if timed_out and len(pending) == 1:
                why = f"latex ran over {self.settings.timeout_s:g}s"
                return results + [_failed(pending[0][0], "timeout", why)]
            mapped, unmapped = parse_errors(log, len(pending))
            if timed_out or unmapped:
                return results + self._split(pending, "; ".join(unmapped))
            done = settle(len(pending), mapped, parse_markers(log))
            if done.count == 0:
                return results + self._split(pending, "no output: " + _log_tail(log))
            results += self._rasterize(pending, done.pages)
            results += [_failed(pending[i][0], "tex_error", msg) for i, msg in done.failed.items()]
            pending = pending[done.count :]
        return results + self._split(pending, "")

    def _split(self, pending: list[tuple[str, str]], error: str) -> list[Rendered]:
        """Bisect when an error cannot be pinned on one formula's line."""
        if len(pending) == 1:
            return [_failed(pending[0][0], "tex_error", error or "TeX failed on this formula")]
        half = len(pending) // 2
        return self.render(pending[:half]) + self.render(pending[half:])

    def _compile(self, items: list[tuple[str, str]]) -> tuple[str, bool]:
        """Run latex on a fresh document; return its log and whether it timed out."""
        for stale in self.scratch.iterdir():
            stale.unlink()
        document = batch_document([formula for _, formula in items], self.font)
        tex = self.scratch / "batch.tex"
        tex.write_text(document)
        run = texrun.run_latex(tex, self.settings.timeout_s)
        return _read_log(self.scratch / "batch.log"), run.timed_out

    def _rasterize(
        self, items: list[tuple[str, str]], pages: dict[int, tuple[int, int]]
    ) -> list[Rendered]:
        single = sorted(start for start, end in pages.values() if end - start == 1)
        failures = self._rasterize_pages(single)
        return [
            self._page_result(items[i][0], start, end, failures)
            for i, (start, end) in pages.items()
        ]

    def _rasterize_pages(self, wanted: list[int]) -> dict[int, str]:
        """Rasterize the wanted pages with as few dvipng runs as isolation allows.

        dvipng gives up a whole run at a page it cannot draw (a box nesting past its DVI stack,
        say); ``resume_rasterizing`` pins that on the page and says where the next run starts.
        Returns why each pinned page failed.
        """
        failures: dict[int, str] = {}
        first = wanted[0] if wanted else None
        while first is not None:
            run = texrun.run_dvipng(
                self.scratch / "batch.dvi",
                self.settings.dpi,
                self.settings.timeout_s,
                first,
                wanted[-1],
            )
            written = {p for p in wanted if p >= first and self._page(p).exists()}
            pinned, first = resume_rasterizing(wanted, first, written)
            if pinned is not None:
                failures[pinned] = _dvipng_failure(run)
        return failures

    def _page(self, number: int) -> Path:
        return self.scratch / f"page{number}.png"

    def _page_result(
        self, item_id: str, start: int, end: int, failures: dict[int, str]
    ) -> Rendered:
        if end - start != 1:
            return _failed(item_id, "multipage", f"renders to {end - start} pages, expected 1")
        if start in failures:
            return _failed(item_id, "rasterize_error", failures[start])
        png = self._page(start).read_bytes()
        if is_blank(png):
            return _failed(item_id, "blank", "renders to a blank image")
        return Rendered(item_id, png, "ok")


def resume_rasterizing(
    wanted: Sequence[int], first: int, written: set[int]
) -> tuple[int | None, int | None]:
    """After a dvipng run from page ``first``: (the page to fail, the page to start again at).

    dvipng writes pages in order and stops at the first it cannot draw, so the first wanted
    page missing is where it stopped. That page is failed only when it was the run's first
    page, so it has failed with nothing drawn before it; otherwise the next run starts at it.
    Every wanted page is thus drawn or failed, each failure costs at most two runs, and a page
    never fails for what another page did. (None, None) once every wanted page is written.
    """
    missing = next((p for p in wanted if p >= first and p not in written), None)
    if missing is None:
        return None, None
    if missing != first:
        return None, missing
    return missing, next((p for p in wanted if p > missing), None)


def _dvipng_failure(run: texrun.ToolResult) -> str:
    if run.timed_out:
        return "dvipng timed out"
    said = [line for line in run.output.splitlines() if line.startswith("dvipng:")]
    return " | ".join(said) or "dvipng wrote no image: " + _log_tail(run.output)


def _read_log(path: Path) -> str:
    return path.read_text("latin-1") if path.exists() else ""


def _batches(items: Sequence[tuple[str, str]], size: int) -> Iterator[Sequence[tuple[str, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


SCRATCH_PREFIX = "render-"


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A scratch folder named by this process's id, removed afterwards.

    A render killed with ``kill -9`` cannot remove its own, so folders whose process is gone are
    removed first: an interrupted run leaves nothing behind once the next one starts.
    """
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{SCRATCH_PREFIX}*-*"):
        owner = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as folder:
        yield Path(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to someone else
        pass
    return True


def render_formulas(
    items: Sequence[tuple[str, str]],
    settings: RenderSettings,
    progress: ProgressLog | None = None,
    fonts: Mapping[str, str] | None = None,
) -> list[Rendered]:
    """Render (id, formula) pairs; every input comes back exactly once, rendered or failed.

    ``fonts`` gives some ids another font than ``settings.font`` (``variety.fonts``): batches
    are made per font, as a document has one.
    """
    results: list[Rendered] = []
    safe: list[tuple[str, str]] = []
    for item_id, formula in items:
        reason = texsafe.check_formula(formula)
        if reason is None:  # render what was checked: a stray "\n" would shift TeX's lines
            safe.append((item_id, texsafe.normalize(formula)))
        else:
            results.append(_failed(item_id, "unsafe", reason))
    if progress is not None:
        progress.advance(len(results))  # refused before TeX
    by_font: dict[str, list[tuple[str, str]]] = {}
    for item in safe:
        by_font.setdefault((fonts or {}).get(item[0], settings.font), []).append(item)
    with scratch_folder() as scratch:
        for font, group in sorted(by_font.items()):
            renderer = BatchRenderer(settings, Path(scratch), font)
            for batch in _batches(group, settings.batch_size):
                results += renderer.render(batch)
                if progress is not None:
                    progress.advance(len(batch))
    order = {item_id: i for i, (item_id, _) in enumerate(items)}
    return sorted(results, key=lambda r: order[r.id])


def to_table(results: Sequence[Rendered]) -> pa.Table:
    return pa.Table.from_pylist([r.__dict__ for r in results], schema=RENDERED_SCHEMA)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline render", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--formulas", type=Path, required=True, help="step0 Parquet table")
    parser.add_argument("--chunk", type=int, required=True, help="which chunk to render")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file for this chunk")
    parser.add_argument("--cache", type=Path, help="keep finished chunks here, for a rerun")
    args = parser.parse_args(argv)
    settings = cli.read_params(args, READS).render
    chunks = settings.chunks
    if not 0 <= args.chunk < chunks:
        raise SystemExit(f"render: --chunk {args.chunk} is outside 0..{chunks - 1} (render.chunks)")
    log = cli.setup_logging()
    table = pd.read_parquet(args.formulas, columns=["id", "formula", "split"])
    mine = table[[chunk_of(i, chunks) == args.chunk for i in table["id"]]]
    items = list(zip(mine["id"], mine["formula"], strict=True))
    fonts = {}  # render.train_fonts: a font per training formula
    if settings.train_fonts:
        training = variety.train_ids(mine["id"], mine["split"])
        fonts = variety.fonts(mine["id"], training, settings)

    def make() -> pa.Table:
        progress = ProgressLog(f"render chunk {args.chunk}", len(items), "formulas")
        return to_table(render_formulas(items, settings, progress, fonts))

    key = provenance.digest(asdict(settings), items, fonts, texrun.tool_versions())
    done, _ = chunk_cache.produce(args.out, make, args.cache, "render", key)
    counts = Counter(reason or "ok" for reason in done.column("reason").to_pylist())
    log.info("render chunk %d/%d: %d in, %s", args.chunk, chunks, len(mine), dict(counts))
    return 0
