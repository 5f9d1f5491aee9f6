"""Evaluate stage: decode the test split (beam and greedy), score text and pictures, report.

Text metrics undercount (Singh 2018: ~40% of visually correct predictions differ in tokens),
so predictions are also rendered through the render/crop stages and compared as images
(``pipeline.evaluation.visual``). Every test row is scored: a row the model could not be given
(e.g. taller than the STRIPS canvas) counts as an empty prediction rather than silently leaving
the average.

``--formulas FILE`` scores the model on a user's own list of normalized formulas instead, built
into test shards by the stages' own functions with the model's own preprocessing; with
``--images DIR`` on the user's own pictures of them (screenshots), normalized as predict does.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import cli, metrics
from pipeline.config import EvaluateSettings
from pipeline.contracts import shard_paths
from pipeline.evaluation import external, heatmaps, report, visual
from pipeline.model import bundle
from pipeline.model.decode import DecodeSettings, decode_split

log = logging.getLogger("pipeline")
READS = ("evaluate",)  # the params this stage reads (dvc.yaml lists the same)

TEXT_METRICS = ("bleu", "bleu_unsmoothed", "edit_distance", "exact_match")

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("target", pa.string()),
        ("prediction", pa.string()),
        ("bleu", pa.float64()),
        ("edit_distance", pa.float64()),
    ]
)


@dataclass
class Evaluation:
    summary: dict
    table: pa.Table
    images: dict[str, tuple[bytes | None, bytes | None]] = field(default_factory=dict)
    attended: dict = field(default_factory=dict)


def read_gold(paths: list[Path]) -> tuple[dict[str, str], dict[str, bytes]]:
    """id -> target formula, and id -> its cropped image as the shards hold it."""
    table = pa.concat_tables(pq.read_table(p, columns=["id", "formula", "png"]) for p in paths)
    ids = table["id"].to_pylist()
    formulas = dict(zip(ids, table["formula"].to_pylist(), strict=True))
    return formulas, dict(zip(ids, table["png"].to_pylist(), strict=True))


def score(gold: dict[str, str], predicted: dict[str, str]) -> tuple[dict, pa.Table]:
    """Corpus metrics and the per-sample table; rows without a prediction score as empty."""
    ids = sorted(gold)
    references = [gold[i] for i in ids]
    hypotheses = [predicted.get(i, "") for i in ids]
    summary = metrics.score_corpus(references, hypotheses)
    summary["missing_predictions"] = sum(i not in predicted for i in ids)
    pairs = list(zip(references, hypotheses, strict=True))
    rows = {
        "id": ids,
        "target": references,
        "prediction": hypotheses,
        "bleu": [metrics.sentence_bleu(r, h) for r, h in pairs],
        "edit_distance": [metrics.normalized_edit_distance(r, h) for r, h in pairs],
    }
    return summary, pa.table(rows, schema=PREDICTIONS_SCHEMA)


def visual_scores(gold, predicted, gold_images, exported: bundle.Bundle) -> tuple[list[dict], dict]:
    """Render predictions with the model's own dpi and crop settings and compare images."""
    made = exported.preprocessing
    return visual.visual_match(gold, predicted, made.render_settings(), made.crop, gold_images)


VISUAL_COLUMNS = (
    "compiled",
    "image_match",
    "image_match_ws",
    "image_edit_distance",
    "render_error",
)


def measure(gold, gold_images, predicted, exported: bundle.Bundle, with_visual: bool) -> Evaluation:
    """Text scores, plus visual scores as extra columns and a ``visual`` summary section."""
    summary, table = score(gold, predicted)
    images = {i: (gold_images.get(i), None) for i in gold}
    if with_visual:
        rows, visual_summary = visual_scores(gold, predicted, gold_images, exported)
        by_id = {row["id"]: row for row in rows}
        ordered = [by_id[i] for i in table["id"].to_pylist()]
        for column in VISUAL_COLUMNS:
            table = table.append_column(column, pa.array([r[column] for r in ordered]))
        summary["visual"] = visual_summary
        images = {
            r["id"]: (r["gold_png"] or gold_images.get(r["id"]), r["predicted_png"]) for r in rows
        }
    return Evaluation(summary, table, images)


def evaluate_paths(
    exported: bundle.Bundle, paths: list[Path], settings: EvaluateSettings
) -> Evaluation:
    """Decode and score one set of test shards with the headline search (and greedy beside it)."""
    gold, gold_images = read_gold(paths)
    max_len = settings.max_len or exported.max_len
    search = DecodeSettings(
        max_len, settings.beam_width, settings.length_penalty, settings.batch_size
    )
    keep = report.spread(sorted(gold), settings.heatmaps)
    decoded = decode_split(exported, paths, search, keep)
    result = measure(gold, gold_images, decoded.predictions, exported, settings.visual)
    result.attended = decoded.attended
    result.summary |= {"decoding": search.name, "beam_width": search.beam_width}
    result.summary["length_penalty"] = search.length_penalty
    if settings.compare_greedy and search.beam_width > 1:
        greedy = DecodeSettings(max_len, 1, batch_size=settings.batch_size)
        plain = decode_split(exported, paths, greedy).predictions
        baseline = measure(gold, gold_images, plain, exported, settings.visual)
        result.summary["greedy"] = {k: baseline.summary[k] for k in TEXT_METRICS}
        if "visual" in baseline.summary:
            result.summary["greedy"]["visual"] = baseline.summary["visual"]
        result.table = result.table.append_column("greedy_prediction", baseline.table["prediction"])
    return result


def bleu_by_length(table: pa.Table) -> list[dict]:
    """Per target-length bin (the report's bins, empty ones left out): where the model breaks."""
    return [row for row in report.length_bins(table) if row["samples"]]


def write_report(result: Evaluation, report_dir: Path, curves_dir: Path | None, settings) -> Path:
    """Heatmaps and the static HTML report in one folder (a DVC output)."""
    pictures = heatmaps.save_heatmaps(result.attended.values(), report_dir / report.HEATMAPS_DIR)
    curves = report.read_dvclive_curves(curves_dir) if curves_dir else {}
    return report.write_report(
        report_dir,
        result.summary,
        result.table,
        result.images,
        curves,
        pictures,
        gallery_size=settings.gallery,
        worst_size=settings.worst,
    )


def scored_shards(args, exported: bundle.Bundle, work: Path) -> tuple[list[Path], dict | None]:
    """The shards to score: the stage's split, or a user's formulas built into shards."""
    if args.formulas is None:
        return shard_paths(args.shards, args.split), None
    if args.images is not None:
        data = external.build_image_shards(
            args.formulas,
            args.images,
            exported.vocab,
            exported.preprocessing.dpi,
            exported.preprocessing.crop,
            exported.max_len - 2,
            work,
        )
    else:
        data = _rendered_shards(args, exported, work)
    if not data.shards:
        raise SystemExit(f"evaluate: none of the formulas in {args.formulas} could be scored")
    return data.shards, data.as_report() | {"rejected_rows": data.rejected}


def _rendered_shards(args, exported: bundle.Bundle, work: Path) -> external.ExternalData:
    return external.build_external_shards(
        args.formulas,
        exported.vocab,
        exported.preprocessing.render_settings(),
        exported.preprocessing.crop,
        exported.max_len - 2,
        work,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline evaluate", description=__doc__)
    cli.add_params_args(parser)
    parser.add_argument("--model", type=Path, default=Path("models/best"), help="exported model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--shards", type=Path, help="the shards folder (its --split is scored)")
    source.add_argument("--formulas", type=Path, help="a file of normalized formulas to score")
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="with --formulas: line N's picture is DIR/N.png (.jpg, .jpeg), normalized as "
        "predict normalizes a screenshot, instead of our render of the formula",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--report", type=Path, help="folder for the HTML report and heatmaps")
    parser.add_argument("--curves", type=Path, help="the dvclive folder: learning curves")
    parser.add_argument("--length-plot", type=Path, help="JSON rows of BLEU by target length")
    cli.add_verbose_arg(parser)
    args = parser.parse_args(argv)
    if args.images is not None and args.formulas is None:
        parser.error("--images needs --formulas: the formula each picture shows")
    return args


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def write_outputs(args, result: Evaluation, external: dict | None, settings) -> None:
    if external is not None:
        rejected = external.pop("rejected_rows")
        result.summary["external"] = external
        rejected_path = args.predictions.with_suffix(".rejected.json")
        _write_json(rejected_path, rejected)
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(result.table, args.predictions)
    _write_json(args.metrics, result.summary)
    if args.length_plot:
        _write_json(args.length_plot, bleu_by_length(result.table))
    if args.report:
        index = write_report(result, args.report, args.curves, settings)
        log.info("evaluate: report at %s", index)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    settings = cli.read_params(args, READS).evaluate
    exported = bundle.load(args.model)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        paths, scored_external = scored_shards(args, exported, Path(work))
        result = evaluate_paths(exported, paths, settings)
    write_outputs(args, result, scored_external, settings)
    summary = result.summary
    log.info(
        "evaluate: %d rows in, %d predicted (%s), %s; greedy %s; visual %s",
        summary["samples"],
        summary["samples"] - summary["missing_predictions"],
        summary["decoding"],
        {k: round(summary[k], 4) for k in TEXT_METRICS},
        summary.get("greedy", {}).get("bleu"),
        summary.get("visual"),
    )
    return 0
