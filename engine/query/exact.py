"""Exact product codes: a query that is a product's id, or a code-like token of its text, ranks that product first.

Shoppers paste SKUs, model numbers and ids ("RG6-KIT", "0108775015", "wh-1000xm4"); a relevance ranking may
bury the one product that holds the code under products that merely share its digits. At load, `ExactCodes`
maps every product id and every code-like token of the product texts to their rows, case-insensitively and
ignoring the separators `-`, `.`, `/` and `_` inside a code that holds letters ("WH-1000XM4" = "wh1000xm4").

A code-like token holds digits mixed with letters ("rg6", "x100") or a run of at least LONG_DIGITS digits
("100652"); a number with a unit ("60w", "36in", "5gal"), a size ("2x4", "36x80") or a count ("5-tier", "9-pocket") is not one, and nor is a
token held by more than MAX_SHARED products (a code names a product, or a handful of variants). A query matches
only when the whole query is one token (no spaces) equal to a key.

`exact_first` puts a query's exact matches (those inside the filters) at the top of a relevance ranking, ids
before text codes, each group in its ranking order (then by row), without repeating them further down; they take
the best score of the ranking (1.0 where it is empty), so scores never rise down a list. A personalised search
re-ranks after this (engine.query.personalise), so there exact matches start first but may move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from vitrina.index.lexical import fold

if TYPE_CHECKING:
    from vitrina.engine.query.search import SearchSession

LONG_DIGITS = 5  # a digit run this long is a code (ids, UPCs, model numbers), shorter ones are quantities
MAX_SHARED = 10  # a token in more products than this is a word of the catalog, not a product's code
_TOKEN = re.compile(r"[^\W_]+(?:[-./_][^\W_]+)*")  # words joined by code separators
_SEPARATORS = re.compile(r"[-./_]")
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
_UNITS = ("in|inch|inches|ft|feet|gal|gallon|gallons|qt|oz|lb|lbs|mm|cm|m|v|volt|volts|w|watt|watts|a|amp|amps|"
          "btu|gpm|psi|pk|pc|pcs|sq|cu|ml|l|kg|g|mah|hz|k|x|st|nd|rd|th|s|p|ah|kw|kwh|cfm|rpm|awg|ga|yd")
_NOT_A_CODE = re.compile(
    r"\d+(?:[.,]\d+)?(?:" + _UNITS + r")"  # a number with a unit (or an ordinal, a plural year: 1990s)
    r"|\d+(?:[.,]\d+)?(?:x\d+(?:[.,]\d+)?)+(?:" + _UNITS + r")?"  # a size: 2x4, 36x80, 2x4x8ft
    r"|\d+[^\W\d_]{3,}"  # a count of things: 9-pocket, 5-tier, 40-led
)


def code_key(token: str) -> str:
    """The lookup key of a token: folded (case, accents), without code separators where it holds letters
    ("WH-1000XM4" -> "wh1000xm4"; "12-2/14-2" stays, not the digit run "122142")."""
    return _unseparated(fold(token))


def _unseparated(folded: str) -> str:
    return _SEPARATORS.sub("", folded) if _LETTER.search(folded) else folded


def is_code(key: str) -> bool:
    """Whether a key (`code_key`) looks like a product code: digits with letters, or a long run of digits only."""
    if not _LETTER.search(key):
        return key.isdigit() and len(key) >= LONG_DIGITS
    return bool(_DIGIT.search(key)) and not _NOT_A_CODE.fullmatch(key)


def code_tokens(text: str) -> set[str]:
    """The keys of the code-like tokens of a text (whole separated tokens and their parts)."""
    keys = set()
    if not _DIGIT.search(text):
        return keys
    for token in _TOKEN.findall(text.lower() if text.isascii() else fold(text)):  # ASCII: folding is lowercasing
        if not _DIGIT.search(token):
            continue
        parts = _SEPARATORS.split(token)
        for part in (token, *parts) if len(parts) > 1 else (token,):
            key = _unseparated(part)
            if is_code(key):
                keys.add(key)
    return keys


@dataclass(frozen=True)
class ExactCodes:
    """Product rows by id and by code-like token of their text (keys from `code_key`)."""

    ids: dict[str, int]  # key of a product id -> its row
    codes: dict[str, np.ndarray]  # key of a code-like token -> the rows holding it (at most MAX_SHARED)

    @classmethod
    def build(cls, ids: Sequence[str], texts: Iterable[str]) -> "ExactCodes":
        by_id: dict[str, int] = {}
        for row, pid in enumerate(ids):
            by_id.setdefault(code_key(str(pid)), row)
        holders: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            for key in code_tokens(text or ""):
                rows = holders.setdefault(key, [])
                if len(rows) <= MAX_SHARED:
                    rows.append(row)
        codes = {key: np.asarray(rows, dtype=np.int64) for key, rows in holders.items() if len(rows) <= MAX_SHARED}
        return cls(by_id, codes)

    def matches(self, query: str, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(the row whose id is the query, the rows holding it as a code, by row), each inside `allowed`; both
        empty for a query of several words or matching nothing."""
        none = np.zeros(0, dtype=np.int64)
        query = query.strip()
        if not query or any(ch.isspace() for ch in query):
            return none, none
        key = code_key(query)
        by_id = np.asarray([self.ids[key]] if key in self.ids else [], dtype=np.int64)
        holders = self.codes.get(key, none) if is_code(key) else none
        holders = holders[~np.isin(holders, by_id)]
        if allowed is not None:
            allowed = np.asarray(allowed)
            by_id, holders = by_id[allowed[by_id]], holders[allowed[holders]]
        return by_id, holders

    def rows_of(self, query: str, allowed: np.ndarray | None = None) -> np.ndarray:
        """The rows exactly matching a one-token query: its id's first, then the code's holders."""
        return np.concatenate(self.matches(query, allowed))


def exact_first(session: SearchSession, queries: Sequence[str], scores: np.ndarray, rows: np.ndarray,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ranking (`scores`, `rows`: (queries, depth), rows -1 past the end) with its exact matches
    (`session.exact_codes`, built on the first one-token query) moved or added to the top, the rest following in
    order, cut to the same depth. Unchanged where no query is one token or exact matching is off."""
    if not any(q.strip() and not any(ch.isspace() for ch in q.strip()) for q in queries):
        return scores, rows
    codes = session.exact_codes
    if codes is None:
        return scores, rows
    scores, rows = scores.copy(), rows.copy()
    for i, query in enumerate(queries):
        by_id, holders = codes.matches(query, allowed)
        if not len(by_id) and not len(holders):
            continue
        ranked = rows[i][rows[i] >= 0]
        position = {int(r): p for p, r in enumerate(ranked)}
        holders = holders[np.argsort([position.get(int(r), len(ranked) + int(r)) for r in holders], kind="stable")]
        exact = np.concatenate([by_id, holders])
        rest = ~np.isin(ranked, exact)
        valid_scores = scores[i][rows[i] >= 0]
        top_scores = np.full(len(exact), valid_scores.max() if len(valid_scores) else 1.0, dtype=scores.dtype)
        new_rows = np.concatenate([exact, ranked[rest]])[: rows.shape[1]]
        new_scores = np.concatenate([top_scores, valid_scores[rest]])[: rows.shape[1]]
        rows[i], scores[i] = -1, 0
        rows[i, : len(new_rows)], scores[i, : len(new_scores)] = new_rows, new_scores
    return scores, rows


def has_exact_match(session: SearchSession, query: str) -> bool:
    """Whether a one-token query is a product id or code the catalog holds (anywhere, whatever the filters)."""
    text = query.strip()
    if not text or any(ch.isspace() for ch in text):
        return False
    codes = session.exact_codes
    if codes is None:
        return False
    by_id, holders = codes.matches(text, None)
    return bool(len(by_id) or len(holders))
