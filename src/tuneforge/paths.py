"""Where tuneforge keeps caches, and atomic file and directory writes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$TUNEFORGE_CACHE`, else `$XDG_CACHE_HOME/tuneforge`, else `~/.cache/tuneforge`."""
    root = (
        os.environ.get("TUNEFORGE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tuneforge"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write a temp sibling, then rename it over `path`: a kill mid-write keeps the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_dir_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Write a directory in a temp sibling, then swap it in: readers never see half a directory."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
