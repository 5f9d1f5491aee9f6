"""The whole workflow on a real SLURM, through workflow/profiles/slurm-cpu.

The cluster is one node, this host, started by the test from Debian's packages (munged,
slurmctld, slurmd; `make test-slurm` installs them) with everything in a temporary folder: no
accounting daemon, like the clusters the profile's `slurm-status-command: squeue` is for. Every
job must go through SLURM, the outputs must be the bytes a local run makes, `dvc commit -f` must
leave `dvc status` clean, and training must also run as two SLURM tasks (two workers).

Not part of `make test` (the `slurm` marker is deselected there); `make test-slurm` runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pipeline.model import bundle
from tests.conftest import run, tool_env
from tests.test_end_to_end import SMALL, make_project

pytestmark = pytest.mark.slurm

SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol")
PARTITION = "pipetest"  # not the default partition: jobs reach it only through SBATCH_PARTITION
# This node has few CPUs: the train job asks for what it has (`--set-resources` replaces the
# profile's set-resources, so these are all of train's).
TRAIN_HERE = ["train:cpus_per_task=2", "train:mem_mb=4000", "train:runtime=30"]
TWO_WORKERS = ["train:cpus_per_task=1", "train:mem_mb=4000", "train:runtime=30"] + [
    "train:tasks=2",
    "train:mpi=srun",
]
SLURM_RUN = [
    "snakemake",
    "--profile",
    "workflow/profiles/slurm-cpu",
    # The plugin's pause between looks at its jobs: 40 s, and 10 s more after each look that
    # finds none finished (up to 180 s); these jobs take 5 s in SLURM (20 s to train).
    "--slurm-init-seconds-before-status-checks",
    "10",
    "--slurm-keep-successful-logs",  # SLURM's own output file of every job, for the checks
]
CHUNKS = SMALL["render"]["chunks"]
EXPECTED_JOBS = Counter(
    generate=1,
    normalize=1,
    step0=1,
    render_chunk=CHUNKS,
    crop_chunk=CHUNKS,
    vocab=1,
    shards=1,
    train=1,
    evaluate=1,
)
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@dataclass
class Cluster:
    """A single-node SLURM whose files all live in ``root``; ``env`` is what its users set."""

    root: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def query(self, *args: str) -> str:
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=30
        ).stdout

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge): id -> (comment, state).
        The SLURM plugin puts `rule_<name>` in each job's comment."""
        out = self.query("squeue", "--states=all", "--noheader", "--format=%i|%k|%T")
        return {i: (c, s) for i, c, s in (line.split("|") for line in out.split())}

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((self.root / "log").glob("*"))
        )


def _free_port(span: int = 1) -> int:
    """A port P with P..P+span-1 free now (the two workers take PIPELINE_PORT_BASE and +1)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + span > 65535:
            continue
        try:
            for port in range(base, base + span):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def _memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return kib // 1024


def slurm_conf(root: Path, host: str, cpus: int, memory_mb: int) -> str:
    """One node (this host, over loopback), one partition, no accounting, every path in root."""
    real_cpus = os.cpu_count() or 1
    lines = [
        "ClusterName=pipelinetest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={root}/munge/munge.socket",
        "CredType=cred/munge",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "MailProg=/bin/true",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        # SLURM's default, stated: squeue shows a finished job this long, and the plugin (with
        # slurm-status-command: squeue) must see it finished; it polls at most 180 s apart.
        "MinJobAge=300",
        f"NodeName={host} NodeHostname={host} NodeAddr=127.0.0.1"
        f" CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=NO MaxTime=INFINITE State=UP",
    ]
    if cpus > real_cpus:
        lines.append("SlurmdParameters=config_overrides")  # more CPUs than the host: a test
    return "\n".join(lines) + "\n"


def _wait(cluster: Cluster, ready, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [name for name, proc in cluster.procs.items() if proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            pytest.fail(f"SLURM test cluster: {what} not ready (exited: {dead})\n{cluster.logs()}")
        time.sleep(0.2)


def _start(cluster: Cluster, name: str, *args: str) -> None:
    with open(cluster.root / "log" / f"{name}.out", "w") as log:
        cluster.procs[name] = subprocess.Popen(
            [name, *args],
            cwd=cluster.root,
            env=cluster.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(cluster: Cluster) -> None:
    """Cancel what is left in the partition, then stop the daemons this test started, by pid."""
    if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
        cluster.query("scancel", f"--partition={PARTITION}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            state in ("RUNNING", "COMPLETING", "PENDING") for _, state in cluster.jobs().values()
        ):
            time.sleep(0.5)
    for name in ("slurmd", "slurmctld", "munged"):
        proc = cluster.procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster():
    missing = [p for p in SLURM_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make test-slurm` installs SLURM and munge")
    if os.geteuid() != 0:
        pytest.fail("the SLURM test cluster runs its daemons as root (use `sudo make test-slurm`)")
    # munged wants every folder above its socket searchable by all, so not pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="slurm-test-"))
    root.chmod(0o755)
    for sub in ("munge", "munge-key", "state", "spool", "log", "bin"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o755)
    (root / "munge-key").chmod(0o700)
    key = root / "munge-key" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host, max(os.cpu_count() or 1, 2), _memory_mb() * 9 // 10))
    # The jobstep plugin starts each job's `srun` with SLURM_* variables removed, SLURM_CONF
    # too; a cluster configured at the default path (/etc/slurm) needs nothing, this one does.
    wrapper = root / "bin" / "srun"
    wrapper.write_text(f"#!/bin/sh\nSLURM_CONF='{conf}' exec '{shutil.which('srun')}' \"$@\"\n")
    wrapper.chmod(0o755)
    env = tool_env() | {
        "SLURM_CONF": str(conf),
        "SBATCH_PARTITION": PARTITION,
        "PIPELINE_PORT_BASE": str(_free_port(2)),
        "PATH": f"{root / 'bin'}{os.pathsep}{tool_env()['PATH']}",
    }
    for name in list(os.environ):
        if name.startswith(("SLURM_", "SBATCH_", "SRUN_")) and name not in env:
            env.pop(name, None)
    cluster = Cluster(root, env)
    try:
        _start(
            cluster,
            "munged",
            "--foreground",
            f"--key-file={key}",
            f"--socket={root}/munge/munge.socket",
            f"--pid-file={root}/munge/munged.pid",
            f"--log-file={root}/log/munged.log",
            f"--seed-file={root}/munge-key/seed",
        )
        _wait(cluster, (root / "munge" / "munge.socket").exists, "munged")
        _start(cluster, "slurmctld", "-D", "-f", str(conf))
        _wait(cluster, lambda: "UP" in cluster.query("scontrol", "ping"), "slurmctld")
        _start(cluster, "slurmd", "-D", "-f", str(conf))
        _wait(cluster, lambda: cluster.query("sinfo", "-h", "-o", "%T").strip() == "idle", "slurmd")
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)  # so conftest's run() and tool_env() use the cluster
            for name in set(os.environ) - set(env):
                patch.delenv(name)
            yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


def snakemake(project: Path, *args: str, timeout: float = 600) -> tuple[int, str, float]:
    """(exit status, output, seconds) of one snakemake run; a run that hangs fails the test."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            list(args), cwd=project, env=tool_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as hung:
        output = (hung.stdout or b"").decode(errors="replace")
        pytest.fail(f"{' '.join(args)} still running after {timeout} s\n{output[-4000:]}")
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def submissions(output: str) -> dict[str, tuple[str, Path]]:
    """SLURM job id -> (rule, SLURM's output file), from the plugin's line for each job."""
    return {
        jobid: (re.search(r"/rule_(\w+)/", log).group(1), Path(log))
        for jobid, log in SUBMITTED.findall(output)
    }


def lock_outs(project: Path) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])}


@pytest.fixture(scope="module")
def workflow_runs(cluster, tmp_path_factory) -> dict:
    """The small workflow run locally and through SLURM, each in its own fresh project."""
    local = make_project(tmp_path_factory.mktemp("local") / "p")
    status, output, local_s = snakemake(local, "snakemake", "--cores", "2")
    assert status == 0, output[-4000:]
    project = make_project(tmp_path_factory.mktemp("slurm") / "p")
    status, output, slurm_s = snakemake(
        project, *SLURM_RUN, "--set-resources", *TRAIN_HERE, timeout=480
    )
    assert status == 0, output[-6000:] + cluster.logs()
    return {
        "local": local,
        "project": project,
        "output": output,
        "jobs": cluster.jobs(),
        "local_s": local_s,
        "slurm_s": slurm_s,
    }


def test_every_job_of_the_workflow_runs_as_a_slurm_job(workflow_runs):
    output, known = workflow_runs["output"], workflow_runs["jobs"]
    submitted = submissions(output)
    assert Counter(rule for rule, _ in submitted.values()) == EXPECTED_JOBS, output[-4000:]
    assert re.findall(r"^localrule (\w+):", output, re.MULTILINE) == ["all"]
    if workflow_runs["slurm_s"] < 240:  # every job ended less than MinJobAge (300 s) ago
        assert set(submitted) <= set(known), (submitted, known)
    for jobid, (rule, log) in submitted.items():
        # SLURM's own record: the job's output file (slurmd wrote it) and the job's state
        assert log.name == f"{jobid}.log" and f"(Rule: {rule})" in log.read_text(), log
        if jobid in known:
            comment, state = known[jobid]  # rule_<name>[_wildcards_<values>]
            assert comment.startswith(f"rule_{rule}") and state == "COMPLETED", known[jobid]
    print(
        f"\nworkflow on {SMALL['generate']['count']} formulas: local"
        f" {workflow_runs['local_s']:.0f} s, through SLURM {workflow_runs['slurm_s']:.0f} s,"
        f" {len(submitted)} SLURM jobs"
    )


def test_slurm_outputs_equal_a_local_run_and_dvc_records_them(workflow_runs):
    local, project = workflow_runs["local"], workflow_runs["project"]
    for folder in (local, project):
        run(["dvc", "commit", "-f"], folder)
    assert "up to date" in run(["dvc", "status"], project).stdout
    # data, model, predictions, report, metrics and curves: the same bytes (training is
    # deterministic on one CPU type, and its budget is counted in steps)
    assert lock_outs(project) == lock_outs(local)
    assert (project / "metrics.json").read_bytes() == (local / "metrics.json").read_bytes()


@pytest.mark.parametrize(
    ("gpu_partition", "reason"),
    [
        (PARTITION, f"partition {PARTITION}, whose nodes have no GPUs"),
        (None, "partition gpu, which this cluster does not have"),  # the profile's default
    ],
)
def test_a_gpu_request_slurm_cannot_meet_stops_the_run_before_any_job(
    workflow_runs, monkeypatch, gpu_partition, reason
):
    """workflow/profiles/slurm asks for a GPU for train; this cluster has none."""
    if gpu_partition:
        monkeypatch.setenv("PIPELINE_GPU_PARTITION", gpu_partition)
    else:
        monkeypatch.delenv("PIPELINE_GPU_PARTITION", raising=False)
    status, output, _ = snakemake(
        workflow_runs["project"], "snakemake", "--profile", "workflow/profiles/slurm",
        "--forcerun", "train", "--", "train", timeout=120,
    )  # fmt: skip
    assert status != 0
    assert f"train asks SLURM for 1 GPU(s) in {reason}" in output, output[-4000:]
    assert "workflow/profiles/slurm-cpu" in output
    assert not SUBMITTED.search(output)


def test_training_as_two_slurm_tasks_runs_two_workers(workflow_runs, cluster):
    project = workflow_runs["project"]
    started = time.time()
    status, output, seconds = snakemake(
        project, *SLURM_RUN, "--set-resources", *TWO_WORKERS, "--forcerun", "train",
        "--", "train", timeout=300,
    )  # fmt: skip
    log = (project / "logs" / "train.log").read_text()
    assert status == 0, output[-4000:] + log[-4000:]
    assert [rule for rule, _ in submissions(output).values()] == ["train"]
    for worker in (0, 1):
        assert f"worker {worker} of 2, 2 replica(s)" in log, log[-4000:]
    model = project / "models" / "best"
    assert model.stat().st_mtime >= started
    assert bundle.read_record(model)["step"] == SMALL["train"]["max_steps"]
    print(f"\ntraining as 2 SLURM tasks: {seconds:.0f} s")
