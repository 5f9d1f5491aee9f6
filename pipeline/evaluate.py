"""Evaluate stage: decode the test split (beam and greedy), score text and pictures, report.

Text metrics undercount (Singh 2018: ~40% of visually correct predictions differ in tokens), so
predictions are also rendered through the render/crop stages and compared as images
(``pipeline.visual``). Every test row is scored: a row the model could not be given (e.g. taller
than the STRIPS canvas) counts as an empty prediction rather than silently leaving the average.

``--formulas FILE`` scores the model on a user's own list of normalized formulas instead, built
into test shards by the stages' own functions with the model's own preprocessing.
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

from pipeline import cli

log = logging.getLogger("pipeline")

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


@dataclass(frozen=True)
class EvaluateSettings:
    batch_size: int = 64
    max_len: int = 0  # 0: the model's own max_len
    beam_width: int = 5  # 1: greedy only
    length_penalty: float = 0.6
    compare_greedy: bool = True  # with beam_width > 1, also decode greedily and report both
    visual: bool = True  # render predictions and compare images
    heatmaps: int = 8  # attention heatmaps for this many test rows
    gallery: int = 24
    worst: int = 20


def settings_from(raw: dict) -> EvaluateSettings:
    settings = cli.dataclass_settings(EvaluateSettings, raw, "evaluate")
    if min(settings.batch_size, settings.beam_width) < 1 or settings.max_len < 0:
        raise SystemExit(f"evaluate: batch_size and beam_width must be >= 1: {raw}")
    if min(settings.heatmaps, settings.gallery, settings.worst) < 0:
        raise SystemExit(f"evaluate: heatmaps, gallery and worst must be >= 0: {raw}")
    return settings


@dataclass
class Evaluation:
    summary: dict
    table: pa.Table
    images: dict[str, tuple[bytes | None, bytes | None]] = field(default_factory=dict)
    attended: dict = field(default_factory=dict)


def load_exported(model_dir: Path):
    """The trained model, its vocabulary and its settings, as the train stage exported them."""
    from pipeline import models
    from pipeline.vocab import Vocab

    if not (model_dir / "model.json").is_file():
        raise SystemExit(f"no exported model in {model_dir} (model.json missing): train first")
    config = json.loads((model_dir / "model.json").read_text())
    vocab = Vocab.load(model_dir / "vocab.json")
    model = models.build_model(models.model_config(config["model"]), len(vocab))
    height = config["fixed_height"] or config["pad_multiple"]
    warm_up = _blank_batch(height, config["pad_multiple"])
    model(warm_up, training=False)
    model.load_weights(str(model_dir / "model.weights.h5"))
    return model, vocab, config


def _blank_batch(height: int, width: int):
    import tensorflow as tf

    return tf.zeros([1, height, width, 1]), tf.ones([1, 2], tf.int32)


def read_gold(paths: list[Path]) -> tuple[dict[str, str], dict[str, bytes]]:
    """id -> target formula, and id -> its cropped image as the shards hold it."""
    table = pa.concat_tables(pq.read_table(p, columns=["id", "formula", "png"]) for p in paths)
    ids = table["id"].to_pylist()
    formulas = dict(zip(ids, table["formula"].to_pylist(), strict=True))
    return formulas, dict(zip(ids, table["png"].to_pylist(), strict=True))


def score(gold: dict[str, str], predicted: dict[str, str]) -> tuple[dict, pa.Table]:
    """Corpus metrics and the per-sample table; rows without a prediction score as empty."""
    from pipeline import metrics

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


def spread(ids: list[str], count: int) -> list[str]:
    """``count`` ids evenly spaced through the sorted list: a deterministic, unbiased sample."""
    ids = sorted(ids)
    if count >= len(ids):
        return ids
    return [ids[i * len(ids) // count] for i in range(count)]


def visual_scores(gold, predicted, gold_images, config) -> tuple[list[dict], dict]:
    """Render predictions with the model's own dpi and crop settings and compare images."""
    from pipeline import crop, render, visual

    preprocessing = config["preprocessing"]
    render_settings = render.RenderSettings(dpi=int(preprocessing["dpi"]))
    crop_settings = crop.settings_from(preprocessing["crop"])
    return visual.visual_match(gold, predicted, render_settings, crop_settings, gold_images)


VISUAL_COLUMNS = (
    "compiled",
    "image_match",
    "image_match_ws",
    "image_edit_distance",
    "render_error",
)


def measure(gold, gold_images, predicted, config, with_visual: bool) -> Evaluation:
    """Text scores, plus visual scores as extra columns and a ``visual`` summary section."""
    summary, table = score(gold, predicted)
    images = {i: (gold_images.get(i), None) for i in gold}
    if with_visual:
        rows, visual_summary = visual_scores(gold, predicted, gold_images, config)
        by_id = {row["id"]: row for row in rows}
        ordered = [by_id[i] for i in table["id"].to_pylist()]
        for column in VISUAL_COLUMNS:
            table = table.append_column(column, pa.array([r[column] for r in ordered]))
        summary["visual"] = visual_summary
        images = {
            r["id"]: (r["gold_png"] or gold_images.get(r["id"]), r["predicted_png"]) for r in rows
        }
    return Evaluation(summary, table, images)


def _has_preprocessing(config: dict) -> bool:
    """Formulas can only be rendered like the training images if the model says how."""
    return bool(config.get("preprocessing", {}).get("dpi"))


def evaluate_paths(model, vocab, config: dict, paths: list[Path], settings: EvaluateSettings):
    """Decode and score one set of test shards with the headline search (and greedy beside it)."""
    from pipeline.decode import DecodeSettings, decode_split

    gold, gold_images = read_gold(paths)
    max_len = settings.max_len or int(config["max_len"])
    search = DecodeSettings(
        max_len, settings.beam_width, settings.length_penalty, settings.batch_size
    )
    keep = spread(list(gold), settings.heatmaps)
    decoded = decode_split(model, vocab, config, paths, search, keep)
    with_visual = settings.visual and _has_preprocessing(config)
    if settings.visual and not with_visual:
        log.warning("evaluate: model.json records no render/crop settings: visual match skipped")
    result = measure(gold, gold_images, decoded.predictions, config, with_visual)
    result.attended = decoded.attended
    result.summary |= {"decoding": search.name, "beam_width": search.beam_width}
    result.summary["length_penalty"] = search.length_penalty
    if settings.compare_greedy and search.beam_width > 1:
        greedy = DecodeSettings(max_len, 1, batch_size=settings.batch_size)
        plain = decode_split(model, vocab, config, paths, greedy).predictions
        baseline = measure(gold, gold_images, plain, config, with_visual)
        result.summary["greedy"] = {k: baseline.summary[k] for k in TEXT_METRICS}
        if "visual" in baseline.summary:
            result.summary["greedy"]["visual"] = baseline.summary["visual"]
        result.table = result.table.append_column("greedy_prediction", baseline.table["prediction"])
    return result


def bleu_by_length(table: pa.Table) -> list[dict]:
    """Per target-length bin (the report's bins, empty ones left out): where the model breaks."""
    from pipeline import report

    return [row for row in report.length_bins(table) if row["samples"]]


def write_report(result: Evaluation, report_dir: Path, curves_dir: Path | None, settings) -> Path:
    """Heatmaps and the static HTML report in one folder (a DVC output)."""
    from pipeline import heatmaps, report

    samples = [
        heatmaps.HeatmapSample(a.id, a.image, a.attention, a.grid, a.tokens)
        for a in result.attended.values()
    ]
    pictures = heatmaps.save_heatmaps(samples, report_dir / "heatmaps")
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


def scored_shards(args, vocab, config: dict, work: Path) -> tuple[list[Path], dict | None]:
    """The shards to score: the stage's split, or a user's formulas built into shards."""
    from pipeline import dataset, external

    if args.formulas is None:
        return dataset.shard_paths(args.shards, args.split), None
    if not _has_preprocessing(config):
        raise SystemExit("evaluate --formulas: model.json records no render/crop settings")
    data = external.build_external_shards(
        args.formulas, vocab, config["preprocessing"], int(config["max_len"]) - 2, work
    )
    if not data.shards:
        raise SystemExit(f"evaluate: none of the formulas in {args.formulas} could be scored")
    return data.shards, data.as_report() | {"rejected_rows": data.rejected}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline evaluate", description=__doc__)
    cli.add_settings_args(parser)
    parser.add_argument("--model", type=Path, default=Path("models/best"), help="exported model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--shards", type=Path, help="the shards folder (its --split is scored)")
    source.add_argument("--formulas", type=Path, help="a file of normalized formulas to score")
    parser.add_argument("--split", default="test")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--report", type=Path, help="folder for the HTML report and heatmaps")
    parser.add_argument("--curves", type=Path, help="the dvclive folder: learning curves")
    parser.add_argument("--length-plot", type=Path, help="JSON rows of BLEU by target length")
    return parser.parse_args(argv)


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
    settings = settings_from(cli.load_settings(args, "evaluate"))
    model, vocab, config = load_exported(args.model)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        paths, external = scored_shards(args, vocab, config, Path(work))
        result = evaluate_paths(model, vocab, config, paths, settings)
    write_outputs(args, result, external, settings)
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
