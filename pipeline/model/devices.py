"""Device, distribution and precision from the environment, never from code edits.

- One process, GPUs: every visible GPU (narrow them with ``CUDA_VISIBLE_DEVICES``) joins one
  ``MirroredStrategy``, and mixed precision is on unless ``train.mixed_precision`` says otherwise.
- One process, CPU: a single device; ``PIPELINE_CPU_DEVICES=N`` splits it into N logical devices
  mirrored like GPUs, which is how the distributed path is tested on a machine without GPUs.
- Several processes (worker tasks, on one machine or many): ``MultiWorkerMirroredStrategy``
  over every worker's devices, when the environment describes a cluster of more than one worker:
  ``TF_CONFIG`` (TensorFlow's own format), or a SLURM job step of several tasks
  (``srun --ntasks N``: ``SLURM_STEP_NUM_TASKS`` and the step's node list). Each task mirrors
  over the GPUs SLURM lets it see; worker ports start at ``PIPELINE_PORT_BASE`` (8888).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import tensorflow as tf

log = logging.getLogger("pipeline")

DEFAULT_PORT_BASE = 8888


class ClusterError(SystemExit):
    """The environment describes a cluster this process cannot join; the message says why."""


@dataclass(frozen=True)
class Devices:
    """Where training runs: the strategy, the precision policy, and this process's place among
    the workers. Worker 0 is the chief: the only one that writes the stage's outputs."""

    strategy: tf.distribute.Strategy
    policy: str
    worker: int = 0
    workers: int = 1

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self) -> bool:
        return self.worker == 0


def _split_cpu(count: int) -> None:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def _tf_config_workers(raw: str) -> tuple[int, int]:
    """(this task's index, the number of workers) from ``TF_CONFIG``; only ``worker`` tasks:
    every worker trains, and worker 0 writes."""
    try:
        spec = json.loads(raw)
        workers = spec.get("cluster", {}).get("worker", [])
        task = spec.get("task", {})
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as error:
        raise ClusterError(f"TF_CONFIG is not a cluster description: {error}") from None
    others = set(spec.get("cluster", {})) - {"worker"}
    if others or kind != "worker":
        raise ClusterError(
            f"TF_CONFIG: only 'worker' tasks are supported (found {sorted(others | {kind})})"
        )
    if not 0 <= index < max(len(workers), 1):
        raise ClusterError(f"TF_CONFIG: task index {index} is not one of {len(workers)} workers")
    return index, len(workers)


def cluster_resolver(gpus: int) -> tf.distribute.cluster_resolver.ClusterResolver | None:
    """The cluster this process is one worker of, or None when it trains alone. From
    ``os.environ``, which TensorFlow's resolvers read too.

    ``gpus`` is how many GPUs this process sees: SLURM's own binding (``--gpus-per-task``)
    decides which, so the resolver must not reassign them.
    """
    environ = os.environ
    if environ.get("TF_CONFIG"):
        _, workers = _tf_config_workers(environ["TF_CONFIG"])
        if workers > 1:
            return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    tasks = int(environ.get("SLURM_STEP_NUM_TASKS", "1"))
    if tasks > 1:
        return _SlurmWorkers(gpus, tasks, int(environ.get("PIPELINE_PORT_BASE", DEFAULT_PORT_BASE)))
    return None


class _SlurmWorkers(tf.distribute.cluster_resolver.SlurmClusterResolver):
    """TensorFlow's resolver for tasks with or without GPUs. It deals each task a range of GPU
    ids (bookkeeping only: ``auto_set_gpu=False``) and fails on a range step of 0, so a task
    without GPUs is dealt one id; ``num_accelerators`` still reports the GPUs it has."""

    def __init__(self, gpus: int, tasks: int, port_base: int) -> None:
        per_task = max(gpus, 1)
        super().__init__(
            port_base=port_base,
            gpus_per_node=per_task * tasks,  # an upper bound: only checked, never allocated
            gpus_per_task=per_task,
            auto_set_gpu=False,
        )
        self._gpus = gpus

    def num_accelerators(self, task_type=None, task_id=None, config_proto=None) -> dict[str, int]:
        return {"GPU": self._gpus}


def _local_strategy(gpus: int, cpu_devices: int) -> tf.distribute.Strategy:
    if gpus:
        return tf.distribute.MirroredStrategy()
    if cpu_devices > 1:
        names = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            devices=names, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return tf.distribute.get_strategy()


def precision_policy(mixed_precision: str, gpus: bool) -> str:
    """The Keras policy for ``train.mixed_precision``: float16 on GPUs by default; ``bf16`` is
    for CPUs with bfloat16 instructions (AVX512_BF16, AMX) and GPUs from Ampere on, and needs no
    loss scaling (bfloat16 has float32's exponent range)."""
    if mixed_precision == "bf16":
        return "mixed_bfloat16"
    use_mixed = {"auto": gpus, "on": True, "off": False}[mixed_precision]
    return "mixed_float16" if use_mixed else "float32"


def setup(mixed_precision: str = "auto") -> Devices:
    """Pick the distribution strategy and the Keras precision policy; must run before any op."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    resolver = cluster_resolver(len(gpus))
    cpu_devices = int(os.environ.get("PIPELINE_CPU_DEVICES", "1"))
    if not gpus and cpu_devices > 1 and resolver is None:
        _split_cpu(cpu_devices)
    if resolver is None:
        strategy, worker, workers = _local_strategy(len(gpus), cpu_devices), 0, 1
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        worker, workers = int(resolver.task_id), len(resolver.cluster_spec().as_dict()["worker"])
    policy = precision_policy(mixed_precision, bool(gpus))
    tf.keras.mixed_precision.set_global_policy(policy)
    devices = Devices(strategy, policy, worker, workers)
    log.info(
        "devices: %d GPU(s), worker %d of %d, %d replica(s), precision %s",
        len(gpus),
        worker,
        workers,
        devices.replicas,
        policy,
    )
    return devices
