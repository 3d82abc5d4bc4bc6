"""Fixtures: a real Palaver server process per module (or per test, for restarts) and a `twilio` client for it.

The server binary comes from PALAVER_BIN (default: target/debug/palaver). It listens on a free port and prints
`listening on http://…` when ready.

With PALAVER_CONFORMANCE_CLUSTER set (to a PostgreSQL URL; PALAVER_TEST_NATS_URL gives NATS), each "server"
is a cluster of two nodes sharing a PostgreSQL schema of its own and a NATS subject prefix: the client talks to
the first node while both run timers, webhook planning and delivery, so every test also checks that the
cluster answers as one server does (a webhook sent twice, a timer fired twice, would fail it).
"""
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
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
        self.processes = []
        self.url = None
        self.output = []
        self.cluster_env = {}
        database = os.environ.get("PALAVER_CONFORMANCE_CLUSTER")
        if database:
            # The store creates the schema the URL selects; the storage tests sweep old `t_<secs>_<hex>` ones.
            schema = f"t_{int(time.time())}_{secrets.token_hex(6)}"
            separator = "&" if "?" in database else "?"
            self.cluster_env = {
                "PALAVER_DATABASE_URL": f"{database}{separator}options=-c%20search_path%3D{schema}",
                "PALAVER_NATS_URL": os.environ.get("PALAVER_TEST_NATS_URL", "nats://127.0.0.1:4222"),
                "PALAVER_NATS_SUBJECT_PREFIX": f"conformance_{secrets.token_hex(6)}",
                "PALAVER_MEDIA_STORE_URL": "file://" + os.path.join(self.data_dir, "shared-media"),
            }

    @property
    def process(self):
        """The node the client talks to."""
        return self.processes[0] if self.processes else None

    def start(self):
        self.url = self._start_node(0)
        if self.cluster_env:
            # Behind a load balancer every node is configured with the one public URL (status callbacks, media
            # links); here the first node stands in for it.
            self._start_node(1, public_url=self.url)
        return self

    def _start_node(self, number, public_url=None):
        env = dict(os.environ)
        env.update(
            PALAVER_ACCOUNT_SID=self.account_sid,
            PALAVER_AUTH_TOKEN=self.auth_token,
            PALAVER_ENFORCE_TIMER_MINIMUMS="false",
            PALAVER_LOG="warn",
            # The suite sets up faster than any client should write; the rate tests turn the rates back on.
            PALAVER_CONVERSATION_RATE="0",
            PALAVER_SERVICE_RATE="0",
            PALAVER_CONNECTION_RATE="0",
        )
        env.update(self.cluster_env)
        env.update(self.extra_env)
        if public_url:
            env["PALAVER_PUBLIC_URL"] = public_url
        data_dir = self.data_dir if number == 0 else os.path.join(self.data_dir, f"node{number}")
        process = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(process)
        ready = threading.Event()
        found = []

        def read():
            for line in process.stdout:
                self.output.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    found.append(match.group(1))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            process.kill()
            raise RuntimeError("palaver did not start: " + "".join(self.output))
        return found[0]

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            assert process.wait(15) == 0, "a graceful stop exits 0"
        self.processes = []

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
            env={**os.environ, **self.cluster_env, "PALAVER_LOG": "warn", "PALAVER_ACCOUNT_SID": self.account_sid},
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
