"""Scores of generations (evaluation/generative.py) on hand-made cases whose values are worked
out in the comments."""

from __future__ import annotations

import pytest

from tuneforge.evaluation.generative import (
    exact_match,
    json_references,
    json_scores,
    rouge_l,
    score_generations,
    token_f1,
)


def test_exact_match_trims_case_folds_and_collapses_whitespace():
    assert exact_match("  The  Capital\tis\nPARIS. ", "the capital is paris.")
    assert not exact_match("the capital is paris", "the capital is paris.")  # punctuation counts


def test_token_f1_on_known_pairs():
    # pred {the, cat, sat}, gold {the, cat, ran, away}: 2 shared, P 2/3, R 2/4 -> F1 4/7
    assert token_f1("The cat sat", "the cat ran away") == pytest.approx(4 / 7)
    # duplicates count as a multiset: pred {a, a, b}, gold {a, b, b}: shared a, b -> P = R = 2/3
    assert token_f1("a a b", "a b b") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0 and token_f1("x", "y") == 0.0


def test_rouge_l_is_rouge_scores_value_on_a_known_pair():
    from rouge_score.rouge_scorer import RougeScorer

    generated, expected = "the cat sat on the mat", "the cat was on the mat"
    # LCS "the cat on the mat" = 5 of 6 words each way: P = R = F = 5/6
    assert rouge_l(generated, expected) == pytest.approx(5 / 6)
    reference = RougeScorer(["rougeL"]).score(expected, generated)["rougeL"].fmeasure
    assert rouge_l(generated, expected) == pytest.approx(reference)
    # LCS "a c" of "a b c" (3 words) and "a c d e" (4): P 2/3, R 2/4 -> F 4/7
    assert rouge_l("a b c", "a c d e") == pytest.approx(4 / 7)
    # word order matters, unlike token F1: the LCS of "b a" and "a b" is one word
    assert rouge_l("b a", "a b") == pytest.approx(0.5) and token_f1("b a", "a b") == 1.0


def test_rouge_l_keeps_non_ascii_words():
    # rouge-score's own tokenizer would read "caf" / "cr" "me" and Cyrillic as nothing
    # ours: {café, crème} vs {café, au, lait}: LCS 1, P 1/2, R 1/3 -> F 0.4
    assert rouge_l("Café crème", "café au lait") == pytest.approx(0.4)
    assert rouge_l("Привет, мир!", "привет мир") == 1.0
    assert rouge_l("", "") == 1.0 and rouge_l("...", "word") == 0.0


SKILLS = {"skills": ["SQL", "Python"], "knowledge": ["statistics"]}


def test_json_field_f1_on_invalid_json_missing_fields_and_list_items():
    generated = [
        '{"skills": ["python", " sql "], "knowledge": []}',  # skills right, knowledge missed
        '{"skills": ["SQL", "Python"], "knowledge": ["statistics"]',  # not JSON (cut short)
        '{"skills": ["Go", "Go"], "extra": "x"}',  # one Go of two; no knowledge; an extra field
        '["Go"]',  # valid JSON, but not an object
    ]
    references = [SKILLS, SKILLS, {"skills": ["go", "GO"], "knowledge": ["ops"]}, {"skills": []}]
    found = json_scores(generated, references)
    assert found.valid == pytest.approx(2 / 4)
    # reference pairs: 3 + 3 + 3 + 0 = 9; predicted: 2 + 0 + 3 (go, go, extra) + 0 = 5;
    # shared: 2 (sql, python) + 0 + 2 (go twice: the list is a multiset) = 4
    assert found.precision == pytest.approx(4 / 5) and found.recall == pytest.approx(4 / 9)
    assert found.f1 == pytest.approx(2 * 4 / (5 + 9))
    skills, knowledge = found.per_field["skills"], found.per_field["knowledge"]
    # skills: reference 2 + 2 + 2 items, predicted 2 + 0 + 2, shared 2 + 0 + 2
    assert (skills["precision"], skills["recall"], skills["support"]) == (
        1.0,
        pytest.approx(4 / 6),
        6,
    )
    assert knowledge == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    assert "extra" not in found.per_field  # only the references' fields are listed


def test_scalar_values_and_duplicates_in_the_reference():
    found = json_scores(['{"title": " Data  Engineer ", "years": 3}'], [{"title": "data engineer",
                        "years": 5}])  # fmt: skip
    assert found.per_field["title"]["f1"] == 1.0 and found.per_field["years"]["f1"] == 0.0
    assert found.f1 == pytest.approx(0.5)


def test_json_metrics_apply_only_when_every_reference_is_an_object():
    assert json_references(['{"a": 1}', ' {"b": [2]} ']) == [{"a": 1}, {"b": [2]}]
    assert json_references(['{"a": 1}', "plain text"]) is None
    assert json_references(["[1, 2]"]) is None
    plain = score_generations(["Paris.", "Rome"], ["Paris.", "Rome."])
    assert plain.json is None and plain.exact_match == 0.5
    assert plain.rows[1] == {"exact_match": False, "token_f1": 0.0, "rouge_l": 1.0}
    extracted = score_generations(['{"skills": ["sql"]}'], ['{"skills": ["SQL"]}'])
    assert extracted.json.valid == 1.0 and extracted.json.f1 == 1.0
    assert extracted.exact_match == 1.0  # case-folded text
