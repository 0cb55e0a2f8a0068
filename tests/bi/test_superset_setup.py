"""Superset's own set-up on a fresh home and on later starts: the metadata and roles
first (a demo runs that while it materializes), then the admin, whose password is made
and shown only when the user is created."""

from __future__ import annotations

import os

import pytest

from signalbox.bi.superset import Superset, SupersetError, superset_executable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def superset(tmp_path) -> Superset:
    try:
        executable = superset_executable()
    except SupersetError as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    return Superset(tmp_path / "superset", executable=executable)


def test_the_admin_password_is_made_once_and_an_existing_admin_is_kept(superset):
    superset.prepare()
    assert (superset.home / "secret_key").stat().st_mode & 0o777 == 0o600
    password = superset.create_admin()
    assert password and len(password) >= 16
    superset.prepare()  # a later start: the schema is upgraded, roles are not made again
    assert superset.create_admin() is None
    # a home from before the marker existed: the user is there, so no password is shown
    (superset.home / "admin_created").unlink()
    assert superset.create_admin() is None
    assert superset.reset_password() != password
