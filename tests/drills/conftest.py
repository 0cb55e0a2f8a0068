"""The crash drills (`make drill`, and part of `make test`): each domain's run killed with
SIGKILL at chosen and random points, re-run, and compared with the source's own truth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signalbox.platform.warehouse import WarehouseResource


@pytest.fixture
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as database:
        yield database
