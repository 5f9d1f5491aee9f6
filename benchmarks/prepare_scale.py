"""Full data preparation at scale: generate + step0 -> render -> crop -> vocab -> shards.

Runs `dvc repro shards` (which runs Snakemake with every core) in a throw-away copy of the
project on ``--count`` generated formulas, and reports wall-clock time per stage and in total,
and the peak memory of the whole process tree (the sum of resident set sizes, sampled every
50 ms).

    python benchmarks/prepare_scale.py [--count 100000] [--chunks 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import copy_project, init_git, tool_env  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root_pid: int) -> int:
    """Bytes resident in ``root_pid`` and all its descendants right now."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * PAGE
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


class PeakMemory(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.05)


def stage_times(stamps: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds per stage from the moments DVC announced each one."""
    marks = [
        (t, m.group(1)) for t, line in stamps if (m := re.search(r"Running stage '(\w+)'", line))
    ]
    times = {}
    for (t, name), (t_next, _) in zip(marks, marks[1:] + [(stamps[-1][0], "")], strict=True):
        times[name] = round(t_next - t, 1)
    return times


def run_repro(project: Path) -> tuple[float, int, dict[str, float], str]:
    proc = subprocess.Popen(
        ["dvc", "repro", "shards"],
        cwd=project,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = PeakMemory(proc.pid)
    start = time.perf_counter()
    sampler.start()
    stamps = [(time.perf_counter(), line) for line in proc.stdout]
    proc.wait()
    wall = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    output = "".join(line for _, line in stamps)
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{output[-4000:]}")
    return (
        wall,
        sampler.peak,
        stage_times(stamps + [(time.perf_counter(), "")]),
        output,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prepare-scale-") as tmp:
        project = copy_project(Path(tmp))
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["generate"]["count"] = args.count
        params["render"]["chunks"] = args.chunks
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        init_git(project, "bench")
        wall, peak, stages, _ = run_repro(project)
        report = json.loads((project / "reports" / "data.json").read_text())
    figures = {
        "formulas": args.count,
        "cores": len(os.sched_getaffinity(0)),
        "wall_s": round(wall, 1),
        "peak_memory_mb": round(peak / 2**20),
        "stage_s": stages,
        "rows": report["rows"],
        "failed_by_reason": report["failed_by_reason"],
        "filtered_by_reason": report["filtered_by_reason"],
    }
    print(
        f"data preparation of {args.count} generated formulas on {figures['cores']} cores "
        f"(dvc repro shards, {args.chunks} render chunks)"
    )
    print(f"  wall-clock  : {figures['wall_s']} s   (target: at most 300 s)")
    print(f"  peak memory : {figures['peak_memory_mb']} MB   (target: at most 2048 MB)")
    print(f"  per stage   : {stages}")
    print(
        f"  rows {report['rows']}, failed {report['failed_by_reason']}, "
        f"filtered {report['filtered_by_reason']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
