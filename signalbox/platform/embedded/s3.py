"""A local S3 server (`nanio`, pure Python) for the demo: same S3 code path as production.

`nanio serve` runs as a child process on 127.0.0.1 with its buckets as directories under
`SIGNALBOX_HOME/objectstore`, so files persist across restarts. It checks SigV4
signatures against one key pair: the local demo values below, which are this server's
own credentials on loopback, not secrets. `client_env()` gives clients the endpoint and
that pair through the standard AWS variables, so `ObjectStoreResource` reads them from
the usual AWS chain like it would in production.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from signalbox.platform.embedded.child import ChildServer
from signalbox.platform.embedded.ports import free_port
from signalbox.platform.settings import signalbox_home

DEMO_ACCESS_KEY = "signalbox-local"  # the embedded server's own key pair, loopback only
DEMO_SECRET_KEY = "signalbox-local-secret"
DEFAULT_REGION = "us-east-1"


class EmbeddedS3Error(RuntimeError):
    """The embedded S3 server could not be started."""


def nanio_binary() -> Path:
    """The `nanio` console script of the running interpreter's environment."""
    path = Path(sys.executable).parent / "nanio"
    if not path.exists():
        raise EmbeddedS3Error(
            f"nanio is not installed next to {sys.executable} (pip install nanio)"
        )
    return path


class EmbeddedS3(ChildServer):
    """`nanio serve` on 127.0.0.1 over `data_dir`; `start()`/`stop()` or `with`."""

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        region: str = DEFAULT_REGION,
        access_key: str = DEMO_ACCESS_KEY,
        secret_key: str = DEMO_SECRET_KEY,
        start_timeout: float = 30.0,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.start_timeout = start_timeout
        self.start_seconds: float | None = None  # measured by start()
        self._process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"EmbeddedS3({str(self.data_dir)!r}, {state})"

    @property
    def log_path(self) -> Path:
        # beside the data dir, not in it: nanio serves the data dir's folders as buckets
        return self.data_dir.with_name(self.data_dir.name + ".log")

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedS3Error(f"embedded S3 over {self.data_dir} is not started")
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Variables pointing `ObjectStoreResource.from_env()` (and boto3) at this server."""
        return {
            "SIGNALBOX_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def export_env(self) -> None:
        """Set `client_env()` in this process (children inherit it); drops a session token."""
        os.environ.update(self.client_env())
        os.environ.pop("AWS_SESSION_TOKEN", None)

    def start(self) -> str:
        """Start the server and wait until it answers HTTP; returns its URL. Idempotent."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        elif not _port_is_free(self.port):
            # checked first: the wait below would take another server's answer for ours
            raise EmbeddedS3Error(f"cannot start nanio: 127.0.0.1:{self.port} is already in use")
        env = {
            **os.environ,
            "NANIO_ACCESS_KEY": self.access_key,
            "NANIO_SECRET_KEY": self.secret_key,
        }
        command = [
            str(nanio_binary()),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--region",
            self.region,
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # its own process group: the owner stops it (after the runs using it),
                # not a Ctrl-C aimed at the terminal's foreground group
                start_new_session=True,
            )
        try:
            self._wait_until_answering(began)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.url

    def _wait_until_answering(self, began: float) -> None:
        assert self._process is not None and self.port is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise EmbeddedS3Error(
                    f"nanio exited with {code} while starting on 127.0.0.1:{self.port} "
                    f"over {self.data_dir}: {self._log_tail()}"
                )
            if self._answers():
                return
            if time.monotonic() - began > self.start_timeout:
                raise EmbeddedS3Error(
                    f"nanio did not answer on 127.0.0.1:{self.port} within "
                    f"{self.start_timeout:.0f}s: {self._log_tail()}"
                )
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Any HTTP answer (an unsigned request gets 403) means the app is serving."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:].strip() or "(no output)"
        except OSError:
            return "(no log)"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def embedded_s3() -> EmbeddedS3:
    """The demo's object store: files under SIGNALBOX_HOME/objectstore, with a secret key
    of its own per start (the files do not depend on it)."""
    return EmbeddedS3(signalbox_home() / "objectstore", secret_key=secrets.token_urlsafe(24))
