"""`strata down` stops Serve gently only as long as something needs it: until the services' replicas have left, not
for the gateway's ingress replicas' deregistration window."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from strata.cluster import _serve
from strata.cluster._ray import serve_replica_apps
from strata.cluster._state import Proc


class _SlowServe(BaseHTTPRequestHandler):
    """A dashboard whose DELETE (Serve's shutdown) answers only once the test lets it."""

    deletes: list[str] = []
    release = threading.Event()

    def do_DELETE(self) -> None:
        self.deletes.append(self.path)
        self.release.wait(30)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[str]:
    _SlowServe.deletes.clear()
    _SlowServe.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowServe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _SlowServe.release.set()
        server.shutdown()
        server.server_close()


def test_shutdown_returns_once_done_says_so_while_serve_still_deletes(dashboard: str) -> None:
    # What had to stop has stopped once Serve got the request (as the services' replicas leave while it deletes).
    _serve.shutdown(dashboard, None, timeout=30, done=lambda: bool(_SlowServe.deletes))

    assert _SlowServe.deletes == ["/api/serve/applications/"]
    assert not _SlowServe.release.is_set(), "it returned before Serve answered"


def test_shutdown_without_done_waits_for_serve_to_answer(dashboard: str) -> None:
    threading.Timer(0.5, _SlowServe.release.set).start()
    _serve.shutdown(dashboard, None, timeout=30)
    assert _SlowServe.release.is_set()


def test_shutdown_gives_up_after_its_timeout(dashboard: str) -> None:
    _serve.shutdown(dashboard, None, timeout=0.5, done=lambda: False)
    assert not _SlowServe.release.is_set()


def test_shutdown_of_a_dashboard_that_is_gone_returns() -> None:
    _serve.shutdown("http://127.0.0.1:9", None, timeout=30, done=lambda: False)


def test_serve_replica_apps_are_read_from_the_process_titles_of_a_head_s_descendants() -> None:
    # A parent (as the raylet) with two "replicas" titled as Ray titles them, and a worker of no replica.
    script = (
        "(exec -a 'ray::ServeReplica:data:DataService' sleep 30) &"
        " (exec -a 'ray::ServeReplica:gateway:Gateway' sleep 30) &"
        " (exec -a 'ray::OutboxRelay' sleep 30) & wait"
    )
    parent = subprocess.Popen(["bash", "-c", script])
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 10
        apps: set[str] = set()
        while time.monotonic() < deadline and apps != {"data", "gateway"}:
            apps = serve_replica_apps([Proc(parent.pid, 0.0)])
            time.sleep(0.05)
        children = psutil.Process(parent.pid).children(recursive=True)
        assert apps == {"data", "gateway"}
        assert _serve.ingress_apps() == {"gateway"}
    finally:
        for child in children:
            child.kill()
        parent.kill()
        parent.wait()
    assert serve_replica_apps([Proc(parent.pid, 0.0)]) == set()
