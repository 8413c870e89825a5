"""Where generated artefacts are kept between runs (ROS-free): exported graphs, the seeded
"random" network, the synthetic camera's rendered frames. Each is named by a digest of what
made it, so a change of code or settings makes a new one and never reuses a stale one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """$POSEDIFF_CACHE, else $XDG_CACHE_HOME/posediff_ros, else ~/.cache/posediff_ros."""
    if os.environ.get("POSEDIFF_CACHE"):
        return Path(os.environ["POSEDIFF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "posediff_ros"


def source_digest(paths: list[Path], *extra: str) -> str:
    """sha256 (16 hex digits) over the named source files (name and bytes, in name order) and
    `extra` strings (library versions, settings): what decides an artefact's content."""
    h = hashlib.sha256()
    for text in extra:
        h.update(text.encode() + b"\0")
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]
