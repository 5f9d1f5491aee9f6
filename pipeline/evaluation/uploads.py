"""What an HTTP upload must look like before its bytes are read: length, type, form field.

``serve`` takes an image as the raw body of a request (``image/png`` or ``image/jpeg``) or as the
field ``image`` of a ``multipart/form-data`` form, the two ways a browser or ``curl`` sends a
file. The declared length is checked before anything is read, so a client cannot make the
server buffer more than its limit; everything else about the bytes (corrupt, blank, too large
a formula) is predict's to judge, with predict's reasons.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from pipeline.corpus import screenshot

IMAGE_TYPES = ("image/png", "image/jpeg")
FORM_TYPE = "multipart/form-data"
FIELD = "image"


class Refused(ValueError):
    """A request the server will not serve: the HTTP status (4xx) and the reason it answers.

    Raised here for uploads it will not read, and by ``serve`` for everything else it refuses."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def content_length(headers: Mapping[str, str], max_bytes: int) -> int:
    """The body's declared size, refused when missing (411) or over ``max_bytes`` (413)."""
    if headers.get("Transfer-Encoding"):
        raise Refused(411, "send the body with a Content-Length (chunked is not accepted)")
    raw = headers.get("Content-Length")
    if raw is None:
        raise Refused(411, "a Content-Length header is required")
    if not raw.strip().isdigit():
        raise Refused(400, f"Content-Length {raw!r} is not a number of bytes")
    length = int(raw)
    if length > max_bytes:
        raise Refused(413, f"the body is {length} bytes, over the {max_bytes}-byte limit")
    return length


def media_type(headers: Mapping[str, str]) -> tuple[str, str]:
    """The Content-Type without its parameters, lower-cased, and its ``boundary`` (forms)."""
    raw = headers.get("Content-Type", "")
    message = email.message.Message()
    message["Content-Type"] = raw
    boundary = message.get_param("boundary")
    return raw.split(";")[0].strip().lower(), boundary if isinstance(boundary, str) else ""


def check_image_type(headers: Mapping[str, str]) -> None:
    """Refuse (415) a body that is declared neither an image we read nor a form."""
    kind, _ = media_type(headers)
    if kind not in (*IMAGE_TYPES, FORM_TYPE):
        accepted = ", ".join((*IMAGE_TYPES, FORM_TYPE))
        raise Refused(415, f"unsupported Content-Type {kind or '(none)'!r}; send {accepted}")


def image_bytes(headers: Mapping[str, str], read: Callable[[int], bytes], max_bytes: int) -> bytes:
    """The uploaded image's bytes: the body itself, or the form's ``image`` field.

    ``read(n)`` reads the body; it is called only once the length and type are acceptable.
    """
    length = content_length(headers, max_bytes)
    check_image_type(headers)
    body = read(length)
    if len(body) < length:
        raise Refused(400, f"the body ended after {len(body)} of {length} bytes")
    kind, boundary = media_type(headers)
    return form_field(body, boundary, FIELD) if kind == FORM_TYPE else body


def form_field(body: bytes, boundary: str, name: str) -> bytes:
    """The content of form field ``name`` in a multipart/form-data body (RFC 7578).

    Its part's own Content-Type, when given, must be an image type we read (415 otherwise).
    """
    if not boundary:
        raise Refused(400, "the multipart/form-data Content-Type has no boundary")
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, separator, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise Refused(400, "a part of the form has no blank line after its headers")
        headers = _part_headers(head.decode("latin-1"))
        disposition = email.message.Message()
        disposition["Content-Disposition"] = headers.get("content-disposition", "")
        if disposition.get_param("name", header="Content-Disposition") != name:
            continue
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind not in IMAGE_TYPES:
            raise Refused(415, f"the form's {name!r} file is {kind!r}, not PNG or JPEG")
        return content.removesuffix(b"\r\n")
    raise Refused(400, f"the form has no {name!r} field")


def _part_headers(head: str) -> dict[str, str]:
    lines = (line.partition(":") for line in head.split("\r\n") if line)
    return {key.strip().lower(): value.strip() for key, _, value in lines}


def given_dpi(query: str) -> float | None:
    """``?dpi=N``: the image's scale when the person knows it (as ``predict --dpi``); 400 when
    it is not a usable number."""
    values = parse_qs(query).get("dpi")
    if not values:
        return None
    try:
        dpi = float(values[-1])
    except ValueError:
        raise Refused(400, f"dpi {values[-1]!r} is not a number") from None
    if problem := screenshot.dpi_problem(dpi):
        raise Refused(400, f"dpi {problem}")
    return dpi
