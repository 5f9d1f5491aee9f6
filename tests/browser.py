"""A real headless Chromium (Debian's ``chromium`` package), driven over the DevTools protocol.

Chromium's ``--remote-debugging-pipe`` speaks the protocol as NUL-terminated JSON on file
descriptors 3 (commands in) and 4 (answers out), so no websocket client, no driver binary and
no browser download is needed: only the package ``make test`` installs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
]


class BrowserError(RuntimeError):
    """Chromium answered a command with an error, or a script in the page threw."""


class Browser:
    """One Chromium process; ``open`` gives a page to drive, ``close`` ends the process."""

    def __init__(self, log: Path) -> None:
        executable = shutil.which("chromium")
        if executable is None:
            pytest.fail("chromium is not installed: `make deps` installs Debian's package")
        self._profile = tempfile.mkdtemp(prefix="chromium-")
        commands_in, self._commands = os.pipe()
        self._answers, answers_out = os.pipe()
        # bash puts the pipes on 3 and 4 for Chromium (preexec_fn is unsafe with threads; dash
        # takes no descriptor above 9).
        script = f'exec "$0" "$@" 3<&{commands_in} 4>&{answers_out}'
        with open(log, "ab") as stderr:
            self._process = subprocess.Popen(
                ["bash", "-c", script, executable, *FLAGS, f"--user-data-dir={self._profile}"],
                pass_fds=(commands_in, answers_out),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        os.close(commands_in)
        os.close(answers_out)
        self._buffer, self._next_id = b"", 0

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        """Send one command and return its result (events in between are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer["result"]

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise BrowserError("chromium closed its DevTools pipe (did it crash?)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str) -> Page:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        self.call("Page.navigate", session, url=url)
        page.wait_for("document.readyState === 'complete'")
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self._process.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._commands)
            os.close(self._answers)
            shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self._browser, self._session = browser, session

    def evaluate(self, expression: str) -> Any:
        """The expression's value in the page (a promise is awaited); BrowserError if it threw."""
        result = self._browser.call(
            "Runtime.evaluate",
            self._session,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or str(details))
        return result["result"].get("value")

    def choose_file(self, selector: str, path: Path) -> None:
        """Set a file input's file, as a person choosing it in the dialog (input and change
        events fire)."""
        call = self._browser.call
        root = call("DOM.getDocument", self._session)["root"]["nodeId"]
        node = call("DOM.querySelector", self._session, nodeId=root, selector=selector)["nodeId"]
        call("DOM.setFileInputFiles", self._session, files=[str(path)], nodeId=node)

    def wait_for(self, condition: str, timeout: float = 20.0, show: str = "''") -> Any:
        """Poll until ``condition`` is truthy in the page; on timeout fail showing ``show``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(condition)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"page never had {condition}; it shows: {self.evaluate(show)!r}")
            time.sleep(0.05)
