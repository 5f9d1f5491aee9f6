"""Progress lines: what a person watching a Snakemake log sees of a long stage."""

from __future__ import annotations

import logging
import re

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
