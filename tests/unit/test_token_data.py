"""Token-tagged data: every format, every tag scheme, and errors that say where and how to fix."""

from __future__ import annotations

import json
import random

import pytest

from tuneforge.errors import DataError
from tuneforge.evaluation.metrics import evaluate_spans
from tuneforge.tasks import detect_task
from tuneforge.tasks.tags import (
    TagError,
    bio_tags,
    decode_bio,
    detect_scheme,
    read_spans,
    repair_bio,
)
from tuneforge.tasks.token_data import TokenDataset, load_tokens

WORDS = ["Mary", "Smith", "lives", "in", "New", "York", "City", "now"]
BIO = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
SPANS = [(0, 2, "PER"), (4, 7, "LOC")]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path, rows):
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---- schemes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "scheme,tags",
    [
        ("bio", BIO),
        ("iob1", ["I-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "I-LOC", "O"]),
        ("bioes", ["B-PER", "E-PER", "O", "O", "B-LOC", "I-LOC", "E-LOC", "O"]),
        ("bioes", ["B-PER", "L-PER", "O", "O", "B-LOC", "I-LOC", "L-LOC", "O"]),  # BILOU
    ],
)
def test_every_scheme_reads_into_the_same_spans(scheme, tags):
    assert read_spans(tags, scheme) == SPANS
    assert bio_tags(read_spans(tags, scheme), len(tags)) == BIO
    assert detect_scheme([tags]) == scheme


def test_iob1_uses_b_only_between_two_spans_of_one_type():
    tags = ["I-PER", "B-PER", "O", "I-LOC"]
    assert read_spans(tags, "iob1") == [(0, 1, "PER"), (1, 2, "PER"), (3, 4, "LOC")]
    assert detect_scheme([tags]) == "iob1"


def test_bare_tags_take_the_type_of_their_layer():
    assert read_spans(["O", "B", "I", "O", "B"], "bio", "skill") == [
        (1, 3, "skill"),
        (4, 5, "skill"),
    ]
    with pytest.raises(TagError, match="no type"):
        read_spans(["B", "I"], "bio")


@pytest.mark.parametrize(
    "tags,scheme,message,word",
    [
        (["O", "I-PER"], "bio", "I-PER follows O: its type never began", 1),
        (["B-LOC", "I-PER"], "bio", "follows a span of type LOC", 1),
        (["B-PER", "O"], "bioes", "has no E- tag", 1),
        (["E-PER"], "bioes", "does not continue a span", 0),
        (["O", "X-PER"], "bio", "unknown tag 'X-PER'", 1),
    ],
)
def test_tags_that_break_their_scheme_say_where(tags, scheme, message, word):
    with pytest.raises(TagError, match=message) as info:
        read_spans(tags, scheme)
    assert info.value.word == word


def test_model_output_is_read_leniently_and_repaired_to_valid_bio():
    assert repair_bio(["I-PER", "I-PER", "O", "B-LOC", "I-PER"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-PER",
    ]  # fmt: skip
    assert decode_bio(["I-PER", "I-PER", "O"]) == [(0, 2, "PER")]


# ---- metrics: equal to conlleval ---------------------------------------------------------------
def conlleval_counts(gold_rows, pred_rows):
    """(correct, gold, predicted) chunks, by conlleval's own start/end-of-chunk rules."""

    def chunks(tags):
        found, start, kind, prev_tag, prev_type = set(), None, None, "O", ""
        for i, tag in enumerate([*tags, "O"]):
            t, typ = (tag, "") if tag == "O" else (tag[0], tag[2:])
            end = prev_tag in "BI" and (t in "BO" or (t == "I" and typ != prev_type))
            begin = t == "B" or (t == "I" and (prev_tag == "O" or typ != prev_type))
            if end and start is not None:
                found.add((start, i, kind))
                start = None
            if begin:
                start, kind = i, typ
            prev_tag, prev_type = t, typ
        return found

    correct = gold = pred = 0
    for g, p in zip(gold_rows, pred_rows, strict=True):
        cg, cp = chunks(g), chunks(p)
        correct, gold, pred = correct + len(cg & cp), gold + len(cg), pred + len(cp)
    return correct, gold, pred


def test_span_scores_equal_conlleval_on_random_sequences():
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [repair_bio([rng.choice(tags) for _ in range(rng.randint(1, 12))]) for _ in range(300)]
    raw = [[t if rng.random() < 0.7 else rng.choice(tags) for t in row] for row in gold]
    correct, n_gold, n_pred = conlleval_counts(gold, raw)  # conlleval reads raw output as is
    result = evaluate_spans(gold, [repair_bio(r) for r in raw])
    precision, recall = correct / n_pred, correct / n_gold
    assert result.precision == pytest.approx(precision, abs=1e-6)
    assert result.recall == pytest.approx(recall, abs=1e-6)
    assert result.f1 == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-6)
    assert (result.gold_spans, result.predicted_spans) == (n_gold, n_pred)


def test_span_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-PER"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-PER", "O", "B-PER"]]  # cut short; type confusion
    result = evaluate_spans(gold, pred, [["a", "b", "c", "d"], ["e", "f", "g"]])
    assert (result.precision, result.recall, result.f1) == (0.5, 0.5, 0.5)  # 2 of 4 each way
    assert result.per_type["LOC"] == {"precision": 1.0, "recall": 0.5, "f1": 0.666667, "support": 2}
    assert result.errors["confusions"] == {"LOC -> PER": 1}
    assert {m["span"] for m in result.errors["missed"]} == {"a b", "e"}
    assert set(result.to_dict()) >= {"f1", "precision", "recall", "macro_f1", "per_type"}


# ---- formats ------------------------------------------------------------------------------------
CONLL = """-DOCSTART- -X- O O

Mary NNP B-NP B-PER
Smith NNP I-NP I-PER
lives VBZ B-VP O

in IN B-PP O
York NNP B-NP B-LOC
"""


def test_conll_reads_the_last_column_or_the_one_asked_for(tmp_path):
    path = write(tmp_path / "train.conll", CONLL)
    ds = load_tokens(path)
    assert ds.words == [["Mary", "Smith", "lives"], ["in", "York"]]
    assert ds.tags == [["B-PER", "I-PER", "O"], ["O", "B-LOC"]]
    assert ds.lines == [3, 7]
    chunks = load_tokens(path, label_col="3")
    assert chunks.tags[0] == ["B-NP", "I-NP", "B-VP"]
    with pytest.raises(DataError, match="column number from 2"):
        load_tokens(path, label_col="9")


def test_a_conll_txt_file_is_recognised_by_its_shape(tmp_path):
    path = write(tmp_path / "testset.txt", "Proven O \nability O \n\nto O\ninfluence B-Skill\n\n")
    assert detect_task(path) == "token-classification"
    assert load_tokens(path).tags == [["O", "O"], ["O", "B-Skill"]]
    plain = write(tmp_path / "notes.txt", "text\tlabel\nhello there\tgreet\n")
    assert detect_task(plain) == "text-classification"


def test_jsonl_tokens_with_layers(tmp_path):
    rows = [{"tokens": ["Know", "Python", "well"], "tags_skill": ["O", "O", "O"],
             "tags_knowledge": ["O", "B", "O"]}] * 3  # fmt: skip
    path = jsonl(tmp_path / "train.json", rows)
    with pytest.raises(
        DataError, match=r"several tag layers.*tags_knowledge, tags_skill.*--label-col"
    ):
        load_tokens(path)
    ds = load_tokens(path, label_col="tags_knowledge")
    assert ds.tags[0] == ["O", "B-knowledge", "O"] and ds.layer == "tags_knowledge"


def test_a_tag_count_that_differs_from_the_token_count_names_the_line(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [{"tokens": ["a", "b"], "tags": ["O", "O"]},
                                         {"tokens": ["a", "b"], "tags": ["O"]}])  # fmt: skip
    with pytest.raises(DataError, match=r"t.jsonl, line 2: 2 tokens but 1 tags"):
        load_tokens(path)


def test_an_i_tag_whose_type_never_began_names_line_and_token(tmp_path):
    words = ["a", "b", "c"]
    rows = [
        {"tokens": words, "tags": ["B-X", "O", "O"]},
        {"tokens": words, "tags": ["B-X", "O", "I-X"]},
    ]
    path = jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataError, match=r"line 2, token 3 \('c'\).*I-X follows O.*iob1"):
        load_tokens(path, scheme="bio")
    repaired = load_tokens(path, scheme="bio", repair=True)  # as conlleval reads it
    assert repaired.tags[1] == ["B-X", "O", "B-X"]
    assert "1 sentences have an I- tag that begins a span (line 2)" in repaired.warnings[0]


def test_text_with_character_spans(tmp_path):
    text = "Skills: Python, team-work and SQL."
    rows = [{"text": text, "spans": [{"start": 8, "end": 14, "label": "TECH"},
                                     {"start": 16, "end": 25, "label": "SOFT"}]}]  # fmt: skip
    ds = load_tokens(jsonl(tmp_path / "s.jsonl", rows))
    assert ds.words[0] == ["Skills", ":", "Python", ",", "team-work", "and", "SQL", "."]
    assert ds.tags[0] == ["O", "O", "B-TECH", "O", "B-SOFT", "O", "O", "O"]
    assert [text[s:e] for s, e in ds.offsets[0]] == ds.words[0]  # offsets point into the text
    overlapping = [{"text": text, "spans": [{"start": 8, "end": 14, "label": "A"},
                                            {"start": 10, "end": 20, "label": "B"}]}]  # fmt: skip
    with pytest.raises(DataError, match=r"line 1: spans overlap: \[8, 14\) A 'Python'"):
        load_tokens(jsonl(tmp_path / "o.jsonl", overlapping))


def test_word_per_row_csv(tmp_path):
    path = write(
        tmp_path / "df.csv",
        "sentence_id,word,pos,tag\n1,Proven,NNP,O\n1,influence,VB,B-Skill\n2,teams,NN,O\n",
    )
    ds = load_tokens(path)
    assert ds.words == [["Proven", "influence"], ["teams"]]
    assert ds.tags == [["O", "B-Skill"], ["O"]] and ds.lines == [2, 4]


def test_the_task_is_detected_from_the_data_shape(tmp_path, tiny_tokens, tiny_data):
    assert detect_task(tiny_tokens["train"]) == "token-classification"
    assert detect_task(tiny_data["train"]) == "text-classification"
    assert detect_task(write(tmp_path / "x.conll", CONLL)) == "token-classification"


def test_raw_text_keeps_its_character_offsets():
    ds = TokenDataset.from_texts(["  Hello,  wörld's  end!"])
    assert [ds.texts[0][s:e] for s, e in ds.offsets[0]] == ds.words[0]
    assert ds.words[0] == ["Hello", ",", "wörld's", "end", "!"]
