"""The training loop behind the train stage: distributed steps, checkpoints, validation, export.

A custom loop rather than ``Model.fit`` because resuming mid-epoch after ``kill -9`` needs the
exact position in a deterministic epoch order, and the budget (epochs, steps, wall-clock) spans
restarts.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import tensorflow as tf

from pipeline import dataset, devices, metrics, models
from pipeline.schedule import budget_spent
from pipeline.train import Progress, TrainSettings, data_digest, run_key, schedule_of
from pipeline.vocab import Vocab

log = logging.getLogger("pipeline")
WEIGHTS = "model.weights.h5"
CONFIG = "model.json"


class ProgressDisplay:
    """Keras's progress bar on a terminal; a log line every 100 steps in a log file."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.tty = sys.stderr.isatty()
        self.bar = (
            tf.keras.utils.Progbar(None, stateful_metrics=["loss", "acc"]) if self.tty else None
        )

    def update(self, step: int, loss: float, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.update(step, [("loss", loss), ("acc", accuracy)])
        elif step % 100 == 0:
            log.info(
                "train: epoch %d, step %d: loss %.4f, acc %.4f",
                self.epoch + 1,
                step,
                loss,
                accuracy,
            )


class Trainer:
    def __init__(
        self,
        model_section: dict,
        settings: TrainSettings,
        shards: Path,
        vocab: Path,
        preprocessing: dict,
    ):
        self.settings = settings
        self.preprocessing = preprocessing
        self.strategy, self.policy = devices.strategy_and_precision(settings.mixed_precision)
        self.vocab = Vocab.load(vocab)
        self.vocab_path = Path(vocab)
        self.model_section = model_section
        self.config = models.model_config(model_section)
        self.shards = Path(shards)
        self.pad_multiple = 2**self.config.pools
        self.fixed_height = self.config.canvas_height if self.config.variant == "strips" else None
        self.last_train = (math.nan, math.nan)  # loss and accuracy of the latest step
        self.key = run_key(model_section, settings, data_digest(self.shards, self.vocab_path))
        self.train_paths = dataset.shard_paths(self.shards, "train")
        self.val_paths = dataset.shard_paths(self.shards, "validation")
        self.schedule = schedule_of(settings)
        # an estimate (batches never mix buckets), only used to place the schedule in an epoch
        self.steps_per_epoch = max(1, self._report_rows() // settings.batch_size)
        with self.strategy.scope():
            self.model = models.build_model(self.config, len(self.vocab))
            self.optimizer = self._optimizer()
            self.ema = self._ema_variables()
            self.state = {
                name: tf.Variable(value, trainable=False, dtype=tf.float64)
                for name, value in asdict(Progress()).items()
            }

    def _report_rows(self) -> int:
        """Log each split's rows in and left out; return the training rows used."""
        used = 0
        for split, paths in (("train", self.train_paths), ("validation", self.val_paths)):
            rows = dataset.count_rows(paths)
            left_out = (
                dataset.excluded_by_height(paths, self.fixed_height) if self.fixed_height else 0
            )
            log.info(
                "train: %s %d rows in, %d taller than the canvas left out", split, rows, left_out
            )
            if split == "train":
                used = rows - left_out
        return used

    def _optimizer(self) -> tf.keras.optimizers.Optimizer:
        s = self.settings
        optimizer = tf.keras.optimizers.Adam(
            s.learning_rate, beta_1=s.beta_1, beta_2=s.beta_2, global_clipnorm=s.clip_norm
        )
        if self.policy == "mixed_float16":
            optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
        return optimizer

    def _ema_variables(self) -> tf.Module | None:
        """Shadow copies of the trainable weights, kept as their moving average."""
        if not self.settings.ema_decay:
            return None
        module = tf.Module(name="ema")
        module.shadows = [tf.Variable(v, trainable=False) for v in self.model.trainable_variables]
        return module

    def _update_ema(self) -> None:
        """TensorFlow's ExponentialMovingAverage ramp: early steps weigh the new weights more,
        so the average is not dragged back towards the random initialization."""
        steps = tf.cast(self.optimizer.iterations, tf.float32)
        decay = tf.minimum(self.settings.ema_decay, (1.0 + steps) / (10.0 + steps))
        for shadow, weight in zip(self.ema.shadows, self.model.trainable_variables, strict=True):
            shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(weight, shadow.dtype))

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Swap the moving average into the model (validation, export), then swap back."""
        if self.ema is None:
            yield
            return
        weights = self.model.trainable_variables
        raw = [tf.identity(w) for w in weights]
        for weight, shadow in zip(weights, self.ema.shadows, strict=True):
            weight.assign(shadow)
        try:
            yield
        finally:
            for weight, value in zip(weights, raw, strict=True):
                weight.assign(value)

    # -- data -------------------------------------------------------------------------------
    def train_data(self, epoch: int, skip: int) -> tf.data.Dataset:
        data = dataset.make_dataset(
            self.train_paths,
            batch_size=self.settings.batch_size,
            pad_multiple=self.pad_multiple,
            fixed_height=self.fixed_height,
            shuffle=True,
            seed=self.settings.seed + epoch,
            drop_remainder=self.strategy.num_replicas_in_sync > 1,
        )
        return data.skip(skip)

    def _val_data(self, with_ids: bool = False) -> tf.data.Dataset:
        return dataset.make_dataset(
            self.val_paths,
            batch_size=self.settings.batch_size,
            pad_multiple=self.pad_multiple,
            fixed_height=self.fixed_height,
            with_ids=with_ids,
        )

    # -- steps ------------------------------------------------------------------------------
    def build(self) -> None:
        """Create every variable before restoring a checkpoint into them."""
        images, tokens = next(iter(self._val_data().take(1)))
        with self.strategy.scope():
            self.model((images, tokens[:, :-1]), training=False)
            self.optimizer.build(self.model.trainable_variables)

    def _replica_step(self, images: tf.Tensor, tokens: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model((images, tokens[:, :-1]), training=True)
            loss = models.masked_loss(tokens[:, 1:], logits)
            total = (loss + models.regularization_loss(self.model)) / replicas
            scaled = self.optimizer.scale_loss(total)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss, models.token_accuracy(tokens[:, 1:], logits)

    def make_train_step(self):
        @tf.function(reduce_retracing=True)
        def step(images, tokens):
            loss, accuracy = self.strategy.run(self._replica_step, args=(images, tokens))
            if self.ema is not None:
                self._update_ema()
            mean = tf.distribute.ReduceOp.MEAN
            return (
                self.strategy.reduce(mean, loss, axis=None),
                self.strategy.reduce(mean, accuracy, axis=None),
            )

        return step

    @tf.function(reduce_retracing=True)
    def _eval_step(self, images, tokens):
        logits = self.model((images, tokens[:, :-1]), training=False)
        return models.masked_loss(tokens[:, 1:], logits), models.token_accuracy(
            tokens[:, 1:], logits
        )

    # -- the loop ---------------------------------------------------------------------------
    def run(self, out: Path, checkpoints: Path, live_dir: Path) -> None:
        from dvclive import Live

        self.build()
        manager = self._checkpoints(checkpoints)
        self.best_dir = Path(manager.directory) / "best"
        progress = self._restore(manager)
        resumed = progress.step > 0
        train_step = self.make_train_step()
        with Live(str(live_dir), resume=resumed, save_dvc_exp=False, dvcyaml=False) as live:
            if not resumed:
                live.log_params({"model": self.model_section, "train": asdict(self.settings)})
            while not self._budget_spent(progress):
                finished = self._epoch(progress, train_step, manager)
                if not finished and progress.step_in_epoch == 0:
                    break
                # A budget that ends mid-epoch still gets its validation, curve point and export.
                self._end_epoch(progress, live, manager)
                if not finished:
                    break
                if progress.bad_epochs >= self.settings.patience:
                    log.info(
                        "train: no validation improvement for %d epochs, stopping",
                        progress.bad_epochs,
                    )
                    break
        self._save(manager, progress)
        if not (self.best_dir / WEIGHTS).exists():  # the budget ended before any validation
            with self.averaged_weights():
                self._export(progress)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(self.best_dir, out)
        log.info(
            "train: done at step %d, epoch %d, best validation %.4f",
            progress.step,
            progress.epoch,
            progress.best,
        )

    def _epoch(self, progress: Progress, train_step, manager) -> bool:
        """Train until the epoch ends (True) or the budget runs out mid-epoch (False)."""
        start = time.monotonic()
        seconds_before = progress.seconds
        bar = ProgressDisplay(progress.epoch)
        for images, tokens in self.train_data(progress.epoch, progress.step_in_epoch):
            self.optimizer.learning_rate = self._learning_rate(progress)
            loss, accuracy = train_step(images, tokens)
            progress.step += 1
            progress.step_in_epoch += 1
            progress.seconds = seconds_before + time.monotonic() - start
            bar.update(progress.step_in_epoch, float(loss), float(accuracy))
            self.last_train = (float(loss), float(accuracy))
            if progress.step % self.settings.checkpoint_every == 0:
                self._save(manager, progress)
            if self._budget_spent(progress, within_epoch=True):
                self._save(manager, progress)
                return False
        return True

    def _learning_rate(self, progress: Progress) -> float:
        s = self.settings
        spent = budget_spent(
            step=progress.step,
            seconds=progress.seconds,
            epochs_done=progress.epoch + progress.step_in_epoch / self.steps_per_epoch,
            max_steps=s.max_steps,
            max_minutes=s.max_minutes,
            epochs=s.epochs,
        )
        return self.schedule.rate(progress.step, spent)

    def _end_epoch(self, progress: Progress, live, manager) -> None:
        with self.averaged_weights():
            self._end_epoch_averaged(progress, live)
        live.next_step()
        self._save(manager, progress)

    def _end_epoch_averaged(self, progress: Progress, live) -> None:
        val_loss, val_accuracy, val_bleu = self._validate()
        score = val_bleu if val_bleu is not None else -val_loss
        train_loss, train_accuracy = self.last_train
        for name, value in {
            "train/loss": train_loss,
            "train/token_accuracy": train_accuracy,
            "train/learning_rate": float(self.optimizer.learning_rate.numpy()),
            "val/loss": val_loss,
            "val/token_accuracy": val_accuracy,
            "val/bleu": val_bleu,
        }.items():
            if value is not None:
                live.log_metric(name, round(float(value), 6))
        live.log_metric("epoch", progress.epoch + 1, plot=False)
        live.log_metric("global_step", progress.step, plot=False)
        log.info(
            "train: epoch %d, step %d: val loss %.4f, val acc %.4f, val bleu %s",
            progress.epoch + 1,
            progress.step,
            val_loss,
            val_accuracy,
            val_bleu,
        )
        progress.epoch += 1
        progress.step_in_epoch = 0
        if score > progress.best:
            progress.best, progress.bad_epochs = score, 0
            self._export(progress)
        else:
            progress.bad_epochs += 1

    def _validate(self) -> tuple[float, float, float | None]:
        """Validation loss and accuracy over the split, and BLEU of greedy decoding on its first
        ``val_bleu_samples`` rows, in one pass so each image is read and decoded once."""
        losses, accuracies, references, hypotheses = [], [], [], []
        for images, tokens in self._val_data():
            loss, accuracy = self._eval_step(images, tokens)
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            if len(references) < self.settings.val_bleu_samples:
                predicted, _ = self.model.greedy_decode(images, self.settings.max_len)
                for gold, guess in zip(tokens.numpy(), predicted.numpy(), strict=True):
                    references.append(self.vocab.decode(gold[1:]))
                    hypotheses.append(self.vocab.decode(guess))
        if not losses:
            return math.nan, math.nan, None
        bleu = metrics.corpus_bleu(references, hypotheses, smooth=True) if references else None
        return sum(losses) / len(losses), sum(accuracies) / len(accuracies), bleu

    # -- budget, checkpoints, export --------------------------------------------------------
    def _budget_spent(self, progress: Progress, within_epoch: bool = False) -> bool:
        s = self.settings
        if not within_epoch and progress.epoch >= s.epochs:
            return True
        if s.max_steps and progress.step >= s.max_steps:
            return True
        return bool(s.max_minutes) and progress.seconds >= 60 * s.max_minutes

    def _checkpoints(self, root: Path) -> tf.train.CheckpointManager:
        folder = root / self.key
        folder.mkdir(parents=True, exist_ok=True)
        extra = {"ema": self.ema} if self.ema is not None else {}
        checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, **self.state, **extra
        )
        return tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=2)

    def _restore(self, manager: tf.train.CheckpointManager) -> Progress:
        if manager.latest_checkpoint is None:
            log.info("train: starting fresh (run %s)", self.key)
            return Progress()
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        values = {name: var.numpy() for name, var in self.state.items()}
        progress = Progress(**{k: type(getattr(Progress(), k))(v) for k, v in values.items()})
        log.info(
            "train: resumed from step %d (epoch %d, %d steps into it)",
            progress.step,
            progress.epoch,
            progress.step_in_epoch,
        )
        return progress

    def _save(self, manager: tf.train.CheckpointManager, progress: Progress) -> None:
        for name, value in asdict(progress).items():
            self.state[name].assign(value)
        manager.save(checkpoint_number=progress.step)

    def _export(self, progress: Progress) -> None:
        """Keep the best model beside the checkpoints (they survive a restart; the stage's output
        folder does not, DVC clears it), with everything evaluation and prediction need."""
        out = self.best_dir
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(str(out / WEIGHTS))
        (out / "vocab.json").write_text(self.vocab_path.read_text())
        config = {
            "model": self.model_section,
            "pad_multiple": self.pad_multiple,
            "fixed_height": self.fixed_height,
            "max_len": self.settings.max_len,
            "preprocessing": self.preprocessing,
            "step": progress.step,
            "epoch": progress.epoch,
            "validation_score": progress.best,
        }
        (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
