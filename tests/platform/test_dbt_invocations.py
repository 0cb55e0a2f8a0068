"""dbt's per-invocation target folders are pruned to the newest few of each op."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.unit


def test_only_the_newest_folders_of_the_same_op_are_kept(tmp_path: Path):
    from signalbox.platform.dbt import prune_invocations  # imports dagster_dbt: not at collection

    target = tmp_path / "target"
    names = [f"activity_dbt_models-{i:07x}-abc{i:04d}" for i in range(30)]
    for age, name in enumerate(reversed(names)):  # names[0] is the oldest
        folder = target / name
        folder.mkdir(parents=True)
        (folder / "run_results.json").write_text("{}")
        os.utime(folder, (1_000_000 - age, 1_000_000 - age))
    other = target / "mailbox_dbt_models-0000001-aaaaaaa"  # another op: not ours to prune
    other.mkdir()
    os.utime(other, (1, 1))
    (target / "manifest.json").write_text("{}")
    invocation = SimpleNamespace(project_dir=tmp_path, target_path=Path("target") / names[-1])

    removed = prune_invocations(invocation, keep=20)

    assert sorted(p.name for p in removed) == sorted(names[:10])
    left = sorted(p.name for p in target.iterdir())
    assert left == sorted([*names[10:], other.name, "manifest.json"])
