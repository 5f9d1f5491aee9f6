"""Evaluate stage: the exported model decodes the test split; text metrics go to metrics.json.

Every test row is scored: a row the model could not be given (e.g. taller than the STRIPS
canvas) counts as an empty prediction rather than silently leaving the average.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import cli

log = logging.getLogger("pipeline")

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("target", pa.string()),
        ("prediction", pa.string()),
        ("bleu", pa.float64()),
        ("edit_distance", pa.float64()),
    ]
)


def load_exported(model_dir: Path):
    """The trained model, its vocabulary and its settings, as the train stage exported them."""
    from pipeline import models
    from pipeline.vocab import Vocab

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


def decode_split(model, vocab, config: dict, paths: list[Path], batch_size: int, max_len: int):
    """id -> predicted formula for every row the model can take."""
    from pipeline import dataset

    data = dataset.make_dataset(
        paths,
        batch_size=batch_size,
        pad_multiple=config["pad_multiple"],
        fixed_height=config["fixed_height"],
        with_ids=True,
    )
    predictions = {}
    for images, _, ids in data:
        decoded, _ = model.greedy_decode(images, max_len)
        for row_id, row in zip(ids.numpy(), decoded.numpy(), strict=True):
            predictions[row_id.decode()] = vocab.decode(row)
    return predictions


def targets(paths: list[Path]) -> dict[str, str]:
    table = pa.concat_tables(pq.read_table(p, columns=["id", "formula"]) for p in paths)
    return dict(zip(table["id"].to_pylist(), table["formula"].to_pylist(), strict=True))


def score(gold: dict[str, str], predicted: dict[str, str]) -> tuple[dict, pa.Table]:
    """Corpus metrics and the per-sample table; rows without a prediction score as empty."""
    from pipeline import metrics

    ids = sorted(gold)
    references = [gold[i] for i in ids]
    hypotheses = [predicted.get(i, "") for i in ids]
    summary = metrics.score_corpus(references, hypotheses)
    summary["missing_predictions"] = sum(i not in predicted for i in ids)
    rows = {
        "id": ids,
        "target": references,
        "prediction": hypotheses,
        "bleu": [metrics.sentence_bleu(r, h) for r, h in zip(references, hypotheses, strict=True)],
        "edit_distance": [
            metrics.normalized_edit_distance(r, h)
            for r, h in zip(references, hypotheses, strict=True)
        ],
    }
    return summary, pa.table(rows, schema=PREDICTIONS_SCHEMA)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline evaluate", description=__doc__)
    cli.add_settings_args(parser)
    parser.add_argument("--model", type=Path, required=True, help="exported model folder")
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    args = parser.parse_args(argv)
    cli.setup_logging()
    settings = cli.load_settings(args, "evaluate")
    from pipeline import dataset

    model, vocab, config = load_exported(args.model)
    paths = dataset.shard_paths(args.shards, args.split)
    max_len = int(settings.get("max_len", config["max_len"]))
    predicted = decode_split(
        model, vocab, config, paths, int(settings.get("batch_size", 64)), max_len
    )
    summary, table = score(targets(paths), predicted)
    summary["decoding"] = "greedy"
    args.predictions.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.predictions)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "evaluate: %d %s rows in, %d predicted, %s",
        len(table),
        args.split,
        len(predicted),
        {k: summary[k] for k in ("bleu", "bleu_unsmoothed", "edit_distance", "exact_match")},
    )
    return 0
