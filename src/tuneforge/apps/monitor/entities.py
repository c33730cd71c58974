"""Entities of a text: cashtags (`$AAPL`) and companies of a user-editable watch list.

Watch list (YAML), one entry per company; the entity key is `$TICKER` when a ticker is given
(so "Apple" and "$AAPL" count as one entity), else the name:

    companies:
      - name: Apple
        ticker: AAPL
        aliases: [Apple Inc, iPhone maker]

Names and aliases match whole words, case-insensitively; all of them are compiled into one
regular expression, so matching costs one pass over the text however long the list is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tuneforge.errors import ConfigError

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![\w])")
DEFAULT_WATCHLIST = Path(__file__).resolve().parent / "samples" / "watchlist.yaml"


@dataclass(frozen=True)
class Company:
    name: str
    ticker: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"${self.ticker.upper()}" if self.ticker else self.name


class EntityMatcher:
    def __init__(self, companies: list[Company]) -> None:
        self.companies = companies
        self._by_phrase: dict[str, str] = {}
        for company in companies:
            for phrase in (company.name, *company.aliases):
                self._by_phrase[phrase.casefold()] = company.key
        phrases = sorted(self._by_phrase, key=len, reverse=True)  # longest alias wins
        self._pattern = (
            re.compile(r"(?<!\w)(" + "|".join(map(re.escape, phrases)) + r")(?!\w)", re.I)
            if phrases
            else None
        )

    def find(self, text: str) -> list[str]:
        """Entity keys mentioned in `text`, each once, in order of first mention."""
        found = [f"${m.group(1).upper()}" for m in CASHTAG.finditer(text)]
        if self._pattern is not None:
            found += [self._by_phrase[m.group(1).casefold()] for m in self._pattern.finditer(text)]
        return list(dict.fromkeys(found))


def load_watchlist(path: Path) -> EntityMatcher:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Watch list {path} not found: create it or copy {DEFAULT_WATCHLIST}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    entries = data.get("companies", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected `companies:` followed by a list of entries.")
    return EntityMatcher([_company(entry, path, i) for i, entry in enumerate(entries, 1)])


def _company(entry, path: Path, index: int) -> Company:
    where = f"{path}, company {index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"{where}: each entry needs `name:` (plus optional ticker, aliases).")
    unknown = set(entry) - {"name", "ticker", "aliases"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; use name, ticker, aliases.")
    aliases = entry.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ConfigError(f"{where}: `aliases` must be a list of non-empty strings.")
    ticker = entry.get("ticker")
    if ticker is not None and not re.fullmatch(r"[A-Za-z]{1,6}(\.[A-Za-z]{1,2})?", str(ticker)):
        raise ConfigError(f"{where}: ticker {ticker!r} should be letters, e.g. AAPL or BRK.B.")
    return Company(entry["name"], str(ticker) if ticker else None, tuple(aliases))
