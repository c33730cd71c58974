"""Robustness: accuracy when the test texts carry the noise real users type.

Each perturbation is seeded, so a report is reproducible and two models are compared on the very
same noisy texts.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import numpy as np

KEYBOARD_NEIGHBOURS = {
    row[i]: row[max(0, i - 1)] + row[i + 1 : i + 2]
    for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm")
    for i in range(len(row))
}


def typos(text: str, rng: random.Random, rate: float = 0.05) -> str:
    """Swap, drop, double or mistype letters at about `rate` per letter (at least one)."""
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    if not letters:
        return text
    n = max(1, round(rate * len(letters)))
    for i in sorted(rng.sample(letters, min(n, len(letters))), reverse=True):
        kind = rng.choice(("swap", "drop", "double", "neighbour"))
        if kind == "swap" and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == "drop":
            del chars[i]
        elif kind == "double":
            chars.insert(i, chars[i])
        else:
            near = KEYBOARD_NEIGHBOURS.get(chars[i].lower())
            if near:
                chars[i] = rng.choice(near)
    return "".join(chars)


def casing(text: str, rng: random.Random) -> str:
    """All upper, all lower, or every word capitalized."""
    return rng.choice((str.upper, str.lower, str.title))(text)


def punctuation(text: str, rng: random.Random) -> str:
    """Strip all punctuation, or add stray marks at the end and between words."""
    if rng.random() < 0.5:
        return text.translate(str.maketrans("", "", string.punctuation))
    words = text.split()
    if words:
        i = rng.randrange(len(words))
        words[i] += rng.choice((",", "...", "!", "?", ";"))
    return " ".join(words) + rng.choice(("!!", "??", "...", " ?"))


PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "typos": typos,
    "casing": casing,
    "punctuation": punctuation,
}


def perturb(texts: list[str], kind: str, seed: int = 0) -> list[str]:
    rng = random.Random(f"{kind}-{seed}")
    fn = PERTURBATIONS[kind]
    return [fn(t, rng) for t in texts]


def robustness(
    predict: Callable[[list[str]], list[str]],
    texts: list[str],
    gold: list[str],
    clean_pred: list[str] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Accuracy on clean and perturbed texts, and how many predictions the noise flipped."""
    clean = clean_pred if clean_pred is not None else predict(texts)
    gold_arr, clean_arr = np.asarray(gold, dtype=object), np.asarray(clean, dtype=object)
    out = {"clean": {"accuracy": float(np.mean(clean_arr == gold_arr)), "changed": 0.0}}
    for kind in PERTURBATIONS:
        noisy = np.asarray(predict(perturb(texts, kind, seed)), dtype=object)
        out[kind] = {
            "accuracy": float(np.mean(noisy == gold_arr)),
            "changed": float(np.mean(noisy != clean_arr)),
        }
    return out
