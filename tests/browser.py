"""Headless Chromium for the HTML report's tests: the page loaded the way a user opens it (scripts run), its DOM
dumped or a screenshot taken; or driven over the DevTools protocol (`DevTools`) for a page that draws after it
loads. Tests that need it are marked `needs_chromium`."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless check needs Debian's chromium "
                                    "(/usr/bin/chromium): apt-get install -y chromium")


def chromium(url: str, tmp_path: Path, *args: str) -> str:
    """Load `url` in headless Chromium the way a user would (scripts run) and return its stdout."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: the browser reads
    commands from its fd 3 and writes replies and events to its fd 4, each a JSON message ended by a NUL byte), for
    pages that draw after they load: open one, run scripts in it, take screenshots when it is ready. Use it as a
    context manager: the browser and its child processes end on exit, whatever happened."""

    def __init__(self, tmp_path: Path, width: int = 1600, height: int = 1000) -> None:
        ours, theirs = os.pipe(), os.pipe()  # (browser reads, we write), (we read, browser writes)
        # Above fd 9, so that placing them at 3 and 4 in the child overwrites neither.
        reads, writes = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (ours[0], theirs[1]))

        def place() -> None:
            os.dup2(reads, 3)
            os.dup2(writes, 4)

        cmd = [str(CHROMIUM), "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
               "--enable-unsafe-swiftshader", "--remote-debugging-pipe", "--no-first-run", "--disable-quic",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--window-size={width},{height}", f"--user-data-dir={tmp_path / 'profile'}", "about:blank"]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(3, 4), preexec_fn=place, start_new_session=True,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            os.close(ours[1])
            os.close(theirs[0])
            raise
        finally:
            for fd in (ours[0], theirs[1], reads, writes):
                os.close(fd)
        self.send, self.receive = ours[1], theirs[0]
        self.size, self.buffer, self.last = (width, height), b"", 0

    def __enter__(self) -> DevTools:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close", timeout=10)
            self.proc.wait(10)
        except (OSError, RuntimeError, EOFError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            os.close(self.send)
            os.close(self.receive)

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """The result of one command (in the page of `session` when given); events that come first are dropped."""
        self.last += 1
        message: dict[str, Any] = {"id": self.last, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.send, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self.buffer:
                if not select.select([self.receive], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise TimeoutError(f"{method}: no answer from Chromium within {timeout} s")
                chunk = os.read(self.receive, 1 << 20)
                if not chunk:
                    raise EOFError(f"{method}: Chromium closed the pipe")
                self.buffer += chunk
            raw, _, self.buffer = self.buffer.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self.last:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> str:
        """Open `url` in a new page; returns the session to address that page with."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        width, height = self.size
        self.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        reply = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 30) -> Any:
        """The first truthy value of `expression`, polled; AssertionError when none comes within `timeout` s."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(session, expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {expression}")
            time.sleep(0.25)
        return value

    def screenshot(self, session: str, clip: dict[str, float] | None = None) -> bytes:
        """A PNG of the page, or of the `clip` rectangle (x, y, width, height in CSS pixels) of it."""
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", session, **params)["data"])
