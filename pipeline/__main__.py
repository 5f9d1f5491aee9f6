"""``python -m pipeline <command> ...``: one entry point that dispatches to each stage's CLI.

The table below names each command's module; only the chosen one is imported, so that
``python -m pipeline render`` never pays for TensorFlow. It is also how the deps contract
(``tests/test_contract.py``) finds each DVC stage's code. The import happens inside
``cli.quiet_tensorflow``, so TensorFlow's start-up lines stay out of the way unless a command
is given ``--verbose``.
"""

from __future__ import annotations

import importlib
import sys

from pipeline import cli

COMMANDS = {
    "generate": "pipeline.corpus.generate",
    "normalize": "pipeline.corpus.normalize",
    "step0": "pipeline.corpus.step0",
    "render": "pipeline.corpus.render",
    "crop": "pipeline.corpus.crop",
    "vocab": "pipeline.corpus.vocab",
    "shards": "pipeline.corpus.shards",
    "train": "pipeline.model.train",
    "evaluate": "pipeline.evaluation.evaluate",
    "predict": "pipeline.model.predict",
    "export": "pipeline.model.export",
    "serve": "pipeline.evaluation.serve",
    "recipe": "pipeline.recipe",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: python -m pipeline COMMAND [ARGS]\ncommands: {names}", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    with cli.quiet_tensorflow(cli.verbose_wanted(argv[1:])):
        module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
