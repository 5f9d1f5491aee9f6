"""``python -m pipeline <command> ...``: one entry point that dispatches to each stage's CLI.

Modules are imported lazily so that ``python -m pipeline render`` never pays for TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "generate": "pipeline.generate",
    "step0": "pipeline.step0",
    "render": "pipeline.render",
    "crop": "pipeline.crop",
    "vocab": "pipeline.vocab",
    "shards": "pipeline.shards",
    "train": "pipeline.train",
    "evaluate": "pipeline.evaluate",
    "predict": "pipeline.predict",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: python -m pipeline COMMAND [ARGS]\ncommands: {names}", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
