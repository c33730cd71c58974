"""Read tabular text data (CSV, TSV, JSONL, Parquet) with errors that say how to fix the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from tuneforge.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unknown file type '{path.suffix}'. Use one of "
            f"{', '.join(sorted(FORMATS))} (CSV needs a header row)."
        )
    return fmt


def check_encoding(path: Path, encoding: str) -> None:
    """Fail early, naming the line, when a text file is not in the expected encoding."""
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        guess = _guess_encoding(raw)
        hint = (
            f" It looks like {guess}: pass --encoding {guess}, or convert it with "
            f"`iconv -f {guess} -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`."
            if guess
            else " Re-save it as UTF-8."
        )
        raise DataError(
            f"{path}: not valid {encoding} at line {line} (byte 0x{raw[exc.start]:02x} "
            f"at offset {exc.start}).{hint}"
        ) from None


def _guess_encoding(raw: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: fall back to a short list of usual suspects
        from_bytes = None
    if from_bytes is not None:
        best = from_bytes(raw).best()
        if best is not None and best.encoding.lower().replace("_", "-") not in ("utf-8", "ascii"):
            return best.encoding
    for enc in ("gb18030", "cp1252", "latin-1"):
        try:
            raw.decode(enc)
            return enc
        except UnicodeDecodeError:
            continue
    return None


def read_frame(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a whole file as strings; empty cells stay empty strings (no 'NA' guessing)."""
    frames = list(iter_frames(path, encoding=encoding, chunksize=None))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def iter_frames(
    path: str | Path, encoding: str = "utf-8", chunksize: int | None = 10_000, raw: bool = False
) -> Iterator[pd.DataFrame]:
    """Yield the file in chunks of rows, so huge files are processed in constant memory.

    Cells become strings unless `raw` (which keeps Parquet/JSON types for pass-through output).
    """
    convert = (lambda f: f) if raw else _as_strings
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found. Check the path (cwd: {Path.cwd()}).")
    fmt = detect_format(path)
    if fmt == "parquet":
        yield from map(convert, _iter_parquet(path, chunksize))
        return
    if chunksize is None:  # streamed reads check encoding per chunk through pandas
        check_encoding(path, encoding)
    try:
        if fmt == "jsonl":
            reader = pd.read_json(
                path, lines=True, dtype=False, encoding=encoding, chunksize=chunksize
            )
        else:
            reader = pd.read_csv(
                path,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                encoding=encoding,
                chunksize=chunksize,
            )
        chunks = [reader] if chunksize is None else reader
        for chunk in chunks:
            yield convert(chunk)
    except UnicodeDecodeError:
        check_encoding(path, encoding)
        raise
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot parse as {fmt.upper()}: {exc}. Check quoting and that "
            "every row has the same number of fields as the header."
        ) from None


def _iter_parquet(path: Path, chunksize: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    for batch in table.iter_batches(batch_size=chunksize or 1 << 30):
        yield batch.to_pandas()


def _as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.apply(lambda col: col.map(_cell_to_str)) if len(frame) else frame


def _cell_to_str(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    return str(value)
