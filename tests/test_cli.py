"""Progress lines: what a person watching a Snakemake log sees of a long stage."""

from __future__ import annotations

import logging
import os
import re
import sys

from pipeline import cli
from pipeline.cli import ProgressLog


def test_progress_lines_say_how_far_how_fast_and_how_long_to_go(caplog):
    progress = ProgressLog("decoding", total=100, unit="images", every_s=0.0)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        progress.advance(25)
        progress.advance(25, samples=800, detail="loss 1.5")
    first, second = caplog.messages
    assert re.fullmatch(r"decoding: 25/100 images, [\d.]+ images/s, about \d+m \d\ds left", first)
    assert re.fullmatch(
        r"decoding: 50/100 images, [\d.]+ samples/s, about \d+m \d\ds left; loss 1.5", second
    )


def test_progress_is_quiet_between_lines(caplog):
    progress = ProgressLog("render", total=10, unit="formulas", every_s=3600, done=2)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        for _ in range(8):
            progress.advance()
    assert progress.done == 10 and caplog.messages == []


# what TensorFlow 2.21 writes to fd 2 while it is imported on an x86-64 Linux machine
TF_STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796081980.638502   29449 port.cc:153] oneDNN custom operations are on. You may \
see slightly different numerical results due to floating-point round-off errors from different \
computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796081980.722598   29449 cpu_feature_guard.cc:227] This TensorFlow binary is \
optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other \
operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796081038.121323   17726 node_def_util.cc:682] NodeDef mentions attribute \
use_unbounded_threadpool which is not in the op definition
"""


def test_tensorflows_start_up_lines_are_dropped_and_everything_else_kept(capfd):
    with cli.without_startup_lines():
        os.write(2, TF_STARTUP.encode())  # as C++ writes it, below Python
        print("some.py:3: UserWarning: kept", file=sys.stderr)
        os.write(2, b"F0000 00:00:1796081038.1 17726 op.cc:1] a fatal error is kept\n")
    assert capfd.readouterr().err == (
        "some.py:3: UserWarning: kept\n"
        "F0000 00:00:1796081038.1 17726 op.cc:1] a fatal error is kept\n"
    )


def test_verbose_is_asked_by_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv(cli.VERBOSE_ENV, raising=False)
    assert not cli.verbose_wanted(["--model", "m", "x.png"])
    assert cli.verbose_wanted(["x.png", "--verbose"])
    for value, wanted in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(cli.VERBOSE_ENV, value)
        assert cli.verbose_wanted([]) is wanted
