"""Slots: amounts, currencies, card types and dates found in a message, filled into answers.

Extraction is rule-based on purpose: an approved answer may only repeat what the customer
wrote, in a normalised form ("25 euros" → "€25"), never a guess. A template whose slot is
missing from the message is not filled half-way: the answer's fallback text is used instead.
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneforge.apps.assist.knowledge import Answer

SLOT_NAMES = ("amount", "currency", "card_type", "date")

SYMBOLS = {"€": "EUR", "£": "GBP", "$": "USD", "¥": "JPY"}
CURRENCY_WORDS = {
    "euro": "EUR",
    "euros": "EUR",
    "pound": "GBP",
    "pounds": "GBP",
    "quid": "GBP",
    "dollar": "USD",
    "dollars": "USD",
    "yen": "JPY",
    "franc": "CHF",
    "francs": "CHF",
    "zloty": "PLN",
    "krona": "SEK",
    "kronor": "SEK",
}
CODES = ("EUR", "GBP", "USD", "JPY", "CHF", "PLN", "SEK", "NOK", "DKK", "CAD", "AUD", "HUF", "CZK")
SHOWN_SYMBOL = {code: sym for sym, code in SYMBOLS.items()}

_NUMBER = r"\d{1,3}(?:[,\s]\d{3})+(?:\.\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_UNIT = r"[€£$¥]|\b(?:" + "|".join(CODES) + r")\b|\b(?:" + "|".join(CURRENCY_WORDS) + r")\b"
AMOUNT_BEFORE = re.compile(rf"(?P<unit>{_UNIT})\s?(?P<num>{_NUMBER})", re.IGNORECASE)
AMOUNT_AFTER = re.compile(rf"(?<![\w.,])(?P<num>{_NUMBER})\s?(?P<unit>{_UNIT})", re.IGNORECASE)
CURRENCY_ALONE = re.compile(_UNIT, re.IGNORECASE)

CARD_TYPES = [  # (pattern, how the answer names it); the first match wins
    (r"\bvisa\b", "Visa"),
    (r"\bmaster\s?card\b", "Mastercard"),
    (r"\b(?:amex|american express)\b", "American Express"),
    (r"\bmaestro\b", "Maestro"),
    (r"\bdisposable\b", "disposable virtual"),
    (r"\bvirtual\b", "virtual"),
    (r"\bcredit\b", "credit"),
    (r"\bdebit\b", "debit"),
]

_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b"
    rf"|\b(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?\b"
    rf"|\b(?:last|this|on)\s+(?:{_DAYS}|week|month)\b|\byesterday\b|\btoday\b",
    re.IGNORECASE,
)


def template_fields(template: str) -> tuple[str, ...]:
    """The {slot} names a template uses, in order (ValueError on unbalanced braces)."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    return tuple(dict.fromkeys(names))


def _code(unit: str) -> str:
    unit_l = unit.lower()
    return SYMBOLS.get(unit) or CURRENCY_WORDS.get(unit_l) or unit.upper()


def _amount(match: re.Match) -> tuple[str, str]:
    code, number = _code(match["unit"]), re.sub(r"\s", ",", match["num"])
    symbol = SHOWN_SYMBOL.get(code)
    return (f"{symbol}{number}" if symbol else f"{number} {code}"), code


def extract_slots(message: str) -> dict[str, str]:
    """Slot values found in `message` (only the slots that are there)."""
    slots: dict[str, str] = {}
    matches = [m for m in (AMOUNT_BEFORE.search(message), AMOUNT_AFTER.search(message)) if m]
    if matches:  # the first amount written ("1,000 USD 12 March": not "USD 12")
        found = min(matches, key=lambda m: m.start())
        slots["amount"], slots["currency"] = _amount(found)
    else:
        currency = CURRENCY_ALONE.search(message)
        if currency:
            slots["currency"] = _code(currency.group(0))
    for pattern, name in CARD_TYPES:
        if re.search(pattern, message, re.IGNORECASE):
            slots["card_type"] = name
            break
    date = DATE.search(message)
    if date:
        slots["date"] = date.group(0)
    return slots


def fill(answer: Answer, slots: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(reply text, the slots used): the template when all its slots are known, else fallback."""
    if all(name in slots for name in answer.slots):
        used = {name: slots[name] for name in answer.slots}
        return answer.template.format(**used), used
    return answer.fallback.format(), {}  # format() turns a literal {{ into {
