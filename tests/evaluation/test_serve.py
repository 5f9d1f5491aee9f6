"""The serve command: a real server (`python -m pipeline serve` on 127.0.0.1) with the tiny
trained model, asked over HTTP and through its page in a real headless Chromium."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from pipeline.config import RenderSettings
from pipeline.corpus import render, texsafe
from pipeline.model import bundle, predict
from pipeline.model.decode import DecodeSettings
from tests.browser import Browser, Page
from tests.conftest import ROOT, TINY_PREPROCESSING, tool_env

BEAM = 3
MAX_BATCH = 4
MAX_BYTES = 200_000
FORMULA = r"\frac { a } { b } + \sqrt { c }"  # renders: the page's edited-LaTeX check


class Running:
    """The server process; its address is known once it has started (``url`` waits for it),
    so the test's own set-up runs while TensorFlow starts in the server."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=tool_env(), stdout=stderr, stderr=stderr
            )

    @cached_property
    def url(self) -> str:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = re.search(r" on (http://[\d.]+:\d+/) ", self.log.read_text())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                pytest.fail(f"serve exited {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        pytest.fail(f"serve did not start in 90 s:\n{self.tail()}")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname

    @property
    def port(self) -> int:
        return urlsplit(self.url).port

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> str:
        """Ctrl+C, as a person stops it; the last line it logged."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=30) == 0, self.tail()
        return self.log.read_text().strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(trained_tiny, tmp_path_factory) -> Iterator[Running]:
    """One server for the module: beam 3, batches of 4 gathered for 500 ms, 200 kB uploads."""
    work, _ = trained_tiny
    command = [sys.executable, "-m", "pipeline", "serve", "--model", str(work / "model")]
    command += ["--port", "0", "--beam-width", str(BEAM), "--max-batch", str(MAX_BATCH)]
    command += ["--batch-wait-ms", "500", "--max-bytes", str(MAX_BYTES)]
    running = Running(command, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield running
    finally:
        last = running.stop()
    assert re.search(r"serve: \d+ requests in, \d+ predicted, \d+ rendered, \d+ refused", last)


@pytest.fixture(scope="module")
def loaded(trained_tiny) -> bundle.Bundle:
    work, _ = trained_tiny
    return bundle.load(work / "model")


@pytest.fixture(scope="module")
def page_png() -> bytes:
    """A formula page as the render stage draws it at the tiny model's dpi: a clean input."""
    settings = RenderSettings(dpi=TINY_PREPROCESSING["dpi"])
    [result] = render.render_formulas([("x", r"x ^ { 2 } + y ^ { 2 } = z ^ { 2 }")], settings)
    assert result.png is not None, result.error
    return result.png


@pytest.fixture(scope="module")
def expected(loaded, page_png, tmp_path_factory) -> predict.Prediction:
    """What `predict` gives for the page's bytes, with the server's decoding settings."""
    file = tmp_path_factory.mktemp("predict") / "page.png"
    file.write_bytes(page_png)
    return predicted(file, loaded)


def predicted(file: Path, loaded: bundle.Bundle) -> predict.Prediction:
    """`predict`'s answer for a file, decoded as the server decodes."""
    decoding = DecodeSettings(loaded.max_len, beam_width=BEAM, length_penalty=0.6, batch_size=4)
    settings = predict.ModelInput.of(loaded)
    [result] = predict.predict_paths([file], loaded.model, loaded.vocab, settings, decoding)
    assert result.error is None
    return result


def post(server: Running, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request("POST", path, body, {"Content-Type": content_type})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    assert response.getheader("Content-Type").startswith("application/json"), data[:200]
    return response.status, json.loads(data)


def get(server: Running, path: str, method: str = "GET") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request(method, path)
    return connection.getresponse()


def health(server: Running) -> dict:
    return json.loads(get(server, "/health").read())


def form(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def raw_request(server: Running, head: str) -> tuple[int, dict]:
    """Headers only, no body: the answer must come without the server reading one."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# --- HTTP -------------------------------------------------------------------------------------


def test_an_image_gets_what_predict_gives_for_the_same_bytes(server, page_png, expected):
    answers = [post(server, "/predict", page_png, "image/png")]
    answers.append(post(server, "/predict", *form("image", "f.png", page_png, "image/png")))
    for status, answer in answers:
        assert status == 200, answer
        assert answer == {"latex": expected.latex, "score": pytest.approx(expected.score, 1e-5)}
    at_half_scale = post(server, "/predict?dpi=50", page_png, "image/png")  # twice as large
    assert at_half_scale[0] == 200 and isinstance(at_half_scale[1]["latex"], str)
    info = health(server)
    assert info["model"]["dpi"] == TINY_PREPROCESSING["dpi"]
    assert info["decoding"]["beam_width"] == BEAM


def refusal(data: bytes, loaded: bundle.Bundle) -> str:
    """predict's reason for not taking these bytes."""
    with pytest.raises(predict.ImageError) as reason:
        predict.prepare_image(data, predict.ModelInput.of(loaded))
    return str(reason.value)


def test_bad_uploads_get_a_4xx_with_the_reason(server, page_png, loaded):
    corrupt = page_png[: len(page_png) // 2]
    blank = png_bytes(np.full((30, 90), 255, np.uint8))
    before = health(server)["counts"]
    cases = [
        (post(server, "/predict", corrupt, "image/png"), 400, refusal(corrupt, loaded)),
        (post(server, "/predict", b"GIF89a...", "image/jpeg"), 400, "not a PNG or JPEG image"),
        (post(server, "/predict", blank, "image/png"), 400, "no ink: the image is blank"),
        (post(server, "/predict", page_png, "text/plain"), 415, "unsupported Content-Type"),
        (post(server, "/predict", *form("image", "a.txt", b"hi", "text/plain")), 415, "text/plain"),
        (
            post(server, "/predict", *form("file", "f.png", page_png, "image/png")),
            400,
            "no 'image'",
        ),
        (post(server, "/predict?dpi=abc", page_png, "image/png"), 400, "'abc' is not a number"),
        (post(server, "/predict?dpi=0", page_png, "image/png"), 400, "dpi must be between 10"),
        (post(server, "/render", b'{"latex": "{ x"}', "application/json"), 422, "unbalanced"),
        (post(server, "/nowhere", b"", "image/png"), 404, "no such endpoint '/nowhere'"),
    ]
    too_big = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    cases += [
        (raw_request(server, too_big + "Content-Length: 1000000000\r\n\r\n"), 413, "limit"),
        (raw_request(server, too_big + "\r\n"), 411, "Content-Length header is required"),
        (raw_request(server, "BREW /predict HTTP/1.1\r\n\r\n"), 501, "Unsupported method"),
    ]
    for (status, answer), want_status, want_reason in cases:
        assert status == want_status, answer
        assert want_reason in answer["error"], answer
    assert "1000000000 bytes, over the 200000-byte limit" in cases[-3][0][1]["error"]
    wrong_method = get(server, "/predict")
    assert wrong_method.status == 405 and wrong_method.getheader("Allow") == "POST"
    counts = health(server)["counts"]
    assert counts["refused"] - before["refused"] == len(cases) + 1
    assert counts["predicted"] == before["predicted"] and counts["failed"] == 0


def test_requests_arriving_together_are_decoded_together(server, page_png, expected):
    before = health(server)["batches"]
    with ThreadPoolExecutor(MAX_BATCH) as pool:
        answers = list(
            pool.map(lambda _: post(server, "/predict", page_png, "image/png"), range(MAX_BATCH))
        )
    assert all(status == 200 and a["latex"] == expected.latex for status, a in answers), answers
    after = health(server)["batches"]
    assert after["images"] - before["images"] == MAX_BATCH
    assert after["gathered"] - before["gathered"] == 1  # one batch of four, not four of one
    assert after["largest"] == MAX_BATCH


def test_render_draws_a_formula_with_the_render_stage(server):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    body = json.dumps({"latex": FORMULA}).encode()
    connection.request("POST", "/render", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "image/png"
    png = response.read()
    [alone] = render.render_formulas([("f", FORMULA)], RenderSettings(dpi=200))
    assert png == alone.png


# --- the page, in Chromium --------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(server) -> Iterator[Page]:
    browser = Browser(server.log.with_name("chromium.log"))
    try:
        page = browser.open(server.url)
        page.wait_for("maxBytes === 200000")  # the page read the server's limit from /health
        yield page
    finally:
        browser.close()


SHOWN = "[$('error').textContent, $('status').textContent, $('render-status').textContent]"


def paste(page: Page, data: bytes, name: str, kind: str, event: str = "paste") -> None:
    """A paste (or drop) of a File made of ``data``, as the browser makes one from the user's."""
    transfer = "clipboardData" if event == "paste" else "dataTransfer"
    make = "ClipboardEvent" if event == "paste" else "DragEvent"
    target = "document.body" if event == "paste" else "$('drop')"
    encoded = base64.b64encode(data).decode()
    page.evaluate(
        f"""(() => {{
        const bytes = Uint8Array.from(atob("{encoded}"), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "{name}", {{type: "{kind}"}}));
        {target}.dispatchEvent(new {make}("{event}", {{{transfer}: transfer, bubbles: true}}));
        }})()"""
    )


def test_the_page_reads_a_pasted_image_and_renders_the_latex(page, page_png, expected):
    paste(page, page_png, "formula.png", "image/png")
    page.wait_for("!$('result').hidden", show=SHOWN)
    assert page.evaluate("$('latex').value") == expected.latex
    assert page.evaluate("$('score').textContent") == f"{expected.score:.4f}"
    unsafe = texsafe.check_formula(expected.latex)  # the tiny model's output seldom renders
    if unsafe is None:
        page.wait_for("$('rendered').naturalWidth > 0", show=SHOWN)
    else:
        shows = "$('render-status').textContent"
        status = page.wait_for(f"{shows}.startsWith('Not rendered') && {shows}", show=SHOWN)
        assert status == f"Not rendered: cannot render: unsafe: {unsafe}"
    # a person corrects the LaTeX and renders it: the server's TeX draws it in the page
    page.evaluate(f"$('latex').value = {json.dumps(FORMULA)}; $('render-button').click()")
    size = page.wait_for(
        "!$('rendered').hidden && $('rendered').naturalWidth"
        " && [$('rendered').naturalWidth, $('rendered').naturalHeight]",
        show=SHOWN,
    )
    [alone] = render.render_formulas([("f", FORMULA)], RenderSettings(dpi=200))
    assert tuple(size) == Image.open(io.BytesIO(alone.png)).size
    assert page.evaluate("$('render-status').textContent") == ""


def test_the_page_reads_a_chosen_jpeg(page, page_png, loaded, tmp_path):
    jpeg = tmp_path / "formula.jpg"
    Image.open(io.BytesIO(page_png)).convert("L").save(jpeg, quality=90)
    want = predicted(jpeg, loaded)
    page.evaluate("$('result').hidden = true")  # only the answer to this upload shows it again
    page.choose_file("#file", jpeg)
    page.wait_for("!$('result').hidden", show=SHOWN)
    assert page.evaluate("$('latex').value") == want.latex
    assert page.evaluate("$('score').textContent") == f"{want.score:.4f}"


def test_the_page_shows_why_a_pasted_or_dropped_file_is_refused(page, page_png, loaded):
    paste(page, page_png[:100], "broken.png", "image/png")
    error = page.wait_for("$('error').textContent", show=SHOWN)
    assert error == f"Not read: {refusal(page_png[:100], loaded)}"
    assert page.evaluate("$('result').hidden") is True
    paste(page, b"just some text", "notes.txt", "text/plain", event="drop")
    page.wait_for("$('error').textContent.includes('text/plain')", show=SHOWN)
    page.evaluate("document.body.dispatchEvent(new ClipboardEvent('paste', {bubbles: true}))")
    page.wait_for("$('error').textContent.includes('clipboard holds no image')", show=SHOWN)
