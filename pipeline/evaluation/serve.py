"""Serve command: a trained model over HTTP, and a page to drop or paste formula images on.

``POST /predict`` takes an image (the raw body, or the form field ``image``; ``?dpi=N`` gives its
scale, else it is estimated as predict does) and answers ``{"latex", "score"}``: the very result
``python -m pipeline predict`` prints for the same bytes, because the image goes through
predict's ``prepare_image`` and is decoded with predict's settings; requests that arrive
together are decoded together (``pipeline.evaluation.batcher``).
``POST /render`` draws a formula with the render stage's own TeX chain (safety check, timeouts,
the model's font, at a dpi made for reading) and answers a PNG, so the page shows what the
LaTeX looks like without any script from outside this machine. ``GET /`` is the page,
``GET /health`` the model and the counts. A refused request gets a 4xx status and
``{"error": reason}``, with predict's reasons for images it cannot take.

It lives in the evaluation half because it uses both earlier halves' commands (predict's
preprocessing, the render stage's drawing), which a module of their own halves may not import.

Usage: ``python -m pipeline serve [--model DIR] [--host H] [--port N] [--beam-width N]
[--max-batch N] [--batch-wait-ms MS] [--max-bytes N]``
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import signal
import threading
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline import cli
from pipeline.config import RenderSettings
from pipeline.corpus import render
from pipeline.evaluation import uploads
from pipeline.evaluation.batcher import Batcher
from pipeline.evaluation.uploads import Refused
from pipeline.model import bundle, usage
from pipeline.model.decode import DecodeSettings
from pipeline.model.predict import ImageError, ModelInput, decode_images, prepare_image

log = logging.getLogger("pipeline")

PAGE = importlib.resources.files("pipeline.evaluation").joinpath("static", "index.html")
JSON_TYPE = "application/json"
MAX_RENDER_BYTES = 64 * 1024  # a formula's JSON; texsafe refuses long formulas anyway
DISPLAY_DPI = 200  # renders for a person to read, whatever dpi the model was trained at
COUNTS = ("requests", "predicted", "rendered", "refused", "failed")


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # the largest upload read
    max_batch: int  # images decoded together at most
    wait_s: float  # how long the decoding thread gathers images after the first


class Service:
    """What the handlers share: the model's input rules, the decoding thread, the renderer,
    and the counts (requests in, predicted, rendered, refused, failed) that ``/health`` shows
    and the shutdown line logs."""

    def __init__(
        self, exported: bundle.Bundle, source: Path, decoding: DecodeSettings, limits: Limits
    ) -> None:
        self.limits, self._decoding, self._source = limits, decoding, source
        self._exported = exported
        self._input = ModelInput.of(exported)
        self._render_settings: RenderSettings = replace(
            exported.preprocessing.render_settings(), dpi=DISPLAY_DPI
        )
        decode = partial(
            decode_images, model=exported.model, vocab=exported.vocab, decoding=decoding
        )
        self.batcher = Batcher(decode, limits.max_batch, limits.wait_s)
        self._counts: Counter[str] = Counter()
        self._lock, self._render_lock = threading.Lock(), threading.Lock()
        self.page = PAGE.read_bytes()

    def count(self, what: str) -> int:
        """Add one to a counter; returns the new value (a request's number)."""
        with self._lock:
            self._counts[what] += 1
            return self._counts[what]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {name: self._counts[name] for name in COUNTS}

    def predict(self, data: bytes, label: str, dpi: float | None = None) -> dict[str, Any]:
        """{"latex", "score"} for an image at ``dpi`` (None: estimated, as predict does);
        ImageError (predict's reason) if it cannot be taken."""
        image = prepare_image(data, replace(self._input, input_dpi=dpi))
        prediction = self.batcher.submit(label, image).result()
        if prediction.error is not None:
            raise RuntimeError(prediction.error)
        return {"latex": prediction.latex, "score": prediction.score}

    def render(self, latex: str) -> bytes:
        """The formula drawn by the render stage in the model's font; ValueError saying why not."""
        if not latex.strip():
            raise ValueError("nothing to render: the LaTeX is empty")
        with self._render_lock:  # one TeX run at a time, however many people ask at once
            [result] = render.render_formulas([("formula", latex)], self._render_settings)
        if result.png is None:
            raise ValueError(f"cannot render: {result.reason}: {result.error}")
        return result.png

    def health(self) -> dict[str, Any]:
        record = self._exported.record
        return {
            "status": "ok",
            "model": {
                "folder": str(self._source),
                "variant": self._exported.settings.variant,
                "preset": self._exported.settings.preset,
                "step": record.get("step"),
                "vocab_size": len(self._exported.vocab),
                "dpi": self._exported.preprocessing.dpi,
            },
            "decoding": {
                "beam_width": self._decoding.beam_width,
                "length_penalty": self._decoding.length_penalty,
                "max_len": self._decoding.max_len,
            },
            "limits": {"max_bytes": self.limits.max_bytes, "max_batch": self.limits.max_batch},
            "counts": self.counts(),
            "batches": self.batcher.counts(),
        }

    def close(self) -> None:
        self.batcher.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        super().__init__(address, Handler)
        self.service = service

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    """Routes requests; every refusal is a 4xx with ``{"error": reason}``."""

    server: Server
    server_version = "formula-pipeline"
    ROUTES = {
        ("GET", "/"): "_page",
        ("GET", "/health"): "_health",
        ("POST", "/predict"): "_predict",
        ("POST", "/render"): "_render",
    }

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, a method no route has) in
        the same JSON form as ours."""
        service = self.server.service
        service.count("requests")
        service.count("refused")
        self._send_json(code, {"error": message or HTTPStatus(code).phrase})

    def _dispatch(self, method: str) -> None:
        service = self.server.service
        number = service.count("requests")
        path = urlsplit(self.path).path
        route = self.ROUTES.get((method, path))
        try:
            if route is None:
                self._no_route(path)
            getattr(self, route)(number)
        except Refused as refused:
            service.count("refused")
            self._send_json(refused.status, {"error": str(refused)})
        except Exception as exc:  # noqa: BLE001 - a request's failure is its own answer
            log.exception("serve: %s %s failed", method, path)
            service.count("failed")
            self._send_json(500, {"error": f"internal error: {exc}"})

    def _no_route(self, path: str) -> None:
        allowed = sorted(m for m, p in self.ROUTES if p == path)
        if not allowed:
            raise Refused(404, f"no such endpoint {path!r}; try GET / or POST /predict")
        raise Refused(405, f"{path} accepts {' or '.join(allowed)} only")

    def _page(self, _: int) -> None:
        self._send(200, self.server.service.page, "text/html; charset=utf-8")

    def _health(self, _: int) -> None:
        self._send_json(200, self.server.service.health())

    def _predict(self, number: int) -> None:
        service = self.server.service
        dpi = uploads.given_dpi(urlsplit(self.path).query)
        data = uploads.image_bytes(self.headers, self.rfile.read, service.limits.max_bytes)
        try:
            answer = service.predict(data, f"request {number}", dpi)
        except ImageError as bad:
            raise Refused(400, str(bad)) from None
        service.count("predicted")
        self._send_json(200, answer)

    def _render(self, _: int) -> None:
        service = self.server.service
        length = uploads.content_length(
            self.headers, min(MAX_RENDER_BYTES, service.limits.max_bytes)
        )
        body = self.rfile.read(length)
        if uploads.media_type(self.headers)[0] != JSON_TYPE:
            raise Refused(415, 'send the formula as application/json: {"latex": "..."}')
        try:
            latex = json.loads(body)["latex"]
        except (ValueError, KeyError, TypeError):
            raise Refused(400, 'the body must be JSON {"latex": "..."}') from None
        if not isinstance(latex, str):
            raise Refused(400, '"latex" must be a string')
        try:
            png = service.render(latex)
        except ValueError as reason:
            raise Refused(422, str(reason)) from None
        service.count("rendered")
        self._send(200, png, "image/png")

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self._send(status, body, f"{JSON_TYPE}; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(m for m, p in self.ROUTES if p == self._path))
        self.end_headers()
        self.wfile.write(body)

    @property
    def _path(self) -> str:
        return urlsplit(self.path).path

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.info("serve: %s %s", self.address_string(), format % args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline serve",
        description="Serve a trained model over HTTP, with a page to drop or paste images on.",
    )
    usage.add_model_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=16,
        metavar="N",
        help="images decoded together at most (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=10.0,
        metavar="MS",
        help="how long to gather images after the first of a batch (default: %(default)s)",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=16 * 2**20,
        metavar="N",
        help="largest upload accepted, in bytes (default: %(default)s)",
    )
    cli.add_verbose_arg(parser)
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    usage.check_model_args(parser, args)
    for name in ("max_batch", "max_bytes"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    if args.batch_wait_ms < 0:
        parser.error(f"--batch-wait-ms must be >= 0, got {args.batch_wait_ms}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")


def make_service(exported: bundle.Bundle, source: Path, args: argparse.Namespace) -> Service:
    decoding = usage.decode_settings(args, exported, args.max_batch)
    limits = Limits(args.max_bytes, args.max_batch, args.batch_wait_ms / 1000)
    return Service(exported, source, decoding, limits)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    cli.setup_logging()
    exported = usage.load_model(parser, args)
    service = make_service(exported, args.model, args)
    try:
        server = Server((args.host, args.port), service)
    except OSError as exc:
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    for stop in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a shell's `cmd &` ignores it
        signal.signal(stop, _stop)
    log.info("serve: %s on %s (Ctrl+C stops)", args.model, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()
        _log_counts(service)
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # leaves serve_forever in the main thread, through the cleanup


def _log_counts(service: Service) -> None:
    counts, batches = service.counts(), service.batcher.counts()
    log.info(
        "serve: %d requests in, %d predicted, %d rendered, %d refused, %d failed; "
        "%d images decoded in %d batches (largest %d)",
        *(counts[name] for name in COUNTS),
        batches["images"],
        batches["gathered"],
        batches["largest"],
    )
