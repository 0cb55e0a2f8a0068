"""Session-wide real engines: each starts once and is stopped at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.platform.embedded.postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
def signalbox_home() -> Iterator[Path]:
    """A fresh SIGNALBOX_HOME whose parents the embedded PostgreSQL's user can enter."""
    home = Path(tempfile.mkdtemp(prefix="signalbox-test-", dir="/tmp"))
    home.chmod(0o755)
    previous = os.environ.get("SIGNALBOX_HOME")
    os.environ["SIGNALBOX_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SIGNALBOX_HOME", None)
    else:
        os.environ["SIGNALBOX_HOME"] = previous
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(signalbox_home: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(signalbox_home / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url(postgres: EmbeddedPostgres) -> str:
    return postgres.url()
