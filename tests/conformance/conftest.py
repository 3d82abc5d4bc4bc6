"""Fixtures: a real Palaver server process per module (or per test, for restarts) and a `twilio` client for it.

The server binary comes from PALAVER_BIN (default: target/debug/palaver). It listens on a free port and prints
`listening on http://…` when ready.
"""
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from twilio.rest import Client

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PALAVER_BIN", str(REPO / "target" / "debug" / "palaver"))


class PalaverServer:
    """One server process on its own data directory; can be stopped and started again on the same data."""

    def __init__(self, extra_env=None):
        self.extra_env = dict(extra_env or {})
        self.data_dir = tempfile.mkdtemp(prefix="palaver-conformance-")
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.process = None
        self.url = None
        self.output = []

    def start(self):
        env = dict(os.environ)
        env.update(
            PALAVER_ACCOUNT_SID=self.account_sid,
            PALAVER_AUTH_TOKEN=self.auth_token,
            PALAVER_ENFORCE_TIMER_MINIMUMS="false",
            PALAVER_LOG="warn",
        )
        env.update(self.extra_env)
        self.process = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = threading.Event()

        def read():
            for line in self.process.stdout:
                self.output.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    self.url = match.group(1)
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.process.kill()
            raise RuntimeError("palaver did not start: " + "".join(self.output))
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(15) == 0, "a graceful stop exits 0"
        self.process = None

    def restart(self):
        self.stop()
        return self.start()

    def client(self, token=None):
        client = Client(self.account_sid, token or self.auth_token)
        client.conversations.base_url = self.url
        return client

    def palaver(self, *args):
        """Runs another `palaver` command on this server's data directory and returns its output."""
        out = subprocess.run(
            [BIN, *args, "--data-dir", self.data_dir],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PALAVER_LOG": "warn", "PALAVER_ACCOUNT_SID": self.account_sid},
        )
        return out.stdout


@pytest.fixture(scope="module")
def server():
    server = PalaverServer().start()
    yield server
    server.stop()


@pytest.fixture
def own_server():
    """A server for one test, which may restart it."""
    server = PalaverServer().start()
    yield server
    server.stop()


@pytest.fixture
def v1(server):
    return server.client().conversations.v1


def unique(prefix="x"):
    return f"{prefix}-{secrets.token_hex(4)}"
