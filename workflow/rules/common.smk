# Helpers shared by every rule file.
import json


def settings(*names):
    """The params a stage reads, as JSON for its --settings: whole sections ("crop") or single
    keys ("render.dpi"). The one way stages receive settings, and a rerun trigger."""
    chosen = {}
    for name in names:
        section, _, key = name.partition(".")
        if key:
            chosen.setdefault(section, {})[key] = config[section][key]
        else:
            chosen[section] = config[section]
    return json.dumps(chosen, sort_keys=True)


def launcher(wildcards, resources):
    """How a distributed stage starts: once per SLURM task when the profile gives it several
    (`tasks` and `mpi: srun`, which also tells the SLURM plugin not to start it once itself),
    each task one worker of the stage's MultiWorkerMirroredStrategy; otherwise directly."""
    launch = resources.get("mpi", "")
    return f"{launch} --ntasks {resources.get('tasks', 1)} " if launch else ""


CHUNKS = [f"{i:03d}" for i in range(int(config["render"]["chunks"]))]

# Finished render and crop chunks, kept by content so a killed run resumes where it stopped
# (DVC clears a stage's outputs before rerunning it). Not an output: nothing depends on it.
CHUNK_CACHE = ".cache/chunks"


wildcard_constraints:
    chunk=r"\d{3}",
