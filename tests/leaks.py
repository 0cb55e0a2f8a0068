"""Looking for secrets where a person or a log reader could find them."""

from __future__ import annotations

from pathlib import Path


def files_holding(root: Path, secrets: dict[str, str], skip: tuple[str, ...] = ()) -> list[str]:
    hits = []
    needles = {name: value.encode() for name, value in secrets.items()}
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.name in skip:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        hits += [f"{name} in {path}" for name, needle in needles.items() if needle in data]
    return hits
