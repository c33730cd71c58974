"""PII masking (serving/pii.py): examples from bug reports, and properties. The properties embed a
generated valid e-mail, phone, card number, IBAN or ID number in random surrounding text and
check that the output is the surrounding text, untouched, around a mask; and that ordinary
numbers (amounts, dates, times, order ids) in random text are kept exactly."""

from __future__ import annotations

import re
from datetime import date

import pytest

pytest.importorskip("hypothesis")  # the serve-test extra

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tuneforge.serving.pii import MASKS, iban_ok, luhn_ok, mask_pii

PROPERTY = settings(max_examples=200, deadline=None)
MASK = re.compile("|".join(re.escape(m) for m in MASKS.values()))


# -- examples ---------------------------------------------------------------------------------

ISSUE = [  # the strings of the issue: the IBAN and what follows it
    ("DE89 3704 0044 0532 0130 00 EUR 100", "[IBAN] EUR 100"),
    ("DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "[IBAN] BIC COBADEFFXXX"),
    ("pay to de89 3704 0044 0532 0130 00 today", "pay to [IBAN] today"),
    ("IBAN: de89370400440532013000\nEUR 100", "IBAN: [IBAN]\nEUR 100"),
    ("BE68 5390 0754 7034 BIC GEBABEBB", "[IBAN] BIC GEBABEBB"),  # was "BE68 [PHONE] BIC ..."
    ("FR14 2004 1010 0505 0001 3M02 606 EUR 1.234,56", "[IBAN] EUR 1.234,56"),
    ("ref AB12 DE89 3704 0044 0532 0130 00", "ref AB12 [IBAN]"),  # starts inside a candidate
]
FOUND = [  # bugs the properties found in the other rules
    ("2024-03-15 14:35", "2024-03-15 14:35"),  # date + time was a phone
    ("(030) 1234-5678", "[PHONE]"),  # the "(" was left
    ("030/1234567", "[PHONE]"),  # was kept
    ("call 0086 138 0013 8000", "call [PHONE]"),  # 15 digits, no Luhn: was kept as a "number"
    ("INSEE 1 84 12 76 451 089 46", "INSEE [ID]"),  # hidden from the ID rule by the card rule
    ("(030) 123-45-6789", "[ID]"),  # an SSN's shape in a phone: "(030) " was left
    ("IDENTITY CARD please", "IDENTITY CARD please"),  # was "[ID] CARD"
    ("EUR 12 345 678", "EUR 12 345 678"),  # was "EUR [PHONE]"
    ("12.345.678,90 €", "12.345.678,90 €"),  # was "[PHONE],90 €"
    ("ORD-12345678901", "ORD-12345678901"),  # was "ORD-[PHONE]"
    ("card 4111 1111 1111 1111 09/25", "card [CARD] 09/25"),  # 18 digits failed Luhn: kept
    ("v1.1 22211234567896", "v1.1 [CARD]"),  # the card rule took "1 2221...": no Luhn, kept
]

KEPT = [  # ordinary numbers, as the issue lists them
    "EUR 1,234.56", "$12.50", "1.234,56 €", "on 2024-03-15", "on 15.03.2024", "on 15/03/2024",
    "at 14:35", "at 14:35:07", "ORD-12345A", "A1B2C3D4E5", "order 1234567",
]  # fmt: skip
IN_PATHS = [  # as the access log writes a request for /v1/models/{name}/predict
    (f"/v1/models/{raw}/predict", f"/v1/models/{mask}/predict")
    for raw, mask in [
        ("jane.doe@example.com", "[EMAIL]"),
        ("4111 1111 1111 1111", "[CARD]"),
        ("DE89 3704 0044 0532 0130 00", "[IBAN]"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("123-45-6789", "[ID]"),
    ]
]


@pytest.mark.parametrize(("raw", "masked"), ISSUE + FOUND + [(k, k) for k in KEPT] + IN_PATHS)
def test_examples(raw, masked):
    assert mask_pii(raw) == masked


def test_iban_ok_either_case_and_country_length():
    assert iban_ok("DE89370400440532013000") and iban_ok("de89 3704 0044 0532 0130 00")
    assert not iban_ok("DE89370400440532013001")
    assert not iban_ok(_iban("DE", "12345678901234567"))  # mod-97 holds, but DE has 22 chars
    assert iban_ok(_iban("ZZ", "1234567890123456"))  # a code outside the registry: any length


def test_iban_of_unlisted_country_masked_by_longest_valid_prefix():
    iban = _iban("ZZ", "1234567890123456")
    assert mask_pii(f"{iban} EUR 100") == "[IBAN] EUR 100"


def test_words_after_an_id_are_no_iban():
    # A UK NI number and two words: AT's 20 characters, passing mod-97, but not written as an
    # IBAN is (whole, or in groups of 4)
    ni = next(f"AT{n}C" for n in range(10**5, 10**6) if iban_ok(f"AT{n}C PLEASE HELLO"))
    assert mask_pii(f"{ni} PLEASE HELLO") == "[ID] PLEASE HELLO"


# -- generators of valid personal data --------------------------------------------------------

IBAN_LENGTHS = {  # ISO 13616, a sample of countries
    "DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21, "AT": 20,
    "PL": 28, "NO": 15, "MT": 31, "PT": 25, "SE": 24, "IE": 22,
}  # fmt: skip
UPPER, DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"


def _iban(country: str, bban: str) -> str:
    """`country` + check digits + `bban`, the check digits computed (ISO 7064 mod-97)."""
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def _grouped(s: str, size: int, sep: str) -> str:
    return sep.join(s[i : i + size] for i in range(0, len(s), size))


@st.composite
def ibans(draw) -> str:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    n = IBAN_LENGTHS[country] - 4
    bank = draw(st.text(UPPER + DIGITS, min_size=4, max_size=4))  # letters in GB, NL, MT...
    iban = _iban(country, bank + draw(st.text(DIGITS, min_size=n - 4, max_size=n - 4)))
    iban = _grouped(iban, 4, " ") if draw(st.booleans()) else iban
    return iban.lower() if draw(st.booleans()) else iban


def _luhn_complete(partial: str) -> str:
    return next(partial + d for d in DIGITS if luhn_ok(partial + d))


@st.composite
def cards(draw) -> str:
    prefix = draw(st.sampled_from(["4", "51", "55", "2221", "34", "37", "6011", "35", "62"]))
    length = 15 if prefix in ("34", "37") else draw(st.integers(13, 19))
    n = length - len(prefix) - 1
    number = _luhn_complete(prefix + draw(st.text(DIGITS, min_size=n, max_size=n)))
    style = draw(st.sampled_from(["", " ", "-", "amex"]))
    if style == "amex" and length == 15:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    return _grouped(number, 4, style) if style in (" ", "-") else number


@st.composite
def phones(draw) -> str:
    """International (+CC) or national (0 + area code) numbers of 8-15 digits, grouped."""
    international = draw(st.booleans())
    cc = draw(st.sampled_from(["1", "33", "44", "49", "86", "353", "971"])) if international else ""
    area = draw(st.text(DIGITS, min_size=1, max_size=4))
    area = area if international else "0" + area
    n = draw(st.integers(max(8, len(cc + area) + 4), 15)) - len(cc + area)
    rest, groups = draw(st.text(DIGITS, min_size=n, max_size=n)), []
    while rest:
        size = draw(st.integers(2, 4))
        size = len(rest) if len(rest) - size < 2 else size  # no group of one at the end
        groups, rest = [*groups, rest[:size]], rest[size:]
    sep = draw(st.sampled_from([" ", "-", ".", ""]))
    style = draw(st.sampled_from(["plain", "paren", "slash"]))
    if style == "paren":
        head = f"({area}) "
    elif style == "slash" and not international:
        head = f"{area}/"  # German style: 030/1234567
    else:
        head = area + sep
    phone = head + sep.join(groups)
    assume(not re.fullmatch(r"\d{1,2}(\D)\d{1,2}\1(19|20)\d\d", phone))  # 06-12-2019: a date
    return f"+{cc} {phone}" if international else phone


NI_PREFIXES = sorted(
    {a + b for a in "ABCEGHJKLMNOPRSTWXYZ" for b in "ABCEGHJKLMNPRSTWXYZ"}
    - {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
)


@st.composite
def id_numbers(draw) -> str:
    kind = draw(st.sampled_from(["ssn", "ni", "insee", "keyword"]))
    digits = draw(st.text(DIGITS, min_size=13, max_size=13))
    if kind == "ssn":
        area = draw(st.integers(1, 899).filter(lambda a: a != 666))
        return f"{area:03d}-{draw(st.integers(1, 99)):02d}-{draw(st.integers(1, 9999)):04d}"
    if kind == "ni":
        letters = draw(st.sampled_from(NI_PREFIXES))
        suffix = draw(st.sampled_from("ABCD"))
        ni = f"{letters} {digits[:2]} {digits[2:4]} {digits[4:6]} {suffix}"
        return ni if draw(st.booleans()) else ni.replace(" ", "")
    if kind == "insee":
        number = draw(st.sampled_from("12")) + digits[1:]
        key = 97 - int(number) % 97
        parts = [number[0], number[1:3], number[3:5], number[5:7], number[7:10], number[10:13]]
        sep = draw(st.sampled_from([" ", ""]))
        return sep.join([*parts, f"{key:02d}"])
    keyword = draw(st.sampled_from(["ID", "ID:", "id no.", "Passport", "passport number", "SSN#"]))
    value = draw(st.sampled_from(UPPER)) + digits[: draw(st.integers(5, 11))]
    return f"{keyword} {value}"


emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._+\-]{0,14}[A-Za-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True),
)


# -- generators of surrounding text -----------------------------------------------------------

# Words and codes: lower and upper case, currencies, BICs, codes with digits. None looks like
# personal data, and none is "id", "passport"... (the ID rule masks what follows those).
WORDS = st.sampled_from(
    [
        "please", "call", "me", "today", "thanks", "Hello", "merci", "bitte", "Überweisung",
        "EUR", "USD", "CHF", "BIC", "COBADEFFXXX", "GEBABEBB", "IBAN", "REF", "NOTE", "OK",
        "ASAP", "URGENT", "TEL", "Re:", "FW:", "A1B2", "X9", "SKU-A7", "ORD-12345A", "v2",
        "v1.1", "HTTPS", "COVID-19", "A1B2C3D4E5", "iPhone", "ÄÖÜ", "Nº", "x",
    ]
)  # fmt: skip
# (thousands separator, decimal mark): 1,234.56 1.234,56 1'234.56 1 234,56 1234.56 1234
STYLES = [(",", "."), (".", ","), ("'", "."), (" ", ","), ("\u202f", ","), ("", "."), ("", None)]


def _amount(currency: str, value, style: tuple[str, str | None]) -> str:
    group, mark = style
    whole, cents = f"{value:.2f}".split(".")
    number = f"{int(whole):,}".replace(",", group) + (f"{mark}{cents}" if mark else "")
    return number + currency if currency.startswith(" ") else currency + number


amounts = st.builds(
    _amount,
    st.sampled_from(["EUR ", "€", "$", "£", "USD ", " EUR", " €", "€ ", " CHF"]),
    st.decimals(0, 999_999_999, places=2, allow_nan=False, allow_infinity=False),
    st.sampled_from(STYLES),
)


dates = st.dates(date(1900, 1, 1), date(2099, 12, 31))
dates_written = st.builds(
    lambda d, fmt: d.strftime(fmt),
    dates,
    st.sampled_from(["%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y", "%Y/%m/%d"]),
)
times = st.builds(
    lambda t, fmt: t.strftime(fmt), st.times(), st.sampled_from(["%H:%M", "%H:%M:%S"])
)
date_times = st.builds("{} {}".format, dates_written, times) | st.builds(
    lambda d, t: f"{d.isoformat()}T{t}", dates, times
)
short_numbers = st.integers(0, 9_999_999).map(str)  # fewer than 8 digits: never a phone
order_ids = st.one_of(
    st.from_regex(r"(ORD|INV|SKU|PO)-?\d{1,14}[A-Z]?", fullmatch=True),
    st.from_regex(r"\d{1,14}[A-Z]{1,3}", fullmatch=True),
    st.from_regex(r"([A-Z]\d){2,8}", fullmatch=True),  # A1B2C3D4E5
    st.builds("#{}".format, short_numbers),
)
kept_numbers = st.one_of(amounts, dates_written, times, date_times, short_numbers, order_ids)
SEPARATORS = st.sampled_from([" ", "  ", ", ", ": ", "; ", ".\n", "\n", " - ", " / ", "\n\n"])


@st.composite
def text_around(draw, numbers=kept_numbers):
    """Random text that starts and ends with a word; between words, maybe an ordinary number
    (two numbers are never side by side: "12 345 678" would be one number)."""
    parts = [draw(WORDS)]
    for _ in range(draw(st.integers(0, 6))):
        parts += [draw(SEPARATORS), draw(numbers | WORDS), draw(SEPARATORS), draw(WORDS)]
    return "".join(parts)


BEFORE = st.sampled_from([" ", ": ", ":\n", "\n", " (", ', "', " <", "; ", " - ", "\t"])
AFTER = st.sampled_from([" ", ". ", ".\n", ", ", ") ", '" ', "> ", "; ", " - ", "!\n", "\n"])


def _assert_masked(pii: str, left: str, before: str, after: str, right: str) -> None:
    """The surrounding text is kept as it is, and where `pii` was there are masks and
    punctuation only: no letter or digit of it survives."""
    text = left + before + pii + after + right
    out = mask_pii(text)
    head, tail = left + before, after + right
    assert out.startswith(head) and out.endswith(tail), out
    middle = out[len(head) : len(out) - len(tail)]
    assert MASK.search(middle) and not re.search(r"\w", MASK.sub("", middle)), out


# -- properties: personal data does not survive -----------------------------------------------


@PROPERTY
@given(ibans(), text_around(), BEFORE, AFTER, text_around())
def test_ibans_masked_whatever_follows(iban, left, before, after, right):
    assert iban_ok(iban)
    _assert_masked(iban, left, before, after, right)


@PROPERTY
@given(cards(), text_around(), BEFORE, AFTER, text_around())
def test_cards_masked(card, left, before, after, right):
    _assert_masked(card, left, before, after, right)


@PROPERTY
@given(phones(), text_around(), BEFORE, AFTER, text_around())
def test_phones_masked(phone, left, before, after, right):
    assert 8 <= sum(c.isdigit() for c in phone) <= 15
    _assert_masked(phone, left, before, after, right)


@PROPERTY
@given(emails, text_around(), BEFORE, AFTER, text_around())
def test_emails_masked(email, left, before, after, right):
    _assert_masked(email, left, before, after, right)


@PROPERTY
@given(id_numbers(), text_around(), BEFORE, AFTER, text_around())
def test_id_numbers_masked(id_number, left, before, after, right):
    _assert_masked(id_number, left, before, after, right)


@PROPERTY
@given(st.text(DIGITS, min_size=15, max_size=15), text_around(), BEFORE, AFTER, text_around())
def test_bare_luhn_valid_16_digits_is_a_card(digits, left, before, after, right):
    card = _luhn_complete(digits)
    assert mask_pii(f"{left}{before}{card}{after}{right}") == f"{left}{before}[CARD]{after}{right}"


# -- properties: ordinary numbers are kept ----------------------------------------------------


@PROPERTY
@given(text_around(amounts))
def test_amounts_kept(text):
    assert mask_pii(text) == text


@PROPERTY
@given(text_around(dates_written | times | date_times))
def test_dates_and_times_kept(text):
    assert mask_pii(text) == text


@PROPERTY
@given(text_around(order_ids | short_numbers))
def test_order_ids_and_short_numbers_kept(text):
    assert mask_pii(text) == text


@PROPERTY
@given(text_around())
def test_text_without_personal_data_unchanged(text):
    assert mask_pii(text) == text
