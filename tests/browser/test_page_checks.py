"""The page checker itself (tests/browsing.py), on pages of its own: a request the page
cancels, or leaves loading when the test moves on, is not a failure; a request that
cannot reach its server is one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from signalbox.platform.embedded.ports import free_port

CLOSED_PORT = free_port()  # nothing listens there
PAGES = {
    # a list asked for, then cancelled by the page (as Superset's pages do), and another
    # still loading when the test leaves
    "/cancels": """<html><body><h1>cancels</h1><script>
        const asked = new AbortController();
        fetch('/slow', {signal: asked.signal}).catch(() => {});
        setTimeout(() => asked.abort(), 100);
        fetch('/slow?left');
    </script></body></html>""",
    "/next": "<html><body><h1>next</h1></body></html>",
    "/broken": f"""<html><body><h1>broken</h1><script>
        fetch('http://127.0.0.1:{CLOSED_PORT}/data').catch(() => {{}});
    </script></body></html>""",
}


class Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)
        body = PAGES.get(self.path, "{}").encode()
        with contextlib.suppress(OSError):  # the browser may have gone (a cancel, a leave)
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if self.path in PAGES else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_request_the_page_cancels_or_leaves_behind_is_not_a_failure(site, checked_page):
    page = checked_page.page
    page.goto(f"{site}/cancels", wait_until="load")
    page.wait_for_timeout(400)
    page.goto(f"{site}/next", wait_until="load")  # while /slow?left still loads
    page.wait_for_timeout(300)
    # the page's own cancel is reported; what the test left behind may be, or not (CI)
    assert f"{site}/slow" in checked_page.cancelled
    assert set(checked_page.cancelled) <= {f"{site}/slow", f"{site}/slow?left"}
    assert checked_page.unexpected() == []


def test_a_request_that_cannot_reach_its_server_fails_the_page(site, checked_page):
    checked_page.page.goto(f"{site}/broken", wait_until="load")
    checked_page.page.wait_for_timeout(500)
    assert any(f":{CLOSED_PORT}/data" in p for p in checked_page.unexpected())
    checked_page.problems.clear()  # seen: the fixture's own check passes
