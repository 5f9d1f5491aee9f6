"""Device, distribution and precision from the environment, never from code edits.

- GPUs: every visible GPU (narrow them with ``CUDA_VISIBLE_DEVICES``) joins one
  ``MirroredStrategy``, and mixed precision is on unless ``train.mixed_precision`` says otherwise.
- CPU: a single device; ``PIPELINE_CPU_DEVICES=N`` splits it into N logical devices mirrored like
  GPUs, which is how the distributed path is tested on a machine without GPUs.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

log = logging.getLogger("pipeline")


def _split_cpu(count: int) -> None:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def strategy_and_precision(mixed_precision: str = "auto") -> tuple[tf.distribute.Strategy, str]:
    """Pick the distribution strategy and the Keras precision policy; must run before any op."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    cpu_devices = int(os.environ.get("PIPELINE_CPU_DEVICES", "1"))
    if not gpus and cpu_devices > 1:
        _split_cpu(cpu_devices)
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
    elif cpu_devices > 1:
        names = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(
            devices=names, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    else:
        strategy = tf.distribute.get_strategy()
    use_mixed = {"auto": bool(gpus), "on": True, "off": False}[mixed_precision]
    policy = "mixed_float16" if use_mixed else "float32"
    tf.keras.mixed_precision.set_global_policy(policy)
    log.info(
        "devices: %d GPU(s), %d replica(s), precision %s",
        len(gpus),
        strategy.num_replicas_in_sync,
        policy,
    )
    return strategy, policy
