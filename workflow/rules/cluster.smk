# Checks for runs through a cluster executor. No rule and no stage's result depends on this file,
# so it is not among any DVC stage's deps.
import subprocess

from snakemake.exceptions import WorkflowError


def gpu_requests_unmet(jobs):
    """Why SLURM could never start a job to run that asks for GPUs, per such job: its partition
    (no partition: the default one) is unknown, or no node of it has a gpu GRES (`sinfo`)."""
    unmet, verdicts = [], {}
    for job in jobs:
        gpus = job.resources.get("gpu", 0)
        if not isinstance(gpus, int) or gpus <= 0:
            continue
        partition = str(job.resources.get("slurm_partition") or "")
        if partition not in verdicts:
            listed = subprocess.run(
                ["sinfo", "--noheader", "--format=%P %G"]
                + ([f"--partition={partition}"] if partition else []),
                capture_output=True,
                text=True,
                timeout=30,
            )
            rows = [line.split() + [""] for line in listed.stdout.splitlines() if line.strip()]
            if not partition:
                rows = [row for row in rows if row[0].endswith("*")]
            name = f"partition {partition}" if partition else "the default partition"
            if listed.returncode != 0:
                verdicts[partition] = None  # sinfo cannot tell; sbatch will
            elif not rows:
                verdicts[partition] = f"{name}, which this cluster does not have"
            elif not any("gpu" in row[1] for row in rows):
                verdicts[partition] = f"{name}, whose nodes have no GPUs (no gpu GRES in sinfo)"
            else:
                verdicts[partition] = None
        if verdicts[partition]:
            unmet.append(f"{job.rule.name} asks SLURM for {gpus} GPU(s) in {verdicts[partition]}")
    return unmet


onstart:
    # Under SLURM, a GPU request no node of its partition can meet is refused by sbatch only
    # when the job's turn comes (train: after every data stage); say so before anything runs.
    plugin = getattr(workflow, "executor_plugin", None)
    dag = getattr(workflow, "dag", None)
    if getattr(plugin, "name", "") == "slurm" and hasattr(dag, "needrun_jobs"):
        unmet = gpu_requests_unmet(dag.needrun_jobs())
        if unmet:
            raise WorkflowError(
                "; ".join(unmet) + ". Train on CPUs with --profile workflow/profiles/slurm-cpu,"
                " or set PIPELINE_GPU_PARTITION to a partition with GPUs."
            )
