"""moto's S3 server for the tests that need one, and the AWS environment it is reached with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from signalbox.platform.embedded.ports import free_port
from signalbox.platform.embedded.s3 import DEMO_ACCESS_KEY, DEMO_SECRET_KEY


@contextmanager
def aws_environment(scratch: Path) -> Iterator[None]:
    """The standard AWS variables only (no profile, no config files of the machine)."""
    empty = scratch / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(empty))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ACCESS_KEY_ID", DEMO_ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", DEMO_SECRET_KEY)
        mp.setenv("AWS_REGION", "us-east-1")
        yield


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), stopped on exit; yields its URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
