"""What a result was made from, as digests: the code, and any settings or inputs beside it.

Work that survives an interruption (training checkpoints, finished chunks) is picked up again
only by a run whose digest matches, so a resumed run gives what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


@cache
def code_digest() -> str:
    """The pipeline package's source, every module of it (a superset of what any stage runs)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def digest(*parts: object) -> str:
    """A short digest of JSON-able parts and the code: equal digests mean equal inputs."""
    blob = json.dumps([*parts, code_digest()], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
