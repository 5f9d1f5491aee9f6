"""Which cluster a training process joins, from the environment SLURM or TF_CONFIG sets."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.model import devices

CLUSTER_ENV = ("TF_CONFIG", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "PIPELINE_PORT_BASE")


@pytest.fixture(autouse=True)
def alone(monkeypatch):
    for name in CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)


def tf_config(workers: int, index: int, kind: str = "worker") -> str:
    hosts = [f"127.0.0.1:{20000 + i}" for i in range(workers)]
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": kind, "index": index}})


def test_no_cluster_means_training_alone(monkeypatch):
    assert devices.cluster_resolver(gpus=0) is None
    monkeypatch.setenv("TF_CONFIG", tf_config(1, 0))  # a cluster of one is no cluster
    assert devices.cluster_resolver(gpus=0) is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # the batch step of an ordinary job
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert devices.cluster_resolver(gpus=0) is None


def test_tf_config_names_this_worker(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(2, 1))
    resolver = devices.cluster_resolver(gpus=0)
    assert resolver.cluster_spec().as_dict() == {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{not json", "not a cluster description"),
        (tf_config(2, 0, kind="chief"), "only 'worker' tasks"),
        (tf_config(2, 2), "task index 2 is not one of 2 workers"),
    ],
)
def test_unusable_tf_config_is_refused_with_the_reason(monkeypatch, value, reason):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(devices.ClusterError, match=reason):
        devices.cluster_resolver(gpus=0)


def test_a_slurm_step_of_several_tasks_is_a_cluster(monkeypatch):
    """As ``srun --ntasks 4`` over two nodes sets it; GPUs stay as SLURM bound them."""
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2)")
    monkeypatch.setenv("PIPELINE_PORT_BASE", "9100")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    resolver = devices.cluster_resolver(gpus=1)
    assert resolver.cluster_spec().as_dict() == {
        "worker": ["gpu07:9100", "gpu07:9101", "gpu08:9100", "gpu08:9101"]
    }
    assert resolver.task_id == 3
    assert resolver.num_accelerators() == {"GPU": 1}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"  # not reassigned


def test_a_slurm_step_on_cpu_nodes_is_a_cluster_without_accelerators(monkeypatch):
    """TensorFlow's own resolver fails here (``range()`` with a step of 0 GPUs per task)."""
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "cpu01")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2")
    monkeypatch.delenv("PIPELINE_PORT_BASE", raising=False)
    resolver = devices.cluster_resolver(gpus=0)
    assert resolver.cluster_spec().as_dict() == {"worker": ["cpu01:8888", "cpu01:8889"]}
    assert resolver.task_id == 1
    assert resolver.num_accelerators() == {"GPU": 0}


@pytest.mark.parametrize(
    ("asked", "gpus", "policy"),
    [
        ("auto", False, "float32"),
        ("auto", True, "mixed_float16"),
        ("on", False, "mixed_float16"),
        ("off", True, "float32"),
        ("bf16", False, "mixed_bfloat16"),
        ("bf16", True, "mixed_bfloat16"),
    ],
)
def test_precision_policy_follows_the_param_and_the_devices(asked, gpus, policy):
    assert devices.precision_policy(asked, gpus) == policy
