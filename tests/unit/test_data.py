"""Data reading and validation: every failure names file, line and column and says how to fix."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tuneforge.data import check_trainable, data_warnings, load_data, stratified_split
from tuneforge.errors import DataError


def write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_all_formats_and_detects_columns(tmp_path):
    rows = [{"utterance": f"text number {i}", "intent": "a" if i % 2 else "b"} for i in range(6)]
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    df.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.tsv", "d.jsonl", "d.parquet"):
        ds = load_data(tmp_path / name)
        assert (ds.text_col, ds.label_col) == ("utterance", "intent"), name
        assert ds.texts[0] == "text number 0" and ds.labels[:2] == ["b", "a"]


def test_explicit_columns_and_missing_column_error(tmp_path):
    path = write(tmp_path / "d.csv", "body,y,other\nhello there,x,1\nbye now,z,2\n")
    ds = load_data(path, text_col="body", label_col="y")
    assert ds.labels == ["x", "z"]
    with pytest.raises(
        DataError,
        match=r"Column 'label' not found in d.csv \(columns: body, y, "
        r"other\)\. Pass --label-col",
    ):
        load_data(path, label_col="label")


def test_empty_text_names_lines(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nfine,a\n,b\n   ,a\nok,b\n")
    with pytest.raises(
        DataError,
        match=r"d.csv: empty or missing text in column 'text' at "
        r"line\(s\) 3, 4",
    ):
        load_data(path)


def test_missing_label_names_lines(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nfine,a\nalso fine,\n")
    with pytest.raises(DataError, match=r"missing label in column 'label' at line\(s\) 3"):
        load_data(path)


def test_non_utf8_suggests_encoding(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\ncafé crème brûlée,a\nnaïve,b\n", "cp1252")
    with pytest.raises(DataError, match=r"not valid utf-8 at line 2.*--encoding") as err:
        load_data(path)
    assert "iconv" in str(err.value)


def test_class_with_one_example_and_single_class(tmp_path):
    one = load_data(write(tmp_path / "a.csv", "text,label\nx y,a\nx z,a\nq r,b\n"))
    with pytest.raises(DataError, match=r"fewer than 2 examples.*'b' \(line\(s\) 4\)"):
        check_trainable(one)
    single = load_data(write(tmp_path / "b.csv", "text,label\nx y,a\nx z,a\n"))
    with pytest.raises(DataError, match="single class"):
        check_trainable(single)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"unknown file type '\.xlsx'"):
        load_data(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DataError, match="file not found"):
        load_data(tmp_path / "nope.csv")


def test_warnings_duplicates_leakage_imbalance_truncation(tmp_path):
    train = load_data(
        write(
            tmp_path / "t.csv",
            "text,label\n"
            + "same text,a\n" * 2
            + "other,b\n"
            + "".join(f"row {i},a\n" for i in range(40)),
        )
    )
    test = load_data(write(tmp_path / "e.csv", "text,label\nSame  Text,a\nnew,b\n"))
    warnings = " ".join(
        data_warnings(train, test, token_lengths=[5] * 40 + [300] * 3, max_length=128)
    )
    assert "1 duplicate text(s)" in warnings
    assert "1 eval row(s) also appear in the training data" in warnings and "line(s) 2" in warnings
    assert "Strong class imbalance" in warnings
    assert "3 of 43 texts (7.0%)" in warnings


def test_conflicting_duplicate_labels_warned(tmp_path):
    ds = load_data(write(tmp_path / "t.csv", "text,label\nsame,a\nsame,b\nx,a\ny,b\n"))
    assert any("different labels" in w for w in data_warnings(ds))


def test_multi_label_detected_and_split_stratified(tmp_path):
    ds = load_data(
        write(
            tmp_path / "m.csv",
            "text,label\n" + "".join(f"text {i},{'a|b' if i % 2 else 'b'}\n" for i in range(20)),
        )
    )
    assert ds.multi_label and ds.labels[1] == ["a", "b"] and ds.label_names == ["a", "b"]
    plain = load_data(
        write(
            tmp_path / "p.csv",
            "text,label\n" + "".join(f"text {i},{'x' if i < 30 else 'y'}\n" for i in range(40)),
        )
    )
    train, val = stratified_split(plain, 0.25, seed=0)
    assert len(val) == 10 and val.labels.count("y") in (2, 3)
    assert set(train.texts).isdisjoint(val.texts)
    assert val.lines[0] >= 2  # lines still point into the source file
