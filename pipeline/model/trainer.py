"""The training loop behind the train stage: distributed steps, checkpoints, validation, export.

A custom loop rather than ``Model.fit`` because resuming mid-epoch after ``kill -9`` needs the
exact position in a deterministic epoch order, and the budget spans restarts.

Deterministic by construction: weights start from ``train.seed``, the epoch order comes from the
seed and the epoch number, TensorFlow's ops run deterministically, and the budget counts steps
and epochs. So the same params, code and machine give bit-identical weights, whether or not the
run was killed and resumed on the way; only the opt-in ``max_minutes`` cap depends on speed, and
a run it ends records that it was cut by time, and at which step.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import tensorflow as tf
from dvclive import Live

from pipeline import cli, config, metrics, provenance
from pipeline.config import AugmentSettings, ModelSettings, TrainSettings
from pipeline.contracts import MANIFEST, Vocab, shard_paths
from pipeline.model import bundle, dataset, devices, networks
from pipeline.model.schedule import Budget, Schedule

log = logging.getLogger("pipeline")

Distributed = tf.distribute.DistributedDataset


@dataclass
class Progress:
    """Run state that must survive a restart; mirrored into tf.Variables for checkpointing."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    seconds: float = 0.0
    best: float = -math.inf
    bad_epochs: int = 0
    last_loss: float = math.nan  # of the latest step: an epoch's curve point, also when resumed
    last_accuracy: float = math.nan


def run_key(
    model: ModelSettings,
    settings: TrainSettings,
    data_digest: str,
    augment: AugmentSettings | None = None,
) -> str:
    """Checkpoints are only resumed by a run with the same model, settings, data and code: DVC
    reruns training after a code change, and that run must train, not resume a finished one.
    Augmentation counts when on; off, training is what it was before augmentation existed."""
    on = [asdict(augment)] if augment is not None and augment.active else []
    return provenance.digest(asdict(model), asdict(settings), data_digest, *on)


def data_digest(shards_dir: Path, vocab_path: Path) -> str:
    manifest = (Path(shards_dir) / MANIFEST).read_bytes()
    return hashlib.sha256(manifest + Path(vocab_path).read_bytes()).hexdigest()


class Trainer:
    def __init__(
        self,
        model_settings: ModelSettings,
        settings: TrainSettings,
        shards: Path,
        vocab: Path,
        preprocessing: bundle.Preprocessing,
        augment: AugmentSettings | None = None,
    ):
        self.settings = settings
        self.augment = augment  # training batches only, never validation
        if augment is not None and augment.active:
            on = {f: v for f, v in asdict(augment).items() if f.startswith("p_") and v}
            log.info("train: augmenting training images, with probabilities %s", on)
        self.model_settings = model_settings
        self.preprocessing = preprocessing
        self.devices = devices.setup(settings.mixed_precision)
        self.strategy, self.policy = self.devices.strategy, self.devices.policy
        _check_split(settings.batch_size, self.devices.replicas)
        tf.keras.utils.set_random_seed(settings.seed)  # weights, and Python's and NumPy's draws
        tf.config.experimental.enable_op_determinism()
        self.vocab = Vocab.load(vocab)
        self.vocab_path = Path(vocab)
        self.config = networks.model_config(model_settings)
        self.shards = Path(shards)
        self.pad_multiple = self.config.size_multiple
        self.fixed_height = self.config.fixed_height
        self.canvas = self.config.canvas
        digest = data_digest(self.shards, self.vocab_path)
        self.key = run_key(model_settings, settings, digest, augment)
        self.train_paths = shard_paths(self.shards, "train")
        self.val_paths = shard_paths(self.shards, "validation")
        self.budget = Budget.of(settings)
        self.schedule = Schedule.of(settings)
        # an estimate (batches never mix buckets), only used to place the schedule in an epoch
        self.steps_per_epoch = max(1, self._report_rows() // settings.batch_size)
        with self.strategy.scope():
            self.model = networks.build_model(self.config, len(self.vocab))
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
            left_out = dataset.excluded_by_size(paths, self.fixed_height, self.canvas)
            log.info(
                "train: %s %d rows in, %d taller than the canvas left out", split, rows, left_out
            )
            if split == "train":
                used = rows - left_out
        return used

    def _optimizer(self) -> tf.keras.optimizers.Optimizer:
        s = self.settings
        optimizer = tf.keras.optimizers.Adam(
            s.learning_rate, beta_1=s.beta_1, beta_2=s.beta_2, global_clipnorm=s.clip_norm or None
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
    def train_data(self, epoch: int, skip: int) -> tf.data.Dataset | Distributed:
        """The epoch's global batches from the ``skip``-th on; with several replicas, each
        replica's share of them (``dataset.replica_batches``)."""

        def batches() -> tf.data.Dataset:
            data = dataset.make_dataset(
                self.train_paths,
                batch_size=self.settings.batch_size,
                pad_multiple=self.pad_multiple,
                fixed_height=self.fixed_height,
                canvas=self.canvas,
                shuffle=True,
                seed=self.settings.seed + epoch,
                length_bins=self.settings.length_bins,
                drop_remainder=self.devices.replicas > 1,
                augment=self.augment,
            )
            return data.skip(skip)

        if self.devices.replicas == 1:
            return batches()
        return self.strategy.distribute_datasets_from_function(
            lambda context: dataset.replica_batches(batches(), context)
        )

    def _val_data(self) -> tf.data.Dataset:
        return dataset.make_dataset(
            self.val_paths,
            batch_size=self.settings.batch_size,
            pad_multiple=self.pad_multiple,
            fixed_height=self.fixed_height,
            canvas=self.canvas,
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
            loss = networks.masked_loss(tokens[:, 1:], logits, self.settings.label_smoothing)
            total = (loss + networks.regularization_loss(self.model)) / replicas
            scaled = self.optimizer.scale_loss(total)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss, networks.token_accuracy(tokens[:, 1:], logits), tf.shape(images)[0]

    def make_train_step(self):
        """One optimizer step over every replica: (mean loss, mean accuracy, samples)."""

        @tf.function(reduce_retracing=True)
        def step(images, tokens):
            loss, accuracy, samples = self.strategy.run(self._replica_step, args=(images, tokens))
            if self.ema is not None:
                self._update_ema()
            mean, total = tf.distribute.ReduceOp.MEAN, tf.distribute.ReduceOp.SUM
            return (
                self.strategy.reduce(mean, loss, axis=None),
                self.strategy.reduce(mean, accuracy, axis=None),
                self.strategy.reduce(total, samples, axis=None),
            )

        return step

    def _agreed(self, value: float) -> float:
        """One value for all workers (their mean), for what steers the loop: workers that
        decided apart (a time budget, the best epoch) would wait forever for each other's
        collectives."""
        if self.devices.workers == 1:
            return value
        per_replica = self.strategy.run(lambda: tf.constant(value, tf.float64))
        return float(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))

    @tf.function(reduce_retracing=True)
    def _eval_step(self, images, tokens):
        logits = self.model((images, tokens[:, :-1]), training=False)
        return networks.masked_loss(tokens[:, 1:], logits), networks.token_accuracy(
            tokens[:, 1:], logits
        )

    # -- the loop ---------------------------------------------------------------------------
    def run(self, out: Path, checkpoints: Path, live_dir: Path) -> None:
        """Train, resuming from ``checkpoints``. Only the chief writes there and to ``out`` and
        ``live_dir``; the other workers write the same files into a folder of their own, which
        they remove at the end."""
        if self.devices.is_chief:
            self._run(out, checkpoints, live_dir, checkpoints)
            return
        with tempfile.TemporaryDirectory(prefix=f"worker{self.devices.worker}-") as scratch:
            own = Path(scratch)
            self._run(own / "model", checkpoints, own / "live", own / "checkpoints")

    def _run(self, out: Path, checkpoints: Path, live_dir: Path, writes: Path) -> None:
        self.build()
        manager = self._checkpoints(writes)
        self.best_dir = Path(manager.directory) / "best"
        progress = self._restore(manager, tf.train.latest_checkpoint(checkpoints / self.key))
        self.live_dirs = (live_dir, Path(manager.directory) / "live")
        resumed = progress.epoch > 0 and restore_curves(*reversed(self.live_dirs), progress.epoch)
        train_step = self.make_train_step()
        with Live(str(live_dir), resume=resumed, save_dvc_exp=False, dvcyaml=False) as live:
            if resumed:
                live.step = progress.epoch  # dvclive's own guess is off by one after epoch 1
            else:
                live.log_params(
                    {"model": asdict(self.model_settings), "train": asdict(self.settings)}
                )
            stopped_by = self._loop(progress, train_step, manager, live)
            self._record_stop(live, progress, stopped_by)
        self._save(manager, progress)
        if not (self.best_dir / bundle.RECORD).exists():  # the budget ended before validation
            with self.averaged_weights():
                self._export(progress)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(self.best_dir, out)
        log.info(
            "train: done at step %d, epoch %d, stopped by %s, best validation %.4f",
            progress.step,
            progress.epoch,
            stopped_by,
            progress.best,
        )

    def _loop(self, progress: Progress, train_step, manager, live: Live) -> str:
        """Epochs until a budget limit or early stopping ends training; returns which did."""
        while True:
            limit = self._limit(progress)
            if limit is None:
                self._epoch(progress, train_step, manager)
            # An epoch cut short by the budget still gets its validation, curve point and
            # export, also when a run killed just before them is resumed.
            if progress.step_in_epoch > 0:
                self._end_epoch(progress, live, manager)
            if limit is not None:
                return limit
            if progress.bad_epochs >= self.settings.patience and self._limit(progress) is None:
                log.info(
                    "train: no validation improvement for %d epochs, stopping",
                    progress.bad_epochs,
                )
                return "patience"

    def _limit(self, progress: Progress) -> str | None:
        return self.budget.ended_by(
            step=progress.step, seconds=progress.seconds, epochs_done=progress.epoch
        )

    def _record_stop(self, live: Live, progress: Progress, stopped_by: str) -> None:
        """What ended the run, in the metrics: a run cut by wall-clock time depends on the
        machine's speed, and ``dvc exp show`` should say so."""
        live.summary["stopped_by"] = stopped_by
        live.summary["cut_by_time"] = stopped_by == "minutes"
        live.summary["steps"] = progress.step
        live.make_summary()
        if stopped_by == "minutes":
            log.warning(
                "train: the %g-minute cap (train.max_minutes) cut the run at step %d: this model "
                "depends on the machine's speed",
                self.settings.max_minutes,
                progress.step,
            )

    def _epoch(self, progress: Progress, train_step, manager) -> None:
        """Train until the epoch ends or the budget runs out mid-epoch."""
        start = time.monotonic()
        seconds_before = progress.seconds
        display = cli.ProgressLog(
            "train",
            progress.step + self._steps_left(progress),
            "steps",
            self.settings.progress_every_s,
            done=progress.step,
        )
        timed = bool(self.settings.max_minutes)
        for images, tokens in self.train_data(progress.epoch, progress.step_in_epoch):
            self.optimizer.learning_rate = self._learning_rate(progress)
            loss, accuracy, samples = train_step(images, tokens)
            progress.step += 1
            progress.step_in_epoch += 1
            progress.seconds = seconds_before + time.monotonic() - start
            if timed:  # the workers' mean clock, so all stop at the same step
                progress.seconds = self._agreed(progress.seconds)
            progress.last_loss, progress.last_accuracy = float(loss), float(accuracy)
            detail = (
                f"epoch {progress.epoch + 1}, loss {progress.last_loss:.4f}, "
                f"acc {progress.last_accuracy:.4f}"
            )
            display.advance(samples=int(samples), detail=detail)
            if progress.step % self.settings.checkpoint_every == 0:
                self._save(manager, progress)
            if self._limit(progress) is not None:
                self._save(manager, progress)
                return

    def _steps_left(self, progress: Progress) -> int:
        """Steps to the nearest step or epoch limit (epochs estimated from the row count)."""
        s = self.settings
        left = (s.epochs - progress.epoch) * self.steps_per_epoch - progress.step_in_epoch
        if s.max_steps:
            left = min(left, s.max_steps - progress.step)
        return left

    def _learning_rate(self, progress: Progress) -> float:
        spent = self.budget.spent(
            step=progress.step,
            seconds=progress.seconds,
            epochs_done=progress.epoch + progress.step_in_epoch / self.steps_per_epoch,
        )
        return self.schedule.rate(progress.step, spent)

    def _end_epoch(self, progress: Progress, live: Live, manager) -> None:
        with self.averaged_weights():
            self._end_epoch_averaged(progress, live)
        live.next_step()
        live_dir, kept = self.live_dirs
        shutil.copytree(live_dir, kept, dirs_exist_ok=True)  # DVC clears live_dir on a rerun
        self._save(manager, progress)

    def _end_epoch_averaged(self, progress: Progress, live: Live) -> None:
        val_loss, val_accuracy, val_bleu = self._validate()
        score = self._agreed(val_bleu if val_bleu is not None else -val_loss)
        train_loss, train_accuracy = progress.last_loss, progress.last_accuracy
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

    # -- checkpoints and export -------------------------------------------------------------
    def _checkpoints(self, root: Path) -> tf.train.CheckpointManager:
        folder = root / self.key
        folder.mkdir(parents=True, exist_ok=True)
        extra = {"ema": self.ema} if self.ema is not None else {}
        checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, **self.state, **extra
        )
        return tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=2)

    def _restore(self, manager: tf.train.CheckpointManager, latest: str | None) -> Progress:
        if latest is None:
            log.info("train: starting fresh (run %s)", self.key)
            return Progress()
        manager.checkpoint.restore(latest).assert_existing_objects_matched()
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
        folder does not, DVC clears it)."""
        bundle.export(
            self.best_dir,
            self.model,
            self.vocab_path,
            self.model_settings,
            self.preprocessing,
            self.settings.max_len,
            {"step": progress.step, "epoch": progress.epoch, "validation_score": progress.best},
        )


def _check_split(batch_size: int, replicas: int) -> None:
    """Every replica takes an equal share of each batch."""
    if batch_size % replicas:
        raise config.ConfigError(
            f"params: train.batch_size: {batch_size} does not split evenly over "
            f"{replicas} replicas (use a multiple of {replicas})"
        )


def restore_curves(kept: Path, live_dir: Path, epochs: int) -> bool:
    """Put back the curves of the first ``epochs`` epochs, from the copy beside the checkpoints.

    The copy is made at each epoch's end, just before the checkpoint, so it may hold one epoch
    more than the checkpoint does (a kill in between): rows from step ``epochs`` on are cut, and
    the resumed run logs them again. Returns whether there was anything to restore.
    """
    if not kept.is_dir():
        return False
    shutil.rmtree(live_dir, ignore_errors=True)
    shutil.copytree(kept, live_dir)
    for curve in live_dir.rglob("*.tsv"):
        header, *rows = curve.read_text().splitlines(keepends=True)
        step = header.rstrip("\n").split("\t").index("step")
        curve.write_text(header + "".join(r for r in rows if int(r.split("\t")[step]) < epochs))
    return True


def preprocessing_of(params: config.Params) -> bundle.Preprocessing:
    """What the training images were made with, for the bundle to carry."""
    return bundle.Preprocessing(params.render.dpi, params.crop, params.render.font)
