"""Formula lists as files: plain or gzipped, checked against a published digest, and what a
line of one may hold.

The published lists (I2L-140K's ``formulas.norm.filtered.txt.gz``, Im2latex-90k) are gzipped
downloads; a ``.gz`` name is read through gzip, anything else as it is. A digest is checked on
the file as stored (the download itself, compressed or not), before a line of it is read, so a
list that changed upstream stops the stage that reads it rather than silently changing the data.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

from pipeline.contracts import sha256_file


def is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz")


def check_sha256(path: Path, expected: str | None, key: str = "step0.sha256") -> None:
    """Refuse a file whose digest is not ``expected`` (None: nothing to check)."""
    if expected is None:
        return
    if not path.is_file():
        raise SystemExit(f"{key} checks one list file, and {path} is not a file")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise SystemExit(
            f"{key}: {path} has sha256 {actual}, expected {expected.lower()}: the list is not "
            "the one the params name (changed upstream, or truncated); check the source, then "
            f"update {key}"
        )


def read_bytes(path: Path) -> bytes:
    """The list's bytes, decompressed when its name ends in ``.gz``."""
    if not is_gzip(path):
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise SystemExit(f"{path}: not a readable gzip file ({error})") from None


def read_lines(path: Path) -> list[str]:
    """The file's lines, ended by ``\\n`` (or ``\\r\\n``) only: ``str.splitlines`` would also
    break at U+2028, form feeds and the like, turning one line into two formulas. Bytes that
    are not UTF-8 are kept (as surrogate escapes) so that their line is rejected by number
    rather than the whole file."""
    lines = read_bytes(path).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r").decode("utf-8", "surrogateescape") for line in lines]


# Formulas are tokens of printable ASCII separated by spaces (tabs count as spaces); anything
# else is refused with its line, never folded into a space or split into two formulas.
_NOT_FORMULA_TEXT = re.compile(r"[^\t -~]")
_ESCAPED_BYTES = range(0xDC80, 0xDD00)  # how surrogateescape keeps bytes that are not UTF-8


def line_problem(line: str) -> tuple[str, str] | None:
    """(reason, detail) when a line cannot be a formula, else None."""
    bad = _NOT_FORMULA_TEXT.search(line)
    if bad is None:
        return None
    code, column = ord(bad.group()), bad.start() + 1
    if code in _ESCAPED_BYTES:
        return "not_utf8", f"byte 0x{code - 0xDC00:02x} at column {column} is not UTF-8 text"
    if code < 0x20 or code == 0x7F:
        return "control_character", f"control character \\x{code:02x} at column {column}"
    return "non_ascii", f"non-ASCII character U+{code:04X} at column {column}"
