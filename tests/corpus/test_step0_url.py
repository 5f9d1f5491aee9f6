"""The README's recipe for a published list, end to end with the real `dvc`: `dvc import-url`
from an HTTP server this test starts on the loopback address, step0 reading the import (gzipped,
digest checked), `dvc update` after the list changes upstream, and the digest catching it."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from pipeline.corpus import step0
from tests.conftest import run

FIRST = b"x ^ { 2 }\na + b\n\\frac { 1 } { 2 }\n"
SECOND = FIRST + b"\\alpha + \\beta\nc - d\n"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is for failures
        pass


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (a free port), and its URL."""
    folder = tmp_path / "published"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def publish(folder: Path, content: bytes, age_s: float) -> str:
    """Write the gzipped list as a publisher would; its digest. The modification time moves with
    each version, as a real file's does (HTTP servers derive validators from it)."""
    path = folder / "formulas.norm.txt.gz"
    path.write_bytes(gzip.compress(content, mtime=0))
    stamp = path.stat().st_mtime - age_s
    os.utime(path, (stamp, stamp))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step0_report(project: Path, sha256: str) -> dict:
    """step0 run as its rule runs it, with step0.input pointed at the import."""
    imported = project / "data" / "formulas.norm.txt.gz"
    settings = {"step0": {"input": str(imported), "sha256": sha256}}
    out = project / "step0"
    args = ["--settings", json.dumps(settings), "--out", str(out / "f.parquet")]
    args += ["--rejected", str(out / "r.parquet"), "--report", str(out / "r.json")]
    assert step0.main(args) == 0
    return json.loads((out / "r.json").read_text())


def test_import_url_then_step0_then_update_then_the_digest_refuses_the_old_pin(tmp_path, served):
    folder, url = served
    first = publish(folder, FIRST, age_s=3600)
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    run("git init -q && dvc init -q", project)
    source = f"{url}/formulas.norm.txt.gz"
    run(["dvc", "import-url", source, "data/formulas.norm.txt.gz"], project)
    record = yaml.safe_load((project / "data" / "formulas.norm.txt.gz.dvc").read_text())
    [dep] = record["deps"]
    assert dep["path"] == source and dep.get("checksum", dep.get("etag"))
    assert step0_report(project, first)["formulas"] == 3

    second = publish(folder, SECOND, age_s=0)
    run(["dvc", "update", "data/formulas.norm.txt.gz.dvc"], project)
    updated = yaml.safe_load((project / "data" / "formulas.norm.txt.gz.dvc").read_text())
    assert updated["deps"][0] != dep and updated["outs"] != record["outs"]
    imported = project / "data" / "formulas.norm.txt.gz"
    assert gzip.decompress(imported.read_bytes()) == SECOND
    with pytest.raises(SystemExit) as refused:
        step0_report(project, first)
    assert str(refused.value) == (
        f"step0.sha256: {imported} has sha256 {second}, expected {first}: the list is not the "
        "one the params name (changed upstream, or truncated); check the source, then update "
        "step0.sha256"
    )
    assert step0_report(project, second)["formulas"] == 5
